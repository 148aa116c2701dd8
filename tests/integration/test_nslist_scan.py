"""scan() against the real kernel and lsns (root).

The test makes namespaces of every way a namespace stays alive and holds them
steady while it compares: processes (``unshare``), a pid namespace inside a
user namespace (owner and parent), an nsfs fd of its own, ``ip netns`` and
``unshare --uts=FILE`` bind mounts, a time namespace only a process's
children would get, and a namespace only one thread is in.  ``lsns -J`` runs
right before and right after the scan; for the namespaces lsns shows (it shows
only those with processes here: util-linux 2.38 has no ``--persistent``), type,
process count, owner and parent must agree.  The others are checked against
the inodes the kernel reports for the objects the test made.  Other sessions
create and end processes meanwhile, so host-wide numbers are compared only
where both lsns runs agree.  Teardown kills its processes by pid, waits for
them, deletes the netns, unmounts and closes its fds, even on failure.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from containerfs.kernel import nslist
from containerfs.kernel.nslist import NsEntry
from containerfs.nskinds import KINDS

from .conftest import Mounted


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("unshare", "ip", "lsns", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} missing"
    return None


pytestmark = [pytest.mark.root, pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")]

#: Runs in a helper process: unshare a time namespace for the children only
#: (the process itself stays outside until it execs), then give one thread a
#: uts namespace of its own.  Prints both inodes; exits when stdin closes.
_HELPER = r"""
import ctypes, os, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x80) != 0:  # CLONE_NEWTIME
    sys.exit(f"unshare(CLONE_NEWTIME): {os.strerror(ctypes.get_errno())}")
print("time", os.stat("/proc/self/ns/time_for_children").st_ino, flush=True)
def alone():
    if libc.unshare(0x04000000) != 0:  # CLONE_NEWUTS, this thread only
        os._exit(3)
    print("uts", os.stat("/proc/thread-self/ns/uts").st_ino, flush=True)
    sys.stdin.read()
    os._exit(0)
