"""The release agent: the program a ``notify`` container's emptying runs (README *Release*).

cgroup v1's kernel runs its ``release_agent`` through a usermode helper, one
work item per cgroup: a cgroup already waiting is not queued twice, and the
program gets a minimal environment (``HOME=/``, the system ``PATH``), ``/`` as
working directory and no descriptor of anyone's. The daemon does the same, and
bounds what a loop of ``mkdir``/``rmdir`` can start: before, every emptying
started an agent at once, and a delegated user's loop had 415 running as root.

- At most :data:`WORKERS` agents run at once; the other paths wait in order.
- A path already waiting is not queued again: one run tells of every emptying
  since it was queued (the agent reads the container's state when it runs).
  A path whose agent is running is queued again: it emptied after that start.
- At most :data:`QUEUE` paths wait; past that a notification is dropped, with
  a log line that counts the drops (``released`` in ``container.events`` still
  counts the emptying).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Awaitable, Callable

import trio

log = logging.getLogger("containerfs")

#: Seconds a release agent may run before it is killed.
TIMEOUT = 30.0
#: Release agents running at once.
WORKERS = 4
#: Paths waiting for an agent; a notification past this is dropped and logged.
QUEUE = 1024
#: An agent's whole environment, as cgroup v1's kernel gives its own.
ENV = {"HOME": "/", "PATH": "/sbin:/bin:/usr/sbin:/usr/bin"}
#: Bytes of an agent's output kept for the log line.
SHOWN = 200


async def run_agent(program: str, where: str) -> None:
    """Run ``program WHERE`` as cgroup v1 does; its exit status and output go to the log.

    stdin is ``/dev/null``; stdout and stderr are pipes to the daemon, the only
    descriptors it gets (``close_fds``); it starts a session of its own, so
    no terminal signal meant for the daemon reaches it.
    """
    try:
        with trio.move_on_after(TIMEOUT) as scope:
            result = await trio.run_process(
                [program, where],
                check=False,
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                cwd="/",
                env=ENV,
                close_fds=True,
                pass_fds=(),
                start_new_session=True,
            )
        if scope.cancelled_caught:
            log.warning("release agent %s %s: killed after %.0f s", program, where, TIMEOUT)
            return
        out = (result.stdout + result.stderr).decode(errors="replace").strip()
        log.info("release agent %s %s: exit %d %s", program, where, result.returncode, out[:SHOWN])
    except OSError as exc:
        log.warning("release agent %s %s: %s", program, where, exc)


class AgentRunner:
    """The queue of release notifications and the few tasks that run them.

    ``program`` gives the agent to run, read when a run starts (a run after
    ``release_agent`` was changed or emptied uses the new value, as cgroup v1's
    does). ``run`` runs one (:func:`run_agent`; tests give their own).
    """

    def __init__(
        self,
        program: Callable[[], str],
        *,
        workers: int = WORKERS,
        limit: int = QUEUE,
        run: Callable[[str, str], Awaitable[None]] = run_agent,
    ) -> None:
        self.program = program
        self.workers = workers
        self.limit = limit
        self._run = run
        self.pending: dict[str, None] = {}  # paths waiting, oldest first
        self.running = 0  # worker tasks started and not finished
        self.dropped = 0  # notifications refused because the queue was full

    def notify(self, nursery: trio.Nursery, where: str) -> None:
        """Queue a run for container ``where`` (``/web/db``); start a worker if fewer
        than ``workers`` run."""
        if where in self.pending:
            log.info("%s: release agent already queued for it; one run tells both", where)
            return
        if len(self.pending) >= self.limit:
            self.dropped += 1
            log.warning(
                "%s: release agent not run: %d paths already wait (%d dropped so far)",
                where,
                len(self.pending),
                self.dropped,
            )
            return
        self.pending[where] = None
        if self.running < self.workers:
            self.running += 1
            nursery.start_soon(self._worker)

    async def _worker(self) -> None:
        try:
            while self.pending:
                where = next(iter(self.pending))
                del self.pending[where]
                program = self.program()
                if not program:
                    log.info("%s: release notification (no release_agent set)", where)
                    continue
                await self._run(program, where)
        finally:
            self.running -= 1

    def close(self) -> None:
        """At shutdown: say which notifications were never run."""
        if self.pending:
            first = next(iter(self.pending))
            log.warning(
                "%d release agent run(s) not made, the daemon stopped (%s first)",
                len(self.pending),
                first,
            )
            self.pending.clear()
