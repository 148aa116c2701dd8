"""Handing our nsfs fds to a stopped process over a socketpair it makes (``SCM_RIGHTS``).

One part of moving a process into namespaces (:mod:`inject`, whose docstring
says why the fds travel this way rather than by path).  A :class:`Transfer`
opens what the target will need (each destination namespace, each thread's
original namespaces, and for a mount namespace the original root and current
directory), makes a receiving thread call ``socketpair`` and ``recvmsg``
through an :class:`ptrace_call.Injector`, and remembers which fd numbers
each fd table got, so that every thread finds them and a rollback needs no
second transfer.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from containerfs.kernel import sys as ksys
from containerfs.kernel.ptrace_call import (
    NR_CLOSE,
    NR_RECVMSG,
    NR_SOCKETPAIR,
    Injector,
    strerror,
)
from containerfs.kernel.ptrace_session import Session, Tracee

_SOCK_CLOEXEC = 0o2000000
_MSG_DONTWAIT = 0x40
_MSG_CTRUNC = 0x8
_MSG_CMSG_CLOEXEC = 0x40000000
_SCM_RIGHTS = 1

#: Keys of the fds sent to the target.
Key = tuple[str, str, int]  # ("dest" | "orig", kind, inode) or ("root" | "cwd", "", 0)


@dataclass
class Table:
    """Fds received by one thread: valid in its fd table (and every thread sharing it)."""

    receiver: int
    fds: dict[Key, int]  # key -> fd number in the target
    ids: dict[Key, tuple[int, int]]  # key -> (st_dev, st_ino) of the file


class Transfer:
    """The fds one move sends into ``session``'s process, and where they landed."""

    def __init__(self, session: Session, calls: Injector) -> None:
        self.session = session
        self.calls = calls
        self.pid = session.pid
        self.tables: list[Table] = []
        self.own_fds: dict[Key, int] = {}  # fds we opened to send
        self.own_ids: dict[Key, tuple[int, int]] = {}
        self.borrowed: set[Key] = set()  # the caller's fds: not ours to close
        self.cwd_path: bytes | None = None
        self.path_at = 0  # the cwd path in the receiver's scratch (0: none)
        self.dot_at = 0  # the string "." there

    def open_origins(
        self,
        kinds: Sequence[str],
        targets: Mapping[str, int],
        dest_fds: Mapping[str, int],
        with_dirs: bool,
    ) -> None:
        """Open the namespaces each thread is in now (and root/cwd for mnt), keyed by inode."""
        for kind in kinds:
            dest = dest_fds[kind]
            self._add(("dest", kind, targets[kind]), dest, own=False)
        for th in self.session.threads.values():
            for kind in kinds:
                ino = th.origin[kind]
                key = ("orig", kind, ino)
                if ino == targets[kind] or key in self.own_fds:
                    continue
                fd = os.open(
                    f"/proc/{self.pid}/task/{th.tid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC
                )
                if os.fstat(fd).st_ino != ino:
                    os.close(fd)
                    raise OSError(errno.EAGAIN, f"thread {th.tid} changed namespaces meanwhile")
                self._add(key, fd, own=True)
        if with_dirs:
            for name in ("root", "cwd"):
                fd = os.open(f"/proc/{self.pid}/{name}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                self._add((name, "", 0), fd, own=True)
        signal.pidfd_send_signal(self.session.pidfd, 0)

    def _add(self, key: Key, fd: int, *, own: bool) -> None:
        st = os.fstat(fd)
        self.own_ids[key] = (st.st_dev, st.st_ino)
        self.own_fds[key] = fd
        if not own:
            self.borrowed.add(key)

    def table_for(self, th: Tracee) -> Table:
        """The received fds as thread ``th`` sees them; a transfer to it if it has none."""
        for table in self.tables:
            if table.receiver == th.tid or all(
                self._fd_matches(th.tid, n, table.ids[key]) for key, n in table.fds.items()
            ):
                return table
        return self._receive(th)

    def table_seen_by(self, th: Tracee) -> Table | None:
        """The table thread ``th`` received, or one it shares; None if it has none."""
        own = next((t for t in self.tables if t.receiver == th.tid), None)
        if own is not None:
            return own
        for table in self.tables:
            if all(self._fd_matches(th.tid, n, table.ids[k]) for k, n in table.fds.items()):
                return table
        return None

    def _fd_matches(self, tid: int, n: int, ident: tuple[int, int]) -> bool:
        try:
            st = os.stat(f"/proc/{self.pid}/task/{tid}/fd/{n}")
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == ident

    def _receive(self, th: Tracee) -> Table:
        calls = self.calls
        keys = list(self.own_fds)
        fds = [self.own_fds[k] for k in keys]
        n = len(fds)
        ctl_len = 16 + ((4 * n + 7) & ~7)  # CMSG_SPACE
        path = self.cwd_path + b"\0" if self.cwd_path is not None else b""
        base = calls.scratch_area(th, 96 + ctl_len + len(path))
        sv_at, byte_at, iov_at, msg_at, ctl_at = base, base + 8, base + 16, base + 32, base + 96
        iov = struct.pack("<QQ", byte_at, 1)
        msg = struct.pack("<QI4xQQQQi4x", 0, 0, iov_at, 1, ctl_at, ctl_len, 0)
        calls.write(base, bytes(16) + iov + msg + b".\0" + bytes(6) + bytes(ctl_len) + path)
        self.dot_at = base + 88
        self.path_at = ctl_at + ctl_len if path else 0
        r = calls.syscall(
            th, NR_SOCKETPAIR, socket.AF_UNIX, socket.SOCK_STREAM | _SOCK_CLOEXEC, 0, sv_at
        )
        if r < 0:
            raise OSError(-r, f"process {self.pid} could not make a socketpair: {strerror(-r)}")
        sv0, sv1 = struct.unpack("<ii", calls.read(sv_at, 8))
        table = Table(th.tid, {}, {})
        try:
            own_pidfd = self.session.pidfd
            pidfd = own_pidfd if th.tid == self.pid else ksys.pidfd_open_thread(th.tid)
            try:
                ours = ksys.pidfd_getfd(pidfd, sv0)
            finally:
                if pidfd != own_pidfd:
                    os.close(pidfd)
            with socket.socket(fileno=ours) as sock:
                socket.send_fds(sock, [b"\0"], fds)
            r = calls.syscall(th, NR_RECVMSG, sv1, msg_at, _MSG_DONTWAIT | _MSG_CMSG_CLOEXEC)
            flags = struct.unpack("<i", calls.read(msg_at + 48, 4))[0]
            cmsg_len, level, kind = struct.unpack("<Qii", calls.read(ctl_at, 16))
            got: list[int] = []
            if r == 1 and level == socket.SOL_SOCKET and kind == _SCM_RIGHTS and cmsg_len >= 16:
                count = min((cmsg_len - 16) // 4, n)
                got = list(struct.unpack(f"<{count}i", calls.read(ctl_at + 16, 4 * count)))
            for key, fd in zip(keys, got, strict=False):
                table.fds[key] = fd
                table.ids[key] = self.own_ids[key]
            self.tables.append(table)  # closed at the end, even if incomplete
            if r < 0:
                raise OSError(
                    -r, f"process {self.pid} could not receive the namespaces: {strerror(-r)}"
                )
            if len(got) < n or flags & _MSG_CTRUNC:
                raise OSError(
                    errno.EMFILE,
                    f"process {self.pid} could not take {n} more file descriptors "
                    f"(it got {len(got)}): too many open files?",
                )
        finally:
            for fd in (sv0, sv1):
                calls.syscall(th, NR_CLOSE, fd)
        return table

    def close_in_target(self, problems: list[str]) -> None:
        """Make the process close every fd it received; ``ProcessLookupError`` if killed."""
        for table in self.tables:
            th = self.session.threads.get(table.receiver)
            if th is None or th.saved is None:
                continue
            for fd in table.fds.values():
                try:
                    self.calls.syscall(th, NR_CLOSE, fd)
                except ProcessLookupError:
                    raise
                except OSError as exc:
                    problems.append(f"fd {fd} left open in the process ({exc.strerror})")

    def close_own(self) -> None:
        """Close the fds we opened to send (not the caller's)."""
        for key, fd in self.own_fds.items():
            if key not in self.borrowed:
                os.close(fd)
