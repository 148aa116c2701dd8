"""Namespace holders, namespace identities, and running code inside a container.

A container's namespaces live in its *holder*, one ``containerfs-pin`` process
(``pin.c``; docs/design.md, "Namespaces: the holder").  This module starts
holders, names namespaces by inode, runs a function in a holder's namespaces
on a fresh OS thread, and moves a whole (single-threaded) process into a
holder's namespaces (:func:`enter_holder`, for ``containerfs exec``).  The
holder also answers sysctl requests over the socket it was started with
(:meth:`Holder.sysctl`): it runs inside every namespace of the container,
including the pid and user namespaces a thread cannot take on.  The holder
keeps a copy of the daemon's end of that socket at fd :data:`HOLDER_CHANNEL_FD`
for as long as it lives, so a restarted daemon talks to it again
(:meth:`Holder.attach` takes that fd with ``pidfd_getfd``).  A holder can also
be started in namespaces given as nsfs fds (``spawn_holder(join_fds=...)``), to
keep alive namespaces that processes of a container made themselves.

Time namespaces: the holder is *not* in a time namespace its container owns.
It unshares it last, so the container's time namespace is the holder's
``time_for_children`` and stays empty (its offsets writable) until the first
process enters.  ``Holder.inodes["time"]`` is that namespace, and everything
that joins it goes through ``time_for_children``, never the holder's active one.

Why a fresh thread each time: ``setns()`` changes the calling *thread*, and a
pooled thread (``trio.to_thread``) that joined a container would run the next
unrelated job there.  The thread exits when the function returns, taking its
namespaces with it.  A thread cannot join a user namespace (the kernel refuses
in a multithreaded process) nor a time namespace (EUSERS), and it must
``unshare(CLONE_FS)`` before joining a mount namespace.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import secrets
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TypeVar

from containerfs.kernel import sys as ksys

T = TypeVar("T")

KINDS: tuple[str, ...] = ("ipc", "uts", "net", "pid", "mnt", "user", "cgroup", "time")

#: Kinds a thread cannot join: the kernel refuses both in a multithreaded process.
THREAD_REFUSED = frozenset({"user", "time"})

# Linux >= 6.5: the kernel hands the receiver a pidfd of the sender.  Not in
# Python 3.11's socket module.
_SO_PASSPIDFD = 76
_SCM_PIDFD = 0x04
_UCRED = struct.Struct("iII")  # pid_t pid; uid_t uid; gid_t gid

# linux/pidfd.h, Linux >= 6.11: _IO(PIDFS_IOCTL_MAGIC, 8), an nsfs fd on the
# time namespace the process's children get.
_PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE = 0xFF08

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

_NO_FDS: Mapping[str, int] = MappingProxyType({})


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown namespace kind: {kind!r}")


def ns_inode(pid: int | str, kind: str) -> int:
    """Inode of ``/proc/PID/ns/KIND``: the namespace's identity.

    For ``pid`` and ``time`` this is the process's *active* namespace (the one
    it runs in).  ``pid`` may also be ``"self"`` or ``"thread-self"``.  A
    process that is gone (or a zombie, which has dropped its namespaces) raises
    ``ProcessLookupError``.
    """
    _check_kind(kind)
    return _stat_ns(f"/proc/{pid}/ns/{kind}")


def ns_inode_for_children(pid: int | str, kind: str) -> int:
    """Inode of the namespace the process's *next children* get.

    Differs from :func:`ns_inode` only for ``pid`` and ``time`` after the
    process called ``unshare``/``setns`` for them (those change children only).
    """
    _check_kind(kind)
    name = f"{kind}_for_children" if kind in ("pid", "time") else kind
    return _stat_ns(f"/proc/{pid}/ns/{name}")


def _stat_ns(path: str) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {path}") from None


def _read_inodes(pid: int, pidfd: int) -> dict[str, int]:
    """All eight namespaces of holder ``pid``, checked to belong to the process behind ``pidfd``.

    Time is the holder's ``time_for_children`` (the container's: see the
    module docstring); the others are the holder's own.  ``/proc/PID`` names a
    pid number, which may have been reused; the pidfd names the process.  If
    the pidfd's process is still alive after the reads, the pid still named it
    while we read.
    """
    inodes = {kind: _holder_inode(pid, kind) for kind in KINDS}
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


def open_ns_checked(path: str, inode: int) -> int:
    """An nsfs fd on ``path`` (``/proc/PID/ns/net``, a bind-mounted netns file) that is
    namespace ``inode``; ``ProcessLookupError`` when it is another by now."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    if os.fstat(fd).st_ino != inode:
        os.close(fd)
        raise ProcessLookupError(errno.ESRCH, f"{path} is no longer namespace {inode}")
    return fd


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


