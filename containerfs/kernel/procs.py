"""Process facts from /proc: namespace inodes and pid translation.

A pid written into a containerfs file is a number in the *writer's* pid
namespace; the kernel interfaces the daemon uses (cgroup.procs, pidfd_open)
want it in the daemon's.  ``/proc/PID/status`` lists a process's pid in every
pid namespace from /proc's down to its own (``NSpid:``), which is enough to
translate, given care that a matching number belongs to a process in the
writer's namespace and not in a sibling one at the same depth.

/proc is assumed to be mounted for the daemon's pid namespace (as it is for any
process that did not move into another pid namespace after mounting it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from containerfs.kernel import nslist, procfs
from containerfs.kernel import sys as ksys
from containerfs.kernel.namespaces import ns_inode
from containerfs.nskinds import KINDS


def process_inodes(pid: int | str) -> dict[str, int]:
    """Inodes of all eight namespaces of ``pid`` (active ones for pid and time)."""
    return {kind: ns_inode(pid, kind) for kind in KINDS}


def _pid_ns_ancestor(pid: int, up: int) -> int:
    """Inode of the pid namespace ``up`` levels above ``pid``'s active one."""
    fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for _ in range(up):
            parent = ksys.ns_get_parent(fd)
            os.close(fd)
            fd = parent
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def _candidates(opener_pid: int) -> Iterator[str]:
    """Likely processes first (the opener, its children), then all of /proc.

    ``containerfs exec`` writes the pid of its own child, so the common case
    never scans the whole process table.
    """
    yield str(opener_pid)
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{opener_pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{opener_pid}/task/{tid}/children") as f:
                yield from f.read().split()
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield name


def translate_pid(pid: int, opener_pid: int) -> int:
    """Translate ``pid`` as seen in ``opener_pid``'s pid namespace into ours.

    ``opener_pid`` is in our pid namespace (the FUSE request's pid).  The
    identity when the opener shares our pid namespace; otherwise the process
    whose NSpid has ``pid`` at the opener's depth *and* whose pid namespace at
    that depth is the opener's (checked by walking up with NS_GET_PARENT).
    ``ProcessLookupError`` when no such process exists (or the opener is gone).
    Thread ids of non-leader threads are not found (only /proc/PID entries are
    scanned).
    """
    if pid <= 0:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {pid}")
    opener_ns = ns_inode(opener_pid, "pid")
    if opener_ns == ns_inode("self", "pid"):
        if not os.path.exists(f"/proc/{pid}"):
            raise ProcessLookupError(errno.ESRCH, f"no such process: {pid}")
        return pid
    depth = len(procfs.nspids(opener_pid))
    seen: set[str] = set()
    for name in _candidates(opener_pid):
        if name in seen:
            continue
        seen.add(name)
        try:
            chain = procfs.nspids(name)
            if len(chain) < depth or chain[depth - 1] != pid:
                continue
            if _pid_ns_ancestor(chain[0], len(chain) - depth) == opener_ns:
                return chain[0]
        except (OSError, ValueError):
            continue  # exited meanwhile
    raise ProcessLookupError(errno.ESRCH, f"no process {pid} in the pid namespace of {opener_pid}")


def kernel_at_least(major: int, minor: int, release: str | None = None) -> bool:
    """Whether the running kernel (``uname -r``) is at least ``major.minor``."""
    text = release if release is not None else os.uname().release
    parts = text.split(".")
    try:
        return (int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)) >= (
            major,
            minor,
        )
    except (IndexError, ValueError):
        return False


def pid_max_per_namespace() -> bool:
    """kernel.pid_max became a per-pid-namespace sysctl in Linux 6.14."""
    return kernel_at_least(6, 14)


# -- facts for clone discovery ---------------------------------------------------


