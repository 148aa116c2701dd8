"""Cgroup v1, v2 and hybrid hosts behind one v2-shaped interface.

The rest of containerfs thinks in cgroup v2 terms: controller *kinds* named as
v2 names them (``cpu``, ``memory``, ``io``...), control files named as v2 names
them (``memory.max``, ``cpu.max``...) and written in v2 syntax. This module is
the one place that knows where the hierarchies are mounted, which of them are
v1, and how a v2 value maps onto v1 files, so nothing above it has to care.

Everything is discovered from ``/proc/<pid>/cgroup`` and
``/proc/<pid>/mountinfo`` rather than assumed at ``/sys/fs/cgroup``: hosts mount
cgroups in different places, containers see their own cgroup namespace root,
and tests point discovery at a fake ``/proc``.

Value parsing and conversion are pure functions in ``cgvalues``, unit-tested
without root; every write is fully validated before the first byte reaches
the kernel, so a bad value changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import sys as ksys
from .cgvalues import (
    IO_MAX_V1_FILES,
    MountEntry,
    bytes_limit_from_v1,
    bytes_limit_to_v1,
    cpu_max_from_v1,
    cpu_stat_from_v1,
    format_bytes_limit,
    format_cpu_max,
    format_cpulist,
    format_io_max,
    io_max_from_v1,
    parse_bytes_limit,
    parse_cpu_max,
    parse_cpu_weight,
    parse_cpulist,
    parse_io_max,
    parse_io_weight,
    parse_mountinfo,
    parse_pid_cgroup,
    parse_pids_max,
    parse_proc_cgroups,
    parse_uint,
    shares_to_weight,
    weight_to_shares,
)

__all__ = [
    "CONTROL_FILES",
    "STANDARD_KINDS",
    "CgroupBackend",
    "ControlFile",
    "Hierarchy",
    "kind_of",
]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Kinds
# ---------------------------------------------------------------------------

#: Controller kinds every host is asked about, whether or not it has them, so
#: that callers always see a reason for a missing one rather than silence.
STANDARD_KINDS: tuple[str, ...] = (
    "cpu",
    "cpuset",
    "memory",
    "io",
    "pids",
    "hugetlb",
    "rdma",
    "misc",
)

# v1 controllers whose v2 successor has another name. Everything else keeps its
# kernel name (v1-only controllers such as freezer or devices included).
_V1_KIND = {"cpu": "cpu", "cpuacct": "cpu", "blkio": "io"}

#: Names a container may not take: the v2 leaf and the holders' cgroup live
#: beside child containers in the same directory.
RESERVED_NAMES = frozenset({".tasks", ".pins"})
TASKS = ".tasks"
PINS = ".pins"

# mount(2) flags for a cgroup2 mount of our own (linux/mount.h).
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8


def kind_of(controller: str) -> str:
    """Map a kernel controller name (v1 or v2) to its kind name."""
    return _V1_KIND.get(controller, controller)


# ---------------------------------------------------------------------------
# Control files
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlFile:
    """A v2-named control file containerfs serves for a kind."""

    kind: str
    writable: bool
    versions: frozenset[int]  # cgroup versions on which it can be offered


def _cf(kind: str, writable: bool, *versions: int) -> ControlFile:
    return ControlFile(kind, writable, frozenset(versions))


#: Every control file this backend serves. v2-only files have no faithful v1
#: equivalent (v1 ``soft_limit_in_bytes`` is not ``memory.high``, ``memory.stat``
#: keys differ), so they are not faked on v1.
CONTROL_FILES: dict[str, ControlFile] = {
    "memory.max": _cf("memory", True, 1, 2),
    "memory.high": _cf("memory", True, 2),
    "memory.low": _cf("memory", True, 2),
    "memory.min": _cf("memory", True, 2),
    "memory.swap.max": _cf("memory", True, 2),
    "memory.current": _cf("memory", False, 1, 2),
    "memory.peak": _cf("memory", False, 1, 2),
    "memory.stat": _cf("memory", False, 2),
    "memory.events": _cf("memory", False, 2),
    "pids.max": _cf("pids", True, 1, 2),
    "pids.current": _cf("pids", False, 1, 2),
    "pids.peak": _cf("pids", False, 1, 2),
    "pids.events": _cf("pids", False, 1, 2),
    "cpu.max": _cf("cpu", True, 1, 2),
    "cpu.weight": _cf("cpu", True, 1, 2),
    "cpu.stat": _cf("cpu", False, 1, 2),
    "cpuset.cpus": _cf("cpuset", True, 1, 2),
    "cpuset.mems": _cf("cpuset", True, 1, 2),
    "cpuset.cpus.effective": _cf("cpuset", False, 1, 2),
    "cpuset.mems.effective": _cf("cpuset", False, 1, 2),
    "io.max": _cf("io", True, 1, 2),
    "io.weight": _cf("io", True, 2),
    "io.stat": _cf("io", False, 2),
}

# v1 files that carry the same value as their v2 name, by (controller, file).
_V1_SAME = {
    "memory.current": ("memory", "memory.usage_in_bytes"),
    "memory.peak": ("memory", "memory.max_usage_in_bytes"),
    "pids.max": ("pids", "pids.max"),
    "pids.current": ("pids", "pids.current"),
    "pids.peak": ("pids", "pids.peak"),
    "pids.events": ("pids", "pids.events"),
    "cpuset.cpus": ("cpuset", "cpuset.cpus"),
    "cpuset.mems": ("cpuset", "cpuset.mems"),
    "cpuset.cpus.effective": ("cpuset", "cpuset.effective_cpus"),
    "cpuset.mems.effective": ("cpuset", "cpuset.effective_mems"),
}


def _normalise(name: str, value: str) -> str:
    """Validate a v2 write and return the exact text to hand the kernel (no newline)."""
    if name in ("memory.max", "memory.high", "memory.low", "memory.min", "memory.swap.max"):
        return format_bytes_limit(parse_bytes_limit(value))
    if name == "pids.max":
        limit = parse_pids_max(value)
        return "max" if limit is None else str(limit)
    if name == "cpu.max":
        return format_cpu_max(*parse_cpu_max(value))
    if name == "cpu.weight":
        return str(parse_cpu_weight(value))
    if name in ("cpuset.cpus", "cpuset.mems"):
        return format_cpulist(parse_cpulist(value))
    if name == "io.max":
        return format_io_max(*parse_io_max(value))
    if name == "io.weight":
        return parse_io_weight(value)
    raise AssertionError(f"no validator for {name}")


# ---------------------------------------------------------------------------
# Hierarchies and the backend
# ---------------------------------------------------------------------------


def _check_name(name: str) -> None:
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\0" in name
        or "\n" in name
        or name in RESERVED_NAMES
    ):
        raise ValueError(f"invalid container name {name!r}")


def _check_path(path: tuple[str, ...]) -> None:
    """Refuse names that would escape the base or collide with ``.tasks``/``.pins``."""
    for name in path:
        _check_name(name)


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy as seen from the daemon's start cgroup."""

    mount: Path
    version: int
    controllers: frozenset[str]
    base: str
    root: str = "/"  # the cgroup mounted at `mount` (not "/" for bind or namespaced mounts)

    @functools.cached_property
    def kinds(self) -> frozenset[str]:
        """Kinds this hierarchy carries (v1 ``cpu`` and ``cpuacct`` are both ``cpu``)."""
        return frozenset(kind_of(c) for c in self.controllers)

    @functools.cached_property
    def _base_dir(self) -> Path:
        inner = _below(self.root, self.base)
        if inner is None:
            raise ValueError(f"base {self.base} is not below the mounted root {self.root}")
        return self.mount.joinpath(*inner)

    def dir(self, rel: tuple[str, ...] = ()) -> Path:
        """``mount/base/rel...``, with base taken relative to the mounted root."""
        return self._base_dir.joinpath(*rel) if rel else self._base_dir

    def contains(self, path: Path) -> bool:
        """True when `path` is the base directory or below it."""
        # Not ``top in path.parents``: that makes a Path of every ancestor, so the
        # cost grew with the square of the depth.
        return path.is_relative_to(self.dir())