def _holder_inode(pid: int | str, kind: str) -> int:
    """The container's namespace of ``kind`` as seen on its holder ``pid``."""
    return ns_inode_for_children(pid, kind) if kind == "time" else ns_inode(pid, kind)


def _time_ns_fd(pidfd: int, pid: int) -> int:
    """An nsfs fd on the time namespace the children of ``pidfd``'s process get.

    ``setns(pidfd, CLONE_NEWTIME)`` joins a process's *active* time namespace;
    a holder's container lives in its ``time_for_children``.  Linux >= 6.11
    has a pidfd ioctl for it; before, ``/proc/PID/ns/time_for_children`` is
    opened and the pidfd checked to be alive afterwards (so ``pid`` still
    named it).  ``ProcessLookupError`` once the process is gone.
    """
    try:
        return fcntl.ioctl(pidfd, _PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE)
    except OSError as exc:
        if exc.errno not in (errno.ENOTTY, errno.EINVAL):
            raise
    return _open_proc_checked(pidfd, pid, "ns/time_for_children", os.O_RDONLY)


def _open_proc_checked(pidfd: int, pid: int, name: str, flags: int) -> int:
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


def _holder_pidfd(pid: int) -> int:
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
            _check_kind(kind)
        pidfd = _holder_pidfd(pid)
        channel = None
        try:
            try:
                is_pin = _is_pin(pid)
                inodes = _read_inodes(pid, pidfd)  # checks the pidfd alive afterwards
            except ProcessLookupError:
                raise ProcessLookupError(errno.ESRCH, f"holder {pid} is gone") from None
            if not is_pin:
                raise OSError(
                    errno.ESRCH,
                    f"process {pid} is not a {PIN_NAME}: pid reused or container changed",
                )
            changed = sorted(k for k, ino in expected_inodes.items() if inodes[k] != ino)
            if changed:
                raise OSError(
                    errno.ESRCH,
                    f"holder {pid} is not in the expected {', '.join(changed)} namespace: "
                    "pid reused or container changed",
                )
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
            channel, self._channel = self._channel, None
            if channel is not None:
                os.eventfd_write(self._wake, 1)  # wakes a request waiting for its reply
        if channel is not None:
            with self._request_lock:  # the fds stay ours until that request is done
                channel.close()
                os.close(self._wake)
                self._wake = -1

    # -- sysctls served by the holder --------------------------------------------

    def _request(self, message: bytes, timeout: float | None) -> bytes:
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
            reply = self._receive(*sent)
        return self._answer(reply)

    async def _request_async(self, message: bytes) -> bytes:
        """:meth:`_request` for the trio loop, without a worker thread when it can.

        The holder answers in tens of microseconds, far less than a hop to a
        worker thread, so the reply is first awaited inline for at most
        ``INLINE_WAIT``; a slower holder is left to a worker thread, which then
        releases the request lock.  The lock is never held across an ``await``
        by the loop itself, so a :meth:`close` on the loop cannot deadlock.
        """
        import trio  # the exec client imports this module and must not pay for trio

        if not self._request_lock.acquire(blocking=False):  # busy: wait on a thread
            return await trio.to_thread.run_sync(self._request, message, None)
        handed_over = False
        try:
            channel, wake, tag, deadline = self._send(message, None)
            reply = self._receive(
                channel, wake, tag, min(deadline, time.monotonic() + self.INLINE_WAIT), quiet=True
            )
            if reply is None:
                handed_over = True
                reply = await trio.to_thread.run_sync(
                    self._receive_and_release, channel, wake, tag, deadline
                )
        finally:
            if not handed_over:
                self._request_lock.release()
        return self._answer(reply)

    def _receive_and_release(
        self, channel: socket.socket, wake: int, tag: bytes, deadline: float
    ) -> bytes | None:
        try:
            return self._receive(channel, wake, tag, deadline)
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
                        _REPLY_MAX, socket.CMSG_SPACE(4), socket.MSG_CMSG_CLOEXEC
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
        return self._request(b"r " + _sysctl_relpath(name), timeout).decode()

    def set_sysctl(self, name: str, value: str, *, timeout: float | None = None) -> None:
        """Write ``value`` (one write, as given) to sysctl ``name``, by the holder."""
        self._request(b"w " + _sysctl_relpath(name) + b" " + value.encode(), timeout)

    async def sysctl_async(self, name: str) -> str:
        """:meth:`sysctl` for the trio loop (see :meth:`_request_async`)."""
        return (await self._request_async(b"r " + _sysctl_relpath(name))).decode()

    async def set_sysctl_async(self, name: str, value: str) -> None:
        """:meth:`set_sysctl` for the trio loop (see :meth:`_request_async`)."""
        await self._request_async(b"w " + _sysctl_relpath(name) + b" " + value.encode())

    # -- binding views inside the container (pin.c: "o" and "n") -----------------

    def open_sysctl_target(self, name: str, *, timeout: float | None = None) -> int:
        """An ``O_PATH`` fd (the caller's) on sysctl ``name``'s /proc/sys file as the
        holder resolves it: in its mount namespace, and for a per-namespace sysctl
        the dentry of the container's own ipc, net or active pid namespace, the
        one the container's processes reach.  Blocking."""
        fds: list[int] = []
        try:
            with self._request_lock:
                channel, wake, tag, deadline = self._send(b"o " + _sysctl_relpath(name), timeout)
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
            return _open_proc_checked(pidfd, self.pid, name, flags)
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
    # "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
    fields = stat[stat.rfind(b")") + 1 :].split()
    return not fields or fields[0] in (b"Z", b"X")


