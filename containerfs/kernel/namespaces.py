"""Namespace identities, and running code inside a container's namespaces on a fresh thread.

A namespace is named by the inode of its nsfs file (``/proc/PID/ns/KIND``).
This module reads those identities and runs a function in a holder's
namespaces (:mod:`holder`) on a fresh OS thread.

Why a fresh thread each time: ``setns()`` changes the calling *thread*, and a
pooled thread (``trio.to_thread``) that joined a container would run the next
unrelated job there.  The thread exits when the function returns, taking its
namespaces with it.  A thread cannot join a user namespace (the kernel refuses
in a multithreaded process) nor a time namespace (EUSERS), and it must
``unshare(CLONE_FS)`` before joining a mount namespace.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypeVar

from containerfs.kernel import sys as ksys
from containerfs.nskinds import KINDS

if TYPE_CHECKING:
    from containerfs.kernel.holder import Holder

T = TypeVar("T")

#: Kinds a thread cannot join: the kernel refuses both in a multithreaded process.
THREAD_REFUSED = frozenset({"user", "time"})


def check_kind(kind: str) -> None:
    """``ValueError`` unless ``kind`` is a namespace kind (an nsfs name)."""
    if kind not in KINDS:
        raise ValueError(f"unknown namespace kind: {kind!r}")


def check_same_namespaces(
    holder_pid: int, expected: Mapping[str, int], actual: Mapping[str, int]
) -> None:
    """``OSError(ESRCH)`` naming the kinds where ``actual`` inodes (a holder's, read
    by pidfd) are not the ``expected`` ones: the container changed, or the pid was
    reused by another process."""
    changed = sorted(k for k, ino in expected.items() if actual.get(k) != ino)
    if changed:
        raise OSError(
            errno.ESRCH,
            f"holder {holder_pid} is not in the container's {', '.join(changed)} "
            "namespace: pid reused or container changed",
        )


def ns_inode(pid: int | str, kind: str) -> int:
    """Inode of ``/proc/PID/ns/KIND``: the namespace's identity.

    For ``pid`` and ``time`` this is the process's *active* namespace (the one
    it runs in).  ``pid`` may also be ``"self"`` or ``"thread-self"``.  A
    process that is gone (or a zombie, which has dropped its namespaces) raises
    ``ProcessLookupError``.
    """
    check_kind(kind)
    return _stat_ns(f"/proc/{pid}/ns/{kind}")


def ns_inode_for_children(pid: int | str, kind: str) -> int:
    """Inode of the namespace the process's *next children* get.

    Differs from :func:`ns_inode` only for ``pid`` and ``time`` after the
    process called ``unshare``/``setns`` for them (those change children only).
    """
    check_kind(kind)
    name = f"{kind}_for_children" if kind in ("pid", "time") else kind
    return _stat_ns(f"/proc/{pid}/ns/{name}")


def _stat_ns(path: str) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {path}") from None


def open_ns_checked(path: str, inode: int) -> int:
    """An nsfs fd on ``path`` (``/proc/PID/ns/net``, a bind-mounted netns file) that is
    namespace ``inode``; ``ProcessLookupError`` when it is another by now."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    if os.fstat(fd).st_ino != inode:
        os.close(fd)
        raise ProcessLookupError(errno.ESRCH, f"{path} is no longer namespace {inode}")
    return fd


def ancestors(fd: int, limit: int = 64) -> list[int]:
    """Inodes of the namespaces above nsfs ``fd``'s (a pid or user namespace),
    nearest first, as far as the kernel answers ``NS_GET_PARENT`` (EPERM past the
    caller's own namespace: the daemon's, which is where a claim stops looking)."""
    out: list[int] = []
    cur = os.dup(fd)
    try:
        for _ in range(limit):  # the kernel nests them 32 deep at most
            try:
                parent = ksys.ns_get_parent(cur)
            except OSError as exc:
                if exc.errno in (errno.EPERM, errno.ENOTTY, errno.EINVAL):
                    break
                raise
            os.close(cur)
            cur = parent
            out.append(os.fstat(cur).st_ino)
    finally:
        os.close(cur)
    return out


