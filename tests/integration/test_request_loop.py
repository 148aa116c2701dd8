"""The request loop: busy polling (``containerfs mount --busy-poll``) and the fast
path that answers a read-only open of a page-cached file (``Operations._open_cached``).

Neither may change what a reader sees: these tests act as a reader does and
check that polling is bounded (an idle daemon uses no CPU), that the setting
is what runs, and that opens answered by the fast path still refuse what they
refused and still show every change at once. Timings are in ``bench/control.py``.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pyfuse3
import pytest

from .conftest import Mounted, wait_for

pytestmark = pytest.mark.root

BUSY_POLLS = bool(getattr(pyfuse3, "BUSY_POLLS", False))


def _cpu_seconds(pid: int) -> float:
    """Time on a CPU of every thread of ``pid`` so far (schedstat, in ns)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9


def _reads(path: Path, n: int) -> bytes:
    """``n`` open + read + close, as ``cat`` does; the last content."""
    p = os.fsencode(path)
    data = b""
    for _ in range(n):
        fd = os.open(p, os.O_RDONLY)
        try:
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
    return data


def _loop_line(cfs: Mounted) -> str:
    wait_for(lambda: "pyfuse3 " in cfs.log.read_text(), what="the request loop's log line")
    return next(line for line in cfs.log.read_text().splitlines() if "pyfuse3 " in line)


def test_the_daemon_busy_polls_by_default_and_says_so(cfs: Mounted) -> None:
    if not BUSY_POLLS:
        pytest.skip("this venv's pyfuse3 has no busy polling (stock, or an older patch)")
    assert _loop_line(cfs).endswith("busy-polls up to 50 us")


@pytest.mark.parametrize("cfs", [("--busy-poll", "0")], indirect=True)
def test_busy_poll_0_turns_it_off(cfs: Mounted) -> None:
    line = _loop_line(cfs)
    if BUSY_POLLS:
        assert line.endswith("busy polling off")
    else:
        assert "busy-polls" not in line
    cfs.sh("mkdir c && echo 11 > c/pids.max")
    assert _reads(cfs.mnt / "c" / "pids.max", 200) == b"11\n"


def test_an_idle_daemon_does_not_poll(cfs: Mounted) -> None:
    """After a burst of reads (which keeps the polling window open), the daemon
    parks: over a second of nothing it uses a sliver of a CPU, not the window
    again and again."""
    if not BUSY_POLLS:
        pytest.skip("this venv's pyfuse3 has no busy polling (stock, or an older patch)")
    cfs.sh("mkdir c")
    assert _reads(cfs.mnt / "c" / "pids.max", 3000) == b"max\n"
    time.sleep(0.1)
    before = _cpu_seconds(cfs.daemon.pid)
    time.sleep(1.0)
    used = _cpu_seconds(cfs.daemon.pid) - before
    assert used < 0.2, f"the idle daemon used {used:.3f} s of CPU in 1 s"


def test_fast_opens_still_refuse_writes_to_read_only_files(cfs: Mounted) -> None:
    """Many read-only opens go through the fast path; an open for writing (root
    passes the kernel's mode check) must still reach the full check."""
    cfs.sh("mkdir c")
    path = cfs.mnt / "c" / "container.subsystems"
    assert _reads(path, 50)
    for flags in (os.O_WRONLY, os.O_RDWR):
        with pytest.raises(OSError) as exc:
            os.close(os.open(path, flags))
        assert exc.value.errno == errno.EACCES
    assert _reads(path, 5)


def test_descriptors_opened_by_the_fast_path_all_show_a_write_at_once(cfs: Mounted) -> None:
    """The fast path shares one handle between the opens of the same content: a
    write through containerfs shows on each descriptor, and to the next open."""
    cfs.sh("mkdir c && echo 21 > c/pids.max")
    path = cfs.mnt / "c" / "pids.max"
    assert _reads(path, 20) == b"21\n"
    fds = [os.open(path, os.O_RDONLY) for _ in range(5)]
    try:
        assert {os.pread(fd, 4096, 0) for fd in fds} == {b"21\n"}
        cfs.sh("echo 2222 > c/pids.max")
        assert {os.pread(fd, 4096, 0) for fd in fds} == {b"2222\n"}
        assert _reads(path, 20) == b"2222\n"
        cfs.sh("echo 3 > c/pids.max")
        assert {os.pread(fd, 4096, 0) for fd in fds} == {b"3\n"}
    finally:
        for fd in fds:
            os.close(fd)
    assert _reads(path, 20) == b"3\n"


def test_a_container_made_again_under_the_same_name_shows_its_own_value(cfs: Mounted) -> None:
    cfs.sh("mkdir c && echo 31 > c/pids.max")
    assert _reads(cfs.mnt / "c" / "pids.max", 50) == b"31\n"
    cfs.sh("rmdir c && mkdir c")
    assert _reads(cfs.mnt / "c" / "pids.max", 50) == b"max\n"