class MountTables:
    """nsfs mounts of several mount namespaces, re-read only when they changed.

    The kernel flags a change of a mount namespace on an open
    ``/proc/PID/mountinfo`` with ``POLLPRI``, once per change. Keeping one fd per
    namespace and polling them all (timeout 0) costs a syscall for the lot
    instead of reading and parsing every table each time. Not thread-safe: one
    caller at a time.
    """

    def __init__(self) -> None:
        self._open: dict[object, tuple[int, int]] = {}  # key -> (pid, fd)
        self._last: dict[object, list[tuple[str, int, str]]] = {}

    def nsfs_mounts(self, wanted: dict[object, int]) -> dict[object, list[tuple[str, int, str]]]:
        """Key -> (kind, inode, mount point) of the nsfs mounts in the mount namespace of
        process ``wanted[key]``; keys whose process is gone are left out."""
        for key in [k for k, (pid, _fd) in self._open.items() if wanted.get(k) != pid]:
            os.close(self._open.pop(key)[1])
            self._last.pop(key, None)
        poller = select.poll()
        fresh = []
        for key, pid in wanted.items():
            if key not in self._open:
                try:
                    fd = os.open(f"/proc/{pid}/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    continue
                self._open[key] = (pid, fd)
                fresh.append(key)
            poller.register(self._open[key][1], select.POLLPRI)
        by_fd = {fd: key for key, (_pid, fd) in self._open.items()}
        changed = {by_fd[fd] for fd, _ev in poller.poll(0) if fd in by_fd}
        for key in changed | set(fresh):
            pid, fd = self._open[key]
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                chunks = []
                while chunk := os.read(fd, 65536):
                    chunks.append(chunk)
            except OSError:  # the process exited (EINVAL), or is gone
                os.close(self._open.pop(key)[1])
                self._last.pop(key, None)
                continue
            text = b"".join(chunks).decode(errors="replace")
            self._last[key] = nslist.parse_mountinfo_nsfs(text)
        return {k: v for k, v in self._last.items() if k in wanted}

    def close(self) -> None:
        for _pid, fd in self._open.values():
            os.close(fd)
        self._open.clear()
        self._last.clear()


# -- facts about a process to move ---------------------------------------------------


@dataclass(frozen=True)
class Creds:
    """A process's credentials as ``/proc/PID/status`` shows them."""

    uids: tuple[int, ...]  # real, effective, saved, filesystem
    gids: tuple[int, ...]
    cap_eff: int
    threads: int
    tracer: int  # TracerPid: 0 when not traced


def parse_creds(status: str) -> Creds:
    """The credentials in a ``/proc/PID/status`` text."""
    return _creds(procfs.parse_status(status))


def _creds(status: Mapping[str, str]) -> Creds:
    return Creds(
        uids=tuple(int(x) for x in status["Uid"].split()),
        gids=tuple(int(x) for x in status["Gid"].split()),
        cap_eff=int(status["CapEff"].split()[0], 16),
        threads=int(status.get("Threads", "1").split()[0]),
        tracer=int(status.get("TracerPid", "0").split()[0]),
    )


def creds(pid: int) -> Creds:
    return _creds(procfs.read_status(f"/proc/{pid}/status"))


def hold(pid: int) -> int:
    """A pidfd on process ``pid``: the process itself, whatever its pid becomes."""
    return os.pidfd_open(pid)


def check_held(pidfd: int, pid: int) -> None:
    """``ProcessLookupError`` once the process behind ``pidfd`` (``pid``) is gone.

    Alive means ``pid`` was this process's all along since :func:`hold`: a pid
    is not reused before its zombie is reaped.
    """
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        raise ProcessLookupError(errno.ESRCH, f"process {pid} exited during the move") from None


def thread_group(tid: int) -> int:
    """The process (thread group) a thread belongs to: FUSE names callers by thread."""
    tgid = procfs.read_status(f"/proc/{tid}/status").get("Tgid")
    if tgid is None:
        raise ValueError("no Tgid line in status")
    return int(tgid.split()[0])
