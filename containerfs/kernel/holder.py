"""A container's namespace holder: the process that keeps its namespaces, and its socket.

A container's namespaces live in its *holder*, one ``containerfs-pin`` process
(``pin.c``; docs/design.md, "Namespaces: the holder"), started by
:mod:`holder_start`.  :class:`Holder` references one by pidfd and talks to it
over the socket it was started with: the holder answers sysctl requests
(:meth:`Holder.sysctl`), since it runs inside every namespace of the container,
including the pid and user namespaces a thread cannot take on.  The holder
keeps a copy of the daemon's end of that socket at fd :data:`HOLDER_CHANNEL_FD`
for as long as it lives, so a restarted daemon talks to it again
(:meth:`Holder.attach` takes that fd with ``pidfd_getfd``).  The helpers here
open a holder's ``/proc`` files checked against its pidfd, so a reused pid is
never mistaken for it.

Time namespaces: the holder is *not* in a time namespace its container owns.
It unshares it last, so the container's time namespace is the holder's
``time_for_children`` and stays empty (its offsets writable) until the first
process enters.  ``Holder.inodes["time"]`` is that namespace, and everything
that joins it goes through ``time_for_children``, never the holder's active one.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import secrets
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from containerfs.kernel import procfs
from containerfs.kernel import sys as ksys
from containerfs.kernel.namespaces import (
    check_kind,
    check_same_namespaces,
    ns_inode,
    ns_inode_for_children,
)
from containerfs.kernel.sysctls import sysctl_relpath
from containerfs.nskinds import KINDS

T = TypeVar("T")

#: KTIME_MAX / NSEC_PER_SEC: the largest time namespace offset in seconds.
_KTIME_SEC_MAX = (2**63 - 1) // 1_000_000_000

#: The holder's copy of the daemon's end of its socketpair (pin.c: HOLDER_CHANNEL_FD).
HOLDER_CHANNEL_FD = 3

#: The holder's program name: its ``/proc/PID/comm`` (15 characters fit) and
#: the name of its executable.
PIN_NAME = "containerfs-pin"

#: Largest reply of the holder's sysctl service ("TAG ok " + content), as in
#: pin.c.  (It takes requests of up to 8192 bytes after the tag and answers
#: longer ones EMSGSIZE.)
_REPLY_MAX = 20 + 1 + 3 + 65536

#: Request tags run from 1 to this (19 digits; pin.c takes up to 20).  0 is
#: the holder's tag for replies to messages that carried no tag.
_TAG_LIMIT = 2**63 - 1


def read_inodes(pid: int, pidfd: int) -> dict[str, int]:
    """All eight namespaces of holder ``pid``, checked to belong to the process behind ``pidfd``.

    Time is the holder's ``time_for_children`` (the container's: see the
    module docstring); the others are the holder's own.  ``/proc/PID`` names a
    pid number, which may have been reused; the pidfd names the process.  If
    the pidfd's process is still alive after the reads, the pid still named it
    while we read.
    """
    inodes = {kind: holder_inode(pid, kind) for kind in KINDS}
    signal.pidfd_send_signal(pidfd, 0)  # ProcessLookupError once it is gone
    return inodes


def _is_pin(pid: int) -> bool:
    """Whether process ``pid`` runs containerfs-pin: its ``comm``, or its executable's name.

    (The executable may show as "... (deleted)" after a rebuild, or by its path
    in another mount namespace: only the name counts.)  ``ProcessLookupError``
    when there is no such process.
    """
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            if f.read().rstrip(b"\n") == PIN_NAME.encode():
                return True
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {pid}") from None
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return os.path.basename(exe.removesuffix(" (deleted)")) == PIN_NAME


def kill_stray_holder(pid: int, timeout: float = 5.0) -> bool:
    """SIGKILL ``pid`` if it is a holder (checked through a pidfd, so a reused pid is
    never signalled) and wait up to ``timeout`` s for it to exit, so that its cgroup
    can be removed next. For leftovers no container accounts for; True if killed."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if not _is_pin(pid):
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        _readable(pidfd, timeout)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)