# -- starting a holder --------------------------------------------------------


def spawn_holder(
    *,
    parent: Holder | None,
    unshare: frozenset[str],
    place: Callable[[int], None],
    mountpoint: str,
    pin_path: str,
    timeout: float = 10.0,
    join_fds: Mapping[str, int] = _NO_FDS,
) -> Holder:
    """Start a holder that shares ``parent``'s namespaces except ``unshare`` and ``join_fds``.

    Blocking; the daemon runs it in a worker thread.  ``place`` gets the first
    pin process's pid before it does anything, so the daemon can move it into
    the container's cgroups (a new cgroup namespace is rooted at the creator's
    cgroup).  The pin joins ``parent`` through a pidfd passed to it, never by
    pid number; the new holder's shared namespaces are checked against
    ``parent.inodes`` (our own when ``parent`` is None) all the same.

    ``join_fds`` (kind -> an nsfs fd the caller opened and keeps owning, e.g.
    ``os.open("/proc/PID/ns/net")`` or a bind-mounted ``/run/netns/NAME``)
    are namespaces to join instead of the parent's of that kind: the holder
    then keeps them alive.  The pin joins them after the parent's non-user
    namespaces and before unsharing, a user namespace last; a pid namespace
    joined this way has the holder as an ordinary process in it (not its
    init), and a time namespace fd is the namespace itself (joining enters it:
    its offsets are fixed from then on).  The holder's :attr:`Holder.inodes`
    of those kinds are checked to be the fds' namespaces.  ``ValueError`` for
    an unknown kind, a kind also in ``unshare``, or an fd that is not a
    namespace of its kind.

    On any failure everything started here is killed and the error raised: the
    pin's own failures as ``OSError`` with its errno and step, a parent holder
    that is closed or gone as ``ProcessLookupError``, a holder that did not end
    up in the expected namespaces as ``OSError(ESRCH)``.
    """
    for kind in unshare:
        _check_kind(kind)
    joined = _joined_inodes(join_fds, unshare)
    # Kinds the pin would be in anyway need no join (joining one's own user
    # namespace would even fail); _check_shared checks them all the same.
    to_join = {k: join_fds[k] for k, ino in joined.items() if ino != _default_inode(parent, k)}
    flags = ksys.flags_of(unshare)
    join = _join_flags(parent) & ~ksys.flags_of(to_join)
    parent_fd = parent.dup_pidfd() if parent is not None else -1
    try:
        holder = _spawn(parent_fd, join, flags, to_join, place, mountpoint, pin_path, timeout)
    finally:
        if parent_fd >= 0:
            os.close(parent_fd)
    try:
        _check_shared(holder, parent, unshare, joined)
    except BaseException:
        try:
            holder.kill()
        finally:
            holder.close()
        raise
    return holder


