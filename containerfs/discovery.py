"""Clone discovery: containers for namespaces that processes inside made themselves.

A process of a container that calls ``unshare``/``clone`` with new namespaces
(a shell's ``unshare -n``, a container runtime, ``ip netns add``) shows up as a
child container of origin ``clone``, named ``<comm>-<pid>`` after the process
that made it, with release policy ``delete``. The kernel tells no one about
``unshare``, so the daemon looks: a few times a second it compares the
namespaces of every task with its container's (decisions in
``engine.lifecycle``), and the nsfs bind mounts in each container's mount
namespace (``ip netns add`` leaves a namespace with no process at all).

Each new container gets a holder that joins the found namespaces (through
nsfs fds, checked by inode, never by pid alone), and its tasks move into its
cgroup leaf, so its ``tasks``, ``populated`` and release work as for any
other container.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from .engine import lifecycle, netnames
from .engine.errors import ContainerError
from .engine.kinds import NAMESPACE_NAMES, Origin
from .engine.tree import Container
from .kernel import procs
from .kernel.holder import Holder
from .kernel.netns import NETNS_DIR

if TYPE_CHECKING:
    from .kernel.system import Kernel
    from .service.containers import Containers
    from .service.releases import Releases
    from .service.runtime import Runtime

log = logging.getLogger("containerfs")

#: Seconds between two looks. A new namespace shows up within about this much
#: (plus the holder's start, a few ms); the issue asks for one second.
INTERVAL = 0.3


@dataclass(frozen=True)
class Task:
    pid: int
    diff: dict[str, str]  # namespace kinds where it is not in its container's: kind -> inode


@dataclass(frozen=True)
class Look:
    """What one look at the kernel found (read on a worker thread)."""

    tasks: dict[Container, list[Task]]
    mounts: dict[Container, list[tuple[str, int, str]]]  # mnt owner -> nsfs mounts
    lost: list[Container]  # whose holder has exited


Snapshot = list[tuple[Container, tuple[str, ...], dict[str, str], int | None]]


def _look(
    snapshot: Snapshot,
    kernel: Kernel,
    internal: frozenset[int],
    tables: procs.MountTables,
    held: list[tuple[Container, Holder]],
    empty: frozenset[Container],
) -> Look:
    """Read tasks' namespaces, nsfs mounts and which holders exited (blocking).
    The tasks of containers in ``empty`` are not read: they have none."""
    tasks: dict[Container, list[Task]] = {}
    holders: dict[object, int] = {}
    for c, path, ids, mnt_holder in snapshot:
        if mnt_holder is not None:  # an nsfs mount outlives every task
            holders[c] = mnt_holder
        if c in empty:
            continue
        try:
            pids = kernel.cgroups.procs(path)
        except OSError:
            continue
        found = []
        for pid in pids:
            if pid in internal:
                continue
            try:
                inodes = kernel.process_inodes(pid)
            except OSError:  # gone, or a zombie
                continue
            diff = {k: str(ino) for k, ino in inodes.items() if k in ids and str(ino) != ids[k]}
            if diff:
                found.append(Task(pid, diff))
        if found:
            tasks[c] = found
    mounts = tables.nsfs_mounts(holders)
    lost = [c for c, holder in held if holder.gone()]
    return Look(tasks, {c: m for c, m in mounts.items() if isinstance(c, Container)}, lost)


def daemons_name(point: str) -> bool:
    """Whether an nsfs mount at ``point`` is an ``ip netns`` name some containerfs
    daemon made (``engine/netnames.py``: the ``cfs...:`` family), ours or
    another's. A mount namespace copied from the host's after it was made
    (``unshare -m`` inside a container that shares the host's) holds a copy:
    that is neither a namespace a container's process bound itself (another
    daemon's would become a clone of ours) nor what keeps a clone of ours
    alive (the copy would keep it from ever being released)."""
    head, _, name = point.rpartition("/")
    return head == NETNS_DIR and netnames.reserved(name)


def founder(kernel: Kernel, pids: list[int]) -> tuple[int, str] | None:
    """The process that made a group's namespaces, as well as can be told afterwards:
    one whose parent is outside the group, the oldest of those. (pid, comm)."""
    facts = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            facts[pid] = kernel.process_stat(pid)
    if not facts:
        return None
    roots = [p for p, (_comm, ppid, _start) in facts.items() if ppid not in facts] or list(facts)
    pid = min(roots, key=lambda p: (facts[p][2], p))
    return pid, facts[pid][0]


class Discovery:
    """The daemon's periodic look for namespaces made inside containers."""

    def __init__(self, rt: Runtime, containers: Containers, releases: Releases) -> None:
        self.rt = rt
        self.containers = containers
        self.releases = releases
        self.max_clones = lifecycle.MAX_CLONES
        self._told: set[int] = set()  # pids already logged as not discoverable
        self._dead: set[int] = set()  # containers (uid) whose holder died, logged
        self._refused: set[tuple[int, str]] = set()  # (parent uid, why) logged already
        self._tables = rt.kernel.mount_tables()  # re-read only when they change
        # What a look needs from the tree, kept until the tree changes: at a
        # thousand containers, making it anew a few times a second was most of
        # the daemon's idle time.
        self._key: tuple[int, int] | None = None
        self._snapshot: Snapshot = []
        self._internal: frozenset[int] = frozenset()
        self._held: list[tuple[Container, Holder]] = []
        self._index: dict[tuple[str, str], Container] = {}

    async def run(self) -> None:
        try:
            while True:
                await trio.sleep(INTERVAL)
                try:
                    await self.once()
                except Exception:  # a bug here must not end the mount
                    log.exception("clone discovery failed")
        finally:
            self._tables.close()

    def _refresh(self) -> None:
        """Derive the snapshot of the tree again if it changed since the last look."""
        d = self.rt
        key = (d.engine.version, len(d.holders))
        if key == self._key:
            return
        self._key = key
        usable = [k for k in NAMESPACE_NAMES if d.engine.available.get(k) is None]
        self._snapshot = []
        self._held = []
        for c in d.engine.root.walk():
            ids = {k: c.instance_id(k) for k in usable}
            holder = d.holders.get(c.uid)
            mnt_holder = holder if "mnt" in c.owned and not c.is_root else None
            self._snapshot.append((c, c.cgpath, ids, mnt_holder.pid if mnt_holder else None))
            if holder is not None:
                self._held.append((c, holder))
        self._internal = frozenset(d.internal_pids())
        self._index = lifecycle.namespace_index(d.engine.root)

    def _empty(self) -> frozenset[Container]:
        """Containers with no task in them or below, as the release watcher last heard
        from the kernel (``cgroup.events``; an overflow of its queue makes it look
        at every one again). Reading each one's ``cgroup.procs`` a few times a
        second was most of an idle daemon's time at a thousand containers. A
        container whose watch could not be set up is read every time."""
        watcher = self.rt.watcher
        if watcher is None:
            return frozenset()
        return frozenset(c for c, *_ in self._snapshot if not c.populated and c in watcher)

    async def once(self) -> None:
        d = self.rt
        self._refresh()
        look = await trio.to_thread.run_sync(
            _look,
            self._snapshot,
            d.kernel,
            self._internal,
            self._tables,
            self._held,
            self._empty(),
        )
        await self._place_tasks(look)
        await self._bound_namespaces(look)
        await self._lost_holders(look)

    # -- tasks in other namespaces than their container's --------------------------

    async def _place_tasks(self, look: Look) -> None:
        index = self._index
        moves: list[tuple[int, Container, Container]] = []
        groups: dict[tuple[Container, frozenset[tuple[str, str]]], list[int]] = defaultdict(list)
        for c, tasks in look.tasks.items():
            if c.removed:
                continue
            for t in tasks:
                child = lifecycle.child_for(c, t.diff)
                if child is not None:
                    moves.append((t.pid, c, child))
                elif lifecycle.unknown_kinds(t.diff, index) == t.diff:
                    groups[(c, frozenset(t.diff.items()))].append(t.pid)
                elif t.pid not in self._told:
                    self._told.add(t.pid)
                    log.info(
                        "%s: task %d joined namespaces of another container (%s); left as it is",
                        "/".join(c.path) or "/",
                        t.pid,
                        " ".join(sorted(t.diff)),
                    )
        if len(self._told) > 10000:
            self._told.clear()
        for pid, seen_in, child in moves:
            await self._move(pid, seen_in, child)
        for (parent, diff), pids in groups.items():
            await self._found(parent, dict(diff), pids)

    async def _move(self, pid: int, seen_in: Container, c: Container) -> None:
        """Move a task of ``seen_in`` that is in child ``c``'s namespaces into ``c``.

        The look ran without the daemon's lock, so it may have caught a
        ``tasks`` move half done (cgroups moved, namespaces not yet). Acting on
        that would undo the move's cgroup part once it finished. So the facts
        are read again under the lock, where no move is half done except a
        deferred one (``Daemon.moving``), which is left alone.
        """
        d = self.rt
        async with d.lock:
            if c.removed or seen_in.removed or pid in d.moving:
                return
            try:
                if not await trio.to_thread.run_sync(self._still_for, pid, seen_in, c):
                    return
                await trio.to_thread.run_sync(d.cgroups.move, pid, d.placement(c))
            except (OSError, ValueError) as exc:
                log.debug("moving %d into %s: %s", pid, "/".join(c.path), exc)

    def _still_for(self, pid: int, seen_in: Container, c: Container) -> bool:
        """Whether ``pid`` is still a task of ``seen_in`` in ``c``'s namespaces (blocking)."""
        if not self.rt.cgroups.holds(pid, seen_in.cgpath):
            return False
        inodes = self.rt.kernel.process_inodes(pid)
        return lifecycle.child_for(seen_in, lifecycle.differing(seen_in, inodes)) is c

    async def _found(self, parent: Container, diff: dict[str, str], pids: list[int]) -> None:
        """Make a clone container for namespaces ``diff`` that tasks ``pids`` of
        ``parent`` are in, and move them into it."""
        who = await trio.to_thread.run_sync(founder, self.rt.kernel, pids)
        if who is None:
            return  # all gone already
        pid, comm = who
        fds: dict[str, int] = {}
        try:
            for kind, ino in diff.items():
                fds[kind] = self.rt.kernel.open_namespace(f"/proc/{pid}/ns/{kind}", int(ino))
        except OSError:
            for fd in fds.values():
                os.close(fd)
            return  # it exited meanwhile; the next look sees the rest
        try:
            inos = {kind: str(ino) for kind, ino in diff.items()}
            child = await self._make(parent, comm, pid, fds, inos)
        finally:
            for fd in fds.values():
                os.close(fd)
        if child is None:
            return
        for p in pids:
            await self._move(p, parent, child)
        await self.releases.refresh_populated(child)

    async def _make(
        self,
        parent: Container,
        comm: str,
        pid: int | None,
        fds: dict[str, int],
        inos: dict[str, str],
    ) -> Container | None:
        """A clone container of `parent` owning the namespaces `fds` (opened with
        the inode numbers `inos`, as ``open_namespace`` checked)."""
        d = self.rt
        async with d.lock:
            if parent.removed:
                return None
            # The look ran without the lock: a claim may have made a container the
            # owner of these namespaces meanwhile (``container.claim``).
            index = lifecycle.namespace_index(d.engine.root)
            if any(key in index for key in inos.items()):
                return None
            try:
                plan = lifecycle.plan_clone(
                    d.engine, parent, comm, pid, fds, max_clones=self.max_clones
                )
            except ContainerError as exc:
                self._refuse(parent, exc)
                return None
            try:
                self.containers.check_holder_room(plan)  # a clone's holder is charged as any other
            except ContainerError as exc:
                d.engine.abort_mkdir(plan)
                self._refuse(parent, exc)
                return None
            try:
                return await self.containers.make(plan, Origin.CLONE, fds)
            except OSError as exc:
                log.info("namespaces in %s vanished before they were held: %s", plan.name, exc)
                return None
            finally:
                d.engine.abort_mkdir(plan)

    def _refuse(self, parent: Container, exc: ContainerError) -> None:
        """Log a container not added, once per parent and reason: the namespaces stay,
        and each look (a few a second) would say it again."""
        key = (parent.uid, exc.message)
        level = logging.DEBUG if key in self._refused else logging.WARNING
        if len(self._refused) > 10000:
            self._refused.clear()
        self._refused.add(key)
        log.log(level, "%s: not adding a container: %s", "/".join(parent.path) or "/", exc)

    # -- namespaces kept by a bind mount (ip netns add) ----------------------------

    async def _bound_namespaces(self, look: Look) -> None:
        d = self.rt
        held: set[tuple[str, str]] = set()
        for owner, mounts in look.mounts.items():
            for kind, ino, point in mounts:
                # a copy of a name a daemon made on the host, to the same namespace;
                # a tenant's own bind of a name of that form is not passed over
                if daemons_name(point) and d.kernel.netns_bound(os.path.basename(point)) == ino:
                    continue
                held.add((kind, str(ino)))
                index = lifecycle.namespace_index(d.engine.root)
                if (kind, str(ino)) in index or owner.removed or kind not in d.engine.kinds:
                    continue
                holder = d.holders.get(owner.uid)
                if holder is None:
                    continue
                try:
                    fd = d.kernel.open_namespace(f"/proc/{holder.pid}/root{point}", ino)
                except OSError:
                    continue  # unmounted meanwhile
                try:
                    name = os.path.basename(point.rstrip("/")) or kind
                    child = await self._make(owner, name, None, {kind: fd}, {kind: str(ino)})
                finally:
                    os.close(fd)
                if child is not None:
                    lifecycle.set_held(child, True)
        for c in list(d.engine.root.walk()):
            if c.origin != Origin.CLONE or c.removed:
                continue
            now = any((k, c.ids.get(k)) in held for k in c.owned if k in NAMESPACE_NAMES)
            if lifecycle.set_held(c, now) and not now:  # no longer held
                await self.releases.check_release(c)

    # -- holders that died under us ---------------------------------------------

    async def _lost_holders(self, look: Look) -> None:
        """A clone's holder dies with its namespaces' last process (a pid namespace's
        init ends every process in it, the holder too): release the container."""
        d = self.rt
        for c in look.lost:
            holder = d.holders.get(c.uid)
            if holder is None or c.removed or not holder.gone():  # replaced meanwhile
                continue
            if holder.killed:  # by us: an rmdir or release between the look and now
                continue
            if c.origin == Origin.CLONE:
                lifecycle.set_held(c, False)
                await self.releases.refresh_populated(c)
            elif c.origin == Origin.OCI and c.uid not in self._dead:
                # Its runtime's init ended, and its pid namespace with the holder
                # inside: the container stays until its runtime's delete.
                self._dead.add(c.uid)
                log.info("%s: its init exited (holder %d gone)", "/".join(c.path), holder.pid)
            elif c.uid not in self._dead:
                self._dead.add(c.uid)
                log.error("%s: its namespace holder %d died", "/".join(c.path), holder.pid)
