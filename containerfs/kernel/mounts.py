"""Bind mounts placed inside a container's mount namespace from outside.

The daemon puts containerfs files over /proc/sys files inside a container, so
that a process there reads and writes its own view at the usual path. The new
mount API does this without a process inside: ``open_tree`` clones a bind
mount of the source in the daemon's namespace (made by the loopback helper,
``fuse/loopback.py``, since the source is on our own mount), and a fresh
thread that joined the container's mount namespace attaches it with
``move_mount``.

Where it lands matters: a /proc/sys file of a per-namespace sysctl is one
dentry per ipc, net or (``kernel.pid_max``) active pid namespace that looks
it up, so a path looked up by the daemon's thread names the daemon's
dentry, which the container's processes never reach. The holder, in all of
the container's namespaces, opens each target (``Holder.open_sysctl_target``)
and the thread attaches onto those fds.
"""

from __future__ import annotations

import errno
import functools
import os

from . import namespaces, procfs
from . import sys as ksys
from .holder import Holder


def _attach_onto(binds: list[tuple[int, int]]) -> None:
    for fd, target_fd in binds:
        ksys.move_mount_onto(fd, target_fd)


async def attach_onto(holder: Holder, binds: list[tuple[int, int]]) -> None:
    """Attach each detached mount ``fd`` onto its ``target_fd`` (from
    :meth:`Holder.open_sysctl_target`), in order, from one fresh thread that
    joined the holder's current mount namespace. The first failure stops the rest."""
    await namespaces.run_in_namespaces_async(
        holder, ["mnt"], functools.partial(_attach_onto, binds)
    )


def _detach_containerfs_at(targets: frozenset[str]) -> int:
    """In this thread's mount namespace, detach containerfs mounts on ``targets``.

    A restarted daemon finds the bind mounts of the previous one over
    ``/proc/sys`` files: their FUSE connection is dead (reads fail with
    ENOTCONN). They are detached before the new ones go on.
    """
    count = 0
    with open("/proc/thread-self/mountinfo", "rb") as f:
        lines = f.read().decode(errors="replace").splitlines()
    for line in reversed(lines):  # topmost first
        mount = procfs.parse_mountinfo_line(line)
        if mount.mount_point in targets and mount.fstype == "fuse.containerfs":
            try:
                ksys.umount2(mount.mount_point, ksys.MNT_DETACH)
                count += 1
            except OSError:
                pass
    return count


async def detach_stale(holder: Holder, targets: frozenset[str]) -> int:
    """Detach containerfs files bound over ``targets`` inside the holder's mount namespace."""
    return await namespaces.run_in_namespaces_async(
        holder, ["mnt"], functools.partial(_detach_containerfs_at, targets)
    )


def clear_stale_mount(mountpoint: str) -> bool:
    """Detach a dead ``fuse.containerfs`` mount at ``mountpoint`` (a killed daemon's).

    Only such a mount, and only when it is dead: ``statfs`` is a request to the
    daemon (``stat`` may be answered from the kernel's cache), and a dead
    connection answers ENOTCONN. True if one was detached.
    """
    try:
        os.statvfs(mountpoint)
        return False  # alive, or not a mount at all
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            return False
    parent = os.path.realpath(os.path.dirname(mountpoint.rstrip("/")) or "/")
    target = os.path.join(parent, os.path.basename(mountpoint.rstrip("/")))
    with open("/proc/self/mountinfo") as f:
        text = f.read()
    for mount in procfs.parse_mountinfo(text):
        if (
            procfs.unescape_mountinfo(mount.mount_point) == target
            and mount.fstype == "fuse.containerfs"
        ):
            ksys.umount2(target, ksys.MNT_DETACH)
            return True
    return False
