"""Cgroup value conversion and backend logic, without root or a real cgroupfs.

The pure functions are checked value by value. The backend's decisions (which
directories, which ``subtree_control`` writes, how v2 names map onto v1 files)
are checked against a fake ``/proc`` and a fake cgroup tree made of plain
files in a temporary directory; plain files keep only the last write, which is
enough to see what the backend asked the kernel to do.
"""

from __future__ import annotations

import errno
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from containerfs.kernel import cgdiscover, cgfs, cglifecycle
from containerfs.kernel import cgroups as cg
from containerfs.kernel import cgvalues as cv
from containerfs.kernel import sys as ksys
from containerfs.kernel.cgroups import CgroupBackend, Hierarchy

REAL_WRITE = cgfs.write  # before the autouse fixture swaps in the fake

# ---------------------------------------------------------------------------
# Memory limits
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("max", None),
        (" max\n", None),
        ("0", 0),
        ("4096", 4096),
        ("1k", 1024),
        ("1K", 1024),
        ("64M", 64 << 20),
        ("64m", 64 << 20),
        ("2G", 2 << 30),
        ("1T", 1 << 40),
        ("1P", 1 << 50),
        ("3E", 3 << 60),
        ("67108864\n", 67108864),
        (str(cv.U64_MAX), cv.U64_MAX),
    ],
)
def test_parse_bytes_limit(text: str, value: int | None) -> None:
    assert cv.parse_bytes_limit(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "-1",
        "+5",
        "1.5G",
        "64MB",
        "64 M",
        "0x10",
        "Max",
        "MAX",
        "infinity",
        "16E",
        str(cv.U64_MAX + 1),
        "1k2",
        "k",
    ],
)
def test_parse_bytes_limit_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        cv.parse_bytes_limit(text)


def test_bytes_limit_v1_spellings() -> None:
    assert cv.bytes_limit_to_v1(None) == "-1"
    assert cv.bytes_limit_to_v1(67108864) == "67108864"
    assert cv.format_bytes_limit(None) == "max"
    assert cv.format_bytes_limit(5) == "5"


@pytest.mark.parametrize(
    ("text", "page", "want"),
    [
        ("9223372036854771712\n", 4096, "max"),  # what v1 shows when unlimited (4 KiB)
        ("9223372036854710272\n", 65536, "max"),  # the same with 64 KiB pages
        ("9223372036854771711\n", 4096, "9223372036854771711"),
        ("67108864\n", 4096, "67108864"),
        ("0", 4096, "0"),
    ],
)
def test_bytes_limit_from_v1(text: str, page: int, want: str) -> None:
    assert cv.bytes_limit_from_v1(text, page) == want


# ---------------------------------------------------------------------------
# pids.max
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("max", None), ("0", 0), ("5\n", 5), (" 7 ", 7), ("4194304", 4194304)],
)
def test_parse_pids_max(text: str, value: int | None) -> None:
    assert cv.parse_pids_max(text) == value


@pytest.mark.parametrize("text", ["", "-1", "4194305", "0x10", "5k", "1e3", "max max", "unlimited"])
def test_parse_pids_max_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        cv.parse_pids_max(text)


# ---------------------------------------------------------------------------
# cpu.max
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("max", (None, None)),
        ("max 100000", (None, 100000)),
        ("50000 100000\n", (50000, 100000)),
        ("1000 1000", (1000, 1000)),
        ("50000", (50000, None)),
        (f"{(1 << 44) - 1} 1000000", ((1 << 44) - 1, 1000000)),
    ],
)
def test_parse_cpu_max(text: str, value: tuple[int | None, int | None]) -> None:
    assert cv.parse_cpu_max(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "999 100000",  # quota below 1 ms
        "50000 999",  # period below 1 ms
        "50000 1000001",  # period above 1 s
        f"{1 << 44} 100000",  # quota above the scheduler's ceiling
        "-1 100000",
        "max max",
        "50000 100000 3",
        "half",
        "50000 0x100",
    ],
)
def test_parse_cpu_max_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        cv.parse_cpu_max(text)


def test_cpu_max_v1_translation() -> None:
    assert cv.cpu_max_from_v1("-1\n", "100000\n") == "max 100000"
    assert cv.cpu_max_from_v1("50000\n", "100000\n") == "50000 100000"
    assert cv.format_cpu_max(None, None) == "max"
    assert cv.format_cpu_max(20000, None) == "20000"


# ---------------------------------------------------------------------------
# cpu.weight <-> cpu.shares
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weight", "shares"),
    [(1, 2), (100, 2597), (10000, 262144), (5000, 131059)],
)
def test_weight_to_shares_matches_runc(weight: int, shares: int) -> None:
    assert cv.weight_to_shares(weight) == shares
    assert cv.shares_to_weight(shares) == weight


def test_every_weight_round_trips_through_shares() -> None:
    for weight in range(1, 10001):
        assert cv.shares_to_weight(cv.weight_to_shares(weight)) == weight


def test_shares_to_weight_is_monotonic_and_clamped() -> None:
    weights = [cv.shares_to_weight(s) for s in range(0, 262200)]
    assert weights == sorted(weights)
    assert cv.shares_to_weight(1024) == 40  # v1's default, between two weights
    assert cv.shares_to_weight(0) == 1
    assert cv.shares_to_weight(10**9) == 10000


@pytest.mark.parametrize("weight", [0, 10001, -5])
def test_weight_to_shares_rejects_out_of_range(weight: int) -> None:
    with pytest.raises(ValueError):
        cv.weight_to_shares(weight)


@pytest.mark.parametrize(("text", "value"), [("1", 1), ("100\n", 100), ("10000", 10000)])
def test_parse_cpu_weight(text: str, value: int) -> None:
    assert cv.parse_cpu_weight(text) == value


@pytest.mark.parametrize("text", ["0", "10001", "", "max", "default", "-1", "1.5", "0x64"])
def test_parse_cpu_weight_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        cv.parse_cpu_weight(text)


# ---------------------------------------------------------------------------
# cpu/node lists
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "members", "canonical"),
    [
        ("", set(), ""),
        ("\n", set(), ""),
        ("0", {0}, "0"),
        ("0-3", {0, 1, 2, 3}, "0-3"),
        ("3,1,2", {1, 2, 3}, "1-3"),
        ("0-1,4,6-7\n", {0, 1, 4, 6, 7}, "0-1,4,6-7"),
        ("0-7:2/4", {0, 1, 4, 5}, "0-1,4-5"),
        ("2-2", {2}, "2"),
        ("0,0", {0}, "0"),
    ],
)
def test_cpulist(text: str, members: set[int], canonical: str) -> None:
    assert cv.parse_cpulist(text) == members
    assert cv.format_cpulist(cv.parse_cpulist(text)) == canonical


@pytest.mark.parametrize(
    "text", ["3-1", "a", "0,,1", ",", "0-", "-1", "0 1", "0-7:0/4", "0-7:5/4", "65536", "0-99999"]
)
def test_cpulist_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        cv.parse_cpulist(text)


# ---------------------------------------------------------------------------
# io.max, io.weight
# ---------------------------------------------------------------------------


def test_parse_io_max() -> None:
    assert cv.parse_io_max("8:0 rbps=1048576 wiops=max") == (
        "8:0",
        {"rbps": 1048576, "wiops": None},
    )
    assert cv.parse_io_max("008:00") == ("8:0", {})
    assert cv.format_io_max(*cv.parse_io_max("8:0 wiops=5 rbps=7")) == "8:0 rbps=7 wiops=5"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "8 rbps=1",
        "sda rbps=1",
        "8:0 rbps=0",
        "8:0 rbps=1M",
        "8:0 xbps=1",
        "8:0 rbps",
        "8:0 rbps=-1",
        f"8:0 rbps={1 << 64}",
    ],
)
def test_parse_io_max_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        cv.parse_io_max(text)


