"""The pure parts of the namespace lister, and its bookkeeping on a fake /proc.

The fake /proc is a directory tree of symlinks whose targets are the texts the
kernel's magic links read as (``net:[N]``): ``readlink`` is all the scan does
per process, so the counting, the ``*_for_children`` and thread rules, the fd
and bind-mount detection can be checked without root.  Nothing in it can be
opened as a namespace, so owners and parents stay None there.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from containerfs import nskinds
from containerfs.kernel import nslist
from containerfs.kernel.nslist import NsEntry

# --- mountinfo ----------------------------------------------------------------

MOUNTINFO = (
    "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw\n"
    "23 1 0:22 / /run rw,nosuid shared:6 - tmpfs tmpfs rw,mode=755\n"
    # ip netns add: two optional fields, one shared peer group
    "310 23 0:4 net:[4026532653] /run/netns/blue rw shared:6 master:1 - nsfs nsfs rw\n"
    # no optional field at all
    "311 23 0:4 mnt:[4026532700] /run/keep\\040it rw - nsfs nsfs rw\n"
    # the same namespace bound twice
    "312 23 0:4 net:[4026532653] /tmp/again rw - nsfs nsfs rw\n"
    # a tmpfs mounted on a directory named like nsfs: not nsfs
    "313 23 0:50 / /tmp/ nsfs  rw - tmpfs tmpfs rw\n"
    # truncated line
    "314 23 0:4 net:[1] /x\n"
)


def test_parse_mountinfo_nsfs_finds_bind_mounts_only() -> None:
    assert nslist.parse_mountinfo_nsfs(MOUNTINFO) == [
        ("net", 4026532653, "/run/netns/blue"),
        ("mnt", 4026532700, "/run/keep it"),
        ("net", 4026532653, "/tmp/again"),
    ]


# --- format_table ---------------------------------------------------------------


def test_format_table_dashes_for_none_and_paths_from_callback() -> None:
    entries = [
        NsEntry("net", 10, 3, 1, None, False),
        NsEntry("pid", 11, 0, 1, 2, True),
        NsEntry("user", 1, 50, None, None, False),
    ]
    seen: list[tuple[str, int]] = []

    def path_of(kind: str, inode: int) -> str | None:
        seen.append((kind, inode))
        return {("net", 10): "/a/b", ("user", 1): "/"}.get((kind, inode))

    assert nslist.format_table(entries, path_of) == (
        "net 10 3 1 - /a/b\npid 11 0 1 2 -\nuser 1 50 - - /\n"
    )
    assert seen == [("net", 10), ("pid", 11), ("user", 1)]


def test_format_table_empty() -> None:
    assert nslist.format_table([], lambda kind, inode: None) == ""


# --- scan() on a fake /proc ---------------------------------------------------------


KINDS, FOR_CHILDREN = nslist._ns_names("/proc")
HOST = {kind: 1000 + i for i, kind in enumerate(nskinds.KINDS)}
#: Every process in the host mount namespace sees this (a netns bind mount).
HOST_MOUNTINFO = "300 23 0:4 net:[7001] /cfs-nslist-fake/x rw shared:6 - nsfs nsfs rw\n"


def _process(
    proc: Path,
    pid: int,
    ns: dict[str, int] | None = None,
    threads: dict[int, dict[str, int]] | None = None,
    fds: dict[int, str] | None = None,
    mountinfo: str = HOST_MOUNTINFO,
    root: str = "/",
) -> None:
    """A fake /proc/PID: ns links (host namespaces unless overridden), threads, fds."""
    base = proc / str(pid)

    def links(ns_dir: Path, inodes: dict[str, int]) -> None:
        ns_dir.mkdir(parents=True)
        for kind in KINDS:
            (ns_dir / kind).symlink_to(f"{kind}:[{inodes[kind]}]")
        for name, kind in FOR_CHILDREN:
            inode = inodes.get(name, inodes[kind])
            if inode:  # 0: unreadable, as for a pid namespace without init
                (ns_dir / name).symlink_to(f"{kind}:[{inode}]")

    links(base / "ns", {**HOST, **(ns or {})})
    (base / "task" / str(pid)).mkdir(parents=True)
    for tid, inodes in (threads or {}).items():
        links(base / "task" / str(tid) / "ns", {**HOST, **inodes})
    (base / "fd").mkdir()
    for fd, target in (fds or {}).items():
        (base / "fd" / str(fd)).symlink_to(target)
    (base / "mountinfo").write_text(mountinfo)
    (base / "root").symlink_to(root)


@pytest.fixture(params=["python", "c"])
def fake_proc(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A fake /proc; each test runs with the Python walk and with containerfs-nsscan."""
    if "time" not in KINDS or len(FOR_CHILDREN) != 2:
        pytest.skip("this kernel lacks time namespaces")
    walker = None
    if request.param == "c":
        walker = nslist.find_walker()
        if walker is None:
            pytest.skip("containerfs-nsscan is not built (make builds it)")
    monkeypatch.setattr(nslist, "find_walker", lambda: walker)
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "self").mkdir()  # not a process: no digits
    (proc / "sys").mkdir()
    return proc


