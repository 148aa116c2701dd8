"""Bind mounts placed inside a container's mount namespace from outside.

The daemon puts containerfs files over /proc/sys files inside a container, so
that a process there reads and writes its own view at the usual path. The new
mount API does this without a process inside: ``open_tree`` clones a bind
mount of the source in the daemon's namespace, and a fresh thread that joined
the container's mount namespace attaches it with ``move_mount``.
"""

from __future__ import annotations

import functools
import os

import trio

from . import namespaces
from . import sys as ksys


async def bind_file_into(holder: namespaces.Holder, source: str, target: str) -> None:
    """Bind ``source`` (a path in the daemon's namespace) over ``target`` inside the
    holder's mount namespace.

    ``open_tree`` runs on a worker thread: when the source is on containerfs
    itself, its lookups are FUSE requests that the event loop must answer.
    """
    # abandon_on_cancel: at shutdown the FUSE request it waits on may never be answered
    fd = await trio.to_thread.run_sync(ksys.open_tree_clone, source, abandon_on_cancel=True)
    try:
        await namespaces.run_in_namespaces_async(
            holder, ["mnt"], functools.partial(ksys.move_mount_fd, fd, target)
        )
    finally:
        os.close(fd)


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
        fields = line.split()
        sep = fields.index("-", 6)
        if fields[4] in targets and fields[sep + 1] == "fuse.containerfs":
            try:
                ksys.umount2(fields[4], ksys.MNT_DETACH)
                count += 1
            except OSError:
                pass
    return count


async def detach_stale(holder: namespaces.Holder, targets: frozenset[str]) -> int:
    """Detach containerfs files bound over ``targets`` inside the holder's mount namespace."""
    return await namespaces.run_in_namespaces_async(
        holder, ["mnt"], functools.partial(_detach_containerfs_at, targets)
    )