def test_io_max_from_v1_merges_devices() -> None:
    files = {
        "rbps": "254:0 1048576\n8:0 5\n",
        "wbps": "",
        "riops": "",
        "wiops": "254:0 100\n",
    }
    assert cv.io_max_from_v1(files) == (
        "8:0 rbps=5 wbps=max riops=max wiops=max\n254:0 rbps=1048576 wbps=max riops=max wiops=100\n"
    )
    assert cv.io_max_from_v1(dict.fromkeys(cv.IO_MAX_KEYS, "")) == ""


@pytest.mark.parametrize(
    ("text", "norm"),
    [
        ("100", "default 100"),
        ("default 50", "default 50"),
        ("8:16 200", "8:16 200"),
        ("8:16 default", "8:16 default"),
    ],
)
def test_parse_io_weight(text: str, norm: str) -> None:
    assert cv.parse_io_weight(text) == norm


@pytest.mark.parametrize("text", ["", "0", "10001", "default default", "sda 5", "8:0 5 6"])
def test_parse_io_weight_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        cv.parse_io_weight(text)


# ---------------------------------------------------------------------------
# cpu.stat
# ---------------------------------------------------------------------------


def test_cpu_stat_from_v1() -> None:
    stat = "nr_periods 4\nnr_throttled 2\nthrottled_time 5000000\nnr_bursts 0\nburst_time 0\n"
    usage = {
        "cpuacct.usage": "3000000\n",
        "cpuacct.usage_user": "2000999\n",
        "cpuacct.usage_sys": "1000000\n",
    }
    assert cv.cpu_stat_from_v1(stat, usage) == (
        "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\n"
        "nr_periods 4\nnr_throttled 2\nthrottled_usec 5000\nnr_bursts 0\nburst_usec 0\n"
    )
    assert cv.cpu_stat_from_v1(None, None) == ""
    assert cv.cpu_stat_from_v1("nr_periods 1\n", None) == "nr_periods 1\n"


# ---------------------------------------------------------------------------
# /proc parsing
# ---------------------------------------------------------------------------

HYBRID_MOUNTINFO = """\
25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
31 25 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 31 0:32 /deep /mnt/mem\\040bind rw,relatime - cgroup cgroup rw,memory
"""


def test_parse_mountinfo_keeps_cgroup_mounts_and_unescapes() -> None:
    mounts = cv.parse_mountinfo(HYBRID_MOUNTINFO)
    assert [m.point for m in mounts] == [
        Path("/sys/fs/cgroup/cpu,cpuacct"),
        Path("/sys/fs/cgroup/cpuset"),
        Path("/sys/fs/cgroup/memory"),
        Path("/sys/fs/cgroup/systemd"),
        Path("/sys/fs/cgroup/unified"),
        Path("/mnt/mem bind"),
    ]
    assert mounts[0].super_options == {"rw", "cpu", "cpuacct"}
    assert mounts[4].fstype == "cgroup2"
    assert mounts[5].root == "/deep"
    assert mounts[5].device == mounts[2].device


def test_parse_pid_cgroup() -> None:
    text = "12:cpu,cpuacct:/a\n1:name=systemd:/user.slice\n0::/b/c\n3:memory:/gone (deleted)\n"
    assert cv.parse_pid_cgroup(text) == [
        (12, frozenset({"cpu", "cpuacct"}), "/a"),
        (1, frozenset({"name=systemd"}), "/user.slice"),
        (0, frozenset(), "/b/c"),
        (3, frozenset({"memory"}), "/gone"),
    ]


def test_parse_proc_cgroups() -> None:
    text = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\nrdma\t0\t1\t0\n"
    assert cv.parse_proc_cgroups(text) == {"cpu": True, "rdma": False}


def test_kind_of() -> None:
    assert [cg.kind_of(c) for c in ("cpu", "cpuacct", "blkio", "memory", "freezer")] == [
        "cpu",
        "cpu",
        "io",
        "memory",
        "freezer",
    ]


def test_hierarchy_dir_relative_to_mount_root() -> None:
    h = Hierarchy(Path("/m"), 1, frozenset({"memory"}), "/deep/x", "/deep")
    assert h.dir() == Path("/m/x")
    assert h.dir(("a", "b")) == Path("/m/x/a/b")
    assert h.contains(Path("/m/x/a"))
    assert not h.contains(Path("/m/xy"))
    assert Hierarchy(Path("/m"), 2, frozenset(), "/", "/").dir() == Path("/m")
    assert h.kinds == {"memory"}
    assert Hierarchy(Path("/m"), 1, frozenset({"cpu", "cpuacct"}), "/").kinds == {"cpu"}


# ---------------------------------------------------------------------------
# A fake host
# ---------------------------------------------------------------------------


@dataclass
class FakeHost:
    proc: Path
    fs: Path

    def pid_cgroup(self, pid: str, text: str) -> None:
        d = self.proc / pid
        d.mkdir(parents=True, exist_ok=True)
        (d / "cgroup").write_text(text)
        if not (d / "mountinfo").exists():
            (d / "mountinfo").write_text((self.proc / "self" / "mountinfo").read_text())


FRESH = {
    "cgroup.procs": "",
    "cgroup.subtree_control": "\n",
    "cgroup.events": "populated 0\nfrozen 0\n",
}


def _fake_make_dir(path: Path) -> None:
    """mkdir as a cgroupfs does it: the new directory comes with its control files.

    It gets the parent's file names, empty (as a new v1 cpuset's cpus are), except
    for the few core files whose fresh content matters to the backend.
    """
    path.mkdir()
    for f in path.parent.iterdir():
        if f.is_file():
            (path / f.name).write_text(FRESH.get(f.name, ""))


def _fake_remove_dir(path: Path) -> None:
    """rmdir as a cgroupfs does it: control files do not count, child cgroups do."""
    if any(p.is_dir() for p in path.iterdir()):
        raise OSError(errno.EBUSY, "has children", str(path))
    for f in path.iterdir():
        f.unlink()
    path.rmdir()


def _fake_write(path: Path, text: str) -> None:
    """A write to a cgroup file replaces its value; a missing file is ENOENT, never created.

    A v1 cpuset's effective CPUs and nodes follow what is written to it, and
    ``cgroup.subtree_control`` takes ``+NAME``/``-NAME`` words as the kernel does.
    """
    if path.name == "cgroup.subtree_control":
        have = path.read_text().split()
        for word in text.split():
            if word[0] == "+" and word[1:] not in have:
                have.append(word[1:])
            elif word[0] == "-" and word[1:] in have:
                have.remove(word[1:])
        path.write_text(" ".join(have) + "\n")
        return
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, text.encode() or b"\n")
    finally:
        os.close(fd)
    if path.name in ("cpuset.cpus", "cpuset.mems"):
        effective = path.with_name("cpuset.effective_" + path.name.split(".")[1])
        if effective.exists():
            effective.write_text(text or "\n")


@pytest.fixture(autouse=True)
def fake_cgroupfs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgfs, "write", _fake_write)
    monkeypatch.setattr(cgfs, "make_dir", _fake_make_dir)
    monkeypatch.setattr(cgfs, "remove_dir", _fake_remove_dir)