def _joined_inodes(join_fds: Mapping[str, int], unshare: frozenset[str]) -> dict[str, int]:
    """Kind -> inode of each ``join_fds`` namespace, checked to be of its kind."""
    joined = {}
    for kind, fd in join_fds.items():
        _check_kind(kind)
        if kind in unshare:
            raise ValueError(f"cannot both join and own a {kind} namespace")
        try:
            nstype = ksys.ns_get_nstype(fd)
        except OSError as exc:
            raise ValueError(f"join_fds[{kind!r}] is not a namespace fd: {exc.strerror}") from None
        if nstype != ksys.NS_FLAGS[kind]:
            raise ValueError(f"join_fds[{kind!r}] is not a {kind} namespace")
        joined[kind] = os.fstat(fd).st_ino
    return joined


def _default_inode(parent: Holder | None, kind: str) -> int:
    """The namespace of ``kind`` a pin we start ends up in unless told otherwise."""
    return parent.inodes[kind] if parent is not None else ns_inode("self", kind)


def _join_flags(parent: Holder | None) -> int:
    """CLONE_NEW* flags of ``parent``'s namespaces that a pin we start is not in.

    The pin is forked from the calling thread, so it starts in that thread's
    namespaces: for pid and time, the ones its children get.  Joining one's
    own user namespace is an error (EINVAL), hence only the differing kinds.
    """
    if parent is None:
        return 0
    return ksys.flags_of(
        k for k in KINDS if parent.inodes[k] != ns_inode_for_children("thread-self", k)
    )


def _check_shared(
    holder: Holder, parent: Holder | None, unshare: frozenset[str], joined: Mapping[str, int]
) -> None:
    """The new holder is in the joined namespaces, and in the parent's of every other kind
    it does not own."""
    for kind in KINDS:
        if kind in unshare:
            continue
        if kind in joined:
            if holder.inodes[kind] != joined[kind]:
                raise OSError(
                    errno.ESRCH,
                    f"holder {holder.pid} is not in the {kind} namespace it was to join",
                )
        elif holder.inodes[kind] != _default_inode(parent, kind):
            raise OSError(errno.ESRCH, f"parent holder changed ({kind} namespace differs)")


