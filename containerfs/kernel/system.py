"""The kernel as the service sees it: every call the service makes, on one object.

The service (``containerfs/service/``) takes a :class:`Kernel` as an argument,
as httpx takes its transport: the daemon passes this one, which goes to the
backends of this package; the unit tier passes a fake (``tests/unit/fakekernel.py``)
and drives mkdir, control-file writes, ``tasks`` and releases without root.

Each method is a thin call into the module that does the work, so this file
says *what* the service asks of the kernel and the modules say *how*. Blocking
methods are called on worker threads by the service; ``async`` ones are not.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

import trio

from . import (
    holder_start,
    idmaps,
    inject,
    mounts,
    namespaces,
    netns,
    nsinfo,
    nslist,
    procfs,
    procs,
    ptrace_rules,
    sysctls,
)
from .cgroups import CgroupBackend
from .holder import Holder, kill_stray_holder

log = logging.getLogger(__name__)


class Kernel:
    """The backends of one daemon: its cgroups, its holders, and the namespaces."""

    def __init__(self, cgroups: CgroupBackend, pin_path: str, mountpoint: str) -> None:
        self.cgroups = cgroups
        self.pin_path = pin_path
        self.mountpoint = mountpoint
        #: Holders place themselves (``spawn_holder``); False once the kernel
        #: said it has no ``clone3(CLONE_INTO_CGROUP)``.
        self.clone_into_cgroup = True

    # -- what the host has ---------------------------------------------------------

    def namespace_availability(self) -> dict[str, str | None]:
        """Namespace kind -> None when usable, else why not."""
        return namespaces.availability()

    def own_namespace(self, kind: str) -> str:
        """The daemon's own instance of ``kind`` (the root container's)."""
        return str(namespaces.ns_inode("self", kind))

    def pid_max_per_namespace(self) -> bool:
        return procs.pid_max_per_namespace()

    # -- holders -------------------------------------------------------------------

    def spawn_holder(
        self,
        parent: Holder | None,
        unshare: frozenset[str],
        join_fds: Mapping[str, int],
        cgroup_root: list[Path] | None,
    ) -> Holder:
        """Start a namespace holder (blocking); it ends up in the holders' cgroups.

        ``cgroup_root``: the container's cgroup directories, where its new
        cgroup namespace is rooted (None: no cgroup namespace is unshared). The
        pin places itself with ``clone3(CLONE_INTO_CGROUP)`` and v1 ``tasks``
        writes of "0" (``holder_start.spawn_holder``'s ``cgroup_fds``), which
        wait for no RCU grace period. Where the kernel refuses that (before 5.7,
        or a cgroup it will not fork into), the daemon moves the pin by pid as
        before: into ``cgroup_root`` before it unshares, then the holder back to
        the holders' cgroups.
        """
        cgroups = self.cgroups
        fds = cgroups.open_pin_cgroups(cgroup_root) if self.clone_into_cgroup else None
        if fds is not None:
            try:
                return self._spawn(parent, unshare, join_fds, None, fds)
            except holder_start.CloneIntoRefused as exc:
                if exc.errno in (errno.ENOSYS, errno.E2BIG, errno.EINVAL):
                    self.clone_into_cgroup = False  # this kernel has none: do not ask again
                log.info("holders are placed by pid: %s", exc)
            finally:
                for _, fd in fds:
                    os.close(fd)
        target = cgroup_root if cgroup_root is not None else cgroups.pins_placement()

        def place(pid: int) -> None:
            cgroups.move(pid, target)

        holder = self._spawn(parent, unshare, join_fds, place, ())
        try:
            if cgroup_root is not None:
                cgroups.move(holder.pid, cgroups.pins_placement())
        except BaseException:
            holder.kill()
            holder.close()
            raise
        return holder

    def _spawn(
        self,
        parent: Holder | None,
        unshare: frozenset[str],
        join_fds: Mapping[str, int],
        place: Callable[[int], None] | None,
        cgroup_fds: Sequence[tuple[str, int]],
    ) -> Holder:
        return holder_start.spawn_holder(
            parent=parent,
            unshare=unshare,
            place=place,
            mountpoint=self.mountpoint,
            pin_path=self.pin_path,
            join_fds=join_fds,
            cgroup_fds=cgroup_fds,
        )

    # -- sysctls, ID maps, time offsets, monitoring files ---------------------------

    async def read_sysctl(self, holder: Holder | None, kind: str, name: str) -> str:
        """A sysctl of a container's namespace (``holder``'s; None: the daemon's).

        The holder, a process inside every namespace of the container, reads it
        over its socket: one round trip (~40 us) instead of a fresh thread that
        joins the namespace (~300 us), and the only way for pid and user
        sysctls, which answer for the caller's *active* pid namespace or its
        user namespace (no thread can join those).
        """
        if holder is not None and (holder.has_channel or kind in ("pid", "user")):
            kept = holder.sysctl_by_fd(name)  # written through a kept fd before
            return kept if kept is not None else await holder.sysctl_async(name)
        return await sysctls.read_sysctl_async(holder, kind, name)

    async def read_sysctls(
        self, holder: Holder, wanted: Sequence[tuple[str, str]]
    ) -> list[str | None]:
        """Several sysctls (kind, name) of a container's namespaces, in order; None
        for one this instance has no file of. One exchange with the holder for all
        (``Holder.sysctls_async``) when it has a channel, else one read each."""
        if holder.has_channel:
            return await holder.sysctls_async([name for _kind, name in wanted])
        out: list[str | None] = []
        for kind, name in wanted:
            try:
                out.append(await self.read_sysctl(holder, kind, name))
            except FileNotFoundError:
                out.append(None)
        return out

    async def write_sysctl(self, holder: Holder, kind: str, name: str, value: str) -> None:
        """Set a sysctl of a container's namespace: by its holder, as for reads;
        where the sysctl's file stays bound to the namespace it was opened in,
        through an fd the holder opened once, written by the daemon itself (no
        round trip to the holder after the first write)."""
        if holder.has_channel or kind in ("pid", "user"):
            bound = sysctls.bound_to_opener(kind)
            if bound is None:  # once per daemon: does this kernel keep ipc sysctls bound?
                bound = await trio.to_thread.run_sync(sysctls.probe_ipc_bound)
            # net handlers may wait for the RTNL lock: off the event loop
            on_thread = kind == "net"
            if bound and await holder.write_sysctl_fd_async(
                name, value.encode(), on_thread=on_thread
            ):
                return
            await holder.set_sysctl_async(name, value)
        else:
            await sysctls.write_sysctl_async(holder, kind, name, value)

    def read_id_map(self, holder: Holder | None, which: str) -> str:
        return idmaps.read_map(holder, which)

    def write_id_map(self, holder: Holder, which: str, text: str) -> None:
        idmaps.write_map(holder, which, text)

    def inside_root(self, holder: Holder) -> tuple[int | None, int | None]:
        """The host (uid, gid) root of ``holder``'s user namespace maps to."""
        return idmaps.inside_root(holder)

    def time_offsets(self, holder: Holder | None) -> str:
        return nsinfo.time_offsets(holder)

    def set_time_offsets(self, holder: Holder, monotonic: int, boottime: int) -> None:
        holder.set_time_offsets(monotonic, boottime)

    def info_files(self) -> Collection[str]:
        """The monitoring files the kernel layer can render (``nsinfo.RENDERERS``)."""
        return nsinfo.RENDERERS.keys()

    async def render_info(
        self, key: str, holder: Holder | None, internal: Callable[[], Collection[int]]
    ) -> str:
        return await nsinfo.RENDERERS[key](holder, internal)

    def scan_namespaces(self, as_user: tuple[int, int] | None) -> list[nslist.NsEntry]:
        """Every namespace on the host, as ``as_user`` may see them (blocking)."""
        return nslist.scan(as_user=as_user)

    # -- the internal views' bind mounts ------------------------------------------

    def sysctl_path(self, name: str) -> str:
        return sysctls.sysctl_path(name)

    async def detach_stale(self, holder: Holder, targets: frozenset[str]) -> None:
        await mounts.detach_stale(holder, targets)

    def open_sysctl_target(self, holder: Holder, name: str) -> int:
        return holder.open_sysctl_target(name)

    async def attach_onto(self, holder: Holder, binds: list[tuple[int, int]]) -> None:
        await mounts.attach_onto(holder, binds)

    def enter_final_mount_ns(self, holder: Holder) -> str:
        """Have the holder enter its deferred mount namespace; its inode."""
        holder.enter_final_mount_ns()
        return str(holder.inodes["mnt"])

    # -- processes -------------------------------------------------------------------

    def translate_pid(self, pid: int, opener_pid: int) -> int:
        return procs.translate_pid(pid, opener_pid)

    def hold(self, pid: int) -> int:
        """A pidfd of ``pid``."""
        return procs.hold(pid)

    def check_held(self, pidfd: int, pid: int) -> None:
        procs.check_held(pidfd, pid)

    def thread_group(self, tid: int) -> int:
        return procs.thread_group(tid)

    def process_inodes(self, pid: int) -> dict[str, int]:
        return procs.process_inodes(pid)

    def creds(self, pid: int) -> procs.Creds:
        return procs.creds(pid)

    def process_stat(self, pid: int) -> tuple[str, int, int]:
        """(comm, parent pid, start time) of a live process."""
        return procfs.process_stat(pid)

    def attach_holder(self, pid: int, inodes: Mapping[str, int]) -> Holder:
        """A holder of a previous daemon, checked to hold ``inodes`` (restart)."""
        return Holder.attach(pid, inodes)

    def kill_stray_holder(self, pid: int) -> bool:
        """SIGKILL ``pid`` if it is a holder no container accounts for; True if killed."""
        return kill_stray_holder(pid)

    def start_time(self, pid: int) -> int:
        """When ``pid`` started (telling it from a later process of the same pid)."""
        return self.process_stat(pid)[2]

    def open_namespace(self, path: str, inode: int) -> int:
        """An nsfs fd on ``path`` (``/proc/PID/ns/KIND``, a bind-mounted nsfs file)
        that is namespace ``inode``; ``ProcessLookupError`` when it is another by now."""
        return namespaces.open_ns_checked(path, inode)

    def namespace_ancestors(self, fd: int) -> list[int]:
        """Inodes above the pid or user namespace of nsfs ``fd``, nearest first."""
        return namespaces.ancestors(fd)

    # -- ip netns names (blocking) ---------------------------------------------------

    def netns_bind(self, pid: int, inode: int, name: str) -> bool:
        """Bind network namespace ``inode``, taken from process ``pid`` and checked,
        at ``/run/netns/NAME``; False when it is bound there already."""
        fd = self.open_namespace(f"/proc/{pid}/ns/net", inode)
        try:
            return netns.bind(fd, name)
        finally:
            os.close(fd)

    def netns_unbind(self, name: str, inode: int | None) -> bool:
        """Remove ``/run/netns/NAME`` while it is namespace ``inode``'s (None: any)."""
        return netns.unbind(name, inode)

    def netns_names(self) -> list[str]:
        return netns.names()

    def netns_bound(self, name: str) -> int | None:
        """The inode of the namespace bound at ``/run/netns/NAME``, if any."""
        return netns.bound_inode(name)

    def claim_netns_prefix(self, prefix: str) -> netns.Held | None:
        """Hold ``prefix`` for this daemon (None: another daemon holds it)."""
        return netns.claim_prefix(prefix)

    def mount_tables(self) -> procs.MountTables:
        """The nsfs mounts of mount namespaces, re-read only when they change."""
        return procs.MountTables()

    def ptrace_refusal(self, caller: int, target: int) -> str | None:
        return ptrace_rules.ptrace_refusal(caller, target)

    def move_into(
        self,
        pid: int,
        targets: Mapping[str, int],
        *,
        sources: Mapping[str, str | int],
        pidfd: int,
        on_seized: Callable[[], None] | None = None,
        on_failed: Callable[[], None] | None = None,
    ) -> None:
        """Move running process ``pid`` into the namespaces ``targets`` (blocking)."""
        inject.move_into(
            pid, targets, sources=sources, pidfd=pidfd, on_seized=on_seized, on_failed=on_failed
        )