def _below(root: str, path: str) -> list[str] | None:
    """Components of cgroup `path` below cgroup `root`, or None when it is not below."""
    root_parts = [p for p in root.split("/") if p]
    parts = [p for p in path.split("/") if p]
    if parts[: len(root_parts)] != root_parts:
        return None
    return parts[len(root_parts) :]


def _read(path: Path) -> str:
    """Read a whole cgroup file with raw syscalls (half the cost of ``Path.read_text``)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def _write(path: Path, text: str) -> None:
    """Write a cgroup file in one ``write(2)`` without ``O_CREAT``/``O_TRUNC``.

    cgroup files act on each write call, so the value must arrive whole; and
    opening a missing file must fail with ENOENT rather than try to create it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        # A zero-length write may never reach the kernel's handler; a lone
        # newline does, and every cgroup parser strips it.
        os.write(fd, text.encode() or b"\n")
    finally:
        os.close(fd)


#: The kernel's limit on a path's length, its terminating NUL included.
PATH_MAX = 4096
#: Room a container's cgroup directory leaves for the longest path the daemon opens
#: below it (``/.tasks/cgroup.procs``, ``/cgroup.max.descendants``, ...), and more.
_LONGEST_FILE = 64


def _procs_of(path: Path) -> list[int]:
    return [int(line) for line in _read(path / "cgroup.procs").split()]