def _spawn(
    parent_fd: int,
    join: int,
    flags: int,
    join_fds: Mapping[str, int],
    place: Callable[[int], None],
    mountpoint: str,
    pin_path: str,
    timeout: float,
) -> Holder:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        # Before the pin can send: credentials are attached at send time.
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        with contextlib.suppress(OSError):  # ENOPROTOOPT before Linux 6.5
            ours.setsockopt(socket.SOL_SOCKET, _SO_PASSPIDFD, 1)
        try:
            argv = [
                pin_path,
                str(theirs.fileno()),
                str(parent_fd),
                hex(join),
                hex(flags),
                mountpoint,
                *(f"{kind}={fd}" for kind, fd in join_fds.items()),
            ]
            fds = [theirs.fileno(), *join_fds.values()]
            if parent_fd >= 0:
                fds.append(parent_fd)
            proc = subprocess.Popen(
                argv,
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        try:
            place(proc.pid)
            ours.settimeout(timeout)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                ours.send(b"go")  # a pin that already failed has its "err" queued for us
            return _finish(ours, proc, timeout)  # the holder keeps ``ours`` as its channel
        except BaseException:
            _abort(ours, proc)
            raise
    except BaseException:
        ours.close()
        raise


def _finish(sock: socket.socket, proc: subprocess.Popen[bytes], timeout: float) -> Holder:
    msg, pid, pidfd = _receive(sock)
    if msg == b"ok" and pid is not None:
        if pidfd is None:
            pidfd = os.pidfd_open(pid)
        try:
            status = proc.wait(timeout)
            if status != 0:
                raise OSError(errno.EIO, f"containerfs-pin exited with status {status}")
            # From now on the socket carries sysctl requests: no credentials or
            # pidfds attached to the holder's replies.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, _SO_PASSPIDFD, 0)
            inodes = _read_inodes(pid, pidfd)
            # Last: the holder keeps this copy of our end at HOLDER_CHANNEL_FD
            # (pin.c, "peer") and from then on lives on whatever happens to us.
            socket.send_fds(sock, [b"peer"], [sock.fileno()])
            kept = sock.recv(16)
            if kept != b"kept":
                raise OSError(
                    errno.EIO if not kept else errno.EPROTO,
                    f"holder {pid} did not keep the channel: {kept[:40]!r}",
                )
            return Holder(pid, pidfd, inodes, channel=sock)
        except BaseException:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
            raise
    if pidfd is not None:
        os.close(pidfd)
    if msg.startswith(b"err "):
        _, code, step = (msg.decode(errors="replace").split(" ", 2) + [""])[:3]
        err = int(code) if code.isdigit() else errno.EIO
        raise OSError(err, f"containerfs-pin: {step}: {os.strerror(err)}")
    if not msg:
        status = proc.wait(timeout)
        raise OSError(errno.EIO, f"containerfs-pin exited with status {status} without reporting")
    raise OSError(errno.EPROTO, f"containerfs-pin: unexpected message {msg[:40]!r}")


def _receive(sock: socket.socket) -> tuple[bytes, int | None, int | None]:
    """One message with the sender's pid (our pid namespace) and, if given, a pidfd.

    A peer that closes with our "go" still unread makes the next ``recv`` fail
    with ECONNRESET although its own message is queued: read again.
    """
    space = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(4)
    for _ in range(3):
        try:
            msg, ancillary, _flags, _addr = sock.recvmsg(256, space)
            break
        except ConnectionResetError:
            continue
    else:
        return b"", None, None
    pid: int | None = None
    pidfd: int | None = None
    for level, kind, data in ancillary:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_CREDENTIALS and len(data) >= _UCRED.size:
            pid = _UCRED.unpack_from(data)[0]
        elif kind == _SCM_PIDFD and len(data) >= 4:
            if pidfd is not None:
                os.close(pidfd)
            pidfd = struct.unpack_from("i", data)[0]
        elif kind == socket.SCM_RIGHTS:  # never sent; do not leak them
            for fd in struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4]):
                os.close(fd)
    return msg, pid, pidfd


def _abort(sock: socket.socket, proc: subprocess.Popen[bytes]) -> None:
    """Kill whatever this spawn started.

    Killing the first pin process takes down a half-built chain (each later
    process has PR_SET_PDEATHSIG until it reported).  A holder that reported
    "ok" meanwhile is no longer tied to its parent: drain the socket until every
    pin process closed it and kill any holder that shows up there.
    """
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):  # e.g. placed in a frozen cgroup
        proc.wait(5.0)
    deadline = time.monotonic() + 2.0
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            msg, pid, pidfd = _receive(sock)
        except OSError:
            break
        if not msg:
            break
        if msg == b"ok" and pid is not None and pidfd is None:
            with contextlib.suppress(OSError):
                pidfd = os.pidfd_open(pid)
        if pidfd is not None:
            if msg == b"ok":
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)


# -- running code in a holder's namespaces -------------------------------------


def _thread_flags(kinds: Iterable[str]) -> int:
    kinds = frozenset(kinds)
    for kind in kinds:
        _check_kind(kind)
    refused = kinds & THREAD_REFUSED
    if refused:
        raise ValueError(f"a thread cannot join {', '.join(sorted(refused))} namespaces")
    return ksys.flags_of(kinds)


class _NsThread(threading.Thread):
    """A one-shot thread that joins a holder's namespaces, runs ``fn`` and exits.

    It owns ``pidfd`` (a dup the caller made, so that the daemon closing the
    holder meanwhile cannot matter) and closes it when done.
    """

    def __init__(
        self,
        pid: int,
        pidfd: int,
        flags: int,
        fn: Callable[[], T],
        on_done: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name=f"ns-{pid}", daemon=True)
        self._pidfd = pidfd
        self._flags = flags
        self._fn: Callable[[], object] = fn
        self._on_done = on_done
        self._result: object = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            if self._flags & ksys.CLONE_NEWNS:
                # setns(mnt) refuses a thread that shares cwd/root with others.
                ksys.unshare(ksys.CLONE_FS)
            if self._flags:
                ksys.setns(self._pidfd, self._flags)
            self._result = self._fn()
        except BaseException as exc:  # handed to the caller's thread
            self._error = exc
        finally:
            try:
                os.close(self._pidfd)
            finally:
                if self._on_done is not None:
                    self._on_done()

    def outcome(self) -> object:
        if self._error is not None:
            raise self._error
        return self._result


