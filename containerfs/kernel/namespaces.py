"""Namespace holders, namespace identities, and running code inside a container.

A container's namespaces live in its *holder*, one ``containerfs-pin`` process
(``pin.c``; docs/design.md, "Namespaces: the holder").  This module starts
holders, names namespaces by inode, runs a function in a holder's namespaces
on a fresh OS thread, and moves a whole (single-threaded) process into a
holder's namespaces (:func:`enter_holder`, for ``containerfs exec``).

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
import os
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
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
    """All eight inodes of ``pid``, checked to belong to the process behind ``pidfd``.

    ``/proc/PID`` names a pid number, which may have been reused; the pidfd
    names the process.  If the pidfd's process is still alive after the reads,
    the pid still named it while we read.
    """
    inodes = {kind: ns_inode(pid, kind) for kind in KINDS}
    signal.pidfd_send_signal(pidfd, 0)  # ProcessLookupError once it is gone
    return inodes


def _readable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000))))


class Holder:
    """One container's namespace holder, referenced by pidfd.

    ``pid`` is in the daemon's pid namespace.  ``inodes`` has all eight kinds;
    for ``pid`` and ``time`` it is the holder's active namespace, which is the
    container's (the holder is the init of a pid namespace it owns).
    """

    def __init__(self, pid: int, pidfd: int, inodes: Mapping[str, int]) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.inodes: dict[str, int] = dict(inodes)
        # Guards ``pidfd`` between close() and dup_pidfd() on different threads:
        # without it a closed number could be reused by an unrelated file.
        self._lock = threading.Lock()

    @classmethod
    def attach(cls, pid: int) -> Holder:
        """Reference an existing holder (e.g. after a daemon restart) by its pid."""
        pidfd = os.pidfd_open(pid)
        try:
            return cls(pid, pidfd, _read_inodes(pid, pidfd))
        except BaseException:
            os.close(pidfd)
            raise

    def __repr__(self) -> str:
        return f"Holder(pid={self.pid}, pidfd={self.pidfd})"

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
        """Drop the pidfd (the holder keeps running)."""
        with self._lock:
            if self.pidfd >= 0:
                os.close(self.pidfd)
                self.pidfd = -1


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
) -> Holder:
    """Start a holder that shares ``parent``'s namespaces except ``unshare``.

    Blocking; the daemon runs it in a worker thread.  ``place`` gets the first
    pin process's pid before it does anything, so the daemon can move it into
    the container's cgroups (a new cgroup namespace is rooted at the creator's
    cgroup).  The pin joins ``parent`` through a pidfd passed to it, never by
    pid number; the new holder's shared namespaces are checked against
    ``parent.inodes`` (our own when ``parent`` is None) all the same.  On any
    failure everything started here is killed and the error raised: the pin's
    own failures as ``OSError`` with its errno and step, a parent holder that
    is closed or gone as ``ProcessLookupError``.
    """
    for kind in unshare:
        _check_kind(kind)
    flags = ksys.flags_of(unshare)
    join = _join_flags(parent)
    parent_fd = parent.dup_pidfd() if parent is not None else -1
    try:
        holder = _spawn(parent_fd, join, flags, place, mountpoint, pin_path, timeout)
    finally:
        if parent_fd >= 0:
            os.close(parent_fd)
    try:
        _check_shared(holder, parent, unshare)
    except BaseException:
        try:
            holder.kill()
        finally:
            holder.close()
        raise
    return holder


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


def _check_shared(holder: Holder, parent: Holder | None, unshare: frozenset[str]) -> None:
    """The new holder is in the parent's namespaces of every kind it does not own."""
    for kind in KINDS:
        if kind in unshare:
            continue
        want = parent.inodes[kind] if parent is not None else ns_inode("self", kind)
        if holder.inodes[kind] != want:
            raise OSError(errno.ESRCH, f"parent holder changed ({kind} namespace differs)")


def _spawn(
    parent_fd: int,
    join: int,
    flags: int,
    place: Callable[[int], None],
    mountpoint: str,
    pin_path: str,
    timeout: float,
) -> Holder:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours:
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
            ]
            proc = subprocess.Popen(
                argv,
                pass_fds=(theirs.fileno(),) + ((parent_fd,) if parent_fd >= 0 else ()),
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
            return _finish(ours, proc, timeout)
        except BaseException:
            _abort(ours, proc)
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
            return Holder(pid, pidfd, _read_inodes(pid, pidfd))
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
    ``setns`` through a pidfd joins the kinds where we differ.  Changes the
    calling *process* (for pid and time: its future children), so it must run
    single-threaded (the kernel refuses user and time otherwise).  After a
    mount namespace switch the current directory is looked up again by path
    (falling back to "/"), as a shell user expects.

    Raises ``OSError`` whose ``strerror`` is a full sentence: ESRCH when the
    holder is gone or not in the expected namespaces, the kernel's errno when
    ``setns`` refuses.
    """
    for kind in expected_inodes:
        _check_kind(kind)
    try:
        pidfd = os.pidfd_open(holder_pid)
    except ProcessLookupError:
        raise ProcessLookupError(errno.ESRCH, f"container holder {holder_pid} is gone") from None
    try:
        try:
            actual = {kind: ns_inode(holder_pid, kind) for kind in expected_inodes}
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
        cwd: str | None
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = None
        try:
            ksys.setns(pidfd, flags)
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
        os.close(pidfd)


# -- sysctls --------------------------------------------------------------------

#: Namespace knob file name -> (namespace kind, sysctl it reads and writes).
NAMESPACE_SYSCTLS: dict[str, tuple[str, str]] = {
    "uts.hostname": ("uts", "kernel.hostname"),
    "uts.domainname": ("uts", "kernel.domainname"),
}


def _sysctl_path(name: str) -> str:
    """``kernel.hostname`` -> ``/proc/sys/kernel/hostname``.

    As with sysctl(8), a name that contains "/" is taken as a path (for
    components with dots in them, such as VLAN interface names).
    """
    parts = name.split("/") if "/" in name else name.split(".")
    if not name or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad sysctl name: {name!r}")
    return "/proc/sys/" + "/".join(parts)


def _sysctl_reader(name: str) -> Callable[[], str]:
    path = _sysctl_path(name)

    def read() -> str:
        with open(path, "rb") as f:
            return f.read().decode()

    return read


def _sysctl_writer(name: str, value: str) -> Callable[[], None]:
    path = _sysctl_path(name)
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
