"""The daemon's own requests to its own mount, made by a helper process.

Two things need the daemon to go through its mount as any client would:

- **inotify.** FUSE has no way for a daemon to raise an inotify event on its
  own files: the kernel reports only changes made through the mount. So the
  helper writes to ``container.events``, the daemon answers that writer's
  writes with no effect, and the write is the ``IN_MODIFY`` watchers see.
- **bind mounts of containerfs files** (the internal views over ``/proc/sys``
  inside a container): ``open_tree`` of a path on the mount is a FUSE request.
  The helper makes it and passes the mount fd back over its socket; the
  daemon attaches it inside the container.

A process and not a thread, because a thread of the daemon blocked in a FUSE
request to the daemon keeps a killed daemon from ever exiting (its
``/dev/fuse`` stays open until every thread is gone, and the request stays
unanswered): seen here as a daemon that survived SIGKILL.

Run as ``python -m containerfs.fuse.loopback FD``: serves requests on the
inherited ``SOCK_SEQPACKET`` socket FD (``t PATH``: touch, no reply;
``o PATH``: reply ``ok`` with the fd, or ``err ERRNO``).
"""

from __future__ import annotations

import array
import contextlib
import errno
import os
import socket
import subprocess
import sys

#: Seconds between two nudges of an idle daemon (see :meth:`Loopback.nudge`).
HEARTBEAT = 1.0


class Loopback:
    """The helper process, seen from the daemon."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "containerfs.fuse.loopback", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self._lock: object = None  # a trio.Lock, made on first use inside trio

    @property
    def pid(self) -> int:
        return self.proc.pid

    def nudge(self, mountpoint: str) -> None:
        """Ask for one request to the mount (a lookup that fails); never blocks.

        pyfuse3 reads ``/dev/fuse`` holding the GIL once the fd polled
        readable. A FUSE_INTERRUPT the kernel queued and then withdrew (its
        request was answered first: a process stopped by ptrace, or signalled,
        in the middle of a request) leaves the fd readable with nothing to read,
        and that read blocks every thread of the daemon until the next request
        comes. This is that request. The helper also sends one every
        :data:`HEARTBEAT` seconds, which bounds any such freeze."""
        with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionError):
            self.sock.send(b"n " + os.fsencode(mountpoint))

    def touch(self, path: str) -> None:
        """Ask for one write to ``path``; never blocks. Dropped when the helper lags
        (``poll()`` watchers are still woken; inotify ones miss one event)."""
        with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionError):
            self.sock.send(b"t " + os.fsencode(path))

    async def open_tree(self, path: str) -> int:
        """A detached bind mount of ``path`` (a file on our mount), as an fd we own."""
        import trio

        if self._lock is None:
            self._lock = trio.Lock()
        assert isinstance(self._lock, trio.Lock)
        async with self._lock:  # one reply outstanding at a time
            await trio.lowlevel.wait_writable(self.sock)
            self.sock.send(b"o " + os.fsencode(path))
            while True:
                await trio.lowlevel.wait_readable(self.sock)
                try:
                    msg, fds, _flags, _addr = socket.recv_fds(self.sock, 64, 1)
                    break
                except BlockingIOError:
                    continue
        if msg == b"ok" and fds:
            return fds[0]
        for fd in fds:
            os.close(fd)
        if not msg:
            raise OSError(errno.EPIPE, "the loopback helper is gone")
        err = int(msg.split()[1]) if msg.startswith(b"err ") else errno.EPROTO
        raise OSError(err, f"open_tree {path}: {os.strerror(err)}")

    def stop(self) -> None:
        """End the helper without waiting for it (call before the FUSE session closes).

        The helper may be inside a request the daemon read and will now never
        answer (pyfuse3 was cancelled in the middle of it: a deep lookup of an
        ``o`` request, a heartbeat). The kernel does not end such a request on
        SIGKILL, only when ``/dev/fuse`` closes, so waiting for the helper here
        would wait forever: seen in CI as a daemon that never stopped on SIGTERM."""
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    def reap(self) -> None:
        """Collect the helper once the FUSE session is closed (its request then ends)."""
        # Not ours to hang on past that: its PDEATHSIG ends it with us.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def _serve(sock: socket.socket) -> None:
    """Serve until the daemon is gone. A daemon killed in the middle of a request
    shows as a failed send (its end closed before our PDEATHSIG comes): quietly
    the end too."""
    with contextlib.suppress(OSError):
        _answer_requests(sock)


def _nudge(mountpoint: bytes) -> None:
    """One FUSE request: a lookup of a name that is never there (ENOENT is not
    cached, so the kernel asks every time)."""
    with contextlib.suppress(OSError):
        os.stat(os.path.join(mountpoint, b".containerfs-nudge"))


def _answer_requests(sock: socket.socket) -> None:
    from containerfs.kernel import sys as ksys

    mountpoint = b""  # known from the first nudge
    sock.settimeout(HEARTBEAT)
    while True:
        try:
            msg = sock.recv(8192)
        except InterruptedError:
            continue
        except TimeoutError:
            if mountpoint:
                _nudge(mountpoint)
            continue
        if not msg:
            return  # the daemon is gone
        kind, _, path = msg.partition(b" ")
        if kind == b"n":
            mountpoint = path
            _nudge(path)
        elif kind == b"t":
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, b"\n")
                finally:
                    os.close(fd)
            except OSError:
                pass  # the container went away meanwhile
        elif kind == b"o":
            try:
                tree = ksys.open_tree_clone(os.fsdecode(path))
            except OSError as exc:
                sock.send(f"err {exc.errno or errno.EIO}".encode())
                continue
            try:
                sock.sendmsg(
                    [b"ok"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [tree]))]
                )
            finally:
                os.close(tree)


def main() -> None:
    import signal

    from containerfs.kernel import sys as ksys

    with contextlib.suppress(OSError):
        ksys.set_pdeathsig(signal.SIGKILL)  # go with the daemon
    with socket.socket(fileno=int(sys.argv[1])) as sock:
        _serve(sock)


if __name__ == "__main__":
    main()