def _start(
    holder: Holder, kinds: Iterable[str], fn: Callable[[], T], on_done: Callable[[], None] | None
) -> _NsThread:
    """Start the visit; the holder's pidfd is dup'ed here, in the calling thread."""
    flags = _thread_flags(kinds)
    pidfd = holder.dup_pidfd()
    try:
        thread = _NsThread(holder.pid, pidfd, flags, fn, on_done)
        thread.start()
    except BaseException:
        os.close(pidfd)
        raise
    return thread


def run_in_namespaces(holder: Holder, kinds: Iterable[str], fn: Callable[[], T]) -> T:
    """Run ``fn`` in ``holder``'s namespaces of ``kinds`` and return its result.

    Blocks the caller (use :func:`run_in_namespaces_async` under trio).  ``fn``
    runs on a new thread that exits afterwards, so no thread outlives the
    visit.  ``fn``'s exception is re-raised here.  "user" and "time" are
    refused (``ValueError``): the kernel lets only single-threaded processes
    join those.  A closed holder raises ``ProcessLookupError`` (ESRCH), as
    does one whose process is gone (from ``setns``).
    """
    thread = _start(holder, kinds, fn, None)
    thread.join()
    return thread.outcome()  # type: ignore[return-value]


async def run_in_namespaces_async(holder: Holder, kinds: Iterable[str], fn: Callable[[], T]) -> T:
    """:func:`run_in_namespaces` without blocking the trio event loop.

    The fresh thread wakes the loop through the trio token when it is done.
    Like ``trio.to_thread.run_sync``, waiting is not cancellable: ``fn`` is
    never abandoned half-way inside a namespace.
    """
    import trio  # the exec client imports this module and must not pay for trio

    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake() -> None:
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    thread = _start(holder, kinds, fn, wake)
    with trio.CancelScope(shield=True):
        await done.wait()
    thread.join()
    return thread.outcome()  # type: ignore[return-value]


# -- moving this process into a holder's namespaces -----------------------------


def enter_holder(holder_pid: int, expected_inodes: Mapping[str, int]) -> None:
    """Join the namespaces of holder ``holder_pid`` that differ from ours, after checking them.

    ``expected_inodes`` (kind -> inode, e.g. from ``container.subsystems``) are
    the namespaces the container has; the holder must still be in every one of
    them, which guards against a changed container or a reused pid.  Then one
    ``setns`` through a pidfd joins the kinds where we differ, except time:
    ``setns(pidfd, CLONE_NEWTIME)`` would take the holder's *active* time
    namespace, while the container's is the holder's ``time_for_children``, so
    that one is joined first through an nsfs fd (checked by inode).  Changes
    the calling *process* (for pid: only its future children; joining a time
    namespace moves the caller too, and from then on its offsets are fixed),
    so it must run single-threaded (the kernel refuses user and time
    otherwise).  After a mount namespace switch the current directory is
    looked up again by path (falling back to "/"), as a shell user expects.

    Raises ``OSError`` whose ``strerror`` is a full sentence: ESRCH when the
    holder is gone or not in the expected namespaces, the kernel's errno when
    ``setns`` refuses.
    """
    for kind in expected_inodes:
        _check_kind(kind)
    pidfd = _holder_pidfd(holder_pid)
    time_fd = -1
    try:
        try:
            actual = {kind: _holder_inode(holder_pid, kind) for kind in expected_inodes}
            # Still alive after the reads: the inodes are this pidfd's process.
            signal.pidfd_send_signal(pidfd, 0)
        except ProcessLookupError:
            raise ProcessLookupError(
                errno.ESRCH, f"container holder {holder_pid} is gone"
            ) from None
        changed = sorted(k for k, ino in expected_inodes.items() if actual[k] != ino)
        if changed:
            raise OSError(
                errno.ESRCH,
                f"holder {holder_pid} is not in the container's {', '.join(changed)} "
                "namespace (container changed or pid reused)",
            )
        flags = ksys.flags_of(
            k for k, ino in expected_inodes.items() if ns_inode_for_children("self", k) != ino
        )
        if not flags:
            return
        if flags & ksys.CLONE_NEWTIME:
            # setns(pidfd) would join the holder's active time namespace, not
            # the container's; open that one now, before /proc may change with
            # the mount namespace, and check it is the expected one.
            try:
                time_fd = _time_ns_fd(pidfd, holder_pid)
            except ProcessLookupError:
                raise ProcessLookupError(
                    errno.ESRCH, f"container holder {holder_pid} is gone"
                ) from None
            if os.fstat(time_fd).st_ino != expected_inodes["time"]:
                raise OSError(
                    errno.ESRCH,
                    f"holder {holder_pid} is not in the container's time namespace "
                    "(container changed or pid reused)",
                )
        cwd: str | None
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = None
        try:
            # Time first, while we still have every capability over its owner
            # (a namespace owned by an ancestor's user namespace would refuse
            # us once we are in the container's own user namespace).
            if time_fd >= 0:
                ksys.setns(time_fd, ksys.CLONE_NEWTIME)
            if flags & ~ksys.CLONE_NEWTIME:
                ksys.setns(pidfd, flags & ~ksys.CLONE_NEWTIME)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot enter namespaces of holder {holder_pid}: {exc.strerror}"
            ) from None
        if flags & ksys.CLONE_NEWNS:
            try:
                os.chdir(cwd or "/")
            except OSError:
                os.chdir("/")
    finally:
        if time_fd >= 0:
            os.close(time_fd)
        os.close(pidfd)