def _procs_below(d: Path) -> list[int]:
    """Processes of cgroup2 directory `d` and every directory below it."""
    out: list[int] = []
    for top, _parts in _dirs_below(d):
        try:
            out += _procs_of(top)
        except FileNotFoundError:
            continue  # removed meanwhile
    return out


def _dirs_below(top: Path, *, hidden: bool = True) -> Iterator[tuple[Path, tuple[str, ...]]]:
    """`top` and every directory below it, parents first, with their names below
    `top`; without `hidden`, none whose name starts with ``.`` (nor below it).

    With a stack, not recursion: Python 3.11's ``os.walk`` recurses, and a tree
    of containers may be deeper than the recursion limit (a restart then died).
    A directory that cannot be read (removed meanwhile) is skipped.
    """
    stack: list[tuple[Path, tuple[str, ...]]] = [(top, ())]
    while stack:
        d, parts = stack.pop()
        yield d, parts
        try:
            names = _subdirs(d)
        except OSError:
            continue
        stack.extend((d / n, (*parts, n)) for n in names if hidden or not n.startswith("."))


def _subdirs(path: Path) -> list[str]:
    """Names of the directories in `path` (child cgroups). From the directory's
    entry types alone: a stat of each of a v1 cgroup's dozens of files was most
    of what checking a container's emptiness cost."""
    with os.scandir(path) as entries:
        return [e.name for e in entries if e.is_dir(follow_symlinks=False)]


def _make_dir(path: Path) -> None:
    """mkdir(2); a seam for unit tests, whose fake tree must fill new directories itself."""
    path.mkdir()


def _remove_dir(path: Path) -> None:
    """rmdir(2); a seam for unit tests (a cgroup directory is 'empty' with files in it)."""
    path.rmdir()


def _mkdir(path: Path, created: list[Path]) -> bool:
    """mkdir that tolerates an existing directory (restarts, pass-throughs)."""
    try:
        _make_dir(path)
    except FileExistsError:
        if not path.is_dir():
            # A container named like a control file (``tasks`` on v1).
            raise
        return False
    created.append(path)
    return True