def _cgdir(d: Path, files: dict[str, str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (d / name).write_text(content)


def make_v2_host(tmp_path: Path, *, base_procs: str = "", root_ctrls: str = "") -> FakeHost:
    """A pure-v2 host: the daemon's base /svc/cfs has memory, pids and cpu delegated."""
    proc, fs = tmp_path / "proc", tmp_path / "cg"
    root_ctrls = root_ctrls or "cpuset cpu io memory hugetlb pids rdma misc"
    _cgdir(fs, {"cgroup.controllers": root_ctrls + "\n", "cgroup.procs": "1\n"})
    _cgdir(
        fs / "svc",
        {
            "cgroup.controllers": root_ctrls + "\n",
            "cgroup.subtree_control": "cpu memory pids\n",
            "cgroup.procs": "",
        },
    )
    _cgdir(
        fs / "svc" / "cfs",
        {
            "cgroup.controllers": "cpu memory pids\n",
            "cgroup.subtree_control": "\n",
            "cgroup.procs": base_procs,
            "memory.max": "max\n",
        },
    )
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text("0::/svc/cfs\n")
    (proc / "self" / "mountinfo").write_text(
        f"30 1 0:26 / {fs} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    return FakeHost(proc, fs)


def make_v1_host(tmp_path: Path, *, unified: bool = True) -> FakeHost:
    """A v1 host with cpu,cpuacct co-mounted, cpuset, memory, pids, and name=systemd.

    With `unified` it is a hybrid host, as most v1 hosts are: cgroup2 is mounted
    too, carrying no controllers (containerfs needs it for tasks and populated).
    Without, it is a pure v1 host.
    """
    proc, fs = tmp_path / "proc", tmp_path / "cg"
    mounts = []
    for i, (name, opts) in enumerate(
        [
            ("cpu,cpuacct", "cpu,cpuacct"),
            ("cpuset", "cpuset"),
            ("memory", "memory"),
            ("pids", "pids"),
            ("systemd", "name=systemd"),
        ]
    ):
        mounts.append(f"{40 + i} 31 0:{30 + i} / {fs / name} rw - cgroup cgroup rw,{opts}")
    base = {
        "cpu,cpuacct": {
            "cpu.cfs_quota_us": "-1\n",
            "cpu.cfs_period_us": "100000\n",
            "cpu.shares": "1024\n",
            "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
            "cpuacct.usage": "5000\n",
        },
        "cpuset": {
            "cpuset.cpus": "0-3\n",
            "cpuset.mems": "0\n",
            "cpuset.effective_cpus": "0-3\n",
            "cpuset.effective_mems": "0\n",
        },
        "memory": {
            "memory.limit_in_bytes": "9223372036854771712\n",
            "memory.usage_in_bytes": "4096\n",
        },
        "pids": {"pids.max": "max\n", "pids.current": "1\n"},
        "systemd": {},
    }
    for name, files in base.items():
        _cgdir(fs / name / "svc", {"cgroup.procs": "", **files})
    cgroup = "5:name=systemd:/svc\n4:pids:/svc\n3:memory:/svc\n2:cpuset:/svc\n1:cpu,cpuacct:/svc\n"
    if unified:
        _cgdir(fs / "unified", {"cgroup.controllers": "\n", "cgroup.procs": "1\n"})
        _cgdir(fs / "unified" / "svc", {"cgroup.controllers": "\n", **FRESH})
        mounts.append(f"46 31 0:45 / {fs / 'unified'} rw - cgroup2 cgroup2 rw")
        cgroup += "0::/svc\n"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text("\n".join(mounts) + "\n")
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "cgroups").write_text(
        "#subsys_name\thierarchy\tnum_cgroups\tenabled\n"
        "cpuset\t2\t1\t1\ncpu\t1\t1\t1\ncpuacct\t1\t1\t1\nmemory\t3\t1\t1\n"
        "pids\t4\t1\t1\nnet_cls\t0\t1\t1\nrdma\t0\t1\t0\n"
    )
    return FakeHost(proc, fs)


# ---------------------------------------------------------------------------
# Discovery and kinds
# ---------------------------------------------------------------------------


def test_discover_v2(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    assert b.v2 is not None
    assert b.hierarchies == [b.v2]
    assert b.v2.base == "/svc/cfs"
    assert b.v2.controllers == {"cpu", "memory", "pids"}
    assert b.v2.dir(("a",)) == host.fs / "svc" / "cfs" / "a"


def test_discover_strips_own_tasks_leaf(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    (host.proc / "self" / "cgroup").write_text("0::/svc/cfs/.tasks\n")
    assert CgroupBackend.discover(host.proc).hierarchies[0].base == "/svc/cfs"


def test_kinds_v2(tmp_path: Path) -> None:
    kinds = CgroupBackend.discover(make_v2_host(tmp_path).proc).kinds()
    assert kinds["memory"] is None
    assert kinds["cpu"] is None
    assert kinds["pids"] is None
    assert kinds["io"] == "not-delegated"
    assert kinds["hugetlb"] == "not-delegated"
    assert set(cg.STANDARD_KINDS) <= kinds.keys()


def test_kinds_v2_base_with_other_processes(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path, base_procs=f"{os.getpid()}\n999999\n")
    kinds = CgroupBackend.discover(host.proc).kinds()
    assert kinds["memory"] == "base-has-other-processes"
    # Only the daemon itself there: setup() will move it, so the kinds are usable.
    (host.fs / "svc" / "cfs" / "cgroup.procs").write_text(f"{os.getpid()}\n")
    assert CgroupBackend.discover(host.proc).kinds()["memory"] is None
    # Already enabled in the base: usable whoever is there.
    (host.fs / "svc" / "cfs" / "cgroup.procs").write_text("999999\n")
    (host.fs / "svc" / "cfs" / "cgroup.subtree_control").write_text("memory\n")
    kinds = CgroupBackend.discover(host.proc).kinds()
    assert kinds["memory"] is None
    assert kinds["pids"] == "base-has-other-processes"


def test_discover_v1(tmp_path: Path) -> None:
    host = make_v1_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    assert b.v2 is not None
    assert b.v2.controllers == frozenset()
    assert b.v2.dir() == host.fs / "unified" / "svc"
    assert b.mounted_v2 is None
    by_ctrl = {h.controllers: h for h in b.v1}
    assert set(by_ctrl) == {
        frozenset({"cpu", "cpuacct"}),
        frozenset({"cpuset"}),
        frozenset({"memory"}),
        frozenset({"pids"}),
    }
    assert all(h.version == 1 and h.base == "/svc" for h in b.v1)
    kinds = b.kinds()
    assert {k: kinds[k] for k in ("cpu", "cpuset", "memory", "pids")} == dict.fromkeys(
        ("cpu", "cpuset", "memory", "pids")
    )
    assert kinds["io"] == "not-found"
    assert kinds["net_cls"] == "not-mounted"
    assert kinds["rdma"] == "disabled"
    assert "cpuacct" not in kinds
    assert b.files("memory") == {"memory.max": True, "memory.current": False, "memory.peak": False}
    assert b.files("cpu") == {"cpu.max": True, "cpu.weight": True, "cpu.stat": False}
    assert b.files("io") == {}


@dataclass
class FakeMounts:
    """Stands in for mount(2)/umount2(2): records calls, mounts cgroup2 in the fake /proc."""

    host: FakeHost
    mounts: list[tuple[str | None, str, str | None, int, str | None]]
    unmounts: list[tuple[str, int]]
    cgroup_line: str | None = "0::/\n"  # what /proc/self/cgroup gains once cgroup2 exists
    umount_errno: int | None = None

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        assert Path(target).is_dir()  # made before the mount
        self.mounts.append((source, target, fstype, flags, data))
        Path(target, "cgroup.controllers").write_text("\n")
        Path(target, "cgroup.procs").write_text("1\n")
        with (self.host.proc / "self" / "mountinfo").open("a") as f:
            f.write(f"90 31 0:90 / {target} rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw\n")
        if self.cgroup_line is not None:
            with (self.host.proc / "self" / "cgroup").open("a") as f:
                f.write(self.cgroup_line)

    def umount2(self, target: str, flags: int) -> None:
        self.unmounts.append((target, flags))
        if self.umount_errno is not None:
            raise OSError(self.umount_errno, os.strerror(self.umount_errno))


@pytest.fixture
def fake_mounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeMounts:
    """A pure v1 host whose mount calls are faked (never mount anything for real here)."""
    fake = FakeMounts(make_v1_host(tmp_path, unified=False), [], [])
    monkeypatch.setattr(ksys, "mount", fake.mount)
    monkeypatch.setattr(ksys, "umount2", fake.umount2)
    return fake


def test_discover_pure_v1_without_fallback_refuses(fake_mounts: FakeMounts) -> None:
    with pytest.raises(OSError) as e:
        CgroupBackend.discover(fake_mounts.host.proc)
    assert e.value.errno == errno.EOPNOTSUPP
    assert "no cgroup2 hierarchy mounted" in str(e.value)
    assert fake_mounts.mounts == []


def test_discover_pure_v1_mounts_the_fallback(fake_mounts: FakeMounts, tmp_path: Path) -> None:
    point = tmp_path / "run" / "cfs" / "cgroup2"
    b = CgroupBackend.discover(fake_mounts.host.proc, v2_fallback=point)
    flags = cgdiscover.MS_NOSUID | cgdiscover.MS_NODEV | cgdiscover.MS_NOEXEC
    assert flags == 0xE
    assert fake_mounts.mounts == [("cgroup2", str(point), "cgroup2", flags, None)]
    assert b.mounted_v2 == point
    assert b.v2 is not None
    assert (b.v2.mount, b.v2.base, b.v2.controllers) == (point, "/", frozenset())
    assert b.hierarchies[0] is b.v2
    assert len(b.v1) == 4
    assert b.events_file(("a",)) == point / "a" / "cgroup.events"
    b.close()
    assert fake_mounts.unmounts == [(str(point), ksys.MNT_DETACH)]
    b.close()  # idempotent
    assert len(fake_mounts.unmounts) == 1
    assert b.mounted_v2 is None


def test_discover_fallback_is_unused_when_cgroup2_is_mounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = make_v1_host(tmp_path)  # hybrid: cgroup2 already mounted
    fake = FakeMounts(host, [], [])
    monkeypatch.setattr(ksys, "mount", fake.mount)
    monkeypatch.setattr(ksys, "umount2", fake.umount2)
    b = CgroupBackend.discover(host.proc, v2_fallback=tmp_path / "never")
    assert b.mounted_v2 is None
    assert b.v2 is not None and b.v2.mount == host.fs / "unified"
    assert not (tmp_path / "never").exists()
    b.close()
    assert (fake.mounts, fake.unmounts) == ([], [])


def test_discover_unmounts_the_fallback_when_it_fails(
    fake_mounts: FakeMounts, tmp_path: Path
) -> None:
    fake_mounts.cgroup_line = None  # the process does not show up in the new hierarchy
    point = tmp_path / "v2"
    with pytest.raises(OSError) as e:
        CgroupBackend.discover(fake_mounts.host.proc, v2_fallback=point)
    assert e.value.errno == errno.EOPNOTSUPP
    assert fake_mounts.unmounts == [(str(point), ksys.MNT_DETACH)]
    # Failing to unmount again does not hide why discovery failed.
    fake_mounts.umount_errno = errno.EBUSY
    (fake_mounts.host.proc / "self" / "mountinfo").write_text(
        "".join(
            line + "\n"
            for line in (fake_mounts.host.proc / "self" / "mountinfo").read_text().splitlines()
            if "cgroup2" not in line
        )
    )
    with pytest.raises(OSError) as e:
        CgroupBackend.discover(fake_mounts.host.proc, v2_fallback=point)
    assert e.value.errno == errno.EOPNOTSUPP
    assert len(fake_mounts.unmounts) == 2


def test_close_tolerates_a_mount_already_gone(fake_mounts: FakeMounts, tmp_path: Path) -> None:
    b = CgroupBackend.discover(fake_mounts.host.proc, v2_fallback=tmp_path / "v2")
    fake_mounts.umount_errno = errno.EINVAL  # someone unmounted it already
    b.close()
    assert b.mounted_v2 is None
    b.close()
    assert len(fake_mounts.unmounts) == 1


def test_discover_refuses_cgroup2_that_does_not_reach_us(tmp_path: Path) -> None:
    """A cgroup2 mount exists but shows another subtree: refused now, not at procs()."""
    host = make_v2_host(tmp_path)
    (host.proc / "self" / "mountinfo").write_text(
        f"30 1 0:26 /other {host.fs} rw,nosuid - cgroup2 cgroup2 rw\n"
    )
    with pytest.raises(OSError) as e:
        CgroupBackend.discover(host.proc, v2_fallback=tmp_path / "never")
    assert e.value.errno == errno.EOPNOTSUPP
    assert "/svc/cfs" in str(e.value)
    assert not (tmp_path / "never").exists()


def test_discover_namespaced_mount_root(tmp_path: Path) -> None:
    """A mount whose root is not "/" (bind mount, cgroup namespace) is walked from its root."""
    proc, fs, v2 = tmp_path / "proc", tmp_path / "cg", tmp_path / "v2"
    _cgdir(fs / "x", {"cgroup.procs": ""})
    _cgdir(v2 / "y", {"cgroup.controllers": "\n", **FRESH})
    (v2 / "cgroup.controllers").write_text("\n")
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(
        f"50 31 0:32 /deep {fs} rw - cgroup cgroup rw,memory\n"
        f"51 31 0:33 /elsewhere {tmp_path} rw - cgroup cgroup rw,pids\n"
        f"52 31 0:34 /ns {v2} rw - cgroup2 cgroup2 rw\n"
    )
    (proc / "self" / "cgroup").write_text("3:memory:/deep/x\n4:pids:/here\n0::/ns/y\n")
    b = CgroupBackend.discover(proc)
    assert [h.dir() for h in b.hierarchies] == [v2 / "y", fs / "x"]
    assert b.kinds()["pids"] == "not-reachable"


# ---------------------------------------------------------------------------
# v2: setup, create, remove, placement, move
# ---------------------------------------------------------------------------


def test_setup_v2(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    host.pid_cgroup(str(os.getpid()), "0::/svc/cfs\n")
    b = CgroupBackend.discover(host.proc)
    base = host.fs / "svc" / "cfs"
    b.setup()
    assert (base / ".pins").is_dir()
    assert (base / ".tasks" / "cgroup.procs").read_text() == str(os.getpid())
    # Once there, setup again neither fails nor writes.
    (base / ".tasks" / "cgroup.procs").write_text("untouched")
    host.pid_cgroup(str(os.getpid()), "0::/svc/cfs/.tasks\n")
    b.setup()
    assert (base / ".tasks" / "cgroup.procs").read_text() == "untouched"


def test_setup_v2_from_systemds_delegate_subgroup(tmp_path: Path) -> None:
    """systemd >= 254 starts the daemon in UNIT.service/supervisor (DelegateSubgroup=):
    the unit's cgroup is the base, the daemon moves across to its .tasks and
    removes the leaf it came from; it writes nothing of the unit's own cgroup."""
    host = make_v2_host(tmp_path)
    unit = host.fs / "svc" / "cfs.service"
    (host.fs / "svc" / "cfs").rename(unit)
    _cgdir(unit / "supervisor", {"cgroup.procs": f"{os.getpid()}\n"})
    host.pid_cgroup(str(os.getpid()), "0::/svc/cfs.service/supervisor\n")
    (host.proc / "self" / "cgroup").write_text("0::/svc/cfs.service/supervisor\n")
    before = {f.name: f.read_text() for f in unit.iterdir() if f.is_file()}
    b = CgroupBackend.discover(host.proc, service_leaf="supervisor")
    assert b.v2 is not None and b.v2.base == "/svc/cfs.service"
    b.setup()
    assert (unit / ".tasks" / "cgroup.procs").read_text() == str(os.getpid())
    assert (unit / ".pins").is_dir()
    assert not (unit / "supervisor").exists()
    assert {f.name: f.read_text() for f in unit.iterdir() if f.is_file()} == before


def test_setup_v2_keeps_a_busy_supervisor_leaf(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    unit = host.fs / "svc" / "cfs.service"
    (host.fs / "svc" / "cfs").rename(unit)
    _cgdir(unit / "supervisor" / "child", {"cgroup.procs": ""})
    host.pid_cgroup(str(os.getpid()), "0::/svc/cfs.service/supervisor\n")
    (host.proc / "self" / "cgroup").write_text("0::/svc/cfs.service/supervisor\n")
    b = CgroupBackend.discover(host.proc, service_leaf="supervisor")
    b.setup()  # no error: the leaf is systemd's, left as it is
    assert (unit / "supervisor" / "child").is_dir()
    assert (unit / ".tasks" / "cgroup.procs").read_text() == str(os.getpid())


def test_create_v2_enables_owned_controllers_down_to_parent(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    base = host.fs / "svc" / "cfs"
    b.create(("a",), frozenset())
    assert (base / "a" / ".tasks").is_dir()
    assert (base / "cgroup.subtree_control").read_text() == "\n"  # nothing owned: no write
    b.create(("a", "b"), frozenset({"memory", "pids"}))
    assert (base / "a" / "b" / ".tasks").is_dir()
    assert (base / "cgroup.subtree_control").read_text() == "memory pids\n"
    assert (base / "a" / "cgroup.subtree_control").read_text() == "memory pids\n"


def test_create_v2_enables_controllers_only_where_missing_at_any_depth(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    base = host.fs / "svc" / "cfs"
    b.create(("a",), frozenset({"memory"}))
    b.create(("a", "b"), frozenset())
    b.create(("a", "b", "c"), frozenset())
    reads: list[Path] = []
    real_read = cgfs.read

    def counted(path: Path) -> str:
        reads.append(path)
        return real_read(path)

    cgfs.read = counted  # type: ignore[assignment]
    try:
        b.create(("a", "b", "c", "d"), frozenset({"memory", "pids"}))
    finally:
        cgfs.read = real_read  # type: ignore[assignment]
    # from the parent up to the first that enables both (none here): then down again
    for d in (base, base / "a", base / "a" / "b", base / "a" / "b" / "c"):
        assert (d / "cgroup.subtree_control").read_text() == "memory pids\n", d
    b.create(("a", "b", "c", "e"), frozenset({"pids"}))  # the parent enables it: one read
    reads.clear()
    cgfs.read = counted  # type: ignore[assignment]
    try:
        b.create(("a", "b", "c", "f"), frozenset({"memory"}))
    finally:
        cgfs.read = real_read  # type: ignore[assignment]
    # (the base's is read by kinds(), at every depth alike)
    assert [r for r in reads if r.name == "cgroup.subtree_control" and r.parent != base] == [
        base / "a" / "b" / "c" / "cgroup.subtree_control"
    ]


def test_cgroup_walks_go_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    depth = sys.getrecursionlimit() + 100
    base = host.fs / "svc" / "cfs"
    path: tuple[str, ...] = ()
    for _ in range(depth):
        path = (*path, "c")
        base.joinpath(*path).mkdir()
    deepest = base.joinpath(*path)
    (deepest / "cgroup.procs").write_text("77\n")
    try:
        found = b.container_dirs()
        assert len(found) == depth and path in found
        assert cgfs.procs_below(base / "c") == [77]
    finally:  # shutil.rmtree, which pytest cleans tmp_path with, recurses too
        (deepest / "cgroup.procs").unlink()
        for d in (deepest, *deepest.parents):
            if d == base:
                break
            d.rmdir()


def test_create_refuses_a_cgroup_path_with_no_room_below_path_max(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    base = host.fs / "svc" / "cfs"
    room = cglifecycle.PATH_MAX - len(os.fsencode(base))
    name = "n" * 200
    path = (name,) * ((room - 64) // 201 + 1)  # its directory leaves under 64 bytes
    with pytest.raises(OSError) as e:
        b.create(path, frozenset({"memory"}))
    assert e.value.errno == errno.ENAMETOOLONG
    assert not (base / name).exists()  # nothing made
    assert (base / "cgroup.subtree_control").read_text() == "\n"  # nothing enabled
    for depth in range(1, len(path)):  # one level less fits
        b.create(path[:depth], frozenset())


def test_trim_disables_what_no_owner_below_needs_any_more(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    base = host.fs / "svc" / "cfs"
    b.create(("a",), frozenset({"memory"}))
    b.create(("a", "b"), frozenset({"memory", "pids"}))
    (base / "a" / "b" / "cgroup.events").write_text("populated 0\n")
    b.remove(("a", "b"))
    b.trim(("a",), frozenset({"memory", "pids"}))  # b was all there was below a
    assert (base / "a" / "cgroup.subtree_control").read_text() == "\n"
    b.trim((), frozenset({"pids", "ipc"}))  # a itself still owns memory
    assert (base / "cgroup.subtree_control").read_text() == "memory\n"
    b.trim(("gone",), frozenset())  # no such directory: nothing to do


def test_create_v2_skips_already_enabled(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    base = host.fs / "svc" / "cfs"
    (base / "cgroup.subtree_control").write_text("memory pids\n")
    b.create(("a",), frozenset({"memory"}))
    assert (base / "cgroup.subtree_control").read_text() == "memory pids\n"


def test_create_v2_refuses_base_with_processes(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path, base_procs="4242\n")
    b = CgroupBackend.discover(host.proc)
    base = host.fs / "svc" / "cfs"
    with pytest.raises(OSError) as e:
        b.create(("a",), frozenset({"memory"}))
    assert e.value.errno == errno.EOPNOTSUPP  # kinds() already says why
    b.kinds = lambda: dict.fromkeys(cg.STANDARD_KINDS)  # type: ignore[method-assign]
    with pytest.raises(OSError) as e:
        b.create(("a",), frozenset({"memory"}))
    assert e.value.errno == errno.EBUSY
    assert not (base / "a").exists()
    assert (base / "cgroup.subtree_control").read_text() == "\n"


def test_create_refuses_unavailable_kind(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    with pytest.raises(OSError) as e:
        b.create(("a",), frozenset({"io"}))
    assert e.value.errno == errno.EOPNOTSUPP
    assert "not-delegated" in str(e.value)
    assert not (host.fs / "svc" / "cfs" / "a").exists()


def test_create_v2_rolls_back_on_failure(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    base = host.fs / "svc" / "cfs"
    b.create(("a",), frozenset())
    # The parent's subtree_control cannot be written: the base's write must be undone.
    (base / "a" / "cgroup.subtree_control").unlink()
    (base / "a" / "cgroup.subtree_control").mkdir()
    (base / "a" / "cgroup.subtree_control" / "x").write_text("")
    with pytest.raises(OSError):
        b.create(("a", "b"), frozenset({"memory"}))
    assert (base / "cgroup.subtree_control").read_text() == "\n"  # enabled, then undone
    assert not (base / "a" / "b").exists()
    assert (base / "a" / ".tasks").is_dir()  # made by the earlier call, kept


@pytest.mark.parametrize(
    "path", [(), ("",), (".",), ("..",), ("a/b",), (".tasks",), ("a", ".pins"), ("x\0",)]
)
def test_bad_container_paths(tmp_path: Path, path: tuple[str, ...]) -> None:
    b = CgroupBackend.discover(make_v2_host(tmp_path).proc)
    with pytest.raises(ValueError):
        b.create(path, frozenset())
    if path:
        with pytest.raises(ValueError):
            b.read(path, "memory.max")


def test_remove_v2(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    base = host.fs / "svc" / "cfs"
    b.create(("a",), frozenset())
    (base / "a" / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    with pytest.raises(OSError) as e:
        b.remove(("a",))
    assert e.value.errno == errno.EBUSY
    (base / "a" / "cgroup.events").write_text("populated 0\nfrozen 0\n")
    (base / "a" / "b").mkdir()
    with pytest.raises(OSError) as e:
        b.remove(("a",))
    assert e.value.errno == errno.EBUSY
    assert (base / "a" / ".tasks").is_dir()  # a refusal removes nothing
    (base / "a" / "b").rmdir()
    b.remove(("a",))
    assert not (base / "a").exists()
    b.remove(("a",))  # nothing left: nothing to do


def test_cgroup_path(tmp_path: Path) -> None:
    b = CgroupBackend.discover(make_v1_host(tmp_path).proc)
    assert b.cgroup_path((), "memory") == "/svc"
    assert b.cgroup_path(("a", "b"), "cpu") == "/svc/a/b"
    with pytest.raises(OSError):
        b.cgroup_path(("a",), "io")
    root = Hierarchy(Path("/m"), 2, frozenset({"pids"}), "/")
    assert CgroupBackend([root]).cgroup_path(("a",), "pids") == "/a"
    assert CgroupBackend([root]).cgroup_path((), "pids") == "/"


def test_placement_and_pins_v2(tmp_path: Path) -> None:
    b = CgroupBackend.discover(make_v2_host(tmp_path).proc)
    base = tmp_path / "cg" / "svc" / "cfs"
    assert b.placement(("a", "b"), lambda kind: ()) == [base / "a" / "b" / ".tasks"]
    assert b.pins_placement() == [base / ".pins"]


def test_procs_and_populated_v2(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    b.create(("a",), frozenset())
    base = host.fs / "svc" / "cfs"
    (base / "a" / ".tasks" / "cgroup.procs").write_text("30\n4\n200\n")
    (base / "a" / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    assert b.procs(("a",)) == [4, 30, 200]
    assert b.populated(("a",))
    (base / "a" / "cgroup.events").write_text("populated 0\nfrozen 0\n")
    assert not b.populated(("a",))
    assert b.events_file(("a",)) == base / "a" / "cgroup.events"


def test_move_refuses_dirs_outside_base(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    host.pid_cgroup("77", "0::/svc/cfs\n")
    b = CgroupBackend.discover(host.proc)
    with pytest.raises(ValueError):
        b.move(77, [host.fs / "svc"])
    assert (host.fs / "svc" / "cgroup.procs").read_text() == ""


def test_move_of_a_vanished_process_is_esrch(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    with pytest.raises(ProcessLookupError):
        b.move(424242, [host.fs / "svc" / "cfs"])


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, str]]:
    """Every cgroup write, in order (on top of the fake cgroupfs)."""
    log: list[tuple[Path, str]] = []

    def record(path: Path, text: str) -> None:
        log.append((path, text))
        _fake_write(path, text)

    monkeypatch.setattr(cgfs, "write", record)
    return log


def hybrid_with_container(tmp_path: Path) -> tuple[FakeHost, CgroupBackend, list[Path]]:
    """Hybrid host, container "a" owning memory, pids and cpuset; its placement."""
    host = make_v1_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    owned = frozenset({"memory", "pids", "cpuset"})
    b.create(("a",), owned)
    dirs = b.placement(("a",), lambda kind: ("a",) if kind in owned else ())
    return host, b, dirs


def test_move_order_cpuset_first_v2_last(tmp_path: Path, writes: list[tuple[Path, str]]) -> None:
    host, b, dirs = hybrid_with_container(tmp_path)
    fs = host.fs
    assert dirs[0] == fs / "unified" / "svc" / "a" / ".tasks"  # placement lists v2 first
    host.pid_cgroup(
        "77", "4:pids:/svc\n3:memory:/svc\n2:cpuset:/svc\n1:cpu,cpuacct:/svc\n0::/svc\n"
    )
    writes.clear()
    b.move(77, dirs)
    assert writes == [
        (fs / "cpuset" / "svc" / "a" / "cgroup.procs", "77"),
        (fs / "pids" / "svc" / "a" / "cgroup.procs", "77"),  # other v1: in the order given
        (fs / "memory" / "svc" / "a" / "cgroup.procs", "77"),
        (fs / "unified" / "svc" / "a" / ".tasks" / "cgroup.procs", "77"),
    ]  # cpu,cpuacct: already in the base, skipped
    # Already everywhere: no write at all (each lone write is slow).
    host.pid_cgroup(
        "77",
        "4:pids:/svc/a\n3:memory:/svc/a\n2:cpuset:/svc/a\n1:cpu,cpuacct:/svc\n0::/svc/a/.tasks\n",
    )
    writes.clear()
    b.move(77, dirs)
    assert writes == []


def test_move_validates_before_writing(tmp_path: Path, writes: list[tuple[Path, str]]) -> None:
    host, b, dirs = hybrid_with_container(tmp_path)
    fs = host.fs
    host.pid_cgroup(
        "77", "4:pids:/svc\n3:memory:/svc\n2:cpuset:/svc\n1:cpu,cpuacct:/svc\n0::/svc\n"
    )
    cpuset = fs / "cpuset" / "svc" / "a"
    writes.clear()
    with pytest.raises(ValueError):
        b.move(77, [*dirs, fs / "memory"])  # outside the base
    with pytest.raises(ValueError):
        b.move(77, [*dirs, fs / "memory" / "svc"])  # two cgroups in one hierarchy
    with pytest.raises(FileNotFoundError):
        b.move(77, [d for d in dirs if "cpu," not in str(d)] + [fs / "cpu,cpuacct" / "svc" / "a"])
    with pytest.raises(ProcessLookupError):
        b.move(78, dirs)
    for name, value in (("cpuset.effective_cpus", "\n"), ("cpuset.effective_mems", "")):
        good = (cpuset / name).read_text()
        (cpuset / name).write_text(value)
        with pytest.raises(OSError) as e:
            b.move(77, dirs)
        assert e.value.errno == errno.ENOSPC
        assert str(cpuset) in str(e.value) and "cpuset has no cpus/mems" in str(e.value)
        (cpuset / name).write_text(good)
    assert writes == []
    # Kernels before 3.17 have no effective_* files: the configured sets are checked.
    for name in ("cpuset.effective_cpus", "cpuset.effective_mems"):
        (cpuset / name).unlink()
    (cpuset / "cpuset.mems").write_text("\n")
    with pytest.raises(OSError) as e:
        b.move(77, dirs)
    assert e.value.errno == errno.ENOSPC
    assert writes == []
    (cpuset / "cpuset.mems").write_text("0\n")
    b.move(77, dirs)
    assert len(writes) == 4


def test_move_rolls_back_to_exactly_where_it_was(
    tmp_path: Path, writes: list[tuple[Path, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even from outside the base: putting a process back where it was is allowed."""
    host, b, dirs = hybrid_with_container(tmp_path)
    fs = host.fs
    for d in (fs / "cpuset" / "elsewhere", fs / "memory" / "svc" / "old"):
        _cgdir(d, {"cgroup.procs": ""})
    (fs / "pids" / "cgroup.procs").write_text("")
    # cpuset: a sibling of the base; memory: below it; pids: the root; cpu: already there.
    host.pid_cgroup(
        "77",
        "4:pids:/\n3:memory:/svc/old\n2:cpuset:/elsewhere\n1:cpu,cpuacct:/svc\n0::/svc\n",
    )
    v2_procs = fs / "unified" / "svc" / "a" / ".tasks" / "cgroup.procs"

    def refuse_v2(path: Path, text: str) -> None:
        writes.append((path, text))
        if path == v2_procs:
            raise OSError(errno.ENOSPC, "refused")
        _fake_write(path, text)

    monkeypatch.setattr(cgfs, "write", refuse_v2)
    writes.clear()
    with pytest.raises(OSError) as e:
        b.move(77, dirs)
    assert e.value.errno == errno.ENOSPC
    assert e.value.strerror == "refused"  # the original error
    assert writes == [
        (fs / "cpuset" / "svc" / "a" / "cgroup.procs", "77"),
        (fs / "pids" / "svc" / "a" / "cgroup.procs", "77"),  # other v1: in the order given
        (fs / "memory" / "svc" / "a" / "cgroup.procs", "77"),
        (v2_procs, "77"),
        (fs / "memory" / "svc" / "old" / "cgroup.procs", "77"),
        (fs / "pids" / "cgroup.procs", "77"),
        (fs / "cpuset" / "elsewhere" / "cgroup.procs", "77"),
    ]


def test_move_rollback_keeps_going_and_skips_vanished_processes(
    tmp_path: Path,
    writes: list[tuple[Path, str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    host, b, dirs = hybrid_with_container(tmp_path)
    fs = host.fs
    host.pid_cgroup(
        "77", "4:pids:/svc\n3:memory:/svc\n2:cpuset:/svc\n1:cpu,cpuacct:/svc\n0::/svc\n"
    )
    fail: dict[Path, OSError] = {}

    def refuse(path: Path, text: str) -> None:
        writes.append((path, text))
        if path in fail:
            raise fail[path]
        _fake_write(path, text)

    monkeypatch.setattr(cgfs, "write", refuse)
    mem_a = fs / "memory" / "svc" / "a" / "cgroup.procs"
    cpuset_back = fs / "cpuset" / "svc" / "cgroup.procs"
    # A rollback write that fails is logged; the others still happen.
    fail = {mem_a: OSError(errno.EINVAL, "no"), cpuset_back: OSError(errno.EBUSY, "busy")}
    with pytest.raises(OSError) as e:
        b.move(77, dirs)
    assert e.value.errno == errno.EINVAL
    assert [p for p, _ in writes[-2:]] == [fs / "pids" / "svc" / "cgroup.procs", cpuset_back]
    assert "cannot move 77 back" in caplog.text
    # The process died mid-move: nothing to put back.
    fail = {mem_a: ProcessLookupError(errno.ESRCH, "gone")}
    writes.clear()
    with pytest.raises(ProcessLookupError):
        b.move(77, dirs)
    assert [p for p, _ in writes] == [
        fs / "cpuset" / "svc" / "a" / "cgroup.procs",
        fs / "pids" / "svc" / "a" / "cgroup.procs",
        mem_a,
    ]


# ---------------------------------------------------------------------------
# v1: create, placement, translation
# ---------------------------------------------------------------------------


def test_create_v1_only_owned_hierarchies_with_passthrough(tmp_path: Path) -> None:
    host = make_v1_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    fs = host.fs
    b.create(("a",), frozenset({"memory"}))
    b.create(("a", "b"), frozenset({"cpuset", "pids"}))
    assert (fs / "memory" / "svc" / "a").is_dir()
    assert not (fs / "memory" / "svc" / "a" / "b").exists()
    assert (fs / "pids" / "svc" / "a" / "b").is_dir()  # "a" is a pass-through here
    assert not (fs / "cpu,cpuacct" / "svc" / "a").exists()
    assert not (fs / "systemd" / "svc" / "a").exists()
    for d in (fs / "cpuset" / "svc" / "a", fs / "cpuset" / "svc" / "a" / "b"):
        assert (d / "cpuset.cpus").read_text() == "0-3"
        assert (d / "cpuset.mems").read_text() == "0"

    owners = {"memory": ("a",), "cpuset": ("a", "b"), "pids": ("a", "b"), "cpu": ()}
    dirs = b.placement(("a", "b"), lambda kind: owners[kind])
    assert sorted(dirs) == sorted(
        [
            fs / "unified" / "svc" / "a" / "b" / ".tasks",
            fs / "cpu,cpuacct" / "svc",
            fs / "cpuset" / "svc" / "a" / "b",
            fs / "memory" / "svc" / "a",
            fs / "pids" / "svc" / "a" / "b",
        ]
    )
    assert sorted(b.pins_placement()) == sorted(
        [
            fs / "unified" / "svc" / ".pins",
            *(fs / n / "svc" for n in ("cpu,cpuacct", "cpuset", "memory", "pids")),
        ]
    )


def test_create_v1_rolls_back(tmp_path: Path) -> None:
    host = make_v1_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    fs = host.fs
    # Hierarchies are handled pids, memory, cpuset: the third one fails.
    (fs / "cpuset" / "svc" / "a").write_text("not a directory")
    with pytest.raises(FileExistsError):
        b.create(("a",), frozenset({"memory", "pids", "cpuset"}))
    for name in ("memory", "pids", "cpu,cpuacct", "unified"):
        assert not (fs / name / "svc" / "a").exists()


def test_v1_reads_translate(tmp_path: Path) -> None:
    host = make_v1_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    b.create(("a",), frozenset({"memory", "cpu", "pids", "cpuset"}))
    fs = host.fs
    for name, content in {
        "memory/svc/a/memory.limit_in_bytes": "9223372036854771712\n",
        "memory/svc/a/memory.usage_in_bytes": "8192\n",
        "cpu,cpuacct/svc/a/cpu.cfs_quota_us": "-1\n",
        "cpu,cpuacct/svc/a/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/svc/a/cpu.shares": "2597\n",
        "cpu,cpuacct/svc/a/cpu.stat": "nr_periods 1\nnr_throttled 0\nthrottled_time 0\n",
        "cpu,cpuacct/svc/a/cpuacct.usage": "7000\n",
        "pids/svc/a/pids.max": "max\n",
        "cpuset/svc/a/cpuset.effective_cpus": "0-3\n",
    }.items():
        (fs / name).write_text(content)
    b.page_size = 4096
    assert b.read(("a",), "memory.max") == "max\n"
    assert b.read(("a",), "memory.current") == "8192\n"
    assert b.read(("a",), "cpu.max") == "max 100000\n"
    assert b.read(("a",), "cpu.weight") == "100\n"
    assert b.read(("a",), "cpu.stat") == (
        "usage_usec 7\nnr_periods 1\nnr_throttled 0\nthrottled_usec 0\n"
    )
    assert b.read(("a",), "pids.max") == "max\n"
    assert b.read(("a",), "cpuset.cpus") == "0-3\n"  # copied at create, newline added
    assert b.read(("a",), "cpuset.cpus.effective") == "0-3\n"
    with pytest.raises(FileNotFoundError):
        b.read(("a",), "memory.high")  # v2-only: not faked on v1
    with pytest.raises(FileNotFoundError):
        b.read(("a",), "bogus.file")


def test_v1_writes_translate(tmp_path: Path) -> None:
    host = make_v1_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    b.create(("a",), frozenset({"memory", "cpu", "pids", "cpuset"}))
    cpu = host.fs / "cpu,cpuacct" / "svc" / "a"
    mem = host.fs / "memory" / "svc" / "a"
    for f, v in (("cpu.cfs_quota_us", "-1\n"), ("cpu.cfs_period_us", "100000\n")):
        (cpu / f).write_text(v)
    (mem / "memory.limit_in_bytes").write_text("0\n")

    b.write(("a",), "memory.max", "64M")
    assert (mem / "memory.limit_in_bytes").read_text() == "67108864"
    b.write(("a",), "memory.max", "max\n")
    assert (mem / "memory.limit_in_bytes").read_text() == "-1"

    b.write(("a",), "cpu.weight", "100")
    assert (cpu / "cpu.shares").read_text() == "2597"

    b.write(("a",), "cpu.max", "50000")  # quota only, period kept
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000\n"
    b.write(("a",), "cpu.max", "20000 50000")
    assert (cpu / "cpu.cfs_quota_us").read_text() == "20000"
    assert (cpu / "cpu.cfs_period_us").read_text() == "50000"
    b.write(("a",), "cpu.max", "max 50000")
    assert (cpu / "cpu.cfs_quota_us").read_text() == "-1"

    b.write(("a",), "pids.max", " 5\n")
    assert (host.fs / "pids" / "svc" / "a" / "pids.max").read_text() == "5"
    b.write(("a",), "cpuset.cpus", "3,1-2")
    assert (host.fs / "cpuset" / "svc" / "a" / "cpuset.cpus").read_text() == "1-3"
    b.write(("a",), "cpuset.mems", "")
    assert (host.fs / "cpuset" / "svc" / "a" / "cpuset.mems").read_text() == "\n"


def test_v1_cpu_max_restores_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = make_v1_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    b.create(("a",), frozenset({"cpu"}))
    cpu = host.fs / "cpu,cpuacct" / "svc" / "a"
    (cpu / "cpu.cfs_quota_us").write_text("30000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    real_write = cgfs.write

    def refuse_period(path: Path, text: str) -> None:
        if path.name == "cpu.cfs_period_us" and text == "50000":
            raise OSError(errno.EINVAL, "refused")
        real_write(path, text)

    monkeypatch.setattr(cgfs, "write", refuse_period)
    with pytest.raises(OSError):
        b.write(("a",), "cpu.max", "10000 50000")
    assert (cpu / "cpu.cfs_quota_us").read_text() == "30000"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("memory.max", "64Q"),
        ("memory.max", "-1"),
        ("cpu.max", "500 100000"),
        ("cpu.max", "max 5"),
        ("cpu.weight", "0"),
        ("cpu.weight", "20000"),
        ("pids.max", "-1"),
        ("pids.max", "lots"),
        ("cpuset.cpus", "3-1"),
        ("cpuset.mems", "x"),
    ],
)
def test_bad_writes_change_nothing(tmp_path: Path, name: str, value: str) -> None:
    host = make_v1_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    b.create(("a",), frozenset({"memory", "cpu", "pids", "cpuset"}))
    before = {p: p.read_text() for p in host.fs.rglob("*") if p.is_file()}
    with pytest.raises(ValueError):
        b.write(("a",), name, value)
    assert {p: p.read_text() for p in host.fs.rglob("*") if p.is_file()} == before


def test_read_only_files_refuse_writes(tmp_path: Path) -> None:
    b = CgroupBackend.discover(make_v1_host(tmp_path).proc)
    b.create(("a",), frozenset({"memory"}))
    with pytest.raises(PermissionError):
        b.write(("a",), "memory.current", "0")


# ---------------------------------------------------------------------------
# v2: read/write pass-through
# ---------------------------------------------------------------------------


def test_v2_read_write_pass_through(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    b.create(("a",), frozenset({"memory", "cpu"}))
    d = host.fs / "svc" / "cfs" / "a"
    for f in ("memory.max", "memory.high", "cpu.max", "cpu.weight"):
        (d / f).write_text("")
    b.write(("a",), "memory.max", "64M")
    assert (d / "memory.max").read_text() == "67108864"
    b.write(("a",), "memory.high", "max")
    assert (d / "memory.high").read_text() == "max"
    b.write(("a",), "cpu.max", "50000 100000")
    assert (d / "cpu.max").read_text() == "50000 100000"
    b.write(("a",), "cpu.weight", "100")
    assert (d / "cpu.weight").read_text() == "100"
    assert b.read(("a",), "cpu.weight") == "100\n"
    with pytest.raises(ValueError):
        b.write(("a",), "memory.high", "lots")
    assert (d / "memory.high").read_text() == "max"
    assert b.files("memory")["memory.high"] is True
    assert "memory.stat" in b.files("memory")
    assert b.files("io") == {}  # not delegated
    with pytest.raises(FileNotFoundError):
        b.read(("a",), "io.max")


def test_real_write_never_creates_and_sends_a_newline_for_empty(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        REAL_WRITE(tmp_path / "cgroup.procs", "1")
    assert not (tmp_path / "cgroup.procs").exists()
    (tmp_path / "cpuset.cpus").write_text("")
    REAL_WRITE(tmp_path / "cpuset.cpus", "")
    assert (tmp_path / "cpuset.cpus").read_text() == "\n"


def test_refusal_messages_are_bounded() -> None:
    """A megabyte-long write is refused with a message of a line, not a megabyte (the log)."""
    huge = "x" * (1 << 20)
    for parse in (
        lambda: cv.parse_uint(huge, "pids.max"),
        lambda: cv.parse_bytes_limit(huge),
        lambda: cv.parse_pids_max("9" * 4000),
        lambda: cv.parse_cpu_max(huge),
        lambda: cv.parse_cpu_max("9" * 4000),
        lambda: cv.parse_cpu_weight("9" * 4000),
        lambda: cv.parse_cpulist(huge),
        lambda: cv.parse_io_max(huge),
        lambda: cv.parse_io_max("8:0 " + huge),
    ):
        with pytest.raises(ValueError) as exc:
            parse()
        assert len(str(exc.value)) < 200, str(exc.value)[:300]


def test_holds_reads_where_the_process_is(tmp_path: Path) -> None:
    host = make_v2_host(tmp_path)
    b = CgroupBackend.discover(host.proc)
    host.pid_cgroup("4242", "0::/svc/cfs/a/.tasks\n")
    assert b.holds(4242, ("a",)) and not b.holds(4242, ()) and not b.holds(4242, ("a", "b"))
    host.pid_cgroup("4243", "0::/svc/cfs\n")  # in the base itself: the root's, as procs() says
    assert b.holds(4243, ()) and not b.holds(4243, ("a",))
    with pytest.raises(ProcessLookupError):
        b.holds(4244, ())


# -- OCI containers: one cgroup path, processes in the directory itself -------------


def test_one_path_is_the_containers_cgroup_in_every_hierarchy(tmp_path: Path) -> None:
    b = CgroupBackend.discover(make_v1_host(tmp_path).proc)
    assert {h.base for h in b.hierarchies} == {"/svc"}  # cgroup2 included
    assert b.one_path(("oci", "web")) == "/svc/oci/web"
    assert b.one_path(()) == "/svc"


def test_one_path_is_refused_when_the_bases_differ(tmp_path: Path) -> None:
    host = make_v1_host(tmp_path)
    (host.fs / "memory" / "elsewhere").mkdir()
    text = (host.proc / "self" / "cgroup").read_text()
    (host.proc / "self" / "cgroup").write_text(text.replace("memory:/svc", "memory:/elsewhere"))
    b = CgroupBackend.discover(host.proc)
    with pytest.raises(OSError) as exc:
        b.one_path(("oci", "web"))
    assert exc.value.errno == errno.EOPNOTSUPP
    assert "memory: /elsewhere" in str(exc.value) and "cgroup2: /svc" in str(exc.value)


def test_make_direct_moves_the_leafs_processes_up_and_removes_the_leaf(
    tmp_path: Path, writes: list[tuple[Path, str]]
) -> None:
    host, b, _ = hybrid_with_container(tmp_path)
    d = host.fs / "unified" / "svc" / "a"
    (d / ".tasks" / "cgroup.procs").write_text("77\n")
    writes.clear()
    b.make_direct(("a",))
    assert writes == [(d / "cgroup.procs", "77")]
    assert not (d / ".tasks").exists()
    # Its processes are those of its directory now, and that is where they go.
    (d / "cgroup.procs").write_text("77\n88\n")
    assert b.procs(("a",)) == [77, 88]
    assert b.placement(("a",), lambda kind: ("a",))[0] == d
    host.pid_cgroup("77", "4:pids:/svc/a\n3:memory:/svc/a\n2:cpuset:/svc/a\n0::/svc/a\n")
    assert b.holds(77, ("a",)) and b.inside(77, ("a",))
    assert ("a",) in b.direct
    (d / "cgroup.procs").write_text("")
    b.remove(("a",))
    assert not d.exists() and ("a",) not in b.direct


def test_inside_is_the_directory_or_its_leaf(tmp_path: Path) -> None:
    host, b, _ = hybrid_with_container(tmp_path)
    host.pid_cgroup("5", "0::/svc/a/.tasks\n")
    host.pid_cgroup("6", "0::/svc/a\n")
    host.pid_cgroup("7", "0::/svc\n")
    assert b.inside(5, ("a",)) and b.inside(6, ("a",)) and not b.inside(7, ("a",))


def test_remove_takes_directories_removed_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """runc's delete removes an OCI container's directories; one gone between the
    look and the rmdir is no failure."""
    host, b, _ = hybrid_with_container(tmp_path)
    gone = host.fs / "memory" / "svc" / "a"

    def remove(path: Path) -> None:
        if path == gone:
            _fake_remove_dir(path)  # runc got there first
            raise FileNotFoundError(errno.ENOENT, "gone", str(path))
        _fake_remove_dir(path)

    monkeypatch.setattr(cgfs, "remove_dir", remove)
    b.remove(("a",))
    assert not (host.fs / "unified" / "svc" / "a").exists() and not gone.exists()