def holder_id_maps(holder_pid: int, user_inode: int) -> tuple[str, str]:
    """The ``uid_map`` and ``gid_map`` texts of holder ``holder_pid``'s user namespace.

    ``containerfs exec`` reads them before it enters (its ``/proc`` may be
    another one afterwards) to know which IDs it may switch to inside.  The
    holder must still be in user namespace ``user_inode`` (the container's):
    otherwise ``OSError(ESRCH)``, as in :func:`enter_holder`.  The first and
    third fields of each line (IDs inside, count) are the same whoever reads;
    only the second depends on the reader's user namespace.
    """
    pidfd = _holder_pidfd(holder_pid)
    try:
        texts: list[str] = []
        try:
            for name in ("uid_map", "gid_map"):
                fd = _open_proc_checked(pidfd, holder_pid, name, os.O_RDONLY)
                with open(fd) as f:
                    texts.append(f.read())
            # A map file shows the namespace its process was in when opened;
            # a holder never changes its user namespace, so one check covers both.
            user_fd = _open_proc_checked(pidfd, holder_pid, "ns/user", os.O_RDONLY)
        except ProcessLookupError:
            raise ProcessLookupError(
                errno.ESRCH, f"container holder {holder_pid} is gone"
            ) from None
        try:
            same = os.fstat(user_fd).st_ino == user_inode
        finally:
            os.close(user_fd)
        if not same:
            raise OSError(
                errno.ESRCH,
                f"holder {holder_pid} is not in the container's user namespace "
                "(container changed or pid reused)",
            )
        return texts[0], texts[1]
    finally:
        os.close(pidfd)


# -- sysctls --------------------------------------------------------------------


def sysctl_path(name: str) -> str:
    """``kernel.hostname`` -> ``/proc/sys/kernel/hostname``.

    As with sysctl(8), a name that contains "/" is taken as a path (for
    components with dots in them, such as VLAN interface names).
    """
    parts = name.split("/") if "/" in name else name.split(".")
    if not name or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad sysctl name: {name!r}")
    return "/proc/sys/" + "/".join(parts)


def _sysctl_relpath(name: str) -> bytes:
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


def availability() -> dict[str, str | None]:
    """Namespace kind -> None when this kernel has it, else the reason it is unusable."""
    return {k: None if os.path.exists(f"/proc/self/ns/{k}") else "kernel-lacks-it" for k in KINDS}


async def write_sysctl_async(holder: Holder, kind: str, name: str, value: str) -> None:
    """:func:`write_sysctl` without blocking the trio event loop."""
    await run_in_namespaces_async(holder, [kind], _sysctl_writer(name, value))
