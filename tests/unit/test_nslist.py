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
        NsEntry("net", 10, 3, 1, None, False, nsid=4097),
        NsEntry("pid", 11, 0, 1, 2, True),
        NsEntry("user", 1, 50, None, None, False),
    ]
    seen: list[tuple[str, int]] = []

    def path_of(kind: str, inode: int) -> str | None:
        seen.append((kind, inode))
        return {("net", 10): "/a/b", ("user", 1): "/"}.get((kind, inode))

    assert nslist.format_table(entries, path_of) == (
        "net 10 3 1 - /a/b 4097\npid 11 0 1 2 - -\nuser 1 50 - - / -\n"
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
        "n ipc:[1] 7 - 4098\n"
        "n user:[7] - 6 -\n"
        "n uts:[2] 7 -\n"  # a walker from before NS_GET_ID: no id
    )
    found = nslist.parse_walk(text, "/proc", 2)
    assert found.groups == {
        ("ipc:[1]", "uts:[2]"): ([2], ["/proc/10", "/proc/11"]),
        ("ipc:[1]", None): ([1], ["/proc/12"]),
        ("ipc:[4]", "uts:[2]"): ([5], ["/proc/20", "/proc/21", "/proc/22"]),
    }
    assert found.threads == {("ipc:[1]", "uts:[3]"): ["/proc/11/task/13"]}
    assert found.held == {"net:[9]": [("/proc/12/fd/4", "net:[9]")]}
    assert found.relatives == {
        "ipc:[1]": (7, None, 4098),
        "user:[7]": (None, 6, None),
        "uts:[2]": (7, None, None),
    }


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
        "n ipc:[1] 7 - x",
        "n ipc:[1] 7 - 1 2",
        "x 10",
        "",
    ],
)
def test_parse_walk_refuses_a_malformed_record(line: str) -> None:
    with pytest.raises(OSError) as caught:
        nslist.parse_walk(line + "\n", "/proc", 2)
    assert caught.value.errno == errno.EPROTO


# --- the listns() path (Linux >= 6.19), against a fake of the kernel calls -------------


class FakeNs:
    """listns(), open_by_handle_at and the nsfs ioctls over a table of namespaces:
    id -> (CLONE_NEW* flag, inode, owner inode, parent inode).  Ids in ``gone``
    answer ESTALE (their last reference went after listns()).  Tracks open fds."""

    def __init__(
        self, table: dict[int, tuple[int, int, int | None, int | None]], gone: set[int]
    ) -> None:
        self.table, self.gone = table, gone
        self.calls: list[tuple[int, int]] = []
        self.open: dict[int, int] = {}
        self.next_fd = 100

    def listns(self, after: int, count: int) -> list[int]:
        self.calls.append((after, count))
        return sorted(i for i in (*self.table, *self.gone) if i > after)[:count]

    def open_id(self, nsid: int) -> int:
        if nsid in self.gone:
            raise OSError(errno.ESTALE, "gone")
        self.next_fd += 1
        self.open[self.next_fd] = nsid
        return self.next_fd

    def inode(self, fd: int) -> int:
        return self.table[self.open[fd]][1]

    def nstype(self, fd: int) -> int:
        return self.table[self.open[fd]][0]

    def relative(self, fd: int, request: int) -> int | None:
        _, _, owner, parent = self.table[self.open[fd]]
        return owner if request == nslist.NS_GET_USERNS else parent

    def close(self, fd: int) -> None:
        del self.open[fd]


