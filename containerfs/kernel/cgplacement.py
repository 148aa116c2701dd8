"""Where processes are in the cgroup backend: placement, moves and their undo, who is inside.

The part of :class:`cgroups.CgroupBackend` that puts processes somewhere:
which directories a container's process belongs in (:meth:`Placement.placement`),
moving a process into all of them or none (:meth:`Placement.move`), putting it
back where it was, and reading which processes a container holds.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from . import cgfs
from .cghierarchy import PINS, TASKS, Hierarchy, HostCgroups, below, check_path
from .cgvalues import parse_pid_cgroup

log = logging.getLogger(__name__)


class Placement(HostCgroups):
    """Placing and moving processes, and reading who is where."""

    # -- placement and moves ------------------------------------------------

    def placement(
        self,
        path: tuple[str, ...],
        owner_of: Callable[[str], tuple[str, ...]],
        *,
        leaf: bool = True,
    ) -> list[Path]:
        """The cgroup directories a process of container `path` belongs in.

        On v1 a process sits in its nearest owning ancestor's directory; when
        a hierarchy carries several kinds with different owners, the deepest
        owner wins (hierarchical limits keep the shallower owner's limit in
        force, as with v2 nesting).

        ``leaf=False`` gives the container's v2 directory itself instead of its
        ``.tasks`` leaf: where a process must be when it unshares the container's
        cgroup namespace, whose root is fixed at that moment. A ``direct``
        container has no leaf: its directory either way.
        """
        check_path(path)
        out: list[Path] = []
        for h in self.hierarchies:
            if h.version == 2:
                out.append(h.dir(self.task_dir(path) if leaf else path))
                continue
            owners = [owner_of(k) for k in sorted(h.kinds)]
            owner = max(owners, key=len)
            check_path(owner)
            out.append(h.dir(owner))
        return out

    def pins_placement(self) -> list[Path]:
        """Where holders live: outside every container's cgroup, never counted as tasks."""
        return [h.dir((PINS,)) if h.version == 2 else h.dir() for h in self.hierarchies]

    def open_pin_cgroups(self, cgroup_root: list[Path] | None) -> list[tuple[str, int]] | None:
        """The fds with which ``containerfs-pin`` places itself (its placement words).

        ``pins``: the cgroup2 holders' directory, which the pin forks its chain
        into (a process started by the daemon is in the daemon's ``.tasks``).
        With ``cgroup_root`` (:meth:`placement` with ``leaf=False``, where the
        cgroup namespace is unshared): ``cgdir``, its cgroup2 directory, and a
        ``tasks`` file for each v1 one. A fork into a cgroup and a process
        writing "0" to a v1 ``tasks`` file (a single thread moving itself) skip
        the global lock a move by pid takes, and its RCU grace period. Checked
        as :meth:`move` checks; the caller closes the fds.

        The pin starts where the daemon is, which on v1 is where holders live
        (the base) unless someone moved the daemon: then None, and the caller
        places the pin by pid. v1 directories the daemon is in need no write.
        """
        here = self._current(os.getpid())
        if any(h.version == 1 and here.get(h) != h.dir() for h in self.hierarchies):
            return None
        wanted: list[tuple[str, Path, int]] = []
        if self.v2 is not None:
            wanted.append(("pins", self.v2.dir((PINS,)), os.O_RDONLY | os.O_DIRECTORY))
        seen: set[Hierarchy] = set()
        for d in cgroup_root or []:
            h = self._hierarchy_for_dir(d)
            if h in seen:
                raise ValueError(f"two target cgroups in one hierarchy: {d}")
            seen.add(h)
            if h.version == 1 and "cpuset" in h.controllers and not _cpuset_usable(d):
                raise OSError(errno.ENOSPC, f"{d}: cpuset has no cpus/mems")
            if h.version == 2:
                wanted.append(("cgdir", d, os.O_RDONLY | os.O_DIRECTORY))
            elif here.get(h) != d:
                wanted.append(("tasks", d / "tasks", os.O_WRONLY))
        out: list[tuple[str, int]] = []
        try:
            for word, path, flags in wanted:
                out.append((word, os.open(path, flags | os.O_CLOEXEC)))
        except BaseException:
            for _, fd in out:
                os.close(fd)
            raise
        return out

    def _hierarchy_for_dir(self, d: Path) -> Hierarchy:
        """The hierarchy whose base holds `d` (the deepest, should mounts nest)."""
        found = [h for h in self.hierarchies if h.contains(d)]
        if not found:
            raise ValueError(f"{d} is not inside the daemon's cgroups")
        return max(found, key=lambda h: len(h.dir().parts))

    def _current(self, pid: int) -> dict[Hierarchy, Path]:
        """Where `pid` is now, per hierarchy, from ``/proc/<pid>/cgroup``."""
        try:
            text = cgfs.read(self._proc / str(pid) / "cgroup")
        except FileNotFoundError:
            raise ProcessLookupError(errno.ESRCH, f"no process {pid}") from None
        out: dict[Hierarchy, Path] = {}
        for hid, names, path in parse_pid_cgroup(text):
            ctrls = frozenset(n for n in names if not n.startswith("name="))
            for h in self.hierarchies:
                if (h.version == 2 and hid == 0) or (h.version == 1 and h.controllers == ctrls):
                    inner = below(h.root, path)
                    if inner is not None:
                        out[h] = h.mount.joinpath(*inner)
        return out

    def move(self, pid: int, dirs: list[Path]) -> None:
        """Move process `pid` into every directory of `dirs`, or nowhere.

        Everything that can be checked is checked before the first write:
        each directory is inside the daemon's base (ValueError), at most one
        per hierarchy (ValueError), exists (FileNotFoundError), and on a v1
        cpuset hierarchy has CPUs and memory nodes (``OSError(ENOSPC)``, what
        the kernel would answer); the process exists (ProcessLookupError).

        Hierarchies the process is already in are skipped (each lone write
        costs an RCU grace period). The rest are written v1 cpuset first (the
        likeliest to refuse), other v1 next, v2 last. If a write still fails,
        every hierarchy already switched is put back into the exact cgroup
        ``/proc/<pid>/cgroup`` showed before, wherever that was (putting a
        process back where it just was is the one move outside our base we
        make), and the original error is raised.
        """
        targets: dict[Hierarchy, Path] = {}
        for d in dirs:
            h = self._hierarchy_for_dir(d)
            if h in targets:
                raise ValueError(f"two target cgroups in one hierarchy: {targets[h]} and {d}")
            targets[h] = d
        for h, d in targets.items():
            if not d.is_dir():
                raise FileNotFoundError(errno.ENOENT, f"{d}: no such cgroup", str(d))
            if h.version == 1 and "cpuset" in h.controllers and not _cpuset_usable(d):
                raise OSError(errno.ENOSPC, f"{d}: cpuset has no cpus/mems")
        before = self._current(pid)
        todo = sorted(
            ((h, d) for h, d in targets.items() if before.get(h) != d),
            key=lambda hd: _move_rank(hd[0]),
        )
        moved: list[Hierarchy] = []
        for h, d in todo:
            try:
                cgfs.write(d / "cgroup.procs", str(pid))
            except BaseException as e:
                if not isinstance(e, ProcessLookupError):  # gone: nothing to put back
                    self._move_back(pid, moved, before)
                raise
            moved.append(h)

    def frozen(self, before: Mapping[Hierarchy, Path], dirs: list[Path]) -> str | None:
        """Why a process at ``before`` (:meth:`where`) and moved into ``dirs`` would be
        frozen during its move, or None. A frozen process cannot stop for ptrace,
        and moving its cgroups first would thaw it (leaving a frozen cgroup does),
        so a namespace move asks this before it starts. The freezer state counts
        its ancestors': v1's ``freezer.state`` shows it, and on v2 any
        ``cgroup.freeze`` set at or above the cgroup freezes it."""
        places = list(before.items())
        places += [(self._hierarchy_for_dir(d), d) for d in dirs]
        for h, d in places:
            if h.version == 1 and "freezer" in h.controllers:
                with contextlib.suppress(OSError):
                    state = cgfs.read(d / "freezer.state").strip()
                    if state != "THAWED":
                        return f"freezer cgroup {d} is {state}"
            elif h.version == 2:
                for up in (d, *d.parents):
                    if up == h.mount or h.mount not in up.parents:
                        break
                    with contextlib.suppress(OSError):
                        if cgfs.read(up / "cgroup.freeze").strip() == "1":
                            return f"cgroup {up} is frozen (cgroup.freeze 1)"
        return None

    def holds(self, pid: int, path: tuple[str, ...]) -> bool:
        """Whether `pid` is one of container `path`'s processes, as :meth:`procs`
        lists them: one read of ``/proc/<pid>/cgroup``, not the whole list."""
        check_path(path)
        h = self._v2()
        where = self._current(pid).get(h)
        return where == h.dir(self.task_dir(path)) or (not path and where == h.dir())

    def inside(self, pid: int, path: tuple[str, ...]) -> bool:
        """Whether `pid` is in container `path`'s cgroup2 directory or its ``.tasks``
        leaf: where its own ``tasks`` put it, or where an OCI runtime put its init
        (``linux.cgroupsPath``), before the container is ``direct``."""
        check_path(path)
        h = self._v2()
        where = self._current(pid).get(h)
        return where in (h.dir(path), h.dir((*path, TASKS)))

    def where(self, pid: int) -> dict[Hierarchy, Path]:
        """Where `pid` is now in each hierarchy (for :meth:`put_back`)."""
        return self._current(pid)

    def put_back(self, pid: int, before: dict[Hierarchy, Path]) -> None:
        """Undo a successful :meth:`move` when a later step of the same request failed:
        back into exactly the cgroups :meth:`where` gave (wherever they were)."""
        now = self._current(pid)
        self._move_back(pid, [h for h in before if now.get(h) != before[h]], before)

    @staticmethod
    def record_where(before: dict[Hierarchy, Path]) -> dict[str, str]:
        """:meth:`where`'s answer as plain data (mount point -> directory), to save."""
        return {str(h.mount): str(path) for h, path in before.items()}

    def put_back_recorded(self, pid: int, recorded: Mapping[str, str]) -> None:
        """:meth:`put_back` to a place :meth:`record_where` saved (a restarted daemon
        undoing a move its predecessor could not finish)."""
        before = {
            h: Path(recorded[str(h.mount)]) for h in self.hierarchies if str(h.mount) in recorded
        }
        self.put_back(pid, {h: path for h, path in before.items() if path.is_dir()})

    def _move_back(self, pid: int, moved: list[Hierarchy], before: dict[Hierarchy, Path]) -> None:
        """Undo a partial :meth:`move`: back where ``/proc/<pid>/cgroup`` said, newest first."""
        for h in reversed(moved):
            origin = before.get(h)
            if origin is None:
                log.warning("cannot move %d back in %s: it was not reachable there", pid, h.mount)
                continue
            try:
                cgfs.write(origin / "cgroup.procs", str(pid))
            except OSError as e:
                log.warning("cannot move %d back to %s: %s", pid, origin, e)

    # -- who is inside ------------------------------------------------------

    def procs(self, path: tuple[str, ...]) -> list[int]:
        """Processes of container `path` (its v2 leaf, or its directory when it is
        ``direct``), sorted.

        The root's also include those in the start cgroup itself: whatever was
        started there after the daemon moved into its leaf (an administrator's
        shell, a service's other processes) is in the root container too.
        """
        check_path(path)
        pids = cgfs.procs_of(self._v2().dir(self.task_dir(path)))
        if not path:
            pids += cgfs.procs_of(self._v2().dir())
        return sorted(pids)

    def populated(self, path: tuple[str, ...]) -> bool:
        """Whether any process lives in container `path` or below it."""
        return self.events_file(path).read_text().split("populated ", 1)[1][:1] == "1"

    def events_file(self, path: tuple[str, ...]) -> Path:
        """The v2 ``cgroup.events`` of container `path`, for inotify/poll watchers."""
        check_path(path)
        return self._v2().dir(path) / "cgroup.events"


def _move_rank(h: Hierarchy) -> int:
    """Write order of a move: v1 cpuset (refuses an empty set), other v1, then v2."""
    if h.version == 2:
        return 2
    return 0 if "cpuset" in h.controllers else 1


def _cpuset_usable(d: Path) -> bool:
    """Whether v1 cpuset `d` has CPUs and memory nodes, so that it accepts tasks."""
    for name in ("cpus", "mems"):
        try:
            value = cgfs.read(d / f"cpuset.effective_{name}")
        except FileNotFoundError:  # kernels before 3.17 have no effective_* files
            value = cgfs.read(d / f"cpuset.{name}")
        if not value.strip():
            return False
    return True
