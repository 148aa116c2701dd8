"""One expensive computation shared by every request that asks for it at once.

``cat namespaces`` walks every process on the host (tens of milliseconds, most
of it on every CPU). Eight readers at once used to start eight walks, which
took the CPUs from everyone else: other clients' requests went from 2 ms to
49 ms. :class:`SharedRuns` lets readers share walks instead.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import trio

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class _Run(Generic[T]):
    """One run of the function, and the readers waiting for it."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.started = False
        self.value: T | None = None
        self.error: Exception | None = None


class SharedRuns(Generic[K, T]):
    """Runs ``fn(key)`` on behalf of readers: one run at a time, shared.

    A reader is served by the first run for its key that *starts* after it
    asked, so what it gets is never older than its request (a namespace made
    before ``cat namespaces`` is in the listing). Readers that ask while a run
    is going wait for the next one, which starts when that one ends and serves
    them all: any number of readers arriving together cost at most two runs.
    Runs of every key take turns (a fair lock), so at most one is ever going.
    A failed run fails each of its readers with the same exception.
    """

    def __init__(self, fn: Callable[[K], Awaitable[T]]) -> None:
        self._fn = fn
        self._lock = trio.Lock()
        self._next: dict[K, _Run[T]] = {}  # per key: the run not started yet
        self.runs = 0  # runs started so far (for the log and the tests)

    async def get(self, key: K) -> T:
        while True:
            run = self._next.get(key)
            if run is None:
                run = self._next[key] = _Run()
                await self._drive(key, run)
            else:
                await run.done.wait()
            if run.started:  # else its driver was cancelled before it began: again
                if run.error is not None:
                    raise run.error
                return run.value  # type: ignore[return-value]

    async def _drive(self, key: K, run: _Run[T]) -> None:
        """Start ``run`` once no other run is going, and publish its outcome."""
        try:
            async with self._lock:
                del self._next[key]  # started: later readers wait for the next run
                run.started = True
                self.runs += 1
                try:
                    run.value = await self._fn(key)
                except Exception as exc:
                    run.error = exc
                except BaseException:  # cancelled: its readers must not get None
                    run.error = OSError(errno.EINTR, "the shared run was cancelled")
                    raise
        finally:
            if self._next.get(key) is run:  # cancelled while waiting for its turn
                del self._next[key]
            run.done.set()