def _by_key(entries: list[NsEntry]) -> dict[tuple[str, int], NsEntry]:
    return {(e.kind, e.inode): e for e in entries}


def test_scan_fake_proc_counts_processes_and_persistent_holders(fake_proc: Path) -> None:
    _process(fake_proc, 1, fds={0: "/dev/null", 1: "pipe:[5]"})
    _process(fake_proc, 2)
    # Its own net and uts; a new pid namespace whose init runs as pid 4;
    # a time namespace for its children that nobody is in yet.
    _process(
        fake_proc,
        3,
        ns={"net": 2001, "uts": 2002, "pid_for_children": 2003, "time_for_children": 2004},
        fds={3: "socket:[77]", 4: "net:[7002]", 5: "anon_inode:[pidfd]"},
    )
    _process(fake_proc, 4, ns={"pid": 2003})
    # A thread in a uts namespace of its own; a pid namespace whose init is
    # not there yet (its pid_for_children link cannot be read).
    _process(fake_proc, 5, ns={"pid_for_children": 0}, threads={6: {"uts": 2005}})
    # A process that is gone (or not ours to read): no link can be read.
    (fake_proc / "8" / "ns").mkdir(parents=True)
    (fake_proc / "8" / "task" / "8").mkdir(parents=True)
    # A zombie keeps its pid and user links only: here the init of a pid
    # namespace it alone keeps alive until it is reaped.
    (fake_proc / "9" / "ns").mkdir(parents=True)
    (fake_proc / "9" / "ns" / "pid").symlink_to("pid:[2006]")
    (fake_proc / "9" / "ns" / "user").symlink_to(f"user:[{HOST['user']}]")
    (fake_proc / "9" / "task" / "9").mkdir(parents=True)
    (fake_proc / "9" / "fd").mkdir()

    entries = nslist.scan(str(fake_proc))
    assert entries == sorted(entries, key=lambda e: (e.kind, e.inode))
    got = {key: (e.nprocs, e.persistent) for key, e in _by_key(entries).items()}
    expected = {(kind, inode): (5, False) for kind, inode in HOST.items() if kind in KINDS}
    expected.update(
        {
            ("user", HOST["user"]): (6, False),
            ("pid", 2006): (1, False),
            ("net", 1002): (4, False),
            ("uts", 1001): (4, False),
            ("pid", 1003): (4, False),
            ("net", 2001): (1, False),
            ("uts", 2002): (1, False),
            ("pid", 2003): (1, False),
            ("time", 2004): (0, False),
            ("uts", 2005): (0, False),
            ("net", 7001): (0, True),
            ("net", 7002): (0, True),
        }
    )
    assert got == expected
    # Nothing in a fake /proc opens as a namespace.
    assert all(e.owner is None and e.parent is None for e in entries)


def test_scan_fake_proc_marks_a_namespace_with_processes_persistent(fake_proc: Path) -> None:
    _process(fake_proc, 10, fds={0: f"net:[{HOST['net']}]"})
    _process(fake_proc, 11)
    entry = _by_key(nslist.scan(str(fake_proc)))[("net", HOST["net"])]
    assert (entry.nprocs, entry.persistent) == (2, True)


def test_scan_fake_proc_reads_fds_past_a_gap(fake_proc: Path) -> None:
    _process(fake_proc, 20, fds={0: "/dev/null", 7: "ipc:[3001]", 100: "user:[3002]"})
    got = _by_key(nslist.scan(str(fake_proc)))
    assert got[("ipc", 3001)].persistent and got[("user", 3002)].persistent


def test_scan_fds_uses_the_count_then_lists_after_a_gap(tmp_path: Path) -> None:
    base = tmp_path / "42"
    (base / "fd").mkdir(parents=True)
    for fd, target in {0: "net:[1]", 1: "/dev/null", 2: "pid:[2]", 9: "uts:[3]"}.items():
        (base / "fd" / str(fd)).symlink_to(target)
    for count in (-1, 4, 10):  # unknown, right, stale
        found = nslist._Found()
        nslist._scan_fds(str(base), count, found)
        assert sorted(found.held) == ["net:[1]", "pid:[2]", "uts:[3]"], count
    # A count met without a gap is trusted: no listing (here fd 9 is missed).
    found = nslist._Found()
    nslist._scan_fds(str(base), 1, found)
    assert sorted(found.held) == ["net:[1]"]


