"""A tree deeper than Python's recursion limit (issue 14): every request still works.

The chain is made the way a user in a shell would (``cd`` into each new
directory: no path ever nears PATH_MAX), here with directory fds and
``mkdirat``. Its containers own no namespaces (a new container's own
``container.subtree`` is empty), so they cost a cgroup directory each and no
holder. The old daemon walked the tree recursively: past about 985 levels
``tasks`` writes, ``cat namespaces``, ``rmdir`` and state saves failed with
``EIO`` for everyone, and a restart died before mounting.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Mounted, wait_for

pytestmark = pytest.mark.root

#: Past Python's default recursion limit (1,000), as the issue's 985 levels were.
DEPTH = 1100
#: Levels that go by release (``delete``) at the end; the rest by rmdir.
KEEP = 1010
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def down(top: int, depth: int) -> int:
    """A directory fd ``depth`` levels of ``c`` below directory fd ``top`` (a dup at 0)."""
    fd = os.dup(top)
    for _ in range(depth):
        nxt = os.open("c", O_DIR, dir_fd=fd)
        os.close(fd)
        fd = nxt
    return fd


def cgroup2(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError(f"{pid} has no cgroup2 line")


def read_at(fd: int, name: str) -> str:
    f = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=fd)
    try:
        return os.read(f, 1 << 20).decode()
    finally:
        os.close(f)


def write_at(fd: int, name: str, text: str) -> None:
    f = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=fd)
    try:
        os.write(f, text.encode())
    finally:
        os.close(f)


def test_a_chain_deeper_than_the_recursion_limit_keeps_working(cfs: Mounted) -> None:
    assert sys.getrecursionlimit() < DEPTH
    # top owns namespaces a running process can enter (a holder, moves by injection)
    cfs.sh("echo '-pid -time -mnt' > container.subtree && mkdir top")
    top = os.open(cfs.mnt / "top", O_DIR)
    fd = os.dup(top)
    try:
        for _ in range(DEPTH):
            os.mkdir("c", dir_fd=fd)
            nxt = os.open("c", O_DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
        assert read_at(fd, "container.subsystems")  # the deepest answers
        sleeper = subprocess.Popen(["sleep", "300"])
        cfs.started.append(sleeper)
        write_at(fd, "tasks", f"{sleeper.pid}\n")
        assert read_at(fd, "tasks") == f"{sleeper.pid}\n"
        # the kernel's truth: the process is in the deepest container's cgroup leaf
        assert cgroup2(sleeper.pid).endswith("/top" + "/c" * DEPTH + "/.tasks")
        assert read_at(fd, "container.events").startswith("populated 1")
        assert "ipc" in cfs.read("namespaces")
        assert cfs.read("top/container.events").startswith("populated 1")
        os.close(fd)
        os.close(top)
        fd = top = -1

        # a clean stop and a crash: the whole chain comes back, task and all
        for sig in (signal.SIGTERM, signal.SIGKILL):
            cfs.stop(sig)
            cfs.start()
            top = os.open(cfs.mnt / "top", O_DIR)
            fd = down(top, DEPTH)
            assert read_at(fd, "tasks") == f"{sleeper.pid}\n", sig
            os.close(fd)
            os.close(top)
            fd = top = -1
        assert "took over" in cfs.log.read_text()

        top = os.open(cfs.mnt / "top", O_DIR)
        fd = down(top, KEEP)
        write_at(fd, "tasks", f"{sleeper.pid}\n")  # a move up the chain
        assert cgroup2(sleeper.pid).endswith("/top" + "/c" * KEEP + "/.tasks")
        # the levels below it removed with rmdir, each from its parent (found by "..")
        below = down(fd, DEPTH - KEEP)
        os.close(fd)
        fd = below
        for _ in range(DEPTH - KEEP):
            parent = os.open("..", O_DIR, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir("c", dir_fd=fd)
        assert "c" not in os.listdir(fd)
        os.close(fd)
        fd = -1
        # the rest goes by itself: `delete` at every level, then its last task ends,
        # and each removal releases the parent in turn, a thousand levels up
        fd = os.dup(top)
        for _ in range(KEEP):
            nxt = os.open("c", O_DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
            write_at(fd, "container.release", "delete\n")
        os.close(fd)
        fd = -1
        sleeper.kill()
        sleeper.wait()
        wait_for(
            lambda: "c" not in os.listdir(cfs.mnt / "top"),
            timeout=120,
            what="the chain deleted on release",
        )
        wait_for(
            lambda: read_at(top, "container.events") == "populated 0\nreleased 1\n",
            what="top released (ignore: it stays)",
        )
    finally:
        for d in (fd, top):
            if d >= 0:
                os.close(d)
    v2 = cfs.subtree.v2_dir
    assert v2 is not None and (v2 / "top" / "c").exists() is False  # no cgroup left behind
    cfs.sh("rmdir top")
    assert not (v2 / "top").exists()
    assert "Traceback" not in cfs.log.read_text()


def test_a_cgroup_path_past_path_max_is_refused_cleanly(cfs: Mounted) -> None:
    """The kernel limits a path to PATH_MAX (4,096 bytes): the mkdir whose cgroup
    directory would pass it fails with ENAMETOOLONG, and nothing of it is left."""
    name = "n" * 250
    cfs.sh("echo '-pid -time -mnt' > container.subtree")
    fd = os.open(cfs.mnt, O_DIR)
    depth = 0
    try:
        with pytest.raises(OSError) as exc:
            while depth < 40:  # 17 levels reach PATH_MAX
                os.mkdir(name, dir_fd=fd)
                depth += 1
                nxt = os.open(name, O_DIR, dir_fd=fd)
                os.close(fd)
                fd = nxt
        assert exc.value.errno == errno.ENAMETOOLONG
        assert 10 < depth < 16  # 251 bytes a level, and room for the files below
        assert name not in os.listdir(fd)  # not in the tree...
        v2 = cfs.subtree.v2_dir
        assert v2 is not None
        cg = os.open(v2, O_DIR)
        try:  # ...nor in cgroupfs (walked by fds: the path itself is too long)
            for _ in range(depth):
                nxt = os.open(name, O_DIR, dir_fd=cg)
                os.close(cg)
                cg = nxt
            assert name not in os.listdir(cg)
        finally:
            os.close(cg)
        assert read_at(fd, "container.events").startswith("populated 0")  # still whole
        for _ in range(depth):
            parent = os.open("..", O_DIR, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(name, dir_fd=fd)
    finally:
        os.close(fd)
    assert not (cfs.subtree.v2_dir / name).exists()  # type: ignore[operator]
    assert "Traceback" not in cfs.log.read_text()