def _take_channel(pidfd: int, pid: int) -> socket.socket | None:
    """The holder's copy of the daemon's end (fd :data:`HOLDER_CHANNEL_FD`), or None.

    None when the holder has no such fd, or not an AF_UNIX SOCK_SEQPACKET
    socket there: it was started by a pin from before the holder kept one.
    """
    try:
        fd = ksys.pidfd_getfd(pidfd, HOLDER_CHANNEL_FD)
    except OSError as exc:
        if exc.errno == errno.EBADF:
            return None
        if exc.errno == errno.ESRCH:
            raise ProcessLookupError(errno.ESRCH, f"holder {pid} is gone") from None
        raise OSError(
            exc.errno, f"cannot take the channel of holder {pid}: {exc.strerror}"
        ) from None
    try:
        channel = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        return None
    if channel.family != socket.AF_UNIX or channel.type != socket.SOCK_SEQPACKET:
        channel.close()
        return None
    return channel


def holder_inode(pid: int | str, kind: str) -> int:
    """The container's namespace of ``kind`` as seen on its holder ``pid``."""
    return ns_inode_for_children(pid, kind) if kind == "time" else ns_inode(pid, kind)


def time_ns_fd(pidfd: int, pid: int) -> int:
    """An nsfs fd on the time namespace the children of ``pidfd``'s process get.

    ``setns(pidfd, CLONE_NEWTIME)`` joins a process's *active* time namespace;
    a holder's container lives in its ``time_for_children``.  Linux >= 6.11
    has a pidfd ioctl for it; before, ``/proc/PID/ns/time_for_children`` is
    opened and the pidfd checked to be alive afterwards (so ``pid`` still
    named it).  ``ProcessLookupError`` once the process is gone.
    """
    try:
        return ksys.pidfd_get_time_for_children_ns(pidfd)
    except OSError as exc:
        if exc.errno not in (errno.ENOTTY, errno.EINVAL):
            raise
    return open_proc_checked(pidfd, pid, "ns/time_for_children", os.O_RDONLY)


