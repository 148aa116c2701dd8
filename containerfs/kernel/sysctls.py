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
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from containerfs.kernel import sys as ksys
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


# -- which sysctl files stay bound to the namespace they were opened in ---------------

#: Whether ipc sysctls answer for the namespace their file was looked up in
#: (``probe_ipc_bound``); None until probed.
_ipc_bound: bool | None = None
_probe_lock = threading.Lock()


def bound_to_opener(kind: str) -> bool | None:
    """Whether a sysctl file of a ``kind`` namespace, opened by the holder, still
    answers for the holder's namespace when the daemon writes it (the daemon may
    then keep the fd and write it itself, ``Holder.write_sysctl_fd_async``).

    net, pid (``kernel.pid_max``, per pid namespace only where it is a view at
    all) and user sysctls live in tables of their namespace. ipc ones did not
    always: older kernels looked the namespace up from the *writer* at each
    write, and an fd handed over would have written the daemon's own; that is
    probed once (None: not yet, see :func:`probe_ipc_bound`). uts ones answer for
    the writer's namespace: never.
    """
    if kind in ("net", "pid", "user"):
        return True
    if kind == "ipc":
        return _ipc_bound
    return False


PROBED_IPC = ("kernel/shmmni", "fs/mqueue/queues_max")


def probe_ipc_bound() -> bool:
    """Find out once whether ipc sysctl files stay bound to the IPC namespace they
    were opened in, on a fresh thread that unshares an IPC namespace of its own:
    it writes a mark into that namespace's ``kernel.shmmni`` and
    ``fs.mqueue.queues_max`` (unlike the daemon's values), goes back to the
    daemon's IPC namespace and reads the same fds again. The mark shows only if
    the files are bound; on a kernel that resolves the namespace at each call,
    the read shows the daemon's own value, which the probe never wrote. Any
    failure counts as not bound (the holder is then asked for each write)."""
    global _ipc_bound
    with _probe_lock:
        if _ipc_bound is None:
            got: list[bool] = []
            thread = threading.Thread(target=lambda: got.append(_probe_here()), name="ipc probe")
            thread.start()
            thread.join()
            _ipc_bound = bool(got and got[0])
        return _ipc_bound


def _probe_here() -> bool:
    """The body of :func:`probe_ipc_bound` (on its own thread, which then exits)."""
    fds: list[int] = []
    try:
        own = os.open("/proc/thread-self/ns/ipc", os.O_RDONLY | os.O_CLOEXEC)
        fds.append(own)
        before = [_sysctl_reader(p)() for p in PROBED_IPC]
        ksys.unshare(ksys.CLONE_NEWIPC)
        # Keeps the probe's namespace (and its sysctl table) alive until we close it.
        fds.append(os.open("/proc/thread-self/ns/ipc", os.O_RDONLY | os.O_CLOEXEC))
        marks = []
        for path, value in zip(PROBED_IPC, before, strict=True):
            fd = os.open(sysctl_path(path), os.O_RDWR | os.O_CLOEXEC)
            fds.append(fd)
            mark = b"%d" % (int(value) - 1 if int(value) > 1 else int(value) + 1)
            os.pwrite(fd, mark, 0)
            marks.append((fd, mark))
        ksys.setns(own, ksys.CLONE_NEWIPC)
        return all(os.pread(fd, 64, 0).strip() == mark for fd, mark in marks)
    except (OSError, ValueError):
        return False
    finally:
        for fd in fds:
            os.close(fd)