def availability() -> dict[str, str | None]:
    """Namespace kind -> None when this kernel has it, else the reason it is unusable."""
    return {k: None if os.path.exists(f"/proc/self/ns/{k}") else "kernel-lacks-it" for k in KINDS}


# -- running code in a holder's namespaces -------------------------------------


def _thread_flags(kinds: Iterable[str]) -> int:
    kinds = frozenset(kinds)
    for kind in kinds:
        check_kind(kind)
    refused = kinds & THREAD_REFUSED
    if refused:
        raise ValueError(f"a thread cannot join {', '.join(sorted(refused))} namespaces")
    return ksys.flags_of(kinds)


class _NsThread(threading.Thread):
    """A one-shot thread that joins a holder's namespaces, runs ``fn`` and exits.

    It owns ``pidfd`` (a dup the caller made, so that the daemon closing the
    holder meanwhile cannot matter) and closes it when done.
    """

    def __init__(
        self,
        pid: int,
        pidfd: int,
        flags: int,
        fn: Callable[[], T],
        on_done: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name=f"ns-{pid}", daemon=True)
        self._pidfd = pidfd
        self._flags = flags
        self._fn: Callable[[], object] = fn
        self._on_done = on_done
        self._result: object = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            if self._flags & ksys.CLONE_NEWNS:
                # setns(mnt) refuses a thread that shares cwd/root with others.
                ksys.unshare(ksys.CLONE_FS)
            if self._flags:
                ksys.setns(self._pidfd, self._flags)
            self._result = self._fn()
        except BaseException as exc:  # handed to the caller's thread
            self._error = exc
        finally:
            try:
                os.close(self._pidfd)
            finally:
                if self._on_done is not None:
                    self._on_done()

    def outcome(self) -> object:
        if self._error is not None:
            raise self._error
        return self._result


def _start(
    holder: Holder, kinds: Iterable[str], fn: Callable[[], T], on_done: Callable[[], None] | None
) -> _NsThread:
    """Start the visit; the holder's pidfd is dup'ed here, in the calling thread."""
    flags = _thread_flags(kinds)
    pidfd = holder.dup_pidfd()
    try:
        thread = _NsThread(holder.pid, pidfd, flags, fn, on_done)
        thread.start()
    except BaseException:
        os.close(pidfd)
        raise
    return thread


def run_in_namespaces(holder: Holder, kinds: Iterable[str], fn: Callable[[], T]) -> T:
    """Run ``fn`` in ``holder``'s namespaces of ``kinds`` and return its result.

    Blocks the caller (use :func:`run_in_namespaces_async` under trio).  ``fn``
    runs on a new thread that exits afterwards, so no thread outlives the
    visit.  ``fn``'s exception is re-raised here.  "user" and "time" are
    refused (``ValueError``): the kernel lets only single-threaded processes
    join those.  A closed holder raises ``ProcessLookupError`` (ESRCH), as
    does one whose process is gone (from ``setns``).
    """
    thread = _start(holder, kinds, fn, None)
    thread.join()
    return thread.outcome()  # type: ignore[return-value]


async def run_in_namespaces_async(holder: Holder, kinds: Iterable[str], fn: Callable[[], T]) -> T:
    """:func:`run_in_namespaces` without blocking the trio event loop.

    The fresh thread wakes the loop through the trio token when it is done.
    Like ``trio.to_thread.run_sync``, waiting is not cancellable: ``fn`` is
    never abandoned half-way inside a namespace.
    """
    import trio  # the exec client imports this module and must not pay for trio

    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake() -> None:
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    thread = _start(holder, kinds, fn, wake)
    with trio.CancelScope(shield=True):
        await done.wait()
    thread.join()
    return thread.outcome()  # type: ignore[return-value]
