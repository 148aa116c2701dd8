"""Starting a holder: the ``containerfs-pin`` chain that makes a container's namespaces.

:func:`spawn_holder` starts a holder that shares a parent holder's namespaces
except those the container owns, and checks by inode that it ended up where it
should.  A holder can also be started in namespaces given as nsfs fds
(``spawn_holder(join_fds=...)``), to keep alive namespaces that processes of a
container made themselves.  The pin reports over a socketpair whose daemon end
becomes the :class:`~containerfs.kernel.holder.Holder`'s channel.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from containerfs.kernel import sys as ksys
from containerfs.kernel.holder import Holder, read_inodes
from containerfs.kernel.namespaces import check_kind, ns_inode, ns_inode_for_children
from containerfs.nskinds import KINDS

_UCRED = struct.Struct("iII")  # pid_t pid; uid_t uid; gid_t gid

_NO_FDS: Mapping[str, int] = MappingProxyType({})


class CloneIntoRefused(OSError):
    """The pin could not ``clone3(CLONE_INTO_CGROUP)``: an older kernel (ENOSYS,
    E2BIG, EINVAL), or a cgroup the kernel will not fork into (EPERM, EBUSY,
    EOPNOTSUPP...). Nothing was started; the caller may place the pin itself."""


def spawn_holder(
    *,
    parent: Holder | None,
    unshare: frozenset[str],
    place: Callable[[int], None] | None,
    mountpoint: str,
    pin_path: str,
    timeout: float = 10.0,
    join_fds: Mapping[str, int] = _NO_FDS,
    cgroup_fds: Sequence[tuple[str, int]] = (),
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

    ``cgroup_fds`` (``Placement.open_pin_cgroups``): the pin places itself and
    ``place`` is not called. ``pins`` (a cgroup2 directory fd): the chain is
    forked into it with ``clone3(CLONE_INTO_CGROUP)``, so the holder starts
    where holders live; ``cgdir`` and ``tasks`` (a cgroup2 directory, v1
    ``tasks`` files): a helper process born in the first and moving itself
    into the others unshares the cgroup namespace, which the chain then joins
    (pin.c, "Cgroup placement"). No move by pid is made, so no RCU grace
    period is waited for. A pin that cannot fork into a cgroup raises
    :class:`CloneIntoRefused`.

    On any failure everything started here is killed and the error raised: the
    pin's own failures as ``OSError`` with its errno and step, a parent holder
    that is closed or gone as ``ProcessLookupError``, a holder that did not end
    up in the expected namespaces as ``OSError(ESRCH)``.
    """
    for kind in unshare:
        check_kind(kind)
    joined = _joined_inodes(join_fds, unshare)
    # Kinds the pin would be in anyway need no join (joining one's own user
    # namespace would even fail); _check_shared checks them all the same.
    to_join = {k: join_fds[k] for k, ino in joined.items() if ino != _default_inode(parent, k)}
    flags = ksys.flags_of(unshare)
    join = _join_flags(parent) & ~ksys.flags_of(to_join)
    parent_fd = parent.dup_pidfd() if parent is not None else -1
    try:
        holder = _spawn(
            parent_fd, join, flags, to_join, place, mountpoint, pin_path, timeout, cgroup_fds
        )
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
        check_kind(kind)
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
    place: Callable[[int], None] | None,
    mountpoint: str,
    pin_path: str,
    timeout: float,
    cgroup_fds: Sequence[tuple[str, int]],
) -> Holder:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        # Before the pin can send: credentials are attached at send time.
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        with contextlib.suppress(OSError):  # ENOPROTOOPT before Linux 6.5
            ours.setsockopt(socket.SOL_SOCKET, ksys.SO_PASSPIDFD, 1)
        try:
            argv = [
                pin_path,
                str(theirs.fileno()),
                str(parent_fd),
                hex(join),
                hex(flags),
                mountpoint,
                *(f"{kind}={fd}" for kind, fd in join_fds.items()),
                *(f"{word}={fd}" for word, fd in cgroup_fds),
            ]
            fds = [theirs.fileno(), *join_fds.values(), *(fd for _, fd in cgroup_fds)]
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
            if place is not None:
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
            status = _wait(proc, timeout)
            if status != 0:
                raise OSError(errno.EIO, f"containerfs-pin exited with status {status}")
            # From now on the socket carries sysctl requests: no credentials or
            # pidfds attached to the holder's replies.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, ksys.SO_PASSPIDFD, 0)
            inodes = read_inodes(pid, pidfd)
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
        if step.startswith("clone3 into"):
            raise CloneIntoRefused(err, f"containerfs-pin: {step}: {os.strerror(err)}")
        raise OSError(err, f"containerfs-pin: {step}: {os.strerror(err)}")
    if not msg:
        status = proc.wait(timeout)
        raise OSError(errno.EIO, f"containerfs-pin exited with status {status} without reporting")
    raise OSError(errno.EPROTO, f"containerfs-pin: unexpected message {msg[:40]!r}")


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """``proc.wait(timeout)`` without its polling: that one sleeps 1, 2, 4 ms between
    looks, and the first pin exits a few microseconds after its holder said "ok",
    so a mkdir paid a whole millisecond here. A pidfd becomes readable at exit."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:  # already reaped
        return proc.wait(timeout)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(max(1, math.ceil(timeout * 1000))):
            raise subprocess.TimeoutExpired(proc.args, timeout)
    finally:
        os.close(pidfd)
    return proc.wait()


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
        elif kind == ksys.SCM_PIDFD and len(data) >= 4:
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
