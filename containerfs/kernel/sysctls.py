"""Namespaced sysctls (``/proc/sys``) of a container, read and written from inside.

A namespaced sysctl file answers for the namespaces of the thread that opens
it, so it is opened on a thread that joined the container's namespace
(:func:`~containerfs.kernel.namespaces.run_in_namespaces`).  Kinds a thread
cannot join (pid, user) go through the holder's socket instead
(:meth:`Holder.sysctl <containerfs.kernel.holder.Holder.sysctl>`), which names
the sysctl by :func:`sysctl_relpath`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from containerfs.kernel.namespaces import run_in_namespaces, run_in_namespaces_async

if TYPE_CHECKING:
    from containerfs.kernel.holder import Holder


def sysctl_path(name: str) -> str:
    """``kernel.hostname`` -> ``/proc/sys/kernel/hostname``.

    As with sysctl(8), a name that contains "/" is taken as a path (for
    components with dots in them, such as VLAN interface names).
    """
    parts = name.split("/") if "/" in name else name.split(".")
    if not name or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad sysctl name: {name!r}")
    return "/proc/sys/" + "/".join(parts)


def sysctl_relpath(name: str) -> bytes:
    """``kernel.pid_max`` -> ``b"kernel/pid_max"``: the holder's request path.

    No whitespace (the request is space-separated) and no NUL.
    """
    rel = sysctl_path(name)[len("/proc/sys/") :]
    if any(c.isspace() or c == "\0" for c in rel):
        raise ValueError(f"bad sysctl name: {name!r}")
    return os.fsencode(rel)


def _sysctl_reader(name: str) -> Callable[[], str]:
    path = sysctl_path(name)

    def read() -> str:
        with open(path, "rb") as f:
            return f.read().decode()

    return read


def _sysctl_writer(name: str, value: str) -> Callable[[], None]:
    path = sysctl_path(name)
    data = value.encode()

    def write() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.EIO, f"short write to {path}")
        finally:
            os.close(fd)

    return write


def read_sysctl(holder: Holder, kind: str, name: str) -> str:
    """Sysctl ``name`` of the holder's ``kind`` namespace, as the file gives it.

    The text keeps its trailing newline, like a plain read of /proc/sys.
    Namespaced sysctl files answer for the namespaces of the thread that opens
    them, so the file is opened on a thread inside the namespace.
    """
    return run_in_namespaces(holder, [kind], _sysctl_reader(name))


def write_sysctl(holder: Holder, kind: str, name: str, value: str) -> None:
    """Write ``value`` (one write, as given) to sysctl ``name`` of the holder's ``kind`` ns."""
    run_in_namespaces(holder, [kind], _sysctl_writer(name, value))


async def read_sysctl_async(holder: Holder | None, kind: str, name: str) -> str:
    """:func:`read_sysctl` without blocking the trio event loop.

    ``holder`` None means the daemon's own namespace (the root container's): a
    plain read, no thread needed.
    """
    if holder is None:
        return _sysctl_reader(name)()
    return await run_in_namespaces_async(holder, [kind], _sysctl_reader(name))


async def write_sysctl_async(holder: Holder, kind: str, name: str, value: str) -> None:
    """:func:`write_sysctl` without blocking the trio event loop."""
    await run_in_namespaces_async(holder, [kind], _sysctl_writer(name, value))
