"""The daemon: the engine, the kernel backends and the mount under one trio nursery.

``Daemon`` is the service the FUSE adapter calls. Each request is decided by
the engine first (so bad input changes nothing), then carried out on the
kernel through the backends, then committed to the engine. Kernel work that
blocks (cgroup migrations, spawning a namespace holder) runs on worker
threads; anything that must ``setns()`` runs on a fresh thread of its own
(``kernel.namespaces``), never on trio's pooled ones.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import logging
import os
import signal
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pyfuse3
import trio

from . import recovery
from .agent import AgentRunner
from .defaults import find_program
from .discovery import Discovery
from .engine import lifecycle
from .engine.catalog import INFO_FILES, IPC_KNOBS, NET_KNOBS, PID_KNOBS, Role
from .engine.errors import ContainerError, InvalidInput, TooBig, TryAgain
from .engine.kinds import NAMESPACE_NAMES, KindClass, Origin, Release, all_kinds
from .engine.tree import (
    ROOT_IDS,
    Container,
    Engine,
    FileSpec,
    MkdirPlan,
    check_not_internal,
    format_limit,
    parse_kill,
    parse_time_offsets,
)
from .engine.tree import parse_pid as parse_pid_text
from .engine.views import Knob
from .fuse.loopback import Loopback
from .fuse.ops import Operations
from .kernel import (
    holder_start,
    idmaps,
    inject,
    mounts,
    namespaces,
    nsinfo,
    nslist,
    procfs,
    procs,
    ptrace_rules,
    sysctls,
)
from .kernel.cgroups import TASKS, CgroupBackend, Hierarchy
from .kernel.holder import PIN_NAME, Holder
from .kernel.watch import Watcher
from .shared import SharedRuns
from .statefile import StateFile

log = logging.getLogger("containerfs")

Ids = tuple[int, int]
#: How the daemon reads a file of a role: (container, file, reader's fsuid and fsgid).
Reader = Callable[[Container, FileSpec, Ids], Awaitable[str]]
#: How it writes one: (container, file, text, writer's pid, writer's uid).
Writer = Callable[[Container, FileSpec, str, int, int], Awaitable[None]]

STATE_VERSION = 2

#: The longest write a control file takes: a page, as cgroupfs (kernfs's
#: ``atomic_write_len``; past it, ``E2BIG``). The kernel hands the daemon a write
#: in pieces of up to FUSE's ``max_write`` (1 MiB with libfuse 3, which sets it
#: from its buffer: far more than a page), so the first piece of any longer write
#: is itself longer than this and refused, and the kernel sends none of the rest.
WRITE_MAX = os.sysconf("SC_PAGE_SIZE")

#: Seconds a mkdir waits for its parent's views to be bound.
BIND_WAIT = 10.0


def default_root_subtree(available: dict[str, str | None]) -> frozenset[str]:
    """Every usable kind except ``user``: a user namespace without an ID map runs
    everything as ``nobody``, which surprises more than it protects."""
    return frozenset(k for k, why in available.items() if why is None and k != "user")


class Daemon:
    """The service behind the mount (see ``fuse.ops.Service``)."""

    def __init__(
        self,
        mountpoint: str,
        state_dir: str,
        cgroups: CgroupBackend,
        pin_path: str,
        root_subtree: str | None = None,
    ) -> None:
        self.mountpoint = mountpoint
        self.state_dir = Path(state_dir)
        self.statefile = StateFile(self.state_dir)
        self.moving: dict[int, dict[str, object]] = {}  # pid -> a namespace move under way
        self.cgroups = cgroups
        self.pin_path = pin_path
        controller_avail = cgroups.kinds()
        available = namespaces.availability() | controller_avail
        kinds = all_kinds(list(controller_avail))
        controller_files = {kind: cgroups.files(kind) for kind in controller_avail}
        root_ids = {
            k: str(namespaces.ns_inode("self", k)) for k in NAMESPACE_NAMES if not available[k]
        }
        for kind in controller_avail:
            if controller_avail[kind] is None:
                root_ids[kind] = cgroups.cgroup_path((), kind)
        view_knobs = IPC_KNOBS + NET_KNOBS
        if procs.pid_max_per_namespace():
            view_knobs += PID_KNOBS
        self.engine = Engine(kinds, available, controller_files, root_ids, view_knobs=view_knobs)
        # Every monitoring file has its renderer: a name spelt twice fails here, not on a read.
        missing = {e.key for e in INFO_FILES if e.role == Role.INFO} - nsinfo.RENDERERS.keys()
        if missing:
            raise AssertionError(f"no kernel renderer for {', '.join(sorted(missing))}")
        self._readers, self._writers = self._dispatch()
        if root_subtree is None:
            self.engine.root.subtree = default_root_subtree(self.engine.available)
        elif root_subtree.strip():
            self.engine.set_subtree(self.engine.root, root_subtree)
        self.holders: dict[int, Holder] = {}  # container uid -> holder
        self.ready: dict[int, trio.Event] = {}  # container uid -> set once bind mounts are in
        self.nursery: trio.Nursery | None = None  # for background work; set by serve()
        self.lock = trio.Lock()
        self.release_agent = ""  # the program `notify` runs (root file release_agent)
        # container uid -> `tasks` moves under way into it or below (``Entry``),
        # and how many have started (a read of `populated` across one is stale)
        self.entering: dict[int, int] = {}
        self.entries: dict[int, int] = {}
        self.agents = AgentRunner(lambda: self.release_agent)  # runs it, a few at a time
        self.max_clones = lifecycle.MAX_CLONES
        self.watcher: Watcher[Container] | None = None  # cgroup.events of every container
        self.ops: Operations | None = None  # to tell the kernel about our own changes
        self.loopback: Loopback | None = None  # our own requests to our mount
        # `namespaces` walks every process: concurrent readers share walks
        self.ns_scans: SharedRuns[tuple[int, int] | None, list[nslist.NsEntry]]
        self.ns_scans = SharedRuns(self._scan_namespaces)

    # -- helpers -----------------------------------------------------------

    def holder_for(self, c: Container) -> Holder | None:
        """The holder of the namespaces ``c`` lives in: its own, or its nearest ancestor's."""
        node: Container | None = c
        while node is not None:
            holder = self.holders.get(node.uid)
            if holder is not None:
                return holder
            node = node.parent
        return None

    def _holder(self, c: Container) -> Holder:
        """The holder of a container that owns namespaces (not the root)."""
        holder = self.holders.get(c.uid)
        if holder is None:
            raise OSError(errno.ESRCH, f"{_where(c)}: its namespaces are gone")
        return holder

    def internal_pids(self) -> dict[int, str]:
        """Processes of the daemon's own that are never tasks."""
        out = {
            h.pid: f"the namespace holder of {_where(c)}"
            for c in self.engine.root.walk()
            if (h := self.holders.get(c.uid)) is not None
        }
        out[os.getpid()] = "the containerfs daemon"
        if self.loopback is not None:
            out[self.loopback.pid] = "the containerfs daemon's loopback helper"
        return out

    def placement(self, c: Container) -> list[Path]:
        return self.cgroups.placement(c.cgpath, lambda kind: c.owner(kind).cgpath)

    def save(self, *changed: Container) -> None:
        """Record the tree in the state dir (``statefile.py``), for inspection and restart.

        With ``changed``, only those containers are journalled (a change costs
        the same at any size of tree); without, or when the journal is as long
        as the tree, the whole tree is written. A failure (state dir unwritable
        or full) is logged, not raised: the kernel objects are already made,
        and refusing the request now would leave them unrecorded anyway. The
        next successful save catches up (it is a whole one).
        """
        try:
            if (
                changed
                and not self.statefile.due()
                and self.statefile.append({"put": self._record(c)} for c in changed)
            ):
                return
            self.statefile.snapshot(
                {
                    "version": STATE_VERSION,
                    "mountpoint": self.mountpoint,
                    "release_agent": self.release_agent,
                    "containers": [self._record(c) for c in self.engine.root.walk()],
                    "moving": list(self.moving.values()),
                }
            )
        except OSError as exc:
            log.error("cannot save the state to %s: %s", self.state_dir, exc)

    def save_removed(self, path: tuple[str, ...]) -> None:
        """Record that the container at ``path`` (and all below it) is gone."""
        try:
            if self.statefile.append([{"drop": list(path)}]):
                return
        except OSError as exc:
            log.error("cannot save the state to %s: %s", self.state_dir, exc)
        self.save()

    def _record(self, c: Container) -> dict[str, object]:
        holder = self.holders.get(c.uid)
        return lifecycle.record(c, holder.pid if holder is not None else None)

    # -- the Service interface -------------------------------------------------

    async def mkdir(
        self, parent: Container, name: str, owner: tuple[int, int] = ROOT_IDS
    ) -> Container:
        """``owner``: the maker's (uid, gid); the new container is wholly theirs."""
        with refusals_logged(f"mkdir {_where(parent, name)!r}"):
            return await self._mkdir(parent, name, owner)

    async def _mkdir(self, parent: Container, name: str, owner: tuple[int, int]) -> Container:
        # A new parent's views may still be on their way in (its holder may not be in
        # its final mount namespace yet, pin.c "n"): a holder made now would join the
        # parent's namespaces as they are. Not under the lock (the binding needs
        # none); bounded, should a binding ever hang.
        ready = self.ready.get(parent.uid)
        if ready is not None:
            with trio.move_on_after(BIND_WAIT) as waited:
                await ready.wait()
            if waited.cancelled_caught:
                log.warning("mkdir %s: %s's views still not bound", name, _where(parent))
        async with self.lock:
            if parent.removed:  # while this request waited for the lock
                raise OSError(errno.ENOENT, f"{_where(parent)}: no longer exists")
            plan = self.engine.plan_mkdir(parent, name, owner)
            try:
                self.check_holder_room(plan)
                return await self.make(plan)
            finally:
                self.engine.abort_mkdir(plan)

    def check_holder_room(self, plan: MkdirPlan) -> None:
        """Charge the holder a planned container needs to its ancestors' ``pids.max``.

        Holders live outside every container's cgroups (they are no tasks and keep no
        container populated), so the kernel counts them nowhere: a delegated user
        could make a holder per container past any ``pids.max``. So a mkdir that
        needs one is refused (EAGAIN, as the kernel refuses a fork past
        ``pids.max``) when, in an ancestor with a ``pids.max`` of its own, the
        tasks of its subtree (``pids.current``) plus the holders there would pass
        it. The root's is the host's cgroup, which counts the holders itself.
        """
        if not any(self.engine.kinds[k].cls == KindClass.NAMESPACE for k in plan.owned):
            return
        node: Container | None = plan.parent
        while node is not None and not node.is_root:
            if "pids" in node.owned:
                self._check_pids_room(node)
            node = node.parent

    def _check_pids_room(self, c: Container) -> None:
        try:
            text = self.cgroups.read(c.cgpath, "pids.max").strip()
            if text == "max":
                return
            limit = int(text)
            current = int(self.cgroups.read(c.cgpath, "pids.current"))
        except (OSError, ValueError) as exc:
            log.warning("%s: cannot read its pids.max: %s", _where(c), exc)
            return
        holders = sum(1 for d in c.walk() if d.uid in self.holders)
        if current + holders + 1 > limit:
            raise TryAgain(
                f"{_where(c)}: pids.max is {limit}, with {current} task(s) and"
                f" {holders} namespace holder(s) in its subtree"
            )

    async def make(
        self,
        plan: MkdirPlan,
        origin: Origin = Origin.MKDIR,
        join_fds: dict[str, int] | None = None,
    ) -> Container:
        """Make the kernel objects of a planned container, then commit it.

        ``join_fds`` (clone discovery): nsfs fds of namespaces a process made
        itself; the holder joins them instead of unsharing new ones.
        """
        path = (*plan.parent.path, plan.name)
        cgpath = plan.cgpath
        own_ns = frozenset(k for k in plan.owned if self.engine.kinds[k].cls == KindClass.NAMESPACE)
        own_cg = plan.owned - own_ns
        ids: dict[str, str] = {k: self.cgroups.cgroup_path(cgpath, k) for k in own_cg}
        await trio.to_thread.run_sync(self.cgroups.create, cgpath, own_cg)
        holder = None
        try:
            if own_ns:
                holder = await trio.to_thread.run_sync(
                    self._spawn_holder, plan.parent, cgpath, plan.owned, join_fds or {}
                )
                ids |= {k: str(holder.inodes[k]) for k in own_ns}
        except BaseException:
            try:
                await trio.to_thread.run_sync(self.cgroups.remove, cgpath)
            except OSError as exc:
                log.error("mkdir %s failed and its cgroups stay: %s", "/".join(path), exc)
            raise
        child = self.engine.commit_mkdir(plan, ids, origin)
        self.watch(child)
        if holder is not None:
            self.holders[child.uid] = holder
            await self._init_views(child, holder)
            # A clone's mount namespace is its maker's: nothing is bound into it.
            if "mnt" in plan.owned and self.nursery is not None and origin == Origin.MKDIR:
                # Not here: mkdir holds the parent directory's lock, and the bind
                # mount's source is a path below it. ``_enter`` waits for this.
                self.ready[child.uid] = trio.Event()
                self.nursery.start_soon(self.bind_internal_views, child, holder)
        log.info(
            "%s %s: own %s",
            "mkdir" if origin == Origin.MKDIR else "found",
            "/".join(path),
            " ".join(sorted(plan.owned)) or "-",
        )
        self.save(child)
        return child

    def _spawn_holder(
        self,
        parent: Container,
        path: tuple[str, ...],
        owned: frozenset[str],
        join_fds: dict[str, int],
    ) -> Holder:
        """Start the holder of a new container's namespaces (blocking; on a worker thread).

        When the container unshares its own cgroup namespace, the holder must sit
        in the container's cgroups at unshare() time, since that fixes the
        namespace's root.
        """

        def owner_path(kind: str) -> tuple[str, ...]:
            return path if kind in owned else parent.owner(kind).cgpath

        unshare_cgroup = "cgroup" in owned and "cgroup" not in join_fds
        if unshare_cgroup:  # keep in step with _cgroupns_root
            target = self.cgroups.placement(path, owner_path, leaf=False)
        else:
            target = self.cgroups.pins_placement()

        def place(pid: int) -> None:
            self.cgroups.move(pid, target)

        holder = holder_start.spawn_holder(
            parent=self.holder_for(parent),
            unshare=frozenset(k for k in owned if k in NAMESPACE_NAMES and k not in join_fds),
            place=place,
            mountpoint=self.mountpoint,
            pin_path=self.pin_path,
            join_fds=join_fds,
        )
        try:
            if unshare_cgroup:
                self.cgroups.move(holder.pid, self.cgroups.pins_placement())
        except BaseException:
            holder.kill()
            holder.close()
            raise
        return holder

    async def _init_views(self, c: Container, holder: Holder) -> None:
        values = {}
        for knob in self.engine.knobs_of(c.owned):
            try:
                text = await self._sysctl(holder, knob.kind, knob.sysctl)
            except FileNotFoundError:
                # Older kernels (6.1) hide e.g. net.core.somaxconn from a network
                # namespace owned by a non-initial user namespace: no view here.
                log.info("%s: no %s in this instance; no view", _where(c), knob.sysctl)
                continue
            values[knob.file] = knob.type.read(text)
        self.engine.init_views(c, values)

    async def bind_internal_views(self, c: Container, holder: Holder, stale: bool = False) -> None:
        """Put each knob's internal view over its /proc/sys file inside the container.

        A process inside then reads and sets its own value at the usual path, while
        the kernel enforces the effective one. The holder names each target
        (``Holder.open_sysctl_target``): only a process in the container's ipc,
        net and active pid namespaces reaches the /proc/sys dentries its
        processes use. Then a holder whose mount namespace was deferred enters
        the container's own, a copy that locks the binds (pin.c). ``stale``: a
        previous daemon's (dead) bind mounts may be there; they are detached
        first where they can be (locked ones stay, under the new ones).
        """
        try:
            if stale:
                targets = frozenset(
                    sysctls.sysctl_path(k.sysctl) for k in self.engine.knobs_of(c.owned)
                )
                await mounts.detach_stale(holder, targets)
            assert self.loopback is not None
            binds: list[tuple[int, int]] = []
            try:
                for knob in self.engine.knobs_of(c.owned):
                    if knob.file not in c.views:  # the kernel has no such file there
                        continue
                    fd = await self._open_bind_source(c, knob.files[1])
                    binds.append((fd, -1))
                    target = await trio.to_thread.run_sync(holder.open_sysctl_target, knob.sysctl)
                    binds[-1] = (fd, target)
                await mounts.attach_onto(holder, binds)  # one thread joins for all
            finally:
                for fd, target in binds:
                    os.close(fd)
                    if target >= 0:
                        os.close(target)
        except OSError as exc:
            if not c.removed:  # else: deleted meanwhile, nothing to bind into
                log.error("%s: internal views not bound over /proc/sys: %s", _where(c), exc)
        finally:
            try:
                await self._enter_final_mount_ns(c, holder)
            finally:
                self.ready.pop(c.uid, trio.Event()).set()

    async def _open_bind_source(self, c: Container, file: str) -> int:
        """A detached bind mount (``open_tree``) of ``c``'s ``file``, looked up by a
        hidden name in the root directory (``Operations.bind_source``), never in
        ``c``'s directory: a ``mkdir`` below ``c`` holds that one locked while it
        waits for this binding."""
        assert self.loopback is not None
        if self.ops is None:
            return await self.loopback.open_tree(os.path.join(self.mountpoint, *c.path, file))
        name = self.ops.bind_source(c, file)
        try:
            return await self.loopback.open_tree(os.path.join(self.mountpoint, name))
        finally:
            self.ops.drop_bind_source(name)

    async def _enter_final_mount_ns(self, c: Container, holder: Holder) -> None:
        """Have the holder enter the container's own mount namespace if it deferred it
        (a container that owns user and mnt), and record the namespace's inode."""
        try:
            await trio.to_thread.run_sync(holder.enter_final_mount_ns)
        except OSError as exc:
            if not c.removed:
                log.error("%s: holder did not enter its own mount namespace: %s", _where(c), exc)
            return
        mnt = str(holder.inodes["mnt"])
        if c.ids.get("mnt") != mnt and not c.removed:
            c.ids["mnt"] = mnt
            self.save(c)
            if self.ops is not None:
                self.ops.changed()  # container.subsystems shows the inode

    async def rmdir(self, c: Container) -> None:
        with refusals_logged(f"rmdir {_where(c)}"):
            await self._rmdir(c)
        if c.parent is not None:  # its last child gone: the parent may be released
            await self.check_release(c.parent)

    async def _rmdir(self, c: Container) -> None:
        async with self.lock:
            if c.removed:  # by its release policy, while this request waited for the lock
                raise OSError(errno.ENOENT, f"{_where(c)}: no longer exists")
            tasks = await self._tasks_of(c)
            self.engine.check_rmdir(c, len(tasks))
            await trio.to_thread.run_sync(self._destroy, c)
            self._forget(c)
            log.info("rmdir %s", "/".join(c.path))
            self.save_removed(c.path)

    async def _tasks_of(self, c: Container) -> list[int]:
        """``c``'s processes. Its cgroup removed behind our back holds none: the
        container can still be removed (what is left of it is freed)."""
        try:
            return await trio.to_thread.run_sync(self.cgroups.procs, c.cgpath)
        except FileNotFoundError:
            log.warning("%s: its cgroup was removed behind the daemon's back", _where(c))
            return []

    def _destroy(self, c: Container) -> None:
        """Free the kernel objects of ``c``: cgroups first, since they refuse while
        anything is inside (leaving the container whole), then the holder."""
        self.cgroups.remove(c.cgpath)
        self._trim_controllers(c)
        holder = self.holders.get(c.uid)
        if holder is not None:
            holder.kill()

    def _trim_controllers(self, gone: Container) -> None:
        """Once ``gone``'s cgroups are removed: from its parent up, disable the v2
        controllers no remaining container below needs any more."""
        for node, freed in lifecycle.freed_by_removal(gone):
            self.cgroups.trim(node.cgpath, freed)

    def _forget(self, c: Container) -> None:
        """Commit a removal. Runs on the event loop, like every user of a holder's pidfd."""
        if self.watcher is not None:
            self.watcher.remove(c)
        self.engine.commit_rmdir(c)
        holder = self.holders.pop(c.uid, None)
        if holder is not None:
            holder.close()
        self.entries.pop(c.uid, None)

    async def read(
        self, c: Container, spec: FileSpec, reader_pid: int, reader: tuple[int, int] = (0, 0)
    ) -> bytes:
        """``reader``: the opener's fsuid and fsgid (who ``namespaces`` is shown to)."""
        return (await self._readers[spec.role](c, spec, reader)).encode()

    def cacheable(self, c: Container, spec: FileSpec) -> bool:
        """Whether the kernel may serve the file from its page cache: the
        catalogue's word (``Engine.page_cached``)."""
        return self.engine.page_cached(c, spec)

    def _dispatch(self) -> tuple[dict[Role, Reader], dict[Role, Writer]]:
        """The one table from a catalogue role (engine/catalog.py) to the kernel
        work that reads or writes such a file. A role with no writer is read-only."""
        readers: dict[Role, Reader] = {
            Role.SUBSYSTEMS: self._read_subsystems,
            Role.CONTAINER_SUBSYSTEMS: self._read_container_subsystems,
            Role.SUBTREE: self._read_subtree,
            Role.RELEASE: self._read_release,
            Role.MAX_DEPTH: self._read_limit,
            Role.MAX_DESCENDANTS: self._read_limit,
            Role.TASKS: self._read_tasks,
            Role.EVENTS: self._read_events,
            Role.ORIGIN: self._read_origin,
            Role.RELEASE_AGENT: self._read_release_agent,
            Role.NAMESPACES: self._read_namespaces,
            Role.INIT: self._read_init,
            Role.KILL: self._read_nothing,
            Role.SYSCTL: self._read_sysctl,
            Role.ID_MAP: self._read_id_map,
            Role.TIME_OFFSETS: self._read_time_offsets,
            Role.CGROUP: self._read_cgroup,
            Role.VIEW: self._read_view,
            Role.INFO: self._read_info,
            Role.CGROUPNS_ROOT: self._read_cgroupns_root,
        }
        writers: dict[Role, Writer] = {
            Role.TASKS: self._write_tasks,
            Role.SUBTREE: self._write_subtree,
            Role.RELEASE: self._write_release,
            Role.MAX_DEPTH: self._write_limit,
            Role.MAX_DESCENDANTS: self._write_limit,
            Role.KILL: self._write_kill,
            Role.RELEASE_AGENT: self._write_release_agent,
            Role.SYSCTL: self._write_sysctl,
            Role.ID_MAP: self._write_id_map,
            Role.TIME_OFFSETS: self._write_time_offsets,
            Role.CGROUP: self._write_cgroup,
            Role.VIEW: self._write_view,
        }
        assert readers.keys() == set(Role), set(Role) - readers.keys()
        return readers, writers

    # -- readers, by role ------------------------------------------------------

    async def _read_subsystems(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return self.engine.render_subsystems()

    async def _read_container_subsystems(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        # A user-namespaced container's mount namespace is made once its views
        # are bound (pin.c, "n"): `exec` must not learn the inode before.
        ready = self.ready.get(c.uid)
        if ready is not None:
            await ready.wait()
        return self.engine.render_container_subsystems(c)

    async def _read_subtree(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return self.engine.render_subtree(c)

    async def _read_release(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return f"{c.release}\n"

    async def _read_limit(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return format_limit(c.max_depth if spec.role == Role.MAX_DEPTH else c.max_descendants)

    async def _read_tasks(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        # cgroupfs answers from memory: a worker thread would cost more.
        return "".join(f"{p}\n" for p in self.cgroups.procs(c.cgpath))

    async def _read_events(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        # The root is populated: the daemon itself is in it.
        populated = True if c.is_root else self.cgroups.populated(c.cgpath)
        return f"populated {int(populated)}\nreleased {c.released}\n"

    async def _read_origin(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return f"{c.origin}\n"

    async def _read_release_agent(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return f"{self.release_agent}\n" if self.release_agent else ""

    async def _read_namespaces(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return await self._namespaces(reader)

    async def _read_init(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        holder = self.holder_for(c)
        return f"{holder.pid if holder else 0}\n"

    async def _read_nothing(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return ""  # write-only, like cgroup.kill

    def _owner_holder(self, c: Container, spec: FileSpec) -> Holder | None:
        """The holder of the namespace a file of ``spec.kind`` shows (None: the root's)."""
        assert spec.kind is not None
        owner = c.owner(spec.kind)
        return None if owner.is_root else self._holder(owner)

    async def _read_sysctl(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        assert spec.kind is not None
        return await self._sysctl(self._owner_holder(c, spec), spec.kind, spec.entry.key)

    async def _read_id_map(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        holder = self._owner_holder(c, spec)
        return await trio.to_thread.run_sync(idmaps.read_map, holder, spec.entry.key)

    async def _read_time_offsets(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        text = await trio.to_thread.run_sync(nsinfo.time_offsets, self._owner_holder(c, spec))
        return "".join(" ".join(line.split()) + "\n" for line in text.splitlines())

    async def _read_cgroup(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        assert spec.kind is not None
        return self.cgroups.read(c.owner(spec.kind).cgpath, spec.name)

    async def _read_view(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        knob, view = spec.entry.knob, spec.entry.view
        assert knob is not None and view is not None
        await self._reconcile(c.owner(knob.kind), knob)
        return self.engine.render_view(c, knob, view)

    async def _read_info(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        render = nsinfo.RENDERERS[spec.entry.key]
        return await render(self._owner_holder(c, spec), self.internal_pids)

    async def _read_cgroupns_root(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        owner = c.owner("cgroup")
        if owner.is_root:  # the daemon's own cgroup namespace: the hierarchies' tops
            return "".join(f"{h.mount}\n" for h in self.cgroups.hierarchies)
        return "".join(f"{d}\n" for d in self._cgroupns_root(owner))

    async def learn_inside_root(self, c: Container, holder: Holder) -> None:
        """Record whom root of ``c``'s user namespace is on the host: the owner of the
        internal views its processes write (``Engine.file_owner``)."""
        try:
            uid, gid = await trio.to_thread.run_sync(idmaps.inside_root, holder)
        except OSError as exc:
            log.error("%s: cannot read its ID maps: %s", _where(c), exc)
            return
        self.engine.set_inside_root(c, uid, gid)

    async def _cgroup_write(self, c: Container, name: str, text: str) -> None:
        """Write a cgroup file: inline when the kernel only stores the value, on a
        worker thread when it may work first (memory limits reclaim, cpusets
        move tasks and pages)."""
        if self.cgroups.write_may_work(name):
            await trio.to_thread.run_sync(self.cgroups.write, c.cgpath, name, text)
        else:
            self.cgroups.write(c.cgpath, name, text)

    async def _sysctl(self, holder: Holder | None, kind: str, name: str) -> str:
        """Read a sysctl of a container's namespace.

        The holder, a process inside every namespace of the container, reads it
        over its socket: one round trip (~40 us) instead of a fresh thread that
        joins the namespace (~300 us), and the only way for pid and user
        sysctls, which answer for the caller's *active* pid namespace or its
        user namespace (no thread can join those).
        """
        if holder is not None and (holder.has_channel or kind in ("pid", "user")):
            return await holder.sysctl_async(name)
        return await sysctls.read_sysctl_async(holder, kind, name)

    async def _set_sysctl(self, holder: Holder, kind: str, name: str, value: str) -> None:
        """Set a sysctl of a container's namespace: by its holder, as for reads."""
        if holder.has_channel or kind in ("pid", "user"):
            await holder.set_sysctl_async(name, value)
        else:
            await sysctls.write_sysctl_async(holder, kind, name, value)

    def _cgroupns_root(self, c: Container) -> list[Path]:
        """The cgroups a process inside sees as ``/``: where its holder unshared."""
        assert c.parent is not None
        return self.cgroups.placement(c.cgpath, lambda kind: c.owner(kind).cgpath, leaf=False)

    async def _reconcile(self, owner: Container, knob: Knob) -> None:
        """Read the knob's kernel value; put the effective one back if the container
        changed it behind containerfs's back (see ``Engine.observe``)."""
        holder = None if owner.is_root else self._holder(owner)
        text = await self._sysctl(holder, knob.kind, knob.sysctl)
        again = self.engine.observe(owner, knob, knob.type.read(text))
        if again is not None and holder is not None:
            value = knob.type.format(again)
            try:
                await self._set_sysctl(holder, knob.kind, knob.sysctl, value)
            except OSError as exc:  # a read has no refusal log of its own
                log.error(
                    "%s: %s was changed inside; cannot put the effective %s back: %s",
                    _where(owner),
                    knob.file,
                    value,
                    exc,
                )
                raise
            log.info(
                "%s: %s was changed inside; effective %s again", _where(owner), knob.file, value
            )

    async def write(
        self, c: Container, spec: FileSpec, data: bytes, writer_pid: int, writer_uid: int
    ) -> None:
        """``writer_pid``/``writer_uid``: the opener's (as cgroupfs judges a write by
        the opener's credentials)."""
        shown = data[:80].decode(errors="replace").strip()
        with refusals_logged(f"{_where(c, spec.name)} <- {shown!r}"):
            if len(data) > WRITE_MAX:
                raise TooBig(f"{len(data)} bytes or more; a write takes at most {WRITE_MAX}")
            await self._write(c, spec, data, writer_pid, writer_uid)

    async def _write(
        self, c: Container, spec: FileSpec, data: bytes, writer_pid: int, writer_uid: int
    ) -> None:
        text = data.decode()  # UnicodeDecodeError is a ValueError: EINVAL
        writer = self._writers.get(spec.role)
        if writer is None:
            raise InvalidInput(f"{spec.name}: read-only")
        await writer(c, spec, text, writer_pid, writer_uid)

    # -- writers, by role ------------------------------------------------------

    async def _write_tasks(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        pid = parse_pid_text(text)
        # A new container's views are bound before anyone enters it. Not
        # under the lock: the binding looks paths up on our own mount,
        # which a mkdir or rmdir waiting for the lock can block (it holds
        # the directory's lock in the kernel): a deadlock, seen under load.
        ready = self.ready.get(c.uid)
        if ready is not None:
            await ready.wait()
        async with self.lock:
            await self._enter(c, pid, writer_pid, writer_uid)

    async def _write_subtree(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        async with self.lock:
            self.engine.set_subtree(c, text)
            self.save(c)

    async def _write_release(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        self.engine.set_release(c, text)
        self.save(c)
        log.info("%s <- %s", _where(c, spec.name), c.release)
        await self.check_release(c)  # already empty: `delete` acts now

    async def _write_limit(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        async with self.lock:  # mkdirs check the limits under it
            self.engine.set_limit(c, spec.role, text)
            self.save(c)
        log.info("%s <- %s", _where(c, spec.name), text.strip()[:20])

    async def _write_kill(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        parse_kill(text)
        n = await trio.to_thread.run_sync(self.cgroups.kill, c.cgpath)
        log.info("%s: killed (%d task(s))", _where(c), n)

    async def _write_release_agent(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        self.release_agent = parse_agent(text)
        self.save()
        log.info("release_agent <- %r", self.release_agent)

    def _parsed(self, c: Container, spec: FileSpec, text: str) -> str:
        """A plain control file's write, checked writable and parsed by its catalogue line."""
        self.engine.check_knob_write(c, spec.name)
        assert spec.entry.parse is not None
        return spec.entry.parse(text, spec.name)

    @staticmethod
    def _written(c: Container, spec: FileSpec, text: str) -> None:
        log.info("%s/%s <- %s", "/".join(c.path), spec.name, text.strip()[:80])

    async def _write_sysctl(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        value = self._parsed(c, spec, text)
        assert spec.kind is not None
        await self._set_sysctl(self._holder(c), spec.kind, spec.entry.key, value)
        self._written(c, spec, text)

    async def _write_id_map(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        value = self._parsed(c, spec, text)
        holder = self._holder(c)
        try:
            await trio.to_thread.run_sync(idmaps.write_map, holder, spec.entry.key, value)
        finally:
            await self.learn_inside_root(c, holder)
        self._written(c, spec, text)

    async def _write_time_offsets(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        self.engine.check_knob_write(c, spec.name)
        current = parse_time_offsets(await self._read_time_offsets(c, spec, ROOT_IDS), {})
        new = parse_time_offsets(text, current)
        holder = self._holder(c)
        await trio.to_thread.run_sync(holder.set_time_offsets, new["monotonic"], new["boottime"])
        self._written(c, spec, text)

    async def _write_cgroup(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        self.engine.check_knob_write(c, spec.name)
        await self._cgroup_write(c, spec.name, text)
        self._written(c, spec, text)

    async def _write_view(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        async with self.lock:
            knob, state = self.engine.plan_view_write(c, spec.name, text)
            value = knob.type.format(state.effective(knob.type))
            old = self.engine.render_view(c, knob, "effective").strip()
            try:
                await self._set_sysctl(self._holder(c), knob.kind, knob.sysctl, value)
            except OSError:
                # The kernel may have stored part of a refused value (kernel.sem
                # restores only SEMMNI): put the effective value back.
                with contextlib.suppress(OSError):
                    await self._set_sysctl(self._holder(c), knob.kind, knob.sysctl, old)
                raise
            self.engine.commit_view(c, knob, state)
            self.save(*c.walk())  # views below may follow this one
        log.info("%s <- %s (effective %s)", _where(c, spec.name), text.strip()[:80], value)

    async def _enter(self, c: Container, pid: int, writer_pid: int, writer_uid: int) -> None:
        """Move a process in: its cgroups, then (``kernel/inject.py``) its namespaces.

        The engine refuses namespace kinds a running process cannot enter, and a
        writer other than root what delegation does not give it
        (``Engine.check_move``). All or nothing: when the namespace move fails,
        the cgroups are put back.
        """

        internal = self.internal_pids()

        def facts() -> tuple[int, int, dict[str, int], procs.Creds, int]:
            real = procs.translate_pid(pid, writer_pid) if writer_pid else pid
            check_not_internal(real, internal)  # before anything reads its /proc
            pidfd = procs.hold(real)  # the process named now, whatever its pid becomes
            try:
                writer = procs.thread_group(writer_pid) if writer_pid else 0
                return real, pidfd, procs.process_inodes(real), procs.creds(real), writer
            except BaseException:
                os.close(pidfd)
                raise

        try:  # may scan /proc: off the event loop
            real, pidfd, inodes, creds, writer = await trio.to_thread.run_sync(facts)
        except (ProcessLookupError, FileNotFoundError):
            raise OSError(errno.ESRCH, f"no process {pid}") from None
        entry = Entry(self, c)
        try:
            targets = await self._enter_named(
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

    async def _enter_named(
        self,
        c: Container,
        real: int,
        pidfd: int,
        inodes: dict[str, int],
        creds: procs.Creds,
        writer: int,
        writer_uid: int,
        entry: Entry,
    ) -> dict[str, int]:
        """:meth:`_enter` once the process is held by ``pidfd``; the namespace kinds
        it moved into. cgroup writes name a pid, not a pidfd: the pidfd is checked
        alive after them, and alive means the pid was that process's all along (a
        pid is not reused before its zombie is reaped)."""
        check_not_internal(real, self.internal_pids())
        if writer_uid != 0:
            where = await trio.to_thread.run_sync(self.cgroups.where, real)
            now_in = self._container_in(where)
            self.engine.check_move(writer_uid, (creds.uids[0], creds.uids[1]), now_in, c)
        differ = self.engine.check_enter(c, inodes, creds.threads)
        targets: dict[str, int] = {}
        sources: dict[str, str] = {}
        if differ:
            # A move is a ptrace on the writer's behalf: it may ask only for what
            # it could do itself.
            if not writer:  # FUSE gives 0 for a caller outside our pid namespace
                raise OSError(errno.EPERM, "cannot tell who asked; no namespace move")
            why = await trio.to_thread.run_sync(ptrace_rules.ptrace_refusal, writer, real)
            if why is not None:
                raise OSError(errno.EPERM, why)
            # The root's namespaces are the daemon's own (a process moved back up).
            holder = self.holder_for(c)
            source = holder.pid if holder is not None else os.getpid()
            for kind in differ:
                targets[kind] = int(c.instance_id(kind))
                sources[kind] = f"/proc/{source}/ns/{kind}"
        before = await trio.to_thread.run_sync(self.cgroups.where, real)
        procs.check_held(pidfd, real)  # `before` was this process's
        if targets:
            # A frozen process cannot stop for ptrace, and the cgroup move would
            # thaw it (it leaves its frozen cgroup): refuse before either.
            frozen = self.cgroups.frozen
            why = await trio.to_thread.run_sync(frozen, before, self.placement(c))
            if why is not None:
                raise OSError(errno.EAGAIN, f"{why}: it cannot stop to be moved; thaw it first")
        if targets:
            self._moving(real, c, targets, before)
        handed_off = False  # a deferred move ends in a task of its own (_move_namespaces)
        try:
            await trio.to_thread.run_sync(self.cgroups.move, real, self.placement(c))
            procs.check_held(pidfd, real)  # alive: the writes moved this process
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
                        await trio.to_thread.run_sync(self.cgroups.put_back, real, before)
                    raise
        finally:
            if targets and not handed_off:
                self._moved(real)
        return targets

    def _container_in(self, where: dict[Hierarchy, Path]) -> Container | None:
        """The container whose ``tasks`` hold a process at ``where`` (its cgroups, from
        ``CgroupBackend.where``): its cgroup2 leaf; None outside every container."""
        for h, path in where.items():
            if h.version != 2 or not h.contains(path):
                continue
            parts = path.relative_to(h.dir()).parts
            if not parts or parts[-1] != TASKS:
                return None
            if any(part.startswith(".") for part in parts[:-1]):
                return None
            return self.engine.by_cgpath(parts[:-1])
        return None

    def _moving(
        self, pid: int, c: Container, targets: dict[str, int], before: dict[Hierarchy, Path]
    ) -> None:
        """Record a namespace move before it starts: a daemon killed before
        :meth:`_moved` leaves the process in the new cgroups but the old
        namespaces, which the next start undoes (``recovery.finish_moves``)."""
        try:
            start = procfs.process_stat(pid)[2]
        except ProcessLookupError:
            return  # gone: the move fails by itself
        move = {
            "pid": pid,
            "start": start,
            "into": list(c.path),
            "targets": targets,
            "before": self.cgroups.record_where(before),
        }
        self.moving[pid] = move
        self._journal({"moving": move})

    def _moved(self, pid: int) -> None:
        if self.moving.pop(pid, None) is not None:
            self._journal({"moved": pid})

    def _journal(self, entry: dict[str, object]) -> None:
        try:
            if self.statefile.append([entry]):
                return
        except OSError as exc:
            log.error("cannot save the state to %s: %s", self.state_dir, exc)
        self.save()

    async def _move_namespaces(
        self,
        pid: int,
        pidfd: int,
        targets: dict[str, int],
        sources: dict[str, str],
        *,
        deferred: bool,
        before: dict[Hierarchy, Path],
        entry: Entry | None = None,
    ) -> None:
        """Make process ``pid`` join ``targets`` (``kernel/inject.py``).

        ``deferred``: the process wrote its own pid (``echo $$ > tasks``) and is
        blocked in that very write until we answer, so it cannot stop for
        ptrace now. Its threads are seized and asked to stop, which they do
        the moment the write returns, before running anything else; the move
        finishes after we answer. A failure then is logged, and the cgroups
        are put back where they were (``before``) before the process runs on
        (``on_failed``). ``pidfd`` is the caller's;
        the deferred part takes a copy of its own, and ends ``entry``.
        """
        if not deferred:
            await trio.to_thread.run_sync(
                functools.partial(inject.move_into, pid, targets, sources=sources, pidfd=pidfd)
            )
            return
        assert self.nursery is not None
        own = os.dup(pidfd)
        move = functools.partial(inject.move_into, pid, targets, sources=sources, pidfd=own)
        token = trio.lowlevel.current_trio_token()
        seized = trio.Event()
        failed: list[BaseException] = []

        def on_failed() -> None:
            # Before the threads go on: a process let go first ran on in the
            # cgroups it was refused, and its next `tasks` write saw them as
            # where it came from (it stayed there, and its exit released them).
            self.cgroups.put_back(pid, before)

        def on_seized() -> None:
            token.run_sync_soon(seized.set)
            # The writer stops the moment we answer: the kernel may queue, then
            # withdraw, an interrupt of its write (see Loopback.nudge).
            if self.loopback is not None:
                self.loopback.nudge(self.mountpoint)

        async def finish() -> None:
            try:
                await trio.to_thread.run_sync(
                    functools.partial(move, on_seized=on_seized, on_failed=on_failed)
                )
            except OSError as exc:
                failed.append(exc)
                if seized.is_set():  # answered already: only the log can say it
                    log.warning("moving %d into namespaces failed after the write: %s", pid, exc)
            finally:
                os.close(own)
                self._moved(pid)
                if entry is not None:
                    entry.end(not failed)
                seized.set()

        self.nursery.start_soon(finish)
        await seized.wait()
        if failed:
            raise failed[0]

    # -- rename ------------------------------------------------------------------

    async def rename(self, c: Container, new_parent: Container, new_name: str) -> None:
        with refusals_logged(f"mv {_where(c)!r} {_where(new_parent, new_name)!r}"):
            async with self.lock:
                lifecycle.check_rename(self.engine, c, new_parent, new_name)
                old = _where(c)
                # Only the name: cgroup v2 cannot rename a directory, so the cgroup
                # keeps its first name (``Container.cgname``).
                if not c.cgname:
                    c.cgname = c.name
                lifecycle.commit_rename(self.engine, c, new_name)
                if c.cgname == c.name:
                    c.cgname = ""
                self.save()
                log.info("mv %s %s", old, _where(c))

    # -- ownership ---------------------------------------------------------------

    async def chown(self, c: Container, uid: int | None, gid: int | None) -> None:
        """``chown`` of a container directory by root: delegate it (README "Ownership
        and delegation"); ``uid``/``gid`` None: unchanged."""
        with refusals_logged(f"chown {_where(c)!r}"):
            async with self.lock:
                self.engine.chown(c, uid, gid)
                self.save(c)
            log.info("chown %s -> %d:%d", _where(c), *c.owner_ids)

    # -- release -----------------------------------------------------------------

    def watch(self, c: Container) -> None:
        """Watch the container's cgroup.events: the kernel says when it empties."""
        if self.watcher is None or c.is_root:
            return
        try:
            self.watcher.add(c, self.cgroups.events_file(c.cgpath))
        except OSError as exc:
            log.error("%s: cannot watch its cgroup.events: %s", _where(c), exc)

    def _events_changed(self, c: Container) -> None:
        """Tell watchers of ``container.events`` (poll and inotify) that it changed."""
        if self.ops is not None:
            self.ops.events_changed(c)
        if self.loopback is not None:
            self.loopback.touch(os.path.join(self.mountpoint, *c.path, "container.events"))

    async def watch_releases(self) -> None:
        """Act on containers as the kernel reports them emptying (or filling)."""
        assert self.watcher is not None
        while True:
            for c in await self.watcher.changed():
                if not c.removed:
                    # A task too short-lived to be seen here was still counted:
                    # `tasks` writes arm the release themselves (``_enter``).
                    await self.refresh_populated(c)

    def _occupy(self, c: Container) -> None:
        """Arm ``c``'s release (it has or had a task); saved, so a restart catches up."""
        if not c.occupied and not c.is_root:
            c.occupied = True
            self.save(c)

    async def refresh_populated(self, c: Container) -> None:
        if self.entering.get(c.uid):
            return  # a `tasks` move into it is under way; its end looks again (``Entry``)
        entries = self.entries.get(c.uid, 0)
        try:
            populated = await trio.to_thread.run_sync(self.cgroups.populated, c.cgpath)
        except OSError as exc:
            if not c.removed:  # else: removed meanwhile by us, which is no news
                log.warning("%s: cannot read its cgroup.events: %s", _where(c), exc)
            return
        if self.entries.get(c.uid, 0) != entries:
            return  # a move started while we read, and may be undone: its end looks again
        if populated:
            self._occupy(c)
        if populated != c.populated:
            lifecycle.observe_populated(c, populated)
            self._events_changed(c)
        await self.check_release(c)

    async def check_release(self, c: Container) -> None:
        """Carry out ``c``'s release policy if it has just emptied; then its parent's.

        A loop up the tree, not recursion: a chain of ``delete`` containers may be
        deeper than Python's recursion limit.
        """
        node: Container | None = c
        while node is not None:
            c, node = node, None
            if self.entering.get(c.uid):
                return  # as in refresh_populated: decided once the move ends
            action = lifecycle.take_release(c)
            if action is None:
                return
            where = _where(c)
            log.info("%s released (%s)", where, action)
            self._events_changed(c)
            if action == Release.NOTIFY:
                self._notify_agent("/" + "/".join(c.path))
            elif action == Release.DELETE:
                parent = c.parent
                if await self._remove_released(c) and parent is not None:
                    node = parent  # its last child gone: it may be released too
            # Only what changed: writing the whole tree here made each rmdir in a
            # chain of a thousand containers (its parent released) take 90 ms.
            if c.removed:
                self.save_removed(c.path)
            else:
                self.save(c)

    async def _after_entry(self, chain: list[Container]) -> None:
        """Once a `tasks` move ended: what the kernel says now, nearest first."""
        for node in chain:
            if not node.removed:
                await self.refresh_populated(node)

    async def _remove_released(self, c: Container) -> bool:
        """Remove a released container, unless a task or child came in meanwhile."""
        async with self.lock:
            if c.removed:
                return False
            tasks = await self._tasks_of(c)
            if tasks or c.children:
                log.info("%s: not deleted, it is in use again", _where(c))
                return False
            parent, name = c.parent, c.name
            try:
                await trio.to_thread.run_sync(self._destroy, c)
            except OSError as exc:
                log.warning("%s: release could not delete it: %s", _where(c), exc)
                return False
            self._forget(c)
            assert parent is not None
            if self.ops is not None:
                self.ops.removed(c, parent, name)
            log.info("%s deleted on release", "/".join((*parent.path, name)))
            return True

    def _notify_agent(self, where: str) -> None:
        """Queue the release agent for ``where`` (``agent.py``: a few run at once)."""
        if not self.release_agent:
            log.info("%s: release notification (no release_agent set)", where)
            return
        if self.nursery is not None:
            self.agents.notify(self.nursery, where)

    # -- the namespaces file -------------------------------------------------------

    async def _namespaces(self, reader: tuple[int, int]) -> str:
        """The ``namespaces`` file as ``reader`` (fsuid, fsgid) may see it: root every
        namespace; another user those its own ``lsns`` shows (the walk runs as that
        user: ``nslist.scan``'s ``as_user``), counting only processes it may see.
        Readers at once share walks (``SharedRuns``), and no reader gets one that
        began before it opened the file."""
        entries = await self.ns_scans.get(None if reader[0] == 0 else reader)
        index = lifecycle.namespace_index(self.engine.root)

        def path_of(kind: str, inode: int) -> str | None:
            c = index.get((kind, str(inode)))
            return None if c is None else "/" + "/".join(c.path)

        return nslist.format_table(entries, path_of)

    async def _scan_namespaces(self, as_user: tuple[int, int] | None) -> list[nslist.NsEntry]:
        """One walk of /proc for ``namespaces`` (``ns_scans`` shares it among readers)."""
        who = "root" if as_user is None else f"uid {as_user[0]}"
        log.debug("namespaces: walk as %s (%d so far)", who, self.ns_scans.runs)
        return await trio.to_thread.run_sync(functools.partial(nslist.scan, as_user=as_user))

    # -- shutdown ----------------------------------------------------------------

    def teardown(self) -> None:
        """Keep every container: drop our references to the holders and save the tree.

        Containers, their namespaces and cgroups outlive the daemon; a new
        ``containerfs mount`` with the same state dir takes them over.
        """
        self.agents.close()
        for holder in self.holders.values():
            holder.close()
        self.save()
        self.statefile.close()
        n = sum(1 for c in self.engine.root.walk()) - 1
        if n:
            log.info("%d container(s) kept for the next start", n)


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

    def __init__(self, daemon: Daemon, c: Container) -> None:
        self.daemon = daemon
        self.chain: list[Container] = []
        node: Container | None = c
        while node is not None:
            self.chain.append(node)
            daemon.entering[node.uid] = daemon.entering.get(node.uid, 0) + 1
            daemon.entries[node.uid] = daemon.entries.get(node.uid, 0) + 1
            node = node.parent
        self.handed_off = False  # a deferred namespace move ends it (``_move_namespaces``)
        self.ended = False

    def end(self, moved: bool) -> None:
        """Once; ``moved``: the process is in, all of it."""
        if self.ended:
            return
        self.ended = True
        d = self.daemon
        for node in self.chain:
            left = d.entering.pop(node.uid) - 1
            if left:
                d.entering[node.uid] = left
        if moved:
            for node in self.chain:  # populated now, up to the root
                d._occupy(node)
        if d.nursery is not None:
            d.nursery.start_soon(d._after_entry, self.chain)


def _where(c: Container, name: str = "") -> str:
    return "/".join((*c.path, name) if name else c.path) or "/"


def parse_agent(text: str) -> str:
    """The release agent: an absolute path to an executable regular file, or empty
    for none. ``access(X_OK)`` alone passes a directory for root, which then
    failed at each release instead of here."""
    path = text.strip()
    if path and (not path.startswith("/") or any(ch.isspace() for ch in path)):
        raise InvalidInput("release_agent must be an absolute path (no spaces), or empty")
    if not path:
        return path
    shown = path if len(path) <= 80 else f"{path[:80]}... ({len(path)} chars)"
    try:
        mode = os.stat(path).st_mode  # through symlinks, as exec goes
    except OSError as exc:
        raise InvalidInput(f"release_agent {shown}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise InvalidInput(f"release_agent {shown}: not a regular file")
    if not os.access(path, os.X_OK):  # for root: some execute bit is set
        raise InvalidInput(f"release_agent {shown}: not executable")
    return path


@contextlib.contextmanager
def refusals_logged(what: str) -> Iterator[None]:
    """Say in the log why a request was refused (bad input gets a reason, not just errno)."""
    try:
        yield
    except (ContainerError, OSError, ValueError) as exc:
        log.warning("%s: refused: %s", what, exc)
        raise


@contextlib.contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """One daemon per state dir; one it cannot write (read-only, full) stops the
    start here, before anything is made."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SystemExit(f"containerfs: cannot use state dir {state_dir}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"containerfs: {state_dir} is in use by another daemon") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            raise SystemExit(
                f"containerfs: cannot use state dir {state_dir}: {exc.strerror}"
            ) from None
        yield
    finally:
        os.close(fd)


async def _signals(daemon: Daemon, cancel: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            # Background work may be waiting on our own FUSE requests (a bind mount's
            # source is a containerfs file): let it finish while the mount still answers.
            with trio.move_on_after(5):
                for event in list(daemon.ready.values()):
                    await event.wait()
            pyfuse3.terminate()
            cancel.cancel()
            return


async def _start_lifecycle(daemon: Daemon) -> None:
    """Once the mount answers: re-bind views of taken-over containers, catch up on
    containers that emptied while no daemon watched, then keep watching."""
    assert daemon.nursery is not None
    for c in list(daemon.engine.root.walk()):
        holder = daemon.holders.get(c.uid)
        if holder is not None and "user" in c.owned:
            await daemon.learn_inside_root(c, holder)
        if holder is not None and "mnt" in c.owned and c.origin == Origin.MKDIR:
            daemon.ready[c.uid] = trio.Event()
            daemon.nursery.start_soon(daemon.bind_internal_views, c, holder, True)
    for c in reversed(list(daemon.engine.root.walk())):  # children first
        if not c.is_root and not c.removed:
            await daemon.refresh_populated(c)
    daemon.nursery.start_soon(daemon.watch_releases)
    daemon.nursery.start_soon(Discovery(daemon).run)


async def serve(daemon: Daemon, options: set[str]) -> None:
    ops = Operations(daemon)
    daemon.ops = ops
    daemon.watcher = Watcher()
    for c in daemon.engine.root.walk():
        daemon.watch(c)
    pyfuse3.init(ops, daemon.mountpoint, options)
    daemon.loopback = Loopback()
    daemon.loopback.nudge(daemon.mountpoint)  # starts its heartbeat
    ops.toucher_pid = daemon.loopback.pid
    try:
        log.info("mounted at %s (state in %s)", daemon.mountpoint, daemon.state_dir)
        async with trio.open_nursery() as nursery:
            daemon.nursery = nursery
            nursery.start_soon(_signals, daemon, nursery.cancel_scope)
            nursery.start_soon(_start_lifecycle, daemon)
            await pyfuse3.main()
            nursery.cancel_scope.cancel()
    finally:
        daemon.loopback.stop()
        pyfuse3.close(unmount=True)  # ends any request of the helper left unanswered
        daemon.loopback.reap()
        daemon.teardown()
        daemon.watcher.close()
        log.info("unmounted %s", daemon.mountpoint)


def find_pin() -> str:
    """The holder binary (``defaults.find_program``); without it no container can be made."""
    found = find_program(PIN_NAME)
    if found is None:
        raise SystemExit("containerfs: containerfs-pin not found (run `make` to build it)")
    return found


@contextlib.contextmanager
def _cgroups(v2_fallback: Path) -> Iterator[CgroupBackend]:
    """The host's cgroups; on a host without a cgroup2 mount, one of our own while we run."""
    try:
        cgroups = CgroupBackend.discover(v2_fallback=v2_fallback)
    except OSError as exc:
        raise SystemExit(f"containerfs: {exc.strerror or exc}") from None
    try:
        yield cgroups
    finally:
        cgroups.close()


def mount(mountpoint: str, state_dir: str, root_subtree: str | None, debug: bool) -> int:
    """`containerfs mount`: run in the foreground until SIGINT/SIGTERM."""
    if os.geteuid() != 0:
        raise SystemExit("containerfs: mount needs root")
    if not os.path.exists("/dev/fuse"):
        raise SystemExit("containerfs: /dev/fuse is missing (modprobe fuse)")
    pin = find_pin()
    with state_lock(Path(state_dir)):
        if mounts.clear_stale_mount(mountpoint):
            log.info("detached the dead mount of a previous daemon at %s", mountpoint)
        os.makedirs(mountpoint, exist_ok=True)
        if os.path.ismount(mountpoint):
            raise SystemExit(f"containerfs: {mountpoint} is already a mount point")
        return _mount_locked(mountpoint, state_dir, root_subtree, debug, pin)


def _mount_locked(
    mountpoint: str, state_dir: str, root_subtree: str | None, debug: bool, pin: str
) -> int:
    saved = recovery.load(Path(state_dir))
    with _cgroups(Path(state_dir) / "cgroup2") as cgroups:
        if root_subtree is not None:  # before setup() moves anything
            words = {w[1:] for w in root_subtree.split()}
            unknown = words - set(NAMESPACE_NAMES) - set(cgroups.kinds())
            if unknown:
                raise SystemExit(f"containerfs: --subtree: unknown kinds: {' '.join(unknown)}")
        cgroups.setup()
        try:
            daemon = Daemon(mountpoint, state_dir, cgroups, pin, root_subtree)
        except ContainerError as exc:
            raise SystemExit(f"containerfs: --subtree: {exc}") from None
        if saved is not None:
            recovery.adopt(daemon, saved)
            if root_subtree is not None:  # the command line wins over the saved value
                daemon.engine.root.subtree = frozenset()
                if root_subtree.strip():
                    daemon.engine.set_subtree(daemon.engine.root, root_subtree)
        daemon.save()
        options = {
            "fsname=containerfs",
            "subtype=containerfs",
            "default_permissions",
            "allow_other",
        }
        if debug:
            options.add("debug")
        trio.run(serve, daemon, options)
    return 0
