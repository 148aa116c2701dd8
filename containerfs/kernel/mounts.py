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
