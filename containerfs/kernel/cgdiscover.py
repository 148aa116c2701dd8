"""Finding the cgroup hierarchies a process is in and where they are mounted.

Everything is discovered from ``/proc/<pid>/cgroup`` and
``/proc/<pid>/mountinfo`` rather than assumed at ``/sys/fs/cgroup``: hosts mount
cgroups in different places, containers see their own cgroup namespace root,
and tests point discovery at a fake ``/proc``.  A pure v1 host gets a cgroup2
mount of our own (:func:`mount_v2`), taken down again by :func:`unmount_v2`.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import TypeVar

from . import cgfs
from . import sys as ksys
from .cghierarchy import Hierarchy, HostCgroups, below, daemon_base
from .cgvalues import MountEntry, parse_mountinfo, parse_pid_cgroup, parse_proc_cgroups

log = logging.getLogger(__name__)

# mount(2) flags for a cgroup2 mount of our own (linux/mount.h).
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8

H = TypeVar("H", bound=HostCgroups)


def discover(
    cls: type[H],
    proc: Path,
    pid: str,
    *,
    v2_fallback: Path | None = None,
    service_leaf: str | None = None,
) -> H:
    """``cls`` built from the hierarchies process `pid` is in (``CgroupBackend.discover``)."""
    mounts = parse_mountinfo(cgfs.read(proc / pid / "mountinfo"))
    mounted: Path | None = None
    if not any(m.fstype == "cgroup2" for m in mounts):
        if v2_fallback is None:
            raise OSError(
                errno.EOPNOTSUPP,
                "no cgroup2 hierarchy mounted; containerfs needs one for container "
                "tasks and populated: mount cgroup2 (mount -t cgroup2 none DIR) or "
                "give the daemon a directory to mount it on",
            )
        mount_v2(v2_fallback)
        mounted = v2_fallback
        mounts = parse_mountinfo(cgfs.read(proc / pid / "mountinfo"))
    try:
        backend = _discover(cls, proc, pid, mounts, service_leaf)
    except BaseException:
        if mounted is not None:
            try:
                unmount_v2(mounted)
            except OSError as e:  # keep the discovery error, the more telling one
                log.warning("cannot unmount the cgroup2 at %s again: %s", mounted, e)
        raise
    backend.mounted_v2 = mounted
    backend.service_leaf = service_leaf
    return backend


def _discover(
    cls: type[H], proc: Path, pid: str, mounts: list[MountEntry], service_leaf: str | None
) -> H:
    cgroup_text = cgfs.read(proc / pid / "cgroup")
    try:
        proc_cgroups = parse_proc_cgroups(cgfs.read(proc / "cgroups"))
    except OSError:
        proc_cgroups = {}
    hierarchies: list[Hierarchy] = []
    unreachable: set[str] = set()
    v2_root: frozenset[str] = frozenset()
    v2_path: str | None = None
    for hid, names, path in parse_pid_cgroup(cgroup_text):
        if hid == 0:
            path = daemon_base(path, service_leaf)
            v2_path = path
            mount = _pick_mount(mounts, "cgroup2", frozenset(), path)
            if mount is None:
                continue
            bare = Hierarchy(mount.point, 2, frozenset(), path, mount.root)
            ctrls = frozenset(cgfs.read(bare.dir() / "cgroup.controllers").split())
            v2_root = frozenset(cgfs.read(mount.point / "cgroup.controllers").split())
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


def mount_v2(point: Path) -> None:
    """Create `point` and mount the cgroup2 hierarchy there."""
    point.mkdir(parents=True, exist_ok=True)
    ksys.mount("cgroup2", str(point), "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    log.info("no cgroup2 hierarchy was mounted; mounted one at %s", point)


def unmount_v2(point: Path) -> None:
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
        if below(m.root, path) is None:
            continue
        if best is None or len(m.root) > len(best.root):
            best = m
    return best
