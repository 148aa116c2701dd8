"""User namespace ID maps, read and written through /proc/PID/{uid,gid}_map.

The kernel takes one write per map and per namespace, from a process with the
right capabilities in the parent user namespace (the daemon, as root there),
and refuses later writes with EPERM. The holder of a container is inside its
user namespace, so its /proc files address the container's maps.
"""

from __future__ import annotations

import os

from . import procfs
from .holder import Holder


def _path(holder: Holder | None, which: str) -> str:
    if which not in ("uid", "gid"):
        raise ValueError(f"no {which}_map")
    return f"/proc/{holder.pid if holder else 'self'}/{which}_map"


def read_map(holder: Holder | None, which: str) -> str:
    """The map as the kernel shows it, one ``INSIDE OUTSIDE COUNT`` line per range
    (padded columns squeezed); empty when it was never written."""
    with open(_path(holder, which)) as f:
        return "".join(" ".join(line.split()) + "\n" for line in f if line.strip())


def write_map(holder: Holder, which: str, text: str) -> None:
    """One write, as the kernel requires (EPERM when the map was written before)."""
    data = text.encode()
    fd = os.open(_path(holder, which), os.O_WRONLY | os.O_CLOEXEC)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(5, "short write")  # EIO
    finally:
        os.close(fd)


def host_id_of_root(text: str) -> int | None:
    """The outside ID that ID 0 inside maps to, by a map's text; None when unmapped
    (or the text is not a map: the kernel never shows one like that)."""
    try:
        ranges = procfs.parse_id_map(text)
    except ValueError:
        return None
    for inside, outside, count in ranges:
        if inside <= 0 < inside + count:
            return outside - inside
    return None


def inside_root(holder: Holder) -> tuple[int | None, int | None]:
    """The host (uid, gid) of root in the holder's user namespace, None each where
    0 is not mapped (yet)."""
    return (
        host_id_of_root(read_map(holder, "uid")),
        host_id_of_root(read_map(holder, "gid")),
    )
