"""Files served from the kernel's page cache stay truthful.

Limits, policies and bound views are page-cached (``fuse/ops.py``): an open
keeps the kernel's pages while the value is unchanged. These tests check what
a user relies on: a change through containerfs shows at once (also on a
descriptor held open, and when the value grows longer), and a change made
behind the daemon's back shows within ``CACHE_TTL``.
"""

from __future__ import annotations

import os
import time

import pytest

from containerfs.fuse.ops import ATTR_TIMEOUT, CACHE_TTL

from .conftest import Mounted
from .test_core import v1_dir

pytestmark = pytest.mark.root


def test_a_write_shows_at_once_also_on_an_open_descriptor(cfs: Mounted) -> None:
    cfs.sh("mkdir c")
    path = cfs.mnt / "c" / "pids.max"
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, 0) == b"max\n"
        assert os.pread(fd, 4096, 0) == b"max\n"  # from the page cache
        cfs.sh("echo 123456 > c/pids.max")  # longer than before
        assert cfs.read("c/pids.max") == "123456\n"
        assert os.pread(fd, 4096, 0) == b"123456\n"
        cfs.sh("echo 7 > c/pids.max")  # shorter
        assert os.pread(fd, 4096, 0) == b"7\n"
        assert cfs.read("c/pids.max") == "7\n"
        assert os.stat(path).st_size == 2
    finally:
        os.close(fd)


def test_a_refused_write_keeps_the_cached_value(cfs: Mounted) -> None:
    cfs.sh("mkdir c && echo 9 > c/pids.max")
    assert cfs.read("c/pids.max") == "9\n"
    assert cfs.sh("echo bogus > c/pids.max", check=False).returncode != 0
    assert cfs.read("c/pids.max") == "9\n"


def test_a_change_behind_the_daemons_back_shows_within_the_ttl(cfs: Mounted) -> None:
    pids = v1_dir(cfs, "pids")
    if pids is None:
        pytest.skip("no v1 pids hierarchy on this host to change behind the daemon's back")
    cfs.sh("mkdir c && echo 50 > c/pids.max")
    began = time.monotonic()
    assert cfs.read("c/pids.max") == "50\n"
    (pids / "c" / "pids.max").write_text("60")  # our own test cgroup, not through containerfs
    seen = cfs.read("c/pids.max")
    if time.monotonic() - began < CACHE_TTL * 0.8:
        assert seen == "50\n", "the open was expected to keep the cached pages"
    deadline = time.monotonic() + CACHE_TTL + 2
    while seen != "60\n" and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = cfs.read("c/pids.max")
    assert seen == "60\n"


def test_views_of_a_container_with_its_own_mounts_follow_writes(cfs: Mounted) -> None:
    cfs.sh("mkdir c")
    cfs.sh("echo 40 > c/ipc.shm_mni")
    assert cfs.read("c/ipc.shm_mni") == "40\n"
    assert cfs.read("c/ipc.shm_mni.effective") == "40\n"
    cfs.sh("echo 30 > c/ipc.shm_mni.internal")
    # A write to one view changes another file: it must not be served stale.
    assert cfs.read("c/ipc.shm_mni.internal") == "30\n"
    assert cfs.read("c/ipc.shm_mni.effective") == "30\n"
    # Inside, the process sets its own value through the bound file.
    cfs.exec("c", "sh", "-c", "echo 20 > /proc/sys/kernel/shmmni")
    assert cfs.read("c/ipc.shm_mni.internal") == "20\n"
    assert cfs.exec("c", "cat", "/proc/sys/kernel/shmmni").stdout == "20\n"


def test_a_same_length_write_shows_at_once_on_an_open_descriptor(cfs: Mounted) -> None:
    """The size stays, so only the new mtime tells the kernel its pages are stale."""
    cfs.sh("mkdir c && echo 1000 > c/pids.max")
    fd = os.open(cfs.mnt / "c" / "pids.max", os.O_RDONLY)
    try:
        for value in ("1001", "1000", "1002"):
            assert os.pread(fd, 4096, 0) != f"{value}\n".encode()
            cfs.sh(f"echo {value} > c/pids.max")
            assert os.pread(fd, 4096, 0) == f"{value}\n".encode()
    finally:
        os.close(fd)


def test_a_change_behind_the_daemons_back_shows_on_an_open_descriptor(cfs: Mounted) -> None:
    pids = v1_dir(cfs, "pids")
    if pids is None:
        pytest.skip("no v1 pids hierarchy on this host to change behind the daemon's back")
    cfs.sh("mkdir c && echo 50 > c/pids.max")
    fd = os.open(cfs.mnt / "c" / "pids.max", os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, 0) == b"50\n"
        (pids / "c" / "pids.max").write_text("60")  # our own test cgroup
        # The kernel asks again once the attributes expire (ATTR_TIMEOUT), and
        # the daemon renders content older than CACHE_TTL again.
        deadline = time.monotonic() + ATTR_TIMEOUT + CACHE_TTL + 2
        seen = os.pread(fd, 4096, 0)
        while seen != b"60\n" and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = os.pread(fd, 4096, 0)
        assert seen == b"60\n"
    finally:
        os.close(fd)