def test_scan_fake_proc_reads_mountinfo_once_per_mount_namespace(
    fake_proc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bind = "300 23 0:4 uts:[7101] /cfs-nslist-fake/b rw - nsfs nsfs rw\n"
    for pid in range(30, 40):
        _process(fake_proc, pid, mountinfo=bind)
    _process(fake_proc, 40, ns={"mnt": 2001}, mountinfo="")
    opened: list[str] = []
    real_open = open

    def spy(path: str, *args: object, **kwargs: object) -> object:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", spy)
    got = _by_key(nslist.scan(str(fake_proc)))
    read = sorted(p for p in opened if p.endswith("/mountinfo"))
    assert len(read) == 2 and read[1] == f"{fake_proc}/40/mountinfo", read
    assert (got[("uts", 7101)].nprocs, got[("uts", 7101)].persistent) == (0, True)


def test_scan_fake_proc_prefers_a_task_that_is_not_chrooted(fake_proc: Path) -> None:
    """A chrooted task's mountinfo shows only the mounts below its root."""

    def line(kind: str, inode: int) -> str:
        return f"1 1 0:4 {kind}:[{inode}] /cfs-nslist-fake/{inode} rw - nsfs nsfs rw\n"

    full = line("ipc", 7301) + line("ipc", 7302)
    _process(fake_proc, 60, ns={"mnt": 2100}, mountinfo=line("ipc", 7301), root="/srv/a")
    _process(fake_proc, 61, ns={"mnt": 2100}, mountinfo=full)
    # Only chrooted tasks: what each of them sees, merged.
    _process(fake_proc, 62, ns={"mnt": 2200}, mountinfo=line("ipc", 7401), root="/srv/b")
    _process(fake_proc, 63, ns={"mnt": 2200}, mountinfo=line("ipc", 7402), root="/srv/c")
    got = _by_key(nslist.scan(str(fake_proc)))
    for inode in (7301, 7302, 7401, 7402):
        assert got[("ipc", inode)].persistent, inode


def test_scan_leaves_no_fd_open(fake_proc: Path) -> None:
    _process(
        fake_proc,
        50,
        fds={0: "net:[5]"},
        mountinfo="1 1 0:4 mnt:[6] /cfs-nslist-fake/m rw - nsfs nsfs rw\n",
    )
    before = sorted(os.listdir("/proc/self/fd"))
    nslist.scan(str(fake_proc))
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_parse_walk_groups_processes_threads_and_fds() -> None:
    text = (
        "p 2 10,11 ipc:[1] uts:[2]\n"
        "p 1 12 ipc:[1] -\n"
        "p 5 20,21,22,23 ipc:[4] uts:[2]\n"
        "t 11 13 ipc:[1] uts:[3]\n"
        "f 12 4 net:[9]\n"
        "f 12 5 anon_inode:[pidfd]\n"
        "n ipc:[1] 7 -\n"
        "n user:[7] - 6\n"
    )
    found = nslist.parse_walk(text, "/proc", 2)
    assert found.groups == {
        ("ipc:[1]", "uts:[2]"): ([2], ["/proc/10", "/proc/11"]),
        ("ipc:[1]", None): ([1], ["/proc/12"]),
        ("ipc:[4]", "uts:[2]"): ([5], ["/proc/20", "/proc/21", "/proc/22"]),
    }
    assert found.threads == {("ipc:[1]", "uts:[3]"): ["/proc/11/task/13"]}
    assert found.held == {"net:[9]": [("/proc/12/fd/4", "net:[9]")]}
    assert found.relatives == {"ipc:[1]": (7, None), "user:[7]": (None, 6)}


@pytest.mark.parametrize(
    "line",
    [
        "p 1 10 ipc:[1]",
        "p x 10 ipc:[1] uts:[2]",
        "p 1",
        "t 10 ipc:[1] uts:[2]",
        "f 10 4",
        "n ipc:[1] 7",
        "n ipc:[1] x -",
        "x 10",
        "",
    ],
)
def test_parse_walk_refuses_a_malformed_record(line: str) -> None:
    with pytest.raises(OSError) as caught:
        nslist.parse_walk(line + "\n", "/proc", 2)
    assert caught.value.errno == errno.EPROTO
