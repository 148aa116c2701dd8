"""The one /proc parser: nsfs link names, mountinfo lines and escapes, status fields."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from containerfs.kernel import procfs
from containerfs.nskinds import KINDS

# --- parse_ns_link -----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_parse_ns_link_every_kind(kind: str) -> None:
    assert procfs.parse_ns_link(f"{kind}:[4026531833]") == (kind, 4026531833)


def test_parse_ns_link_for_children_names_are_their_kind() -> None:
    assert procfs.parse_ns_link("pid_for_children:[12]") == ("pid", 12)
    assert procfs.parse_ns_link("time_for_children:[13]") == ("time", 13)


@pytest.mark.parametrize(
    "target",
    [
        "socket:[123]",
        "pipe:[123]",
        "anon_inode:[eventfd]",
        "anon_inode:[pidfd]",
        "/dev/null",
        "/tmp/net:[123]",
        "net:[]",
        "net:[12a]",
        "net:[12",
        "net:12]",
        "net:[-1]",
        "",
    ],
)
def test_parse_ns_link_rejects_other_fd_targets(target: str) -> None:
    assert procfs.parse_ns_link(target) is None


# --- mountinfo ----------------------------------------------------------------


def test_parse_mountinfo_line_fields_and_optional_fields() -> None:
    line = "310 23 0:4 net:[4026532653] /run/netns/blue rw shared:6 master:1 - nsfs nsfs rw"
    m = procfs.parse_mountinfo_line(line)
    assert (m.device, m.root, m.mount_point, m.mount_options) == (
        "0:4",
        "net:[4026532653]",
        "/run/netns/blue",
        "rw",
    )
    assert (m.fstype, m.source, m.super_options) == ("nsfs", "nsfs", "rw")


def test_parse_mountinfo_line_keeps_an_empty_source() -> None:
    m = procfs.parse_mountinfo_line("40 23 0:60 / /mnt\\040x rw - tmpfs  rw,size=4k")
    assert (m.mount_point, m.fstype, m.source, m.super_options) == (
        "/mnt\\040x",
        "tmpfs",
        "",
        "rw,size=4k",
    )


@pytest.mark.parametrize(
    "line", ["22 1 254:0 / / rw shared:1 ext4 /dev/vda rw", "22 1 254:0 / / rw - ext4"]
)
def test_parse_mountinfo_refuses_malformed_lines_unless_asked_to_skip(line: str) -> None:
    with pytest.raises(ValueError):
        list(procfs.parse_mountinfo(line + "\n"))
    assert list(procfs.parse_mountinfo(line + "\n", skip_malformed=True)) == []


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ("/plain", "/plain"),
        ("/a\\040b", "/a b"),
        ("/tab\\011nl\\012bs\\134", "/tab\tnl\nbs\\"),
        ("/not\\escape\\9", "/not\\escape\\9"),
        ("/end\\04", "/end\\04"),
    ],
)
def test_unescape_mountinfo(field: str, path: str) -> None:
    assert procfs.unescape_mountinfo(field) == path


# --- status -------------------------------------------------------------------

STATUS = """Name:\tsleep
Tgid:\t5002
Pid:\t5002
PPid:\t1
NSpid:\t5002\t17\t1
NSpgid:\t5002\t17\t1
"""


def test_parse_nspid_outermost_first() -> None:
    assert procfs.parse_nspid(STATUS) == [5002, 17, 1]
    assert procfs.parse_nspid("NSpid:\t42\n") == [42]
    with pytest.raises(ValueError):
        procfs.parse_nspid("Name:\tx\n")


def test_parse_status_strips_values() -> None:
    status = procfs.parse_status(STATUS + "Uid:\t0\t1\t2\t3\n")
    assert status["Tgid"] == "5002"
    assert status["Uid"].split() == ["0", "1", "2", "3"]


# --- stat -----------------------------------------------------------------------


def test_parse_stat_with_odd_comm() -> None:
    stat = b"123 (a) b (c)) S 45 123 123 0 -1 4194560 " + b"0 " * 12 + b"9876 rest"
    comm, ppid, start = procfs.parse_stat(stat)
    assert comm == "a) b (c)" and ppid == 45 and start == 9876


def test_parse_stat_state_counts_from_the_last_parenthesis() -> None:
    assert procfs.parse_stat_state(b"42 (sleep) S 1 42 42 0 -1") == "S"
    assert procfs.parse_stat_state(b"43 (a) b) Z 1 43 43") == "Z"
    assert procfs.parse_stat_state(b"44 (x y) X 1") == "X"
    with pytest.raises(ValueError):
        procfs.parse_stat_state(b"45 (truncated)")


# --- one thread (what the ptrace move reads) -----------------------------------


def test_thread_readers_on_a_live_child_a_zombie_and_a_gone_one() -> None:
    """State, tracer, wait info and namespace of a real child, read as the move reads them."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while procfs.thread_state(child.pid, child.pid) != "S":  # asleep in nanosleep
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert procfs.tracer_pid(child.pid, child.pid) == 0
        assert procfs.thread_wait_info(child.pid, child.pid).startswith("state S")
        net = os.stat("/proc/self/ns/net").st_ino
        assert procfs.thread_ns_inode(child.pid, child.pid, "net") == net
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
        assert procfs.thread_state(child.pid, child.pid) == "Z"
    finally:
        child.kill()
        child.wait()
    with pytest.raises(ProcessLookupError):
        procfs.thread_state(child.pid, child.pid)
    with pytest.raises(ProcessLookupError):
        procfs.thread_ns_inode(child.pid, child.pid, "net")
    assert procfs.tracer_pid(child.pid, child.pid) == 0
    assert procfs.thread_wait_info(child.pid, child.pid) == "state unknown"
