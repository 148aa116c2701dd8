"""Containers' cgroup directories made and taken away: setup, create, trim, kill, remove.

The part of :class:`cgroups.CgroupBackend` that changes the tree of cgroup
directories: the base's ``.tasks`` and ``.pins`` (:meth:`Lifecycle.setup`),
a container's directories with its controllers enabled, all or nothing
(:meth:`Lifecycle.create`), and their removal; plus what recovery after a
crash asks of the tree (leftover directories and processes).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from pathlib import Path

from . import cgfs
from .cghierarchy import PINS, TASKS, Hierarchy, check_path, kind_of
from .cgplacement import Placement

log = logging.getLogger(__name__)

#: The kernel's limit on a path's length, its terminating NUL included.
PATH_MAX = 4096
#: Room a container's cgroup directory leaves for the longest path the daemon opens
#: below it (``/.tasks/cgroup.procs``, ``/cgroup.max.descendants``, ...), and more.
_LONGEST_FILE = 64


class Lifecycle(Placement):
    """Making, trimming, emptying and removing containers' cgroup directories."""

    def setup(self) -> None:
        """Prepare the base: v2 needs the daemon out of it so controllers can be enabled.

        v2 forbids processes in a cgroup that hands controllers to children, so
        the daemon moves down into ``base/.tasks`` (moving down is always
        allowed) and holders get ``base/.pins``. Idempotent.

        Started by systemd in the unit's leaf (``DelegateSubgroup=``, named to us
        by the unit: ``service_leaf``, see ``daemon_base``), it moves across to
        ``.tasks`` like any other start and removes that leaf, empty now: a
        container's cgroup never takes its name (``reserved_names``) and systemd
        makes it again for the next start.
        """
        if self.v2 is None:
            return
        base = self.v2.dir()
        came_from = self._current(os.getpid()).get(self.v2)
        scratch: list[Path] = []
        cgfs.mkdir(base / TASKS, scratch)
        cgfs.mkdir(base / PINS, scratch)
        self.move(os.getpid(), [base / TASKS])
        leaf = self.service_leaf
        if leaf and came_from is not None and came_from == base / leaf:
            try:
                cgfs.remove_dir(came_from)
            except OSError as exc:  # another process systemd put there: leave it be
                log.info("systemd's start cgroup %s stays: %s", came_from, exc.strerror or exc)

    def create(self, path: tuple[str, ...], owned: frozenset[str]) -> None:
        """Make the cgroup directories of container `path`, owning kinds `owned`.

        All or nothing: on failure every directory this call made is removed,
        every controller it enabled is disabled again, and the error re-raised.
        Existing directories are left alone, so creating again is harmless.
        """
        check_path(path)
        if not path:
            raise ValueError("the root container is the base; it is not created")
        kinds = self.kinds()
        missing = sorted(k for k in owned if kinds.get(k, "not-found") is not None)
        if missing:
            raise OSError(
                errno.EOPNOTSUPP,
                "controller kinds not available: "
                + ", ".join(f"{k} ({kinds.get(k, 'not-found')})" for k in missing),
            )
        for h in self.hierarchies:
            if h.version == 1 and not h.kinds & owned:
                continue  # no directory made there
            room = PATH_MAX - len(os.fsencode(h.dir(path)))
            if room <= _LONGEST_FILE:
                # Made, it would be a directory whose files the kernel cannot name
                # (cgroup.events, .tasks/cgroup.procs): it could not be watched,
                # entered or even removed.
                raise OSError(
                    errno.ENAMETOOLONG, f"the cgroup path of {'/'.join(path)!r} passes PATH_MAX"
                )
        created: list[Path] = []
        enabled: list[tuple[Path, str]] = []
        try:
            if self.v2 is not None:
                self._create_v2(self.v2, path, owned, created, enabled)
            for h in self.v1:
                if h.kinds & owned:
                    self._create_v1(h, path, created)
        except BaseException:
            self._undo(created, enabled)
            raise

    def _create_v2(
        self,
        h: Hierarchy,
        path: tuple[str, ...],
        owned: frozenset[str],
        created: list[Path],
        enabled: list[tuple[Path, str]],
    ) -> None:
        wanted = sorted(c for c in h.controllers if kind_of(c) in owned)
        # From the parent up to the first directory that enables them all already (the
        # kernel enables a controller only where the parent does, so every directory
        # above it does too); then down again. Looking at every level from the base
        # made each mkdir cost as many reads as the container is deep.
        missing: list[tuple[int, Path, list[str]]] = []
        parent = h.dir(path[:-1])
        for depth in range(len(path) - 1, -1, -1) if wanted else ():
            have = set(cgfs.read(parent / "cgroup.subtree_control").split())
            todo = [c for c in wanted if c not in have]
            if not todo:
                break
            missing.append((depth, parent, todo))
            parent = parent.parent
        for depth, parent, todo in reversed(missing):
            if depth == 0 and cgfs.procs_of(parent):
                # Never impose the no-internal-process rule on processes we do
                # not own (and never rely on the root cgroup's exemption).
                raise OSError(
                    errno.EBUSY, f"{parent} has processes of its own; cannot enable {todo}"
                )
            for c in todo:
                cgfs.write(parent / "cgroup.subtree_control", f"+{c}")
                enabled.append((parent, c))
        cgfs.mkdir(h.dir(path), created)
        cgfs.mkdir(h.dir((*path, TASKS)), created)

    def _create_v1(self, h: Hierarchy, path: tuple[str, ...], created: list[Path]) -> None:
        cpuset = "cpuset" in h.controllers
        # Only the levels missing (pass-throughs of ancestors that own nothing here),
        # found from the bottom: one look per level made, not per level of the path.
        have = len(path) - 1
        while have > 0 and not h.dir(path[:have]).is_dir():
            have -= 1
        for depth in range(have + 1, len(path) + 1):
            d = h.dir(path[:depth])
            if cgfs.mkdir(d, created) and cpuset:
                # A v1 cpuset starts empty and refuses tasks until given CPUs and
                # nodes; inherit the parent's so it behaves as a pass-through.
                for name in ("cpuset.cpus", "cpuset.mems"):
                    value = cgfs.read(d.parent / name).strip()
                    if value:
                        cgfs.write(d / name, value)

    def _undo(self, created: list[Path], enabled: list[tuple[Path, str]]) -> None:
        for d in reversed(created):
            try:
                cgfs.remove_dir(d)
            except OSError as e:
                log.warning("rollback: cannot remove %s: %s", d, e)
        for parent, c in reversed(enabled):
            try:
                cgfs.write(parent / "cgroup.subtree_control", f"-{c}")
            except OSError as e:
                log.warning("rollback: cannot disable %s in %s: %s", c, parent, e)

    def trim(self, path: tuple[str, ...], freed: frozenset[str]) -> None:
        """Disable in container `path`'s ``cgroup.subtree_control`` each v2 controller
        whose kind is in `freed` (no container below owns it any more), as a
        delegated manager should once the last owner is gone. Call it bottom-up:
        the kernel refuses while a child still enables the controller. A
        refusal is logged, not raised (the removal it follows is done)."""
        check_path(path)
        if self.v2 is None:
            return
        d = self.v2.dir(path)
        try:
            have = cgfs.read(d / "cgroup.subtree_control").split()
        except FileNotFoundError:
            return
        for name in have:
            if kind_of(name) not in freed:
                continue
            try:
                cgfs.write(d / "cgroup.subtree_control", f"-{name}")
            except OSError as exc:
                log.warning("cannot disable %s in %s: %s", name, d, exc)

    def kill(self, path: tuple[str, ...], *, timeout: float = 5.0, kill_file: bool = True) -> int:
        """End every process of container `path` and below; return once none is left.

        ``cgroup.kill`` (cgroup v2, Linux 5.14+) does it in one write and also
        catches processes forking meanwhile. Without it (or ``kill_file=False``)
        each process found gets SIGKILL, through a pidfd taken while it is seen
        inside, until none is left. ``OSError(EBUSY)`` when processes remain
        after `timeout` seconds (stuck in the kernel). The number found at first.
        """
        check_path(path)
        if not path:
            raise ValueError("the root container cannot be killed")
        d = self._v2().dir(path)
        found = cgfs.procs_below(d)
        use_file = kill_file and (d / "cgroup.kill").exists()
        if use_file:
            cgfs.write(d / "cgroup.kill", "1")
        deadline = time.monotonic() + timeout
        while left := cgfs.procs_below(d):
            if time.monotonic() > deadline:
                raise OSError(errno.EBUSY, f"{len(left)} process(es) left in {d} after {timeout} s")
            if not use_file:
                for pid in left:
                    self._kill_inside(pid, d)
            time.sleep(0.005)
        return len(found)

    def _kill_inside(self, pid: int, d: Path) -> None:
        """SIGKILL `pid` if it is (still) in cgroup2 directory `d` or below it."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        try:
            where = self._current(pid).get(self._v2())
            if where is not None and where.is_relative_to(d):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)

    def remove(self, path: tuple[str, ...]) -> None:
        """Remove every directory of container `path` that exists.

        Checks first that nothing is inside (processes or child cgroups) so a
        refusal (EBUSY) leaves every directory in place.
        """
        check_path(path)
        if not path:
            raise ValueError("the root container cannot be removed")
        dirs: list[Path] = []
        if self.v2 is not None:
            d = self.v2.dir(path)
            if d.exists():
                if self.populated(path):
                    raise OSError(errno.EBUSY, f"container {'/'.join(path)} has processes")
                subdirs = cgfs.subdirs(d)
                if any(name != TASKS for name in subdirs):
                    raise OSError(errno.EBUSY, f"container {'/'.join(path)} has children")
                if TASKS in subdirs:
                    dirs.append(d / TASKS)
                dirs.append(d)
        for h in self.v1:
            d = h.dir(path)
            if not d.exists():
                continue
            if cgfs.procs_of(d) or cgfs.subdirs(d):
                raise OSError(errno.EBUSY, f"{d} is not empty")
            dirs.append(d)
        for d in dirs:
            # Gone meanwhile: runc's delete removes an OCI container's directories.
            with contextlib.suppress(FileNotFoundError):
                cgfs.remove_dir(d)
        self.direct.discard(path)

    def make_direct(self, path: tuple[str, ...]) -> None:
        """Make container `path`'s cgroup2 directory the place of its processes, as
        an OCI runtime has it (runc puts its init at ``linux.cgroupsPath``): any in
        its ``.tasks`` leaf move up into it, and the leaf goes. A move within the
        container's own cgroups; its controllers are the directory's either way."""
        check_path(path)
        if not path:
            raise ValueError("the root container keeps its leaf")
        if self.v2 is not None:
            d = self.v2.dir(path)
            leaf = d / TASKS
            for _ in range(100):  # a process forking meanwhile lands in the leaf again
                pids = cgfs.procs_of(leaf) if leaf.is_dir() else []
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        cgfs.write(d / "cgroup.procs", str(pid))
                try:
                    if leaf.is_dir():
                        cgfs.remove_dir(leaf)
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise
            else:
                raise OSError(errno.EBUSY, f"{leaf}: processes keep arriving")
        self.direct.add(path)

    def one_path(self, path: tuple[str, ...]) -> str:
        """Container `path`'s cgroup as one absolute path, the same in every hierarchy
        the daemon uses (what runc 1.1's ``linux.cgroupsPath`` takes: it puts its
        init at that path in every hierarchy, cgroup2 included).
        ``OSError(EOPNOTSUPP)`` when the daemon's bases differ between hierarchies."""
        check_path(path)
        bases = {h: "/" + "/".join(p for p in h.base.split("/") if p) for h in self.hierarchies}
        if len(set(bases.values())) != 1:
            shown = ", ".join(
                f"{','.join(sorted(h.controllers)) or 'cgroup2'}: {b}" for h, b in bases.items()
            )
            raise OSError(
                errno.EOPNOTSUPP,
                "the daemon's cgroups are not at one path in every hierarchy"
                f" ({shown}); an OCI runtime takes one cgroup path",
            )
        base = next(iter(bases.values()))
        return "/" + "/".join([p for p in base.split("/") if p] + list(path))

    # -- after a crash ------------------------------------------------------

    def container_dirs(self) -> set[tuple[str, ...]]:
        """Every container path that has a directory below the base, in any hierarchy.

        For recovery after a crash: a path here that the saved tree lacks is a
        half-made or half-removed container's leftover.
        """
        found: set[tuple[str, ...]] = set()
        for h in self.hierarchies:
            found.update(rel for _d, rel in cgfs.dirs_below(h.dir(), hidden=False) if rel)
        return found

    def procs_anywhere(self, path: tuple[str, ...]) -> list[int]:
        """Processes directly in any directory of container `path` (its v2 dir and
        leaf, its v1 dirs): for cleaning up after a crash."""
        check_path(path)
        out: set[int] = set()
        for h in self.hierarchies:
            for d in (h.dir(path), h.dir((*path, TASKS))):
                if (d / "cgroup.procs").exists():
                    out.update(cgfs.procs_of(d))
        return sorted(out)

    def pin_pids(self) -> list[int]:
        """Processes in the holders' cgroup (``base/.pins``): holders, or their leftovers."""
        if self.v2 is None:
            return []
        d = self.v2.dir((PINS,))
        return cgfs.procs_of(d) if d.exists() else []
