"""Lifecycle latencies: release under ``delete``, and discovery of an ``unshare``.

Run as root: ``python -m bench.lifecycle [--runs N] [--json FILE]`` (``make bench``).
It starts ``containerfs mount`` in a cgroup subtree of its own (as the tests do)
and removes everything it made.

- **release**: a container with ``release`` = ``delete`` and one task; the task
  is killed, and the time runs from its exit (its pidfd turns readable) to the
  removal of the container's cgroup2 directory, which the daemon removes as it
  deletes the container (checked every 0.2 ms: cgroupfs sends no inotify event
  when a cgroup directory goes).
- **discovery**: a task runs ``unshare --net`` and reports through a FIFO once
  it is in the new namespace; the time runs from that report to the new
  child's cgroup directory (inotify ``IN_CREATE`` on the parent's cgroup2
  directory).

The kernel stamps neither event, so each figure includes a few tens of
microseconds of this script's own wake-ups.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from bench.harness import CONTAINERFS, arguments, mounted, report, summary

IN_CREATE = 0x100

_libc = ctypes.CDLL(None, use_errno=True)


class Inotify:
    def __init__(self) -> None:
        self.fd = _libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")

    def watch(self, path: Path, mask: int) -> int:
        wd = _libc.inotify_add_watch(self.fd, str(path).encode(), mask)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
        return int(wd)

    def wait(self, wd: int, mask: int, timeout: float) -> float:
        """Monotonic time at which an event with ``mask`` arrived on ``wd``."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not poller.poll(int(left * 1000) + 1):
                continue
            now = time.monotonic()
            buf = os.read(self.fd, 65536)
            off = 0
            while off < len(buf):
                ev_wd, ev_mask, _cookie, length = struct.unpack_from("iIII", buf, off)
                off += 16 + length
                if ev_wd == wd and ev_mask & mask:
                    return now
        raise TimeoutError("no inotify event")

    def close(self) -> None:
        os.close(self.fd)


def gone_at(path: Path, timeout: float) -> float:
    """Monotonic time at which ``path`` was first seen gone."""
    deadline = time.monotonic() + timeout
    while os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} is still there")
        time.sleep(0.0002)
    return time.monotonic()


def release_latency(mnt: Path, v2: Path, runs: int) -> list[float]:
    """Seconds from the last task's exit to the container's removal, per run."""
    out = []
    for i in range(runs):
        name = f"rel{i}"
        subprocess.run(["mkdir", str(mnt / name)], check=True)
        (mnt / name / "container.release").write_text("delete\n")
        client = subprocess.Popen(
            [*CONTAINERFS, "exec", str(mnt / name), "--", "sleep", "600"],
            stdout=subprocess.DEVNULL,
        )
        while not (tasks := (mnt / name / "tasks").read_text().split()):
            time.sleep(0.005)
        pid = int(tasks[0])
        pidfd = os.pidfd_open(pid)
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [])
            exited = time.monotonic()
        finally:
            os.close(pidfd)
        removed = gone_at(v2 / name, 10)
        out.append(removed - exited)
        client.wait(timeout=10)
    return out


def discovery_latency(mnt: Path, v2: Path, runs: int) -> list[float]:
    """Seconds from a task being in its new namespace to its child container's cgroup."""
    out = []
    subprocess.run(["mkdir", str(mnt / "disc")], check=True)
    ino = Inotify()
    fifo = Path(tempfile.mkdtemp(prefix="cfs-bench-fifo-")) / "ready"
    os.mkfifo(fifo)
    try:
        wd = ino.watch(v2 / "disc", IN_CREATE)
        for _ in range(runs):
            client = subprocess.Popen(
                [
                    *CONTAINERFS,
                    "exec",
                    str(mnt / "disc"),
                    "--",
                    "unshare",
                    "--net",
                    "sh",
                    "-c",
                    f"echo x > {fifo}; exec sleep 600",
                ],
                stdout=subprocess.DEVNULL,
            )
            with open(fifo, "rb") as f:
                f.read(1)
            ready = time.monotonic()
            created = ino.wait(wd, IN_CREATE, 10)
            out.append(created - ready)
            client.kill()
            client.wait(timeout=10)
            deadline = time.monotonic() + 10
            while [p for p in (mnt / "disc").iterdir() if p.is_dir()]:
                if time.monotonic() > deadline:
                    raise SystemExit("a discovered container was not deleted")
                time.sleep(0.01)
    finally:
        ino.close()
        fifo.unlink()
        fifo.parent.rmdir()
    return out


def main() -> None:
    args = arguments("bench.lifecycle", __doc__)
    with mounted("lifecycle") as (mnt, subtree):
        v2 = subtree.v2_dir
        if v2 is None:
            raise SystemExit("bench.lifecycle: no cgroup2 hierarchy")
        results = {
            "release_delete": summary(release_latency(mnt, v2, args.runs)),
            "clone_discovery": summary(discovery_latency(mnt, v2, max(10, args.runs // 5))),
        }
    report(results, args.json)


if __name__ == "__main__":
    main()
