"""Cgroup hierarchies as the backend sees them: kinds, names, where a container's dirs are.

A :class:`Hierarchy` is one mounted cgroup hierarchy (v1 or v2) and maps a
container path to its directory there; :class:`HostCgroups` holds every
hierarchy the daemon found (:mod:`cgdiscover` finds them) and says which
controller kinds are usable and why the others are not.  The backend's
operations (:mod:`cglifecycle`, :mod:`cgplacement`, :mod:`cgcontrol`) build
on it.
"""

from __future__ import annotations

import errno
import functools
import os
from dataclasses import dataclass
from pathlib import Path

from . import cgfs

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


def daemon_base(path: str, service_leaf: str | None = None) -> str:
    """The base (the root container's cgroup) for a daemon whose v2 cgroup is `path`.

    Its own leaf ``BASE/.tasks`` (a restarted daemon placed there), or, only when
    the unit says so (``service_leaf``: see ``startup.service_leaf``), the leaf
    ``UNIT.service/LEAF`` where systemd 254 and later put the main process of a
    unit with ``DelegateSubgroup=LEAF``: then the unit's cgroup is the base.
    Anything else is the base itself (systemd 252 and older start the daemon in
    the unit's cgroup; ``setup`` moves it down). A cgroup that merely has the
    leaf's name, in a unit that did not ask, is never taken for it.
    """
    parent, _, name = path.rpartition("/")
    if name == TASKS or (service_leaf and name == service_leaf and parent.endswith(".service")):
        return parent or "/"
    return path


def kind_of(controller: str) -> str:
    """Map a kernel controller name (v1 or v2) to its kind name."""
    return _V1_KIND.get(controller, controller)


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


def check_path(path: tuple[str, ...]) -> None:
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
        inner = below(self.root, self.base)
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


def below(root: str, path: str) -> list[str] | None:
    """Components of cgroup `path` below cgroup `root`, or None when it is not below."""
    root_parts = [p for p in root.split("/") if p]
    parts = [p for p in path.split("/") if p]
    if parts[: len(root_parts)] != root_parts:
        return None
    return parts[len(root_parts) :]


class HostCgroups:
    """The hierarchies the daemon uses and what the host said about the rest."""

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
        #: systemd's start leaf below the base, when the unit named one (``daemon_base``)
        self.service_leaf: str | None = None
        #: Containers whose processes live in their cgroup2 directory itself, with no
        #: ``.tasks`` leaf: OCI containers, whose runtime (runc) puts its init at
        #: ``linux.cgroupsPath``, the container's directory (``Lifecycle.make_direct``).
        self.direct: set[tuple[str, ...]] = set()

    def task_dir(self, path: tuple[str, ...]) -> tuple[str, ...]:
        """Where container `path`'s processes live in the cgroup2 tree, below the
        base: its ``.tasks`` leaf, or its directory for a ``direct`` one."""
        return path if path in self.direct else (*path, TASKS)

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
            enabled_here = set(cgfs.read(base / "cgroup.subtree_control").split())
            busy = bool(set(cgfs.procs_of(base)) - {os.getpid()})
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