def open_proc_checked(pidfd: int, pid: int, name: str, flags: int) -> int:
    """Open ``/proc/PID/NAME`` and make sure ``pid`` still named ``pidfd``'s process.

    The pidfd is checked alive *after* the open: the file stays bound to the
    process it was opened on, whatever later happens to the number.
    ``ProcessLookupError`` once the process is gone.
    """
    try:
        fd = os.open(f"/proc/{pid}/{name}", flags | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {pid}") from None
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def holder_pidfd(pid: int) -> int:
    """A pidfd on holder ``pid``; ``ProcessLookupError`` saying so when it is gone."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise ProcessLookupError(errno.ESRCH, f"container holder {pid} is gone") from None


def _readable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000))))


class Holder:
    """One container's namespace holder, referenced by pidfd.

    ``pid`` is in the daemon's pid namespace.  ``inodes`` has all eight kinds,
    the container's namespaces: for ``pid`` the holder's active one (it is the
    init of a pid namespace it owns, or an ordinary process of one it joined),
    for ``time`` its ``time_for_children`` (the holder never enters a time
    namespace it owns).

    ``channel`` is the daemon's end of the socket the holder was started with;
    over it the holder serves sysctl requests (:meth:`sysctl`,
    :meth:`set_sysctl`).  The holder keeps a copy of that end at fd
    :data:`HOLDER_CHANNEL_FD`, so it serves as long as it lives: :meth:`attach`
    (after a daemon restart) takes that copy as its channel.  Requests carry a
    tag that the reply echoes, and replies with another tag are skipped: the
    ones to requests that timed out, and whatever an earlier daemon left
    queued on the shared end.  Only one daemon may use a holder at a time.
    """

    #: Seconds a sysctl request waits for the holder's answer.
    REQUEST_TIMEOUT = 5.0
    INLINE_WAIT = 0.0005  # seconds the trio loop itself waits for a reply (_request_async)

    def __init__(
        self,
        pid: int,
        pidfd: int,
        inodes: Mapping[str, int],
        channel: socket.socket | None = None,
    ) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.inodes: dict[str, int] = dict(inodes)
        # Set by kill(): this holder's death is ours, not news (Discovery logs
        # a holder that died on its own).
        self.killed = False
        # Guards ``pidfd`` and ``_channel`` between close() and their users on
        # other threads: without it a closed number could be reused by an
        # unrelated file.
        self._lock = threading.Lock()
        self._channel = channel
        # close() wakes a request waiting for its reply through this.  It must
        # not shut the channel down: the holder's copy is the same socket.
        self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK) if channel is not None else -1
        # One request at a time on the channel, so replies cannot interleave.
        self._request_lock = threading.Lock()
        # The last request's tag.  A random start: an earlier daemon's stale
        # replies on the same channel must not carry tags we use.
        self._seq = secrets.randbelow(_TAG_LIMIT)
        # Fds the holder opened for us, used without asking it again (pin.c,
        # "Sysctl fds" and "IPC fds"); closed with the holder, under ``_lock``.
        self._sysctl_fds: dict[str, int] = {}
        self._ipc_fds: tuple[int, ...] = ()
        # What an older pin (restart take-over) or this kernel could not give.
        self._no_sysctl_fds = False
        self._no_ipc_fds = False

    @classmethod
    def attach(cls, pid: int, expected_inodes: Mapping[str, int]) -> Holder:
        """Reference an existing holder by its pid (e.g. after a daemon restart).

        ``expected_inodes`` (kind -> inode, the kinds the caller knows, e.g.
        from the saved state) must match the holder's :attr:`inodes`, and the
        process must be a containerfs-pin (its ``comm`` or executable name):
        otherwise ``OSError(ESRCH)``, the pid was reused or the container
        changed.  ``ProcessLookupError`` when there is no such process.  The
        channel is the holder's copy of the daemon's end, taken with
        ``pidfd_getfd``; a holder without one (started by a containerfs-pin
        older than that) is attached without a channel (see
        :attr:`has_channel`).  Only one daemon may use a holder at a time.
        """
        for kind in expected_inodes:
            check_kind(kind)
        pidfd = holder_pidfd(pid)
        channel = None
        try:
            try:
                is_pin = _is_pin(pid)
                inodes = read_inodes(pid, pidfd)  # checks the pidfd alive afterwards
            except ProcessLookupError:
                raise ProcessLookupError(errno.ESRCH, f"holder {pid} is gone") from None
            if not is_pin:
                raise OSError(
                    errno.ESRCH,
                    f"process {pid} is not a {PIN_NAME}: pid reused or container changed",
                )
            check_same_namespaces(pid, expected_inodes, inodes)
            channel = _take_channel(pidfd, pid)
            return cls(pid, pidfd, inodes, channel)
        except BaseException:
            if channel is not None:
                channel.close()
            os.close(pidfd)
            raise

    def __repr__(self) -> str:
        return f"Holder(pid={self.pid}, pidfd={self.pidfd})"

    @property
    def has_channel(self) -> bool:
        """True while we have a channel to the holder's sysctl service (until :meth:`close`)."""
        with self._lock:
            return self._channel is not None

    def dup_pidfd(self) -> int:
        """A new pidfd on the holder, owned by the caller (safe against a concurrent close).

        ``ProcessLookupError`` (ESRCH) once the holder's pidfd was closed.
        """
        with self._lock:
            if self.pidfd < 0:
                raise ProcessLookupError(errno.ESRCH, f"holder {self.pid} is closed")
            return os.dup(self.pidfd)

    def alive(self) -> bool:
        """True until the holder exits (a pidfd turns readable at exit)."""
        with self._lock:
            return self.pidfd >= 0 and not _readable(self.pidfd, 0)

    def gone(self) -> bool:
        """True once the holder process has exited, reaped or not.

        With the pidfd open that is exact (it turns readable at exit).  After
        :meth:`close` it falls back to ``/proc/PID``: gone when absent or a
        zombie (a reused pid would then read as alive).  Unlike waiting for
        ``/proc/PID`` to vanish, this does not depend on how quickly the init
        that adopted the holder reaps it.
        """
        with self._lock:
            if self.pidfd >= 0:
                return _readable(self.pidfd, 0)
        return _proc_exited(self.pid)

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the holder and wait until it has exited.

        Killing the init of a pid namespace also kills everything in it; the
        kernel makes the init's exit wait for them, so a readable pidfd means
        the container's processes are gone too.  The holder is not our child,
        so whoever adopted it reaps it; when it *is* our child (we are a
        subreaper) we reap it here.  ``TimeoutError`` if it outlives
        ``timeout`` seconds.
        """
        try:
            pidfd = self.dup_pidfd()  # a close() on another thread cannot pull it away
        except ProcessLookupError:
            raise ValueError("holder pidfd is closed") from None
        self.killed = True
        try:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            if not _readable(pidfd, timeout):
                raise TimeoutError(errno.ETIMEDOUT, f"holder {self.pid} survived SIGKILL")
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
        finally:
            os.close(pidfd)

    def close(self) -> None:
        """Drop our pidfd and channel; the holder keeps running and serving.

        The holder keeps its own copy of our end, so it never sees the channel
        close: :meth:`attach` reaches it again.  A request in flight on
        another thread fails with ``ProcessLookupError``; its reply, when it
        comes, stays queued for whoever attaches next, who skips it by its tag.
        """
        with self._lock:
            if self.pidfd >= 0:
                os.close(self.pidfd)
                self.pidfd = -1
            kept = [*self._sysctl_fds.values(), *self._ipc_fds]
            self._sysctl_fds.clear()
            self._ipc_fds = ()
            self._no_sysctl_fds = self._no_ipc_fds = True
            _close_all(kept)
            channel, self._channel = self._channel, None
            if channel is not None:
                os.eventfd_write(self._wake, 1)  # wakes a request waiting for its reply
        if channel is not None:
            with self._request_lock:  # the fds stay ours until that request is done
                channel.close()
                os.close(self._wake)
                self._wake = -1

    # -- sysctls served by the holder --------------------------------------------

    def _request(
        self, message: bytes, timeout: float | None, fds: list[int] | None = None
    ) -> bytes:
        """Send one request and return the holder's reply, minus its tag and a leading "ok".

        ``message`` is a request without its tag (pin.c: ``r PATH``, ``w PATH
        VALUE``); the tag is added here and replies with another one are
        skipped.  ``OSError`` with the holder's errno for "err N";
        ``ProcessLookupError`` when the holder is gone or we closed the
        channel; ``OSError(ENOTCONN)`` for a holder without a channel;
        ``TimeoutError`` after ``timeout`` (its late reply is skipped later).
        """
        with self._request_lock:
            sent = self._send(message, timeout)
            reply = self._receive(*sent, fds=fds)
        return self._answer(reply)

    async def _request_async(self, message: bytes, fds: list[int] | None = None) -> bytes:
        """:meth:`_request` for the trio loop, without a worker thread when it can.
        Fds attached to the reply go to ``fds`` (the caller's to close).

        The holder answers in tens of microseconds, far less than a hop to a
        worker thread, so the reply is first awaited inline for at most
        ``INLINE_WAIT``; a slower holder is left to a worker thread, which then
        releases the request lock.  The lock is never held across an ``await``
        by the loop itself, so a :meth:`close` on the loop cannot deadlock.
        """
        import trio  # the exec client imports this module and must not pay for trio

        if not self._request_lock.acquire(blocking=False):  # busy: wait on a thread
            return await trio.to_thread.run_sync(self._request, message, None, fds)
        handed_over = False
        try:
            channel, wake, tag, deadline = self._send(message, None)
            inline = min(deadline, time.monotonic() + self.INLINE_WAIT)
            reply = self._receive(channel, wake, tag, inline, quiet=True, fds=fds)
            if reply is None:
                handed_over = True
                reply = await trio.to_thread.run_sync(
                    self._receive_and_release, channel, wake, tag, deadline, fds
                )
        finally:
            if not handed_over:
                self._request_lock.release()
        return self._answer(reply)

    def _receive_and_release(
        self,
        channel: socket.socket,
        wake: int,
        tag: bytes,
        deadline: float,
        fds: list[int] | None = None,
    ) -> bytes | None:
        try:
            return self._receive(channel, wake, tag, deadline, fds=fds)
        finally:
            self._request_lock.release()

    def _send(
        self, message: bytes, timeout: float | None
    ) -> tuple[socket.socket, int, bytes, float]:
        """Tag and send a request (the request lock held): the channel, the wake fd,
        the tag and the deadline for its reply."""
        timeout = self.REQUEST_TIMEOUT if timeout is None else timeout
        with self._lock:
            channel, wake = self._channel, self._wake
        if channel is None:
            raise OSError(
                errno.ENOTCONN,
                f"holder {self.pid} has no channel (closed, or started by an older pin): "
                "cannot serve sysctls",
            )
        self._seq = self._seq % _TAG_LIMIT + 1
        tag = b"%d" % self._seq
        try:
            try:  # the channel is non-blocking: one system call when there is room
                channel.send(tag + b" " + message, socket.MSG_DONTWAIT)
            except BlockingIOError:
                channel.settimeout(max(timeout, 0.001))
                channel.send(tag + b" " + message)
                channel.settimeout(0.0)
        except (BrokenPipeError, ConnectionResetError):
            raise ProcessLookupError(errno.ESRCH, f"holder {self.pid} is gone") from None
        return channel, wake, tag, time.monotonic() + timeout

    def _receive(
        self,
        channel: socket.socket,
        wake: int,
        tag: bytes,
        deadline: float,
        quiet: bool = False,
        fds: list[int] | None = None,
    ) -> bytes | None:
        """The reply to ``tag`` (the request lock held); ``None`` at the deadline when
        ``quiet``, else ``TimeoutError``.  Fds attached to that reply go to ``fds``
        (the caller's to close); any other fds received are closed."""
        poller = select.poll()
        poller.register(channel, select.POLLIN)
        poller.register(wake, select.POLLIN)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    if quiet:
                        return None
                    raise TimeoutError(errno.ETIMEDOUT, f"holder {self.pid} did not answer")
                events = poller.poll(math.ceil(left * 1000))
                if any(fd == wake for fd, _ in events):
                    raise ProcessLookupError(errno.ESRCH, f"holder {self.pid}: channel closed")
                if not events:
                    continue
                try:
                    reply, ancillary, _flags, _addr = channel.recvmsg(
                        _REPLY_MAX, socket.CMSG_SPACE(4 * 4), socket.MSG_CMSG_CLOEXEC
                    )
                except BlockingIOError:
                    continue
                got_fds = _rights(ancillary)
                if not reply:
                    _close_all(got_fds)
                    raise ProcessLookupError(errno.ESRCH, f"holder {self.pid} is gone")
                got, _, reply = reply.partition(b" ")
                if got == tag and fds is not None:
                    fds.extend(got_fds)
                else:
                    _close_all(got_fds)
                if got == tag:
                    return reply
                # A reply to a request that timed out, or left by an earlier daemon.
        except (BrokenPipeError, ConnectionResetError):
            raise ProcessLookupError(errno.ESRCH, f"holder {self.pid} is gone") from None

    def _answer(self, reply: bytes | None) -> bytes:
        if reply is None:
            raise TimeoutError(errno.ETIMEDOUT, f"holder {self.pid} did not answer")
        if reply == b"ok":
            return b""
        if reply.startswith(b"ok "):
            return reply[3:]
        if reply.startswith(b"err ") and reply[4:].isdigit():
            err = int(reply[4:])
            raise OSError(err, os.strerror(err))
        raise OSError(errno.EPROTO, f"holder {self.pid}: unexpected reply {reply[:40]!r}")

    def sysctl(self, name: str, *, timeout: float | None = None) -> str:
        """Sysctl ``name`` (``kernel.pid_max``) as the container sees it, read by the holder.

        The holder runs in all of the container's namespaces, so this also
        answers sysctls resolved through the caller's *active* pid namespace or
        its *user* namespace, which a setns thread cannot take on.  The text
        keeps its trailing newline, as a plain read of /proc/sys.  Raises
        ``ValueError`` for a bad name, ``OSError`` with the holder's errno
        (e.g. ``FileNotFoundError``), see :meth:`_request` for the rest.
        """
        return self._request(b"r " + sysctl_relpath(name), timeout).decode()

    def set_sysctl(self, name: str, value: str, *, timeout: float | None = None) -> None:
        """Write ``value`` (one write, as given) to sysctl ``name``, by the holder."""
        self._request(b"w " + sysctl_relpath(name) + b" " + value.encode(), timeout)

    async def sysctl_async(self, name: str) -> str:
        """:meth:`sysctl` for the trio loop (see :meth:`_request_async`)."""
        return (await self._request_async(b"r " + sysctl_relpath(name))).decode()

    async def sysctls_async(self, names: Sequence[str]) -> list[str | None]:
        """Several sysctls at once, in order; None for one the holder has no file of.

        Every request is sent before the first reply is read: the holder answers
        them back to back, so a new container's views cost one wake-up of the
        holder instead of one round trip each (a dozen knobs took ~0.9 ms). Other
        errors are raised as :meth:`sysctl` raises them (the first, in order).
        """
        import trio

        messages = [b"r " + sysctl_relpath(n) for n in names]
        if not self._request_lock.acquire(blocking=False):  # busy: wait on a thread
            got = await trio.to_thread.run_sync(self._requests, messages)
            return [self._answer_or_none(r) for r in got]
        handed_over = False
        try:
            sent = [self._send(m, None) for m in messages]
            inline = time.monotonic() + self.INLINE_WAIT * max(1, len(sent))
            replies: list[bytes | None] = []
            for i, (channel, wake, tag, deadline) in enumerate(sent):
                reply = self._receive(channel, wake, tag, min(deadline, inline), quiet=True)
                if reply is None:  # a slow holder: the rest on a worker thread
                    handed_over = True
                    rest = sent[i:]
                    replies += await trio.to_thread.run_sync(self._receive_all_and_release, rest)
                    break
                replies.append(reply)
        finally:
            if not handed_over:
                self._request_lock.release()
        return [self._answer_or_none(r) for r in replies]

    def _requests(self, messages: list[bytes]) -> list[bytes | None]:
        """Send every request, then read every reply (blocking)."""
        with self._request_lock:
            sent = [self._send(m, None) for m in messages]
            return [self._receive(*s) for s in sent]

    def _receive_all_and_release(
        self, sent: list[tuple[socket.socket, int, bytes, float]]
    ) -> list[bytes | None]:
        try:
            return [self._receive(*s) for s in sent]
        finally:
            self._request_lock.release()

    def _answer_or_none(self, reply: bytes | None) -> str | None:
        try:
            return self._answer(reply).decode()
        except FileNotFoundError:
            return None

    async def set_sysctl_async(self, name: str, value: str) -> None:
        """:meth:`set_sysctl` for the trio loop (see :meth:`_request_async`)."""
        await self._request_async(b"w " + sysctl_relpath(name) + b" " + value.encode())

    # -- fds kept from the holder (pin.c: "f" and "i") ---------------------------

    async def _fetch_fds(self, message: bytes, count: int) -> list[int] | int:
        """The ``count`` fds the holder answers ``message`` with, or the errno of
        why not (a pin older than the request says EINVAL; a kernel may lack a
        part). ``ProcessLookupError`` when the holder is gone."""
        fds: list[int] = []
        try:
            await self._request_async(message, fds)
        except OSError as exc:
            _close_all(fds)
            if isinstance(exc, ProcessLookupError):
                raise
            return exc.errno or errno.EIO
        if len(fds) != count:
            _close_all(fds)  # cut short (no room for fds here): ask as before
            return errno.EMFILE
        return fds

    async def write_sysctl_fd_async(
        self, name: str, value: bytes, *, on_thread: bool = False
    ) -> bool:
        """Write ``value`` to sysctl ``name`` through an fd the holder opened once
        (``pwrite`` at offset 0: the daemon's own write, no round trip). False when
        there is no such fd or the kernel refuses the daemon's credentials (an ipc
        sysctl of a user namespace with its root mapped: only that euid may
        write), so the caller asks the holder ("w"). Only for sysctls whose
        file stays bound to the namespace it was looked up in: the caller's
        choice (``sysctls.bound_to_opener``). ``on_thread``: the write may wait in
        the kernel (a net handler may wait for the RTNL lock), so it is made on a
        worker thread rather than on the event loop."""
        fd = self._sysctl_fds.get(name)
        if fd is None:
            if self._no_sysctl_fds:
                return False
            got = await self._fetch_fds(b"f " + sysctl_relpath(name), 1)
            if isinstance(got, int):
                self._no_sysctl_fds = got == errno.EINVAL  # an older pin: stop asking
                return False
            with self._lock:
                if self.pidfd < 0 or name in self._sysctl_fds:  # closed, or a race
                    _close_all(got)
                    return False
                self._sysctl_fds[name] = fd = got[0]
        if on_thread:
            import trio  # as in _request_async: the exec client does not load trio

            written = await trio.to_thread.run_sync(self._pwrite_kept, name, fd, value)
        else:
            written = self._pwrite_kept(name, fd, value)
        if written is None:
            return False
        if written != len(value):
            raise OSError(errno.EIO, f"short write to sysctl {name}")
        return True

    def _pwrite_kept(self, name: str, fd: int, value: bytes) -> int | None:
        """``value`` written to the kept fd of ``name``; None when it was closed
        meanwhile or the kernel wants the holder's credentials (EPERM)."""
        with self._lock:
            if self._sysctl_fds.get(name) != fd:
                return None  # closed meanwhile
            try:
                return os.pwrite(fd, value, 0)
            except PermissionError:
                return None

    def sysctl_by_fd(self, name: str) -> str | None:
        """Sysctl ``name`` read through the fd kept for writing it, if there is
        one (None: ask the holder)."""
        with self._lock:
            fd = self._sysctl_fds.get(name)
            if fd is None:
                return None
            try:
                return os.pread(fd, 65536, 0).decode()
            except PermissionError:
                return None

    async def ipc_fds_async(self) -> bool:
        """Whether the IPC namespace's fds are kept (pin.c "i"; asked the first
        time): ``/proc/sysvipc/{shm,msg,sem}`` opened by the holder, which keep
        its IPC namespace, and its mqueue directory on a mount attached nowhere.
        False for a holder that cannot give them: read from a thread in the
        namespace instead."""
        if self._ipc_fds:
            return True
        if self._no_ipc_fds:
            return False
        got = await self._fetch_fds(b"i", 4)
        if not isinstance(got, int):
            got = _mount_mqueue(got)
        if isinstance(got, int):
            # An older pin (EINVAL), no private proc (ENOTSUP): never; else next time.
            self._no_ipc_fds = got in (errno.EINVAL, errno.ENOTSUP)
            return False
        return self.keep_ipc_fds(got)

    def keep_ipc_fds(self, fds: list[int]) -> bool:
        """Keep ``fds`` as the IPC fds (``nsinfo`` opens them itself, once, for a
        holder that cannot); closed instead when the holder is closed or has
        some already. Whether the holder has them now."""
        with self._lock:
            if self.pidfd < 0 or self._ipc_fds:
                _close_all(fds)
            else:
                self._ipc_fds = tuple(fds)
            return bool(self._ipc_fds)

    def with_ipc_fds(self, read: Callable[[tuple[int, ...]], T]) -> T | None:
        """``read(fds)`` on the kept IPC fds (shm, msg, sem, mqueue directory),
        one reader at a time (they share file offsets); None when there are none."""
        with self._lock:
            if not self._ipc_fds:
                return None
            return read(self._ipc_fds)

    # -- binding views inside the container (pin.c: "o" and "n") -----------------

    def open_sysctl_target(self, name: str, *, timeout: float | None = None) -> int:
        """An ``O_PATH`` fd (the caller's) on sysctl ``name``'s /proc/sys file as the
        holder resolves it: in its mount namespace, and for a per-namespace sysctl
        the dentry of the container's own ipc, net or active pid namespace, the
        one the container's processes reach.  Blocking."""
        fds: list[int] = []
        try:
            with self._request_lock:
                channel, wake, tag, deadline = self._send(b"o " + sysctl_relpath(name), timeout)
                reply = self._receive(channel, wake, tag, deadline, fds=fds)
            self._answer(reply)
            if len(fds) != 1:
                raise OSError(errno.EPROTO, f"holder {self.pid}: no fd for {name}")
            return fds.pop()
        finally:
            _close_all(fds)

    def enter_final_mount_ns(self, *, timeout: float | None = None) -> None:
        """Have a holder whose mount namespace was deferred (pin.c, "Deferred mount
        namespace") unshare the container's own now, which locks every mount
        copied into it; a no-op for any other holder.  :attr:`inodes` follows.
        Blocking."""
        self._request(b"n", timeout)
        self.inodes["mnt"] = ns_inode(self.pid, "mnt")

    # -- the time namespace's offsets --------------------------------------------

    def _open_proc(self, name: str, flags: int) -> int:
        """Open ``/proc/PID/NAME`` of this very holder (checked by its pidfd)."""
        pidfd = self.dup_pidfd()
        try:
            return open_proc_checked(pidfd, self.pid, name, flags)
        except ProcessLookupError:
            raise ProcessLookupError(errno.ESRCH, f"holder {self.pid} is gone") from None
        finally:
            os.close(pidfd)

    def time_offsets(self) -> str:
        """The container's time namespace offsets, as ``/proc/PID/timens_offsets`` gives them.

        Two lines, ``monotonic SECONDS NANOSECONDS`` and ``boottime ...``
        (seconds may be negative, nanoseconds are 0..999999999).  Meaningful for
        a holder whose container owns its time namespace; otherwise these are
        the offsets of the time namespace it shares.
        """
        fd = self._open_proc("timens_offsets", os.O_RDONLY)
        try:
            return os.read(fd, 4096).decode()
        finally:
            os.close(fd)

    def set_time_offsets(self, monotonic_ns: int, boottime_ns: int) -> None:
        """Set CLOCK_MONOTONIC and CLOCK_BOOTTIME offsets of the container's time namespace.

        Possible only until the first process enters that namespace (an exec,
        or a nested holder that shares it): after that ``OSError(EBUSY)`` (the
        kernel says EACCES).  Both offsets change together or not at all.
        ``OSError(ERANGE)`` when a clock would go negative or too far; the
        kernel's ``EPERM`` without CAP_SYS_TIME over the namespace's owner.
        Only for a holder whose container owns its time namespace: on another
        it would change (or fail on) the namespace it shares.
        """
        lines = []
        for clock, ns_total in (("monotonic", monotonic_ns), ("boottime", boottime_ns)):
            secs, nsecs = divmod(int(ns_total), 1_000_000_000)  # nsecs in [0, 1e9)
            if abs(secs) > _KTIME_SEC_MAX:  # the kernel's own bound; its parser would wrap
                raise OSError(errno.ERANGE, f"{clock} offset out of range: {ns_total} ns")
            lines.append(f"{clock} {secs} {nsecs}\n")
        data = "".join(lines).encode()
        fd = self._open_proc("timens_offsets", os.O_WRONLY)
        try:
            os.write(fd, data)
        except OSError as exc:
            if exc.errno == errno.EACCES:
                raise OSError(
                    errno.EBUSY,
                    f"time namespace of holder {self.pid} was already entered: "
                    "its offsets are fixed",
                ) from None
            raise
        finally:
            os.close(fd)


def _mount_mqueue(fds: list[int]) -> list[int] | int:
    """The holder's "i" fds with the last, an mqueue filesystem context made in its
    IPC namespace, turned into that mqueue's directory on a read-only mount
    attached nowhere (fsmount here: the holder may lack the right to, in a user
    namespace); or ENOTSUP when it cannot be mounted, all closed."""
    fs_fd = fds.pop()
    try:
        mnt_fd = ksys.fsmount(
            fs_fd,
            ksys.MOUNT_ATTR_RDONLY
            | ksys.MOUNT_ATTR_NOSUID
            | ksys.MOUNT_ATTR_NODEV
            | ksys.MOUNT_ATTR_NOEXEC,
        )
        try:
            fds.append(os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=mnt_fd))
        finally:
            os.close(mnt_fd)  # the directory keeps the mount
    except OSError:
        _close_all(fds)
        return errno.ENOTSUP  # not a context fsmount takes, or not here: never
    finally:
        os.close(fs_fd)
    return fds


def _rights(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """The fds of SCM_RIGHTS messages in ``ancillary``."""
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4])
    return fds


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
    fds.clear()


def _proc_exited(pid: int) -> bool:
    """No ``/proc/PID``, or only a zombie (state Z, or X while being reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    try:
        return procfs.parse_stat_state(stat) in ("Z", "X")
    except ValueError:
        return True
