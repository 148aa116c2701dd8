"""Make inotify watchers of a containerfs file see ``IN_MODIFY``, as cgroupfs does.

FUSE has no way for a daemon to raise an inotify event on its own files: the
kernel reports only changes made through the mount. So a small helper process
writes to the file through the mount, which the daemon answers with no
effect; the write is the event. It is a process and not a thread because a
thread of the daemon waiting on the daemon's own FUSE request could keep the
daemon from ever exiting if it were killed at that moment.

Run as ``python -m containerfs.fuse.touch``: reads one path per line on stdin.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys


class Toucher:
    """The helper process, seen from the daemon: ``touch(path)`` never blocks."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "containerfs.fuse.touch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            close_fds=True,
        )
        assert self.proc.stdin is not None
        self._fd = self.proc.stdin.fileno()
        os.set_blocking(self._fd, False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def touch(self, path: str) -> None:
        """Ask for one write to ``path``. Dropped when the helper lags (watchers
        that poll() still get woken; inotify ones miss one event)."""
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._fd, os.fsencode(path) + b"\n")

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main() -> None:
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: go with the daemon
    for line in sys.stdin.buffer:
        path = line.rstrip(b"\n")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"\n")
            finally:
                os.close(fd)
        except OSError:
            pass  # the container went away meanwhile


if __name__ == "__main__":
    main()
