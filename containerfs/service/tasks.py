"""``tasks``: moving a running process into a container, cgroups and namespaces.

The engine refuses namespace kinds a running process cannot enter, and a
writer other than root what delegation does not give it (``Engine.check_move``).
Then the process's cgroups move (``CgroupBackend.move``), then its namespaces
(``kernel/inject.py``, a ptrace on the writer's behalf). All or nothing: when
the namespace move fails, the cgroups are put back.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
from pathlib import Path

import trio

from ..engine.tree import Container, check_not_internal
from ..engine.tree import parse_pid as parse_pid_text
from ..kernel.cgroups import TASKS, Hierarchy
from ..kernel.procs import Creds
from .persistence import Persistence
from .releases import Releases
from .runtime import Runtime

log = logging.getLogger("containerfs")


class Tasks:
    """Writes to ``tasks``."""

    def __init__(self, rt: Runtime, store: Persistence, releases: Releases) -> None:
        self.rt = rt
        self.store = store
        self.releases = releases

    async def write(self, c: Container, text: str, writer_pid: int, writer_uid: int) -> None:
        """``writer_pid``/``writer_uid``: the opener's (FUSE gives pid 0 for one
        outside the daemon's pid namespace)."""
        pid = parse_pid_text(text)
        # A new container's views are bound before anyone enters it. Not under the
        # lock: the binding looks paths up on our own mount, which a mkdir or rmdir
        # waiting for the lock can block (it holds the directory's lock in the
        # kernel): a deadlock, seen under load.
        ready = self.rt.ready.get(c.uid)
        if ready is not None:
            await ready.wait()
        async with self.rt.lock:
            await self._enter(c, pid, writer_pid, writer_uid)

    async def _enter(self, c: Container, pid: int, writer_pid: int, writer_uid: int) -> None:
        kernel = self.rt.kernel
        internal = self.rt.internal_pids()

        def facts() -> tuple[int, int, dict[str, int], Creds, int]:
            real = kernel.translate_pid(pid, writer_pid) if writer_pid else pid
            check_not_internal(real, internal)  # before anything reads its /proc
            pidfd = kernel.hold(real)  # the process named now, whatever its pid becomes
            try:
                writer = kernel.thread_group(writer_pid) if writer_pid else 0
                return real, pidfd, kernel.process_inodes(real), kernel.creds(real), writer
            except BaseException:
                os.close(pidfd)
                raise

        try:  # may scan /proc: off the event loop
            real, pidfd, inodes, creds, writer = await trio.to_thread.run_sync(facts)
        except (ProcessLookupError, FileNotFoundError):
            raise OSError(errno.ESRCH, f"no process {pid}") from None
        entry = Entry(self.rt, self.releases, c)
        try:
            targets = await self._enter_held(
                c, real, pidfd, inodes, creds, writer, writer_uid, entry
            )
        except BaseException:
            entry.end(False)
            raise
        finally:
            os.close(pidfd)
        if not entry.handed_off:  # else the deferred move ends it
            entry.end(True)
        moved = f" (namespaces: {' '.join(sorted(targets))})" if targets else ""
        log.info("%s/tasks <- %d%s", "/".join(c.path) or "/", real, moved)

    async def _enter_held(
        self,
        c: Container,
        real: int,
        pidfd: int,
        inodes: dict[str, int],
        creds: Creds,
        writer: int,
        writer_uid: int,
        entry: Entry,
    ) -> dict[str, int]:
        """:meth:`_enter` once the process is held by ``pidfd``; the namespace kinds
        it moved into. cgroup writes name a pid, not a pidfd: the pidfd is checked
        alive after them, and alive means the pid was that process's all along (a
        pid is not reused before its zombie is reaped)."""
        rt, kernel, cgroups = self.rt, self.rt.kernel, self.rt.cgroups
        check_not_internal(real, rt.internal_pids())
        if writer_uid != 0:
            now_in = self.container_in(await trio.to_thread.run_sync(cgroups.where, real))
            rt.engine.check_move(writer_uid, (creds.uids[0], creds.uids[1]), now_in, c)
        differ = rt.engine.check_enter(c, inodes, creds.threads)
        targets: dict[str, int] = {}
        sources: dict[str, str | int] = {}
        if differ:
            # A move is a ptrace on the writer's behalf: it may ask only for what
            # it could do itself.
            if not writer:  # FUSE gives 0 for a caller outside our pid namespace
                raise OSError(errno.EPERM, "cannot tell who asked; no namespace move")
            why = await trio.to_thread.run_sync(kernel.ptrace_refusal, writer, real)
            if why is not None:
                raise OSError(errno.EPERM, why)
            # The root's namespaces are the daemon's own (a process moved back up).
            holder = rt.holder_for(c)
            source = holder.pid if holder is not None else os.getpid()
            for kind in differ:
                targets[kind] = int(c.instance_id(kind))
                sources[kind] = f"/proc/{source}/ns/{kind}"
        before = await trio.to_thread.run_sync(cgroups.where, real)
        kernel.check_held(pidfd, real)  # `before` was this process's
        if targets:
            # A frozen process cannot stop for ptrace, and the cgroup move would
            # thaw it (it leaves its frozen cgroup): refuse before either.
            why = await trio.to_thread.run_sync(cgroups.frozen, before, rt.placement(c))
            if why is not None:
                raise OSError(errno.EAGAIN, f"{why}: it cannot stop to be moved; thaw it first")
            self._record_move(real, c, targets, before)
        handed_off = False  # a deferred move ends in a task of its own (_move_namespaces)
        try:
            await trio.to_thread.run_sync(cgroups.move, real, rt.placement(c))
            kernel.check_held(pidfd, real)  # alive: the writes moved this process
            if targets:
                try:
                    await self._move_namespaces(
                        real,
                        pidfd,
                        targets,
                        sources,
                        deferred=real == writer,
                        before=before,
                        entry=entry,
                    )
                    handed_off = entry.handed_off = real == writer
                except BaseException:
                    with contextlib.suppress(OSError):
                        await trio.to_thread.run_sync(cgroups.put_back, real, before)
                    raise
        finally:
            if targets and not handed_off:
                self.store.moved(real)
        return targets

    def container_in(self, at: dict[Hierarchy, Path]) -> Container | None:
        """The container whose ``tasks`` hold a process at ``at`` (its cgroups, from
        ``CgroupBackend.where``): its cgroup2 leaf; None outside every container."""
        for h, path in at.items():
            if h.version != 2 or not h.contains(path):
                continue
            parts = path.relative_to(h.dir()).parts
            if parts and parts[-1] == TASKS:
                parts = parts[:-1]
            elif parts not in self.rt.cgroups.direct:  # an OCI container's directory
                return None
            if any(part.startswith(".") for part in parts):
                return None
            return self.rt.engine.by_cgpath(parts)
        return None

    def _record_move(
        self, pid: int, c: Container, targets: dict[str, int], before: dict[Hierarchy, Path]
    ) -> None:
        """Record a namespace move before it starts: a daemon killed before it ends
        leaves the process in the new cgroups but the old namespaces, which the
        next start undoes (``recovery.finish_moves``)."""
        try:
            start = self.rt.kernel.start_time(pid)
        except ProcessLookupError:
            return  # gone: the move fails by itself
        move = {
            "pid": pid,
            "start": start,
            "into": list(c.path),
            "targets": targets,
            "before": self.rt.cgroups.record_where(before),
        }
        self.store.moving(pid, move)

    async def _move_namespaces(
        self,
        pid: int,
        pidfd: int,
        targets: dict[str, int],
        sources: dict[str, str | int],
        *,
        deferred: bool,
        before: dict[Hierarchy, Path],
        entry: Entry,
    ) -> None:
        """Make process ``pid`` join ``targets`` (``kernel/inject.py``).

        ``deferred``: the process wrote its own pid (``echo $$ > tasks``) and is
        blocked in that very write until we answer, so it cannot stop for
        ptrace now. Its threads are seized and asked to stop, which they do
        the moment the write returns, before running anything else; the move
        finishes after we answer. A failure then is logged, and the cgroups
        are put back where they were (``before``) before the process runs on
        (``on_failed``). ``pidfd`` is the caller's; the deferred part takes a
        copy of its own, and ends ``entry``.
        """
        rt = self.rt
        if not deferred:
            await trio.to_thread.run_sync(
                functools.partial(rt.kernel.move_into, pid, targets, sources=sources, pidfd=pidfd)
            )
            return
        assert rt.nursery is not None
        own = os.dup(pidfd)
        token = trio.lowlevel.current_trio_token()
        seized = trio.Event()
        failed: list[BaseException] = []

        def on_failed() -> None:
            # Before the threads go on: a process let go first ran on in the
            # cgroups it was refused, and its next `tasks` write saw them as
            # where it came from (it stayed there, and its exit released them).
            rt.cgroups.put_back(pid, before)

        def on_seized() -> None:
            token.run_sync_soon(seized.set)
            # The writer stops the moment we answer: the kernel may queue, then
            # withdraw, an interrupt of its write (see Loopback.nudge).
            rt.nudge()

        move = functools.partial(
            rt.kernel.move_into,
            pid,
            targets,
            sources=sources,
            pidfd=own,
            on_seized=on_seized,
            on_failed=on_failed,
        )

        async def finish() -> None:
            try:
                await trio.to_thread.run_sync(move)
            except OSError as exc:
                failed.append(exc)
                if seized.is_set():  # answered already: only the log can say it
                    log.warning("moving %d into namespaces failed after the write: %s", pid, exc)
            finally:
                os.close(own)
                self.store.moved(pid)
                entry.end(not failed)
                seized.set()

        rt.nursery.start_soon(finish)
        await seized.wait()
        if failed:
            raise failed[0]