class CgroupBackend:
    """All cgroup I/O of the daemon, in v2 terms, on v1, v2 or hybrid hosts.

    Methods block (a lone ``cgroup.procs`` write waits for an RCU grace
    period, several milliseconds); call them from a worker thread.
    """

    def __init__(
        self,
        hierarchies: list[Hierarchy],
        *,
        v2_root_controllers: frozenset[str] = frozenset(),
        proc_cgroups: dict[str, bool] | None = None,
        unreachable: frozenset[str] = frozenset(),
        proc: Path = Path("/proc"),
        page_size: int | None = None,
        mounted_v2: Path | None = None,
    ) -> None:
        self.hierarchies = hierarchies
        self.v2: Hierarchy | None = next((h for h in hierarchies if h.version == 2), None)
        self.v1 = [h for h in hierarchies if h.version == 1]
        self._v2_root_controllers = v2_root_controllers
        self._proc_cgroups = proc_cgroups or {}
        self._unreachable = unreachable
        self._proc = proc
        self.page_size = page_size or os.sysconf("SC_PAGE_SIZE")
        #: The cgroup2 mount :meth:`discover` made itself (pure v1 hosts), which
        #: :meth:`close` takes down again; None when the host had one.
        self.mounted_v2 = mounted_v2

    # -- discovery ----------------------------------------------------------

    @classmethod
    def discover(
        cls,
        proc: Path = Path("/proc"),
        pid: str = "self",
        *,
        v2_fallback: Path | None = None,
    ) -> CgroupBackend:
        """Find every hierarchy the process `pid` is in and where it is mounted.

        Mount points are those of `pid`'s mount namespace, so a foreign pid
        must share the caller's. A mount is usable only when its root is an
        ancestor of the process's cgroup; hierarchies with no such mount are
        reported by :meth:`kinds` as ``not-reachable``. A v2 cgroup ending in
        ``/.tasks`` is taken to be a daemon's own leaf, and its parent is the base,
        so a daemon re-discovering after :meth:`setup` finds the same base.

        containerfs needs a cgroup2 hierarchy (container tasks and
        ``populated`` come from it). When no cgroup2 is mounted at all (a pure
        v1 host), `v2_fallback` is created and cgroup2 mounted there, in the
        caller's mount namespace; :meth:`close` unmounts it. Without a
        fallback, or when cgroup2 is mounted but no mount reaches the
        process's cgroup, this raises ``OSError(EOPNOTSUPP)``.
        """
        mounts = parse_mountinfo(_read(proc / pid / "mountinfo"))
        mounted: Path | None = None
        if not any(m.fstype == "cgroup2" for m in mounts):
            if v2_fallback is None:
                raise OSError(
                    errno.EOPNOTSUPP,
                    "no cgroup2 hierarchy mounted; containerfs needs one for container "
                    "tasks and populated: mount cgroup2 (mount -t cgroup2 none DIR) or "
                    "give the daemon a directory to mount it on",
                )
            _mount_v2(v2_fallback)
            mounted = v2_fallback
            mounts = parse_mountinfo(_read(proc / pid / "mountinfo"))
        try:
            backend = cls._discover(proc, pid, mounts)
        except BaseException:
            if mounted is not None:
                try:
                    _unmount_v2(mounted)
                except OSError as e:  # keep the discovery error, the more telling one
                    log.warning("cannot unmount the cgroup2 at %s again: %s", mounted, e)
            raise
        backend.mounted_v2 = mounted
        return backend

    @classmethod
    def _discover(cls, proc: Path, pid: str, mounts: list[MountEntry]) -> CgroupBackend:
        cgroup_text = _read(proc / pid / "cgroup")
        try:
            proc_cgroups = parse_proc_cgroups(_read(proc / "cgroups"))
        except OSError:
            proc_cgroups = {}
        hierarchies: list[Hierarchy] = []
        unreachable: set[str] = set()
        v2_root: frozenset[str] = frozenset()
        v2_path: str | None = None
        for hid, names, path in parse_pid_cgroup(cgroup_text):
            if hid == 0:
                if path == f"/{TASKS}" or path.endswith(f"/{TASKS}"):
                    path = path[: -len(TASKS) - 1] or "/"
                v2_path = path
                mount = _pick_mount(mounts, "cgroup2", frozenset(), path)
                if mount is None:
                    continue
                bare = Hierarchy(mount.point, 2, frozenset(), path, mount.root)
                ctrls = frozenset(_read(bare.dir() / "cgroup.controllers").split())
                v2_root = frozenset(_read(mount.point / "cgroup.controllers").split())
                hierarchies.append(Hierarchy(mount.point, 2, ctrls, path, mount.root))
                continue
            ctrls = frozenset(n for n in names if not n.startswith("name="))
            if not ctrls:
                continue  # a named hierarchy such as name=systemd: no controllers
            mount = _pick_mount(mounts, "cgroup", ctrls, path)
            if mount is None:
                unreachable |= ctrls
                continue
            hierarchies.append(Hierarchy(mount.point, 1, ctrls, path, mount.root))
        if not any(h.version == 2 for h in hierarchies):
            where = "it is not listed" if v2_path is None else f"its cgroup is {v2_path}"
            raise OSError(
                errno.EOPNOTSUPP,
                f"no cgroup2 mount reaches the cgroup of process {pid} ({where} in "
                f"{proc / pid / 'cgroup'}); containerfs needs one for container tasks "
                "and populated",
            )
        # v2 first: it is the identity tree and the one every move touches.
        hierarchies.sort(key=lambda h: h.version, reverse=True)
        return cls(
            hierarchies,
            v2_root_controllers=v2_root,
            proc_cgroups=proc_cgroups,
            unreachable=frozenset(unreachable),
            proc=proc,
        )

    def close(self) -> None:
        """Unmount the cgroup2 hierarchy :meth:`discover` mounted, if any. Idempotent."""
        if self.mounted_v2 is not None:
            _unmount_v2(self.mounted_v2)
            self.mounted_v2 = None

    # -- kinds --------------------------------------------------------------

    def kinds(self) -> dict[str, str | None]:
        """Every controller kind known here -> None if usable, else a short reason.

        Later rules override earlier ones, from "we have never heard of it" up
        to "a mounted hierarchy carries it".
        """
        result: dict[str, str | None] = dict.fromkeys(STANDARD_KINDS, "not-found")
        # A pure v2 host (cgroup2 carries controllers, no v1 hierarchy in use):
        # a controller cgroup2 does not offer (devices, freezer, net_cls...)
        # exists only for v1, which such hosts do not mount (cgroup_no_v1=).
        pure_v2 = not self.v1 and bool(self._v2_root_controllers)
        for name, enabled in self._proc_cgroups.items():
            if not enabled:
                result[kind_of(name)] = "disabled"
            else:
                result[kind_of(name)] = "v1-only" if pure_v2 else "not-mounted"
        for name in self._unreachable:
            result[kind_of(name)] = "not-reachable"
        for name in self._v2_root_controllers:
            result[kind_of(name)] = "not-delegated"
        if self.v2 is not None and self.v2.controllers:
            base = self.v2.dir()
            enabled_here = set(_read(base / "cgroup.subtree_control").split())
            busy = bool(set(_procs_of(base)) - {os.getpid()})
            for name in self.v2.controllers:
                ok = name in enabled_here or not busy
                result[kind_of(name)] = None if ok else "base-has-other-processes"
        for h in self.v1:
            for kind in h.kinds:
                result[kind] = None
        return result

    def _hierarchies_of(self, kind: str) -> list[Hierarchy]:
        return [h for h in self.hierarchies if kind in h.kinds]

    def _v2(self) -> Hierarchy:
        if self.v2 is None:
            raise OSError(errno.EOPNOTSUPP, "no cgroup2 hierarchy is mounted")
        return self.v2

    # -- lifecycle ----------------------------------------------------------

    def setup(self) -> None:
        """Prepare the base: v2 needs the daemon out of it so controllers can be enabled.

        v2 forbids processes in a cgroup that hands controllers to children, so
        the daemon moves down into ``base/.tasks`` (moving down is always
        allowed) and holders get ``base/.pins``. Idempotent.
        """
        if self.v2 is None:
            return
        base = self.v2.dir()
        scratch: list[Path] = []
        _mkdir(base / TASKS, scratch)
        _mkdir(base / PINS, scratch)
        self.move(os.getpid(), [base / TASKS])

    def create(self, path: tuple[str, ...], owned: frozenset[str]) -> None:
        """Make the cgroup directories of container `path`, owning kinds `owned`.

        All or nothing: on failure every directory this call made is removed,
        every controller it enabled is disabled again, and the error re-raised.
        Existing directories are left alone, so creating again is harmless.
        """
        _check_path(path)
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
            have = set(_read(parent / "cgroup.subtree_control").split())
            todo = [c for c in wanted if c not in have]
            if not todo:
                break
            missing.append((depth, parent, todo))
            parent = parent.parent
        for depth, parent, todo in reversed(missing):
            if depth == 0 and _procs_of(parent):
                # Never impose the no-internal-process rule on processes we do
                # not own (and never rely on the root cgroup's exemption).
                raise OSError(
                    errno.EBUSY, f"{parent} has processes of its own; cannot enable {todo}"
                )
            for c in todo:
                _write(parent / "cgroup.subtree_control", f"+{c}")
                enabled.append((parent, c))
        _mkdir(h.dir(path), created)
        _mkdir(h.dir((*path, TASKS)), created)

    def _create_v1(self, h: Hierarchy, path: tuple[str, ...], created: list[Path]) -> None:
        cpuset = "cpuset" in h.controllers
        # Only the levels missing (pass-throughs of ancestors that own nothing here),
        # found from the bottom: one look per level made, not per level of the path.
        have = len(path) - 1
        while have > 0 and not h.dir(path[:have]).is_dir():
            have -= 1
        for depth in range(have + 1, len(path) + 1):
            d = h.dir(path[:depth])
            if _mkdir(d, created) and cpuset:
                # A v1 cpuset starts empty and refuses tasks until given CPUs and
                # nodes; inherit the parent's so it behaves as a pass-through.
                for name in ("cpuset.cpus", "cpuset.mems"):
                    value = _read(d.parent / name).strip()
                    if value:
                        _write(d / name, value)

    def _undo(self, created: list[Path], enabled: list[tuple[Path, str]]) -> None:
        for d in reversed(created):
            try:
                _remove_dir(d)
            except OSError as e:
                log.warning("rollback: cannot remove %s: %s", d, e)
        for parent, c in reversed(enabled):
            try:
                _write(parent / "cgroup.subtree_control", f"-{c}")
            except OSError as e:
                log.warning("rollback: cannot disable %s in %s: %s", c, parent, e)

    def trim(self, path: tuple[str, ...], freed: frozenset[str]) -> None:
        """Disable in container `path`'s ``cgroup.subtree_control`` each v2 controller
        whose kind is in `freed` (no container below owns it any more), as a
        delegated manager should once the last owner is gone. Call it bottom-up:
        the kernel refuses while a child still enables the controller. A
        refusal is logged, not raised (the removal it follows is done)."""
        _check_path(path)
        if self.v2 is None:
            return
        d = self.v2.dir(path)
        try:
            have = _read(d / "cgroup.subtree_control").split()
        except FileNotFoundError:
            return
        for name in have:
            if kind_of(name) not in freed:
                continue
            try:
                _write(d / "cgroup.subtree_control", f"-{name}")
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
        _check_path(path)
        if not path:
            raise ValueError("the root container cannot be killed")
        d = self._v2().dir(path)
        found = _procs_below(d)
        use_file = kill_file and (d / "cgroup.kill").exists()
        if use_file:
            _write(d / "cgroup.kill", "1")
        deadline = time.monotonic() + timeout
        while left := _procs_below(d):
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
        _check_path(path)
        if not path:
            raise ValueError("the root container cannot be removed")
        dirs: list[Path] = []
        if self.v2 is not None:
            d = self.v2.dir(path)
            if d.exists():
                if self.populated(path):
                    raise OSError(errno.EBUSY, f"container {'/'.join(path)} has processes")
                subdirs = _subdirs(d)
                if any(name != TASKS for name in subdirs):
                    raise OSError(errno.EBUSY, f"container {'/'.join(path)} has children")
                if TASKS in subdirs:
                    dirs.append(d / TASKS)
                dirs.append(d)
        for h in self.v1:
            d = h.dir(path)
            if not d.exists():
                continue
            if _procs_of(d) or _subdirs(d):
                raise OSError(errno.EBUSY, f"{d} is not empty")
            dirs.append(d)
        for d in dirs:
            _remove_dir(d)

    def container_dirs(self) -> set[tuple[str, ...]]:
        """Every container path that has a directory below the base, in any hierarchy.

        For recovery after a crash: a path here that the saved tree lacks is a
        half-made or half-removed container's leftover.
        """
        found: set[tuple[str, ...]] = set()
        for h in self.hierarchies:
            found.update(rel for _d, rel in _dirs_below(h.dir(), hidden=False) if rel)
        return found

    def procs_anywhere(self, path: tuple[str, ...]) -> list[int]:
        """Processes directly in any directory of container `path` (its v2 dir and
        leaf, its v1 dirs): for cleaning up after a crash."""
        _check_path(path)
        out: set[int] = set()
        for h in self.hierarchies:
            for d in (h.dir(path), h.dir((*path, TASKS))):
                if (d / "cgroup.procs").exists():
                    out.update(_procs_of(d))
        return sorted(out)

    def pin_pids(self) -> list[int]:
        """Processes in the holders' cgroup (``base/.pins``): holders, or their leftovers."""
        if self.v2 is None:
            return []
        d = self.v2.dir((PINS,))
        return _procs_of(d) if d.exists() else []

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
        ``.tasks`` leaf: where a process must be when it unshares the
        container's cgroup namespace, whose root is fixed at that moment.
        """
        _check_path(path)
        out: list[Path] = []
        for h in self.hierarchies:
            if h.version == 2:
                out.append(h.dir((*path, TASKS) if leaf else path))
                continue
            owners = [owner_of(k) for k in sorted(h.kinds)]
            owner = max(owners, key=len)
            _check_path(owner)
            out.append(h.dir(owner))
        return out

    def pins_placement(self) -> list[Path]:
        """Where holders live: outside every container's cgroup, never counted as tasks."""
        return [h.dir((PINS,)) if h.version == 2 else h.dir() for h in self.hierarchies]

    def _hierarchy_for_dir(self, d: Path) -> Hierarchy:
        """The hierarchy whose base holds `d` (the deepest, should mounts nest)."""
        found = [h for h in self.hierarchies if h.contains(d)]
        if not found:
            raise ValueError(f"{d} is not inside the daemon's cgroups")
        return max(found, key=lambda h: len(h.dir().parts))

    def _current(self, pid: int) -> dict[Hierarchy, Path]:
        """Where `pid` is now, per hierarchy, from ``/proc/<pid>/cgroup``."""
        try:
            text = _read(self._proc / str(pid) / "cgroup")
        except FileNotFoundError:
            raise ProcessLookupError(errno.ESRCH, f"no process {pid}") from None
        out: dict[Hierarchy, Path] = {}
        for hid, names, path in parse_pid_cgroup(text):
            ctrls = frozenset(n for n in names if not n.startswith("name="))
            for h in self.hierarchies:
                if (h.version == 2 and hid == 0) or (h.version == 1 and h.controllers == ctrls):
                    inner = _below(h.root, path)
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
                _write(d / "cgroup.procs", str(pid))
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
                    state = _read(d / "freezer.state").strip()
                    if state != "THAWED":
                        return f"freezer cgroup {d} is {state}"
            elif h.version == 2:
                for up in (d, *d.parents):
                    if up == h.mount or h.mount not in up.parents:
                        break
                    with contextlib.suppress(OSError):
                        if _read(up / "cgroup.freeze").strip() == "1":
                            return f"cgroup {up} is frozen (cgroup.freeze 1)"
        return None

    def holds(self, pid: int, path: tuple[str, ...]) -> bool:
        """Whether `pid` is one of container `path`'s processes, as :meth:`procs`
        lists them: one read of ``/proc/<pid>/cgroup``, not the whole list."""
        _check_path(path)
        h = self._v2()
        where = self._current(pid).get(h)
        return where == h.dir((*path, TASKS)) or (not path and where == h.dir())

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
                _write(origin / "cgroup.procs", str(pid))
            except OSError as e:
                log.warning("cannot move %d back to %s: %s", pid, origin, e)

    # -- state --------------------------------------------------------------

    def procs(self, path: tuple[str, ...]) -> list[int]:
        """Processes of container `path` (its v2 leaf), sorted.

        The root's also include those in the start cgroup itself: whatever was
        started there after the daemon moved into its leaf (an administrator's
        shell, a service's other processes) is in the root container too.
        """
        _check_path(path)
        pids = _procs_of(self._v2().dir((*path, TASKS)))
        if not path:
            pids += _procs_of(self._v2().dir())
        return sorted(pids)

    def populated(self, path: tuple[str, ...]) -> bool:
        """Whether any process lives in container `path` or below it."""
        return self.events_file(path).read_text().split("populated ", 1)[1][:1] == "1"

    def events_file(self, path: tuple[str, ...]) -> Path:
        """The v2 ``cgroup.events`` of container `path`, for inotify/poll watchers."""
        _check_path(path)
        return self._v2().dir(path) / "cgroup.events"

    # -- control files ------------------------------------------------------

    def _carrier(self, kind: str) -> Hierarchy | None:
        """The hierarchy that holds `kind`'s limits (v2 wins when it has it)."""
        hs = self._hierarchies_of(kind)
        return hs[0] if hs else None

    def cgroup_path(self, path: tuple[str, ...], kind: str) -> str:
        """The cgroup, spelled as ``/proc/PID/cgroup`` does, of container `path` for `kind`.

        It identifies a container's instance of a controller kind the way an
        inode number identifies a namespace. It is the container's own
        directory; processes of a container sharing the kind are elsewhere
        (see :meth:`placement`).
        """
        _check_path(path)
        h = self._carrier(kind)
        if h is None:
            raise OSError(errno.EOPNOTSUPP, f"controller kind {kind} is not available")
        return "/" + "/".join([p for p in h.base.split("/") if p] + list(path))

    def files(self, kind: str) -> dict[str, bool]:
        """Control files served for `kind` on this host -> writable."""
        h = self._carrier(kind)
        if h is None:
            return {}
        return {
            name: cf.writable
            for name, cf in CONTROL_FILES.items()
            if cf.kind == kind and h.version in cf.versions
        }

    def _spec(self, name: str) -> tuple[ControlFile, Hierarchy]:
        cf = CONTROL_FILES.get(name)
        h = self._carrier(cf.kind) if cf else None
        if cf is None or h is None or h.version not in cf.versions:
            raise FileNotFoundError(errno.ENOENT, f"no control file {name} here", name)
        return cf, h

    def _v1_dir(self, controller: str, path: tuple[str, ...]) -> Path | None:
        for h in self.v1:
            if controller in h.controllers:
                return h.dir(path)
        return None

    def _need_v1_dir(self, controller: str, path: tuple[str, ...]) -> Path:
        d = self._v1_dir(controller, path)
        if d is None:
            raise FileNotFoundError(errno.ENOENT, f"v1 {controller} is not mounted")
        return d

    @staticmethod
    def is_limit(name: str) -> bool:
        """A file that holds a setting (changed only by writing it), not a reading."""
        cf = CONTROL_FILES.get(name)
        return cf is not None and cf.writable

    @staticmethod
    def write_may_work(name: str) -> bool:
        """Whether writing control file ``name`` can make the kernel work for long
        (memory limits reclaim, cpusets move tasks and pages): such writes belong
        on a worker thread; the rest only store a value."""
        return name.startswith(("memory.", "cpuset."))

    def read(self, path: tuple[str, ...], name: str) -> str:
        """Value of control file `name` in container `path`'s own directory, v2 syntax."""
        _check_path(path)
        _, h = self._spec(name)
        text = _read(h.dir(path) / name) if h.version == 2 else self._read_v1(path, name)
        return text if not text or text.endswith("\n") else text + "\n"

    def _read_v1(self, path: tuple[str, ...], name: str) -> str:
        if name in _V1_SAME:
            ctrl, v1_name = _V1_SAME[name]
            return _read(self._need_v1_dir(ctrl, path) / v1_name)
        if name == "memory.max":
            d = self._need_v1_dir("memory", path)
            return bytes_limit_from_v1(_read(d / "memory.limit_in_bytes"), self.page_size)
        if name == "cpu.max":
            d = self._need_v1_dir("cpu", path)
            return cpu_max_from_v1(_read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us"))
        if name == "cpu.weight":
            d = self._need_v1_dir("cpu", path)
            return str(shares_to_weight(parse_uint(_read(d / "cpu.shares").strip(), "cpu.shares")))
        if name == "cpu.stat":
            cpu = self._v1_dir("cpu", path)
            acct = self._v1_dir("cpuacct", path)
            usage = None
            if acct is not None:
                usage = {}
                for f in ("cpuacct.usage", "cpuacct.usage_user", "cpuacct.usage_sys"):
                    if (acct / f).exists():
                        usage[f] = _read(acct / f)
            return cpu_stat_from_v1(_read(cpu / "cpu.stat") if cpu else None, usage)
        if name == "io.max":
            d = self._need_v1_dir("blkio", path)
            return io_max_from_v1({k: _read(d / f) for k, f in IO_MAX_V1_FILES.items()})
        raise AssertionError(f"no v1 reader for {name}")

    def write(self, path: tuple[str, ...], name: str, value: str) -> None:
        """Set control file `name` of container `path` from a v2-syntax `value`.

        The value is validated completely first (ValueError, nothing written);
        kernel refusals after that surface as OSError.
        """
        _check_path(path)
        cf, h = self._spec(name)
        if not cf.writable:
            raise PermissionError(errno.EACCES, f"{name} is read-only", name)
        text = _normalise(name, value)
        if h.version == 2:
            _write(h.dir(path) / name, text)
            return
        if name in _V1_SAME:
            ctrl, v1_name = _V1_SAME[name]
            _write(self._need_v1_dir(ctrl, path) / v1_name, text)
        elif name == "memory.max":
            d = self._need_v1_dir("memory", path)
            _write(d / "memory.limit_in_bytes", bytes_limit_to_v1(parse_bytes_limit(text)))
        elif name == "cpu.weight":
            d = self._need_v1_dir("cpu", path)
            _write(d / "cpu.shares", str(weight_to_shares(int(text))))
        elif name == "cpu.max":
            self._write_v1_cpu_max(self._need_v1_dir("cpu", path), *parse_cpu_max(text))
        elif name == "io.max":
            d = self._need_v1_dir("blkio", path)
            dev, limits = parse_io_max(text)
            for key, limit in limits.items():
                _write(d / IO_MAX_V1_FILES[key], f"{dev} {0 if limit is None else limit}")
        else:
            raise AssertionError(f"no v1 writer for {name}")

    @staticmethod
    def _write_v1_cpu_max(d: Path, quota: int | None, period: int | None) -> None:
        """Write quota and period as one change, as v2's cpu.max does.

        Lifting the quota first means no intermediate (old quota, new period)
        pair can break the hierarchy's bandwidth rule; if a later write fails,
        the old pair is put back.
        """
        quota_file, period_file = d / "cpu.cfs_quota_us", d / "cpu.cfs_period_us"
        old_quota, old_period = _read(quota_file).strip(), _read(period_file).strip()
        if period is None or period == int(old_period):
            _write(quota_file, "-1" if quota is None else str(quota))
            return
        try:
            _write(quota_file, "-1")
            _write(period_file, str(period))
            if quota is not None:
                _write(quota_file, str(quota))
        except OSError:
            for f, v in ((quota_file, "-1"), (period_file, old_period), (quota_file, old_quota)):
                try:
                    _write(f, v)
                except OSError as e:
                    log.warning("cpu.max rollback: cannot write %s to %s: %s", v, f, e)
            raise


def _move_rank(h: Hierarchy) -> int:
    """Write order of a move: v1 cpuset (refuses an empty set), other v1, then v2."""
    if h.version == 2:
        return 2
    return 0 if "cpuset" in h.controllers else 1


def _cpuset_usable(d: Path) -> bool:
    """Whether v1 cpuset `d` has CPUs and memory nodes, so that it accepts tasks."""
    for name in ("cpus", "mems"):
        try:
            value = _read(d / f"cpuset.effective_{name}")
        except FileNotFoundError:  # kernels before 3.17 have no effective_* files
            value = _read(d / f"cpuset.{name}")
        if not value.strip():
            return False
    return True


def _mount_v2(point: Path) -> None:
    """Create `point` and mount the cgroup2 hierarchy there."""
    point.mkdir(parents=True, exist_ok=True)
    ksys.mount("cgroup2", str(point), "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    log.info("no cgroup2 hierarchy was mounted; mounted one at %s", point)


def _unmount_v2(point: Path) -> None:
    """Lazily unmount the cgroup2 mount at `point` that we made."""
    try:
        ksys.umount2(str(point), ksys.MNT_DETACH)
    except OSError as e:
        if e.errno != errno.EINVAL:  # EINVAL: no longer a mount point
            raise
        log.warning("cgroup2 at %s was already unmounted", point)


def _pick_mount(
    mounts: list[MountEntry], fstype: str, ctrls: frozenset[str], path: str
) -> MountEntry | None:
    """The mount of a hierarchy through which cgroup `path` is reachable.

    v1 hierarchies are recognised by their controllers appearing in the
    superblock options. Among several mounts of one hierarchy, the one with
    the deepest root that still contains `path` wins (the shortest walk).
    """
    best: MountEntry | None = None
    for m in mounts:
        if m.fstype != fstype or not ctrls <= m.super_options:
            continue
        if _below(m.root, path) is None:
            continue
        if best is None or len(m.root) > len(best.root):
            best = m
    return best