threading.Thread(target=alone).start()
"""


def _wait_for(pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def _ino(path: str) -> int:
    return os.stat(path).st_ino


@dataclass
class Expected:
    """What scan() must say about one namespace the test made."""

    kind: str
    inode: int
    nprocs: int
    persistent: bool
    owner: int | None
    parent: int | None = None


@dataclass
class Made:
    """Everything the test started or created; :meth:`cleanup` undoes it all."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    grandchildren: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    tmp: str | None = None
    expected: list[Expected] = field(default_factory=list)

    def start(self, *argv: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        # Grandchildren first (by pid, only while still our processes' children),
        # so that their parents reap them and exit on their own.
        parents = {p.pid for p in self.procs}
        for pid in self.grandchildren:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid in parents:
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)
        for fd in self.fds:
            os.close(fd)
        for name in self.netns:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        for path in self.mounts:
            subprocess.run(["umount", path], check=False, capture_output=True)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _make(made: Made) -> None:
    host_user = _ino("/proc/self/ns/user")
    host_pid = _ino("/proc/self/ns/pid")
    tag = f"cfs-nslist-{secrets.token_hex(4)}"

    # Three processes in a new net and ipc namespace: sh and two sleeps.
    group = made.start("unshare", "--net", "--ipc", "sh", "-c", "sleep 600 & sleep 600 & wait")
    _wait_for(lambda: len(_children(group.pid)) == 2, "the two sleeps")
    made.grandchildren += _children(group.pid)
    for kind in ("net", "ipc"):
        made.expected.append(
            Expected(kind, _ino(f"/proc/{group.pid}/ns/{kind}"), 3, False, host_user)
        )

    # A user namespace (unshare and its child) owning a pid namespace (the child).
    nested = made.start("unshare", "--user", "--pid", "--fork", "--kill-child", "sleep", "600")
    _wait_for(lambda: len(_children(nested.pid)) == 1, "the nested sleep")
    (init,) = _children(nested.pid)
    made.grandchildren.append(init)
    _wait_for(
        lambda: os.readlink(f"/proc/{init}/exe").endswith("sleep"), "the nested sleep to exec"
    )
    user = _ino(f"/proc/{init}/ns/user")
    made.expected.append(Expected("user", user, 2, False, host_user, host_user))
    made.expected.append(Expected("pid", _ino(f"/proc/{init}/ns/pid"), 1, False, user, host_pid))

    # A uts namespace held only by an fd of ours.
    gone = made.start("unshare", "--uts", "sleep", "600")
    _wait_for(
        lambda: os.readlink(f"/proc/{gone.pid}/exe").endswith("sleep"), "unshare to exec sleep"
    )
    made.fds.append(os.open(f"/proc/{gone.pid}/ns/uts", os.O_RDONLY | os.O_CLOEXEC))
    gone.kill()
    gone.communicate(timeout=10)
    made.expected.append(Expected("uts", os.fstat(made.fds[-1]).st_ino, 0, True, host_user))

    # Bind mounts: ip netns, and a uts namespace bound by unshare itself.
    made.netns.append(tag)
    subprocess.run(["ip", "netns", "add", tag], check=True, capture_output=True)
    made.expected.append(Expected("net", _ino(f"/run/netns/{tag}"), 0, True, host_user))
    made.tmp = tempfile.mkdtemp(prefix=f"{tag}-")
    bound = Path(made.tmp, "uts")
    bound.touch()
    made.mounts.append(str(bound))
    subprocess.run(["unshare", f"--uts={bound}", "true"], check=True, capture_output=True)
    made.expected.append(Expected("uts", _ino(str(bound)), 0, True, host_user))

    # A time namespace for children only, and a uts namespace of one thread.
    helper = made.start(sys.executable, "-c", _HELPER)
    assert helper.stdout is not None
    inodes = {}
    for _ in range(2):
        kind, inode = helper.stdout.readline().decode().split()
        inodes[kind] = int(inode)
    made.expected.append(Expected("time", inodes["time"], 0, False, host_user))
    made.expected.append(Expected("uts", inodes["uts"], 0, False, host_user))


@pytest.fixture
def made() -> Iterator[Made]:
    fds_before = sorted(os.listdir("/proc/self/fd"))
    m = Made()
    try:
        _make(m)
        yield m
    finally:
        m.cleanup()
    assert all(p.returncode is not None for p in m.procs)
    assert sorted(os.listdir("/proc/self/fd")) == fds_before