def test_scan_listns_builds_entries_from_ids_and_counts_from_links(
    fake_proc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from containerfs.kernel.sys import NS_FLAGS

    monkeypatch.setattr(nslist, "_LISTNS_BATCH", 3)  # several pages
    _process(fake_proc, 1)
    _process(fake_proc, 2, ns={"net": 5001}, fds={3: "net:[7001]"})
    _process(fake_proc, 3, ns={"net": 5001}, threads={4: {"uts": 5002}})
    table: dict[int, tuple[int, int, int | None, int | None]] = {
        10 + i: (NS_FLAGS[kind], HOST[kind], None if kind == "user" else HOST["user"], None)
        for i, kind in enumerate(KINDS)
    }
    table[40] = (NS_FLAGS["net"], 5001, HOST["user"], None)
    table[41] = (NS_FLAGS["uts"], 5002, HOST["user"], None)  # a thread's only
    table[42] = (NS_FLAGS["net"], 7001, HOST["user"], None)  # a bind mount's
    table[43] = (NS_FLAGS["pid"], 6001, HOST["user"], HOST["pid"])  # for_children's
    table[44] = (0x1, 9999, None, None)  # a kind this lister does not know
    fake = FakeNs(table, gone={45})
    got = _by_key(nslist.scan_listns(str(fake_proc), nslist._FIND, fake))

    ids = sorted([*table, 45])
    # paged: each call resumes after the last id of a full page, until a short one
    assert fake.calls == [(0, 3)] + [(ids[i], 3) for i in range(2, len(ids), 3)]
    assert fake.open == {}  # every fd closed
    assert ("pid", 9999) not in got and len(got) == len(KINDS) + 4
    assert got[("net", 5001)] == NsEntry("net", 5001, 2, HOST["user"], None, False, nsid=40)
    assert got[("net", HOST["net"])].nprocs == 1
    assert got[("ipc", HOST["ipc"])] == NsEntry(
        "ipc", HOST["ipc"], 3, HOST["user"], None, False, nsid=10 + KINDS.index("ipc")
    )
    assert got[("uts", 5002)] == NsEntry("uts", 5002, 0, HOST["user"], None, True, nsid=41)
    assert got[("net", 7001)].nprocs == 0 and got[("net", 7001)].persistent
    assert got[("pid", 6001)] == NsEntry("pid", 6001, 0, HOST["user"], HOST["pid"], True, nsid=43)
    assert got[("user", HOST["user"])].owner is None


def test_scan_listns_counts_as_the_proc_walk_counts(
    fake_proc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NPROCS of the listns() path equals the /proc walk's, zombies included."""
    _process(fake_proc, 1)
    _process(fake_proc, 2, ns={"ipc": 5100, "net": 5101})
    zombie = fake_proc / "3"
    _process(fake_proc, 3, ns={"pid": 5102})
    for kind in KINDS:
        if kind not in ("pid", "user"):
            (zombie / "ns" / kind).unlink()
    walked = nslist.scan(str(fake_proc))
    from containerfs.kernel.sys import NS_FLAGS

    table: dict[int, tuple[int, int, int | None, int | None]] = {
        i + 1: (NS_FLAGS[e.kind], e.inode, None, None) for i, e in enumerate(walked)
    }
    listed = nslist.scan_listns(str(fake_proc), nslist._FIND, FakeNs(table, set()))
    assert [(e.kind, e.inode, e.nprocs) for e in listed] == [
        (e.kind, e.inode, e.nprocs) for e in walked
    ]


def test_scan_listns_passes_on_an_unexpected_open_error(fake_proc: Path) -> None:
    from containerfs.kernel.sys import NS_FLAGS

    _process(fake_proc, 1)

    class Broken(FakeNs):
        def open_id(self, nsid: int) -> int:
            raise OSError(errno.EMFILE, "too many open files")

    with pytest.raises(OSError) as caught:
        nslist.scan_listns(
            str(fake_proc), None, Broken({1: (NS_FLAGS["net"], 1, None, None)}, set())
        )
    assert caught.value.errno == errno.EMFILE


def test_parse_listed_reads_the_programs_listns_records() -> None:
    text = (
        f"l uts 4026532300 0 {HOST['user']} - 41\n"
        f"l ipc {HOST['ipc']} 12 {HOST['user']} - 10\n"
        f"l user {HOST['user']} 14 - - 2\n"
        f"l pid 4026532301 1 4026532302 {HOST['pid']} 43\n"
    )
    got = nslist.parse_listed(text, KINDS)
    assert got == [
        NsEntry("ipc", HOST["ipc"], 12, HOST["user"], None, False, nsid=10),
        NsEntry("pid", 4026532301, 1, 4026532302, HOST["pid"], False, nsid=43),
        NsEntry("user", HOST["user"], 14, None, None, False, nsid=2),
        NsEntry("uts", 4026532300, 0, HOST["user"], None, True, nsid=41),
    ]


@pytest.mark.parametrize(
    "line",
    ["p 1 1 ipc:[1]", "l ipc 1 2 - -", "l ipc 1 2 - - 3 4", "l ipc x 2 - - 3", "l foo 1 2 - - 3"],
)
def test_parse_listed_refuses_a_malformed_record(line: str) -> None:
    with pytest.raises(OSError) as caught:
        nslist.parse_listed(line + "\n", KINDS)
    assert caught.value.errno == errno.EPROTO


def test_scan_listns_runs_the_programs_listns_mode(
    fake_proc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the program and the live kernel calls, listns() and the count run in
    containerfs-nsscan's mode 3; a program that fails there (one older than this
    code, say) leaves the listing to the Python path, which then gives it."""
    runs: list[list[str]] = []
    answer = {"rc": 0, "out": f"l ipc {HOST['ipc']} 3 {HOST['user']} - 10\n"}

    def fake_run(argv: list[str], **kwargs: object) -> object:
        runs.append(argv)

        class Done:
            returncode = answer["rc"]
            stdout = str(answer["out"]).encode()
            stderr = b"containerfs-nsscan: bad THREADS or NACTIVE" if answer["rc"] else b""

        return Done()

    monkeypatch.setattr(nslist.subprocess, "run", fake_run)
    got = nslist.scan_listns(str(fake_proc), "/x/containerfs-nsscan")
    assert got == [NsEntry("ipc", HOST["ipc"], 3, HOST["user"], None, False, nsid=10)]
    assert runs[0][2:5] == [runs[0][2], "3", str(len(KINDS))] and runs[0][0].endswith("nsscan")
    assert runs[0][5:] == list(KINDS)

    answer.update(rc=2, out="")
    fallback = []
    monkeypatch.setattr(
        nslist, "_count_processes", lambda *a: fallback.append(a[1]) or {"ipc:[1]": 1}
    )
    monkeypatch.setattr(nslist.ksys, "listns", lambda after, count=1024: [])
    assert nslist.scan_listns(str(fake_proc), "/x/containerfs-nsscan") == []
    assert fallback == ["/x/containerfs-nsscan"]


@pytest.mark.parametrize(
    ("err", "expected"), [(errno.ENOSYS, False), (errno.EPERM, False), (None, True)]
)
def test_listns_available_is_asked_once(
    monkeypatch: pytest.MonkeyPatch, err: int | None, expected: bool
) -> None:
    calls = []

    def fake_listns(after: int, ns_type: int = 0, count: int = 1024) -> list[int]:
        calls.append(after)
        if err is not None:
            raise OSError(err, os.strerror(err))
        return [1]

    monkeypatch.setattr(nslist.ksys, "listns", fake_listns)
    nslist.listns_available.cache_clear()
    try:
        assert nslist.listns_available() is expected
        assert nslist.listns_available() is expected
        assert calls == [0]
    finally:
        nslist.listns_available.cache_clear()


def test_scan_uses_listns_for_root_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """With listns(), root's listing comes from it; another user's stays the walk
    as that user (what its own lsns shows)."""
    used = []
    monkeypatch.setattr(nslist, "listns_available", lambda: True)
    monkeypatch.setattr(nslist, "scan_listns", lambda proc, walker: used.append(proc) or [])
    assert nslist.scan() == [] and used == ["/proc"]
    monkeypatch.setattr(
        nslist, "_scan_processes_as_user", lambda *a: used.append("as user") or nslist._Found()
    )
    monkeypatch.setattr(nslist, "find_walker", lambda: None)
    nslist.scan(as_user=(65534, 65534))
    assert used == ["/proc", "as user"]


@pytest.mark.parametrize(("err", "expected"), [(errno.ENOTTY, None), (None, 4099)])
def test_ns_id_is_none_on_a_kernel_without_ns_get_id(
    monkeypatch: pytest.MonkeyPatch, err: int | None, expected: int | None
) -> None:
    """Before Linux 6.18 NS_GET_ID answers ENOTTY: the NSID column shows ``-``."""

    def fake(fd: int) -> int:
        if err is not None:
            raise OSError(err, os.strerror(err))
        return 4099

    monkeypatch.setattr(nslist.ksys, "ns_get_id", fake)
    assert nslist._ns_id(0) == expected
    entry = NsEntry("net", 1, 1, None, None, False, nsid=nslist._ns_id(0))
    assert nslist.format_table([entry], lambda k, i: None).split()[-1] == (
        "-" if expected is None else str(expected)
    )