class Entry:
    """A `tasks` move into a container, from the write until the move has ended.

    While it lasts, the release watcher leaves the container and its ancestors
    alone: the kernel shows them populated as soon as the cgroup write is made,
    and empty again when a refused move is undone, which looked like a task
    that came and went (a ``delete`` container was removed, an agent ran). At
    the end, a move that went through arms their release (it counts even if the
    task is gone already), one that failed leaves it as it was; then the kernel
    is asked again, outside the daemon's lock.
    """

    def __init__(self, rt: Runtime, releases: Releases, c: Container) -> None:
        self.rt = rt
        self.releases = releases
        self.chain: list[Container] = []
        node: Container | None = c
        while node is not None:
            self.chain.append(node)
            rt.entering[node.uid] = rt.entering.get(node.uid, 0) + 1
            rt.entries[node.uid] = rt.entries.get(node.uid, 0) + 1
            node = node.parent
        self.handed_off = False  # a deferred namespace move ends it (``_move_namespaces``)
        self.ended = False

    def end(self, moved: bool) -> None:
        """Once; ``moved``: the process is in, all of it."""
        if self.ended:
            return
        self.ended = True
        rt = self.rt
        for node in self.chain:
            left = rt.entering.pop(node.uid) - 1
            if left:
                rt.entering[node.uid] = left
        if moved:
            for node in self.chain:  # populated now, up to the root
                self.releases.occupy(node)
        if rt.nursery is not None:
            rt.nursery.start_soon(self.releases.after_entry, self.chain)