def _lsns() -> dict[int, dict[str, Any]]:
    out = subprocess.run(
        ["lsns", "-J", "-o", "TYPE,NS,NPROCS,PID,PNS,ONS"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return {int(row["ns"]): row for row in json.loads(out)["namespaces"]}


def _still_in(pid: int, kind: str, inode: int) -> bool:
    """Whether process ``pid`` is (still) in namespace ``inode``."""
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}") == f"{kind}:[{inode}]"
    except OSError:
        return False


def _none_if_zero(value: Any) -> int | None:
    return int(value) or None


@pytest.mark.parametrize("walk", ["c", "python"])
def test_scan_finds_every_kind_of_holder(made: Made, walk: str) -> None:
    """Both walks of /proc (containerfs-nsscan's threads, and Python's) find the same."""
    walker = nslist.find_walker() if walk == "c" else None
    if walk == "c" and walker is None:
        pytest.skip("containerfs-nsscan is not built (make builds it)")
    entries = nslist.scan(walker=walker)
    got = {(e.kind, e.inode): e for e in entries}
    listed = nslist.listns_available()  # Linux >= 6.19: listns() found them
    for exp in made.expected:
        assert (exp.kind, exp.inode) in got, exp
        # listns() does not say what holds a namespace: "persistent" there
        # means no process is in it (a thread, *_for_children, fd or mount).
        persistent = exp.nprocs == 0 if listed else exp.persistent
        assert dataclasses.replace(got[(exp.kind, exp.inode)], nsid=None) == NsEntry(
            exp.kind, exp.inode, exp.nprocs, exp.owner, exp.parent, persistent
        )
    assert entries == sorted(entries, key=lambda e: (e.kind, e.inode))
    assert len(got) == len(entries), "a namespace listed twice"


def test_scan_agrees_with_lsns(made: Made) -> None:
    before = _lsns()
    entries = nslist.scan()
    after = _lsns()
    got = {e.inode: e for e in entries}

    # Ours, with processes, are stable: lsns and scan() must agree exactly.
    with_procs = [exp for exp in made.expected if exp.nprocs > 0]
    assert with_procs
    for exp in with_procs:
        for snapshot in (before, after):
            row = snapshot[exp.inode]
            assert (row["type"], row["nprocs"]) == (exp.kind, exp.nprocs)
        row = after[exp.inode]
        entry = got[exp.inode]
        assert (entry.kind, entry.nprocs) == (row["type"], row["nprocs"])
        assert entry.owner == _none_if_zero(row["ons"])
        assert entry.parent == _none_if_zero(row["pns"])

    # Every namespace lsns saw unchanged both times (same type, count and
    # lowest pid: other sessions end namespaces and the kernel hands their
    # inode numbers straight to new ones) is in scan() the same way.  lsns
    # counts itself in the host's namespaces and scan() counts this process,
    # so counts are compared where neither runs.
    ours = {_ino(f"/proc/self/ns/{kind}") for kind in KINDS}
    checked = 0
    for inode, row in before.items():
        if after.get(inode) != row or not _still_in(row["pid"], row["type"], inode):
            continue
        checked += 1
        assert inode in got, row
        assert got[inode].kind == row["type"], row
        assert got[inode].owner == _none_if_zero(row["ons"]), row
        assert got[inode].parent == _none_if_zero(row["pns"]), row
        if inode not in ours:
            assert got[inode].nprocs == row["nprocs"], row
    assert checked >= len(with_procs)


def test_scan_closes_what_it_opens(made: Made) -> None:
    before = sorted(os.listdir("/proc/self/fd"))
    for _ in range(3):
        nslist.scan()
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_format_table_of_a_real_scan(made: Made) -> None:
    entries = nslist.scan()
    ours = {(e.kind, e.inode) for e in made.expected}
    text = nslist.format_table(
        entries, lambda kind, inode: "/mine" if (kind, inode) in ours else None
    )
    lines = text.splitlines()
    assert len(lines) == len(entries)
    assert all(len(line.split()) == 7 for line in lines)
    assert sum(line.split()[5] == "/mine" for line in lines) == len(ours)
    # the NSID column, last: each namespace's id, "-" only where none was read
    assert [line.split()[6] for line in lines] == [
        "-" if e.nsid is None else str(e.nsid) for e in entries
    ]


#: linux/nsfs.h: NS_GET_ID = _IOR(0xb7, 13, __u64), Linux >= 6.18; written out
#: here rather than taken from containerfs, so that the test checks it.
_NS_GET_ID = (2 << 30) | (8 << 16) | (0xB7 << 8) | 13


def _kernel_ns_id(path: str) -> tuple[int, int | None]:
    """(inode, NS_GET_ID) of the namespace ``path`` opens; id None on ENOTTY."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        inode = os.fstat(fd).st_ino
        try:
            return inode, int.from_bytes(fcntl.ioctl(fd, _NS_GET_ID, bytes(8)), "little")
        except OSError as e:
            if e.errno != errno.ENOTTY:
                raise
            return inode, None
    finally:
        os.close(fd)


def test_scan_shows_each_namespaces_id(made: Made) -> None:
    """Every namespace's 64-bit id (what ``nsenter --net=:ID`` takes) is the one the
    kernel's NS_GET_ID gives on an fd of it: ours, the test's processes', and the
    one only an fd holds; None (``-``) on a kernel before 6.18, which lacks it."""
    paths = [f"/proc/self/ns/{kind}" for kind in KINDS]
    paths += [f"/proc/{p.pid}/ns/{kind}" for p in made.procs for kind in KINDS]
    paths += [f"/proc/self/fd/{fd}" for fd in made.fds]
    truth: dict[int, int | None] = {}
    for path in paths:
        try:
            inode, nsid = _kernel_ns_id(path)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # a zombie's link, or a process that ended
        truth[inode] = nsid
    got = {e.inode: e.nsid for e in nslist.scan()}
    assert len(truth) > len(KINDS)
    assert {inode: got.get(inode) for inode in truth} == truth
    if all(nsid is None for nsid in truth.values()):
        pytest.skip("this kernel has no NS_GET_ID (Linux < 6.18): the column shows -")
    assert len({nsid for nsid in truth.values()}) == len(truth)  # ids are distinct


# -- what an ordinary user sees (issue 14) ---------------------------------------


@dataclass
class Stranger:
    """A uid no account uses, with processes of its own the test started."""

    uid: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def argv(self, *argv: str) -> list[str]:
        """``argv`` as this user: no capabilities, no supplementary groups."""
        ids = [f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", "--inh-caps=-all"]
        return ["setpriv", *ids, *argv]

    def lsns(self) -> dict[int, int]:
        """What ``lsns`` run by this user shows: inode -> NPROCS."""
        out = subprocess.run(
            self.argv("lsns", "-n", "-r", "-o", "NS,NPROCS"),
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return {int(ns): int(n) for ns, n in (line.split() for line in out.splitlines())}


@pytest.fixture
def stranger() -> Iterator[Stranger]:
    """Two sleeps as a fresh uid: one in our namespaces, one in a user and a network
    namespace of its own (where the kernel lets an ordinary user make them)."""
    s = Stranger(2_000_000 + secrets.randbelow(1_000_000))
    try:
        s.procs.append(subprocess.Popen(s.argv("sleep", "600")))
        own = subprocess.Popen(
            s.argv("unshare", "--user", "--map-root-user", "--net", "sleep", "600")
        )
        s.procs.append(own)
        for p in s.procs:
            _wait_for(
                lambda p=p: (
                    p.poll() is not None or os.readlink(f"/proc/{p.pid}/exe").endswith("sleep")
                ),
                "the sleeps",
            )
        if own.poll() is not None:
            s.procs.remove(own)  # no user namespaces for ordinary users here
        yield s
    finally:
        for p in s.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)


@pytest.mark.parametrize("walk", ["c", "python", "c-out-of-reach"])
def test_scan_as_a_user_shows_what_its_lsns_shows(
    stranger: Stranger, walk: str, tmp_path: Path
) -> None:
    """``scan(as_user=...)`` lists the namespaces the user's own ``lsns`` lists, with
    the same counts (lsns counts itself, in our namespaces; the walk does not).
    Both walks; and the Python one when the user may not run the C program."""
    walker = nslist.find_walker() if walk.startswith("c") else None
    if walk.startswith("c") and walker is None:
        pytest.skip("containerfs-nsscan is not built (make builds it)")
    if walker is not None and walk == "c-out-of-reach":
        hidden = tmp_path / "private"
        hidden.mkdir(mode=0o700)
        walker = str(shutil.copy(walker, hidden / "walker"))
    entries = nslist.scan(walker=walker, as_user=(stranger.uid, stranger.uid))
    seen = stranger.lsns()
    ours = {_ino(f"/proc/self/ns/{kind}") for kind in KINDS}
    got = {e.inode: e.nprocs for e in entries if e.nprocs > 0}
    assert got == {ino: n - (ino in ours) for ino, n in seen.items()}
    kinds = [e.kind for e in entries]
    assert kinds.count("user") == len(stranger.procs)  # its own user namespace too
    # and nothing of root's: the full scan has more
    assert len(nslist.scan(walker=walker)) > len(entries)


def _table(text: str) -> dict[int, tuple[str, int, str]]:
    """``namespaces`` as inode -> (type, NPROCS, CONTAINER)."""
    rows = [line.split() for line in text.splitlines()]
    assert all(len(row) == 7 for row in rows), text
    return {int(r[1]): (r[0], int(r[2]), r[5]) for r in rows}


# A container's `ip netns` name is anyone's to see (and to open) in /run/netns,
# and so is its namespace: this daemon makes no names.
@pytest.mark.parametrize("cfs", [("--netns-prefix", "")], indirect=True)
def test_an_ordinary_reader_sees_what_its_lsns_shows(cfs: Mounted, stranger: Stranger) -> None:
    """Issue 14: `cat namespaces` by an ordinary user listed every namespace of the
    host. It shows what that user's `lsns` shows (both count themselves), and root
    still sees everything."""
    os.chmod(cfs.mnt.parent, 0o755)  # the test's temporary dir: let the user reach the mount
    os.mkdir(cfs.mnt / "a")  # namespaces of root's that the user must not see
    mine = {int(ino) for ino in _table((cfs.mnt / "namespaces").read_text())}
    a_net = os.stat(f"/proc/{int((cfs.mnt / 'a' / 'container.init').read_text())}/ns/net").st_ino
    assert a_net in mine
    read = subprocess.run(
        stranger.argv("cat", str(cfs.mnt / "namespaces")), capture_output=True, text=True
    )
    assert read.returncode == 0, read.stderr
    theirs = _table(read.stdout)
    seen = stranger.lsns()
    assert {ino: n for ino, (_, n, _) in theirs.items() if n > 0} == seen
    assert a_net not in theirs
    assert set(seen) <= mine
    # the user's own namespaces are the root's to see too
    root_view = _table((cfs.mnt / "namespaces").read_text())
    assert set(seen) - {_ino(f"/proc/self/ns/{k}") for k in KINDS} <= set(root_view)


@pytest.mark.parametrize("cfs", [("--debug",)], indirect=True)
def test_concurrent_readers_share_walks(cfs: Mounted, stranger: Stranger) -> None:
    """Issue 14: eight readers at once made eight walks of /proc. Readers at once
    share walks: far fewer walks than reads (the daemon logs each one)."""
    os.chmod(cfs.mnt.parent, 0o755)
    readers, rounds = 8, 3
    one = f"for i in $(seq {rounds}); do cat namespaces > /dev/null || exit 1; done; echo read"
    script = f"for r in $(seq {readers}); do ( {one} ) & done; wait"
    for who, argv in (
        ("root", ["sh", "-c", script]),
        (f"uid {stranger.uid}", stranger.argv("sh", "-c", script)),
    ):
        before = cfs.log.read_text().count(f"namespaces: walk as {who}")
        done = cfs.run(argv, who)
        assert done.stdout.split() == ["read"] * readers, done.stderr
        walks = cfs.log.read_text().count(f"namespaces: walk as {who}") - before
        print(who, walks, "walks for", readers * rounds, "reads")
        assert 0 < walks <= readers * rounds // 2, (who, walks)


def _kernel_has_listns() -> bool:
    """Whether this kernel's version is 6.19 or later (listns() came then)."""
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    return (major, minor) >= (6, 19)


def test_listns_is_used_where_the_kernel_has_it(made: Made) -> None:
    """On Linux >= 6.19 root's listing comes from listns() (the v2 lane's
    trixie-backports kernel), and it finds what the /proc walk finds."""
    if not _kernel_has_listns():
        assert not nslist.listns_available()
        pytest.skip(f"Linux {os.uname().release} has no listns() (6.19 and later)")
    assert nslist.listns_available()
    listed = {(e.kind, e.inode): e for e in nslist.scan_listns()}
    walked = {(e.kind, e.inode): e for e in nslist.scan(listns=False)}
    for exp in made.expected:
        got, walk = listed[(exp.kind, exp.inode)], walked[(exp.kind, exp.inode)]
        assert (got.nprocs, got.owner, got.parent, got.nsid) == (
            walk.nprocs,
            walk.owner,
            walk.parent,
            walk.nsid,
        ), exp
    mine = {(kind, _ino(f"/proc/self/ns/{kind}")) for kind in KINDS}
    assert mine <= set(listed)


def _program_listing() -> dict[tuple[str, int], NsEntry]:
    """What ``containerfs-nsscan``'s listns() mode (FDCOUNTS 3) lists, by (kind, inode)."""
    walker = nslist.find_walker()
    if walker is None:
        pytest.skip("containerfs-nsscan is not built (make builds it)")
    if not _kernel_has_listns():
        pytest.skip(f"Linux {os.uname().release} has no listns() (6.19 and later)")
    kinds, _ = nslist._ns_names("/proc")
    done = subprocess.run(
        [walker, "/proc", "3", "3", str(len(kinds)), *kinds],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return {(e.kind, e.inode): e for e in nslist.parse_listed(done.stdout, kinds)}


def test_the_programs_listns_mode_finds_what_the_walk_finds(made: Made) -> None:
    """containerfs-nsscan lists by listns() itself (the opens, the ioctls and the
    process count on its threads): the same kinds, owners, parents, ids and NPROCS
    as the /proc walk for everything the test made (a bind mount, an fd, a
    *_for_children and a thread's namespace count 0)."""
    listed = _program_listing()
    walked = {(e.kind, e.inode): e for e in nslist.scan(listns=False)}
    for exp in made.expected:
        got, walk = listed[(exp.kind, exp.inode)], walked[(exp.kind, exp.inode)]
        assert (got.nprocs, got.owner, got.parent, got.nsid) == (
            walk.nprocs,
            walk.owner,
            walk.parent,
            walk.nsid,
        ), exp
        assert got.persistent == (exp.nprocs == 0), exp
    assert {(e.kind, e.inode) for e in nslist.scan()} == set(listed)


@pytest.mark.parametrize("others", ["none", "ipc+uts"])
def test_the_programs_listns_count_agrees_with_the_walk(others: str) -> None:
    """The listns() mode reads each process's links only for kinds with several
    namespaces and counts a kind with one from whether the process is alive or a
    zombie. With a zombie of ours present, and with (``ipc+uts``) or without
    other namespaces of two kinds, its NPROCS equals the /proc walk's for every
    namespace whose count held still across a walk before and one after."""
    extra: list[subprocess.Popen[bytes]] = []
    zombie = subprocess.Popen(["true"])
    try:
        if others == "ipc+uts":
            extra.append(subprocess.Popen(["unshare", "--ipc", "--uts", "sleep", "600"]))
            _wait_for(
                lambda: os.readlink(f"/proc/{extra[0].pid}/exe").endswith("sleep"), "the sleep"
            )
        _wait_for(lambda: _state(zombie.pid) == "Z", "the zombie")
        mine = {(kind, _ino(f"/proc/self/ns/{kind}")) for kind in KINDS}
        for _ in range(5):
            before = {(e.kind, e.inode): e.nprocs for e in nslist.scan(listns=False)}
            listed = _program_listing()
            after = {(e.kind, e.inode): e.nprocs for e in nslist.scan(listns=False)}
            steady = {key for key, n in before.items() if after.get(key) == n}
            if mine <= steady:
                break
        else:
            pytest.fail("the host's process counts did not hold still for a whole listing")
        for key in steady:
            assert listed[key].nprocs == before[key], key
        if others == "ipc+uts":
            kinds = [kind for kind, _ in listed]
            assert kinds.count("ipc") > 1 and kinds.count("uts") > 1
    finally:
        for proc in extra:
            proc.kill()
            proc.wait(timeout=10)
        zombie.wait(timeout=10)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
