"""Permissions and delegation, checked as an unprivileged user the test creates.

The mount has ``default_permissions``: the kernel checks every access against
the owners and modes containerfs reports, as it does on cgroupfs. Files are
root's (``0644`` writable, ``0444`` read-only), so a user reads but writes
nothing; ``chown USER DIR`` by root delegates a container as cgroup v2 does
(README "Ownership and delegation"). Each rule is tried with the shell commands
a user would type, run as that user, and checked against the kernel's truth
(``/proc/PID/cgroup``, the holder's mount table).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import signal
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import TIME_SCALE, Mounted, live_pins, wait_for

pytestmark = pytest.mark.root

CONTROLLERS_ONLY = "echo '-ipc -uts -net -pid -mnt -cgroup -time' > container.subtree"
DENIED = "Permission denied"  # EACCES: the kernel's own check of owner and mode
NOT_PERMITTED = "Operation not permitted"  # EPERM


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int

    def argv(self, *argv: str) -> list[str]:
        """``argv`` as this user: no capabilities, no supplementary groups."""
        return [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--inh-caps=-all",
            *argv,
        ]

    def sh(self, m: Mounted, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a shell command as this user in the mount's directory."""
        return m.run(self.argv("bash", "-c", script), f"as {self.name}: {script!r}", check)

    def refused(self, m: Mounted, script: str, message: str) -> None:
        r = self.sh(m, script, check=False)
        assert r.returncode != 0 and message in r.stderr, (script, r.returncode, r.stderr)


@pytest.fixture
def user() -> Iterator[User]:
    """A system user of our own (no home, no login), removed at teardown.

    Tests take it before ``cfs``, so the mount (and every process started as
    the user) is gone by the time the user is removed.
    """
    name = f"cfs-test-{secrets.token_hex(3)}"
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/bin/false", name],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot create a test user: {made.stderr.strip()}")
    try:
        entry = pwd.getpwnam(name)
        yield User(name, entry.pw_uid, entry.pw_gid)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        if subprocess.run(["id", name], capture_output=True).returncode == 0:
            subprocess.run(["userdel", "--force", name], check=False, capture_output=True)


def reachable(m: Mounted) -> None:
    """The fixture's temporary directory is 0700: let other users reach the mountpoint."""
    os.chmod(m.mnt.parent, 0o755)


def owner(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if not p.is_dir())


def cgroup2(pid: int) -> str:
    """The process's cgroup2 path, from the kernel."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError(f"{pid} has no cgroup2 line")


def ls_owners(out: str) -> dict[str, tuple[str, str]]:
    """Name -> (user, group) from ``ls -l`` lines."""
    found = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 9:
            found[fields[-1]] = (fields[2], fields[3])
    return found


def uids(pid: int) -> tuple[int, ...]:
    """Real, effective, saved and filesystem uid of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return tuple(int(x) for x in line.split()[1:])
    raise AssertionError(f"{pid}: no Uid line")


def has_kind(m: Mounted, kind: str) -> bool:
    return any(
        line.split()[0] == kind and line.split()[-1] == "yes"
        for line in m.read("subsystems").splitlines()
    )


def end(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=10)


# -- 1. every file is root's; modes say what may be written ---------------------


def test_files_are_root_owned_with_modes_that_match_what_is_writable(cfs: Mounted) -> None:
    cfs.sh("mkdir web && echo +pids > web/container.subtree && mkdir web/db")
    cfs.sh(CONTROLLERS_ONLY + " && mkdir cg")
    for d in (cfs.mnt, cfs.mnt / "web", cfs.mnt / "web" / "db", cfs.mnt / "cg"):
        assert owner(d) == (0, 0, 0o755), d
        listing = files(d)
        assert len(listing) > 10
        for f in listing:
            uid, gid, mode = owner(f)
            assert (uid, gid) == (0, 0), f
            assert mode in (0o644, 0o444, 0o200), (f, oct(mode))
            assert (mode == 0o200) == (f.name == "container.claim"), f  # write-only
            # The mode is the daemon's own verdict: root (whom the kernel lets
            # past any mode) is refused exactly the 0444 files.
            try:
                os.close(os.open(f, os.O_WRONLY))
                writable = True
            except PermissionError:
                writable = False
            assert writable == (mode != 0o444), f
    # the same as `ls -l` shows it
    out = cfs.sh("ls -l web").stdout
    assert "-rw-r--r-- 1 root root " in out and "-r--r--r-- 1 root root " in out
    assert any(line.startswith("drwxr-xr-x") and " root root " in line for line in out.splitlines())


def test_a_user_reads_everything_but_writes_nothing(user: User, cfs: Mounted) -> None:
    reachable(cfs)
    cfs.sh("mkdir web && echo +pids > web/container.subtree && mkdir web/db")
    limits = [p for d in ("", "web", "web/db") for p in files(cfs.mnt / d) if owner(p)[2] == 0o644]
    before = {p: p.read_bytes() for p in limits}
    # every file reads but the write-only one (container.claim: root's, mode 0200)
    for d in ("", "web", "web/db"):
        user.sh(
            cfs,
            f"cd ./{d} && for f in *; do [ $f = container.claim ] && continue;"
            " if [ -f $f ]; then cat $f >/dev/null || exit 1; fi; done",
        )
    assert user.sh(cfs, "cat web/container.claim", check=False).returncode != 0
    user.sh(cfs, "cat web/container.subtree web/tasks container.subtree")
    # ...and nothing writes: the kernel refuses before the daemon sees it
    for script in (
        "echo 5 > web/pids.max",
        "echo $$ > web/tasks",
        "echo -pids > web/container.subtree",
        "echo delete > web/container.release",
        "echo +net > container.subtree",
        "echo /bin/true > release_agent",
        "echo 5 > web/db/pids.max",
        "echo 1 > web/db/container.claim",
        "mkdir x",
        "mkdir web/x",
        "rmdir web/db",
        "mv web/db web/db2",
        "mv web other",
    ):
        user.refused(cfs, script, DENIED)
    # owners and modes are root's alone to change
    user.refused(cfs, f"chown {user.name} web", NOT_PERMITTED)
    user.refused(cfs, "chmod 0666 web/pids.max", NOT_PERMITTED)
    user.refused(cfs, "chmod 0777 web", NOT_PERMITTED)
    assert sorted(os.listdir(cfs.mnt / "web")) == sorted(
        ["db", *(p.name for p in files(cfs.mnt / "web"))]
    )
    after = {p: p.read_bytes() for p in before}
    assert after == before


# -- 2. chown of a directory delegates it ------------------------------------------


def test_chown_delegates_a_subtree_to_its_new_owner(user: User, cfs: Mounted) -> None:
    reachable(cfs)
    pids = has_kind(cfs, "pids")
    cfs.sh(CONTROLLERS_ONLY + (" && echo +pids > container.subtree" if pids else ""))
    cfs.sh(f"mkdir a && chown {user.name} a")
    u, g = user.uid, user.gid
    # the directory, tasks and container.subtree change hands; the limits stay the
    # parent administrator's (root), as in cgroup v2
    assert owner(cfs.mnt / "a") == (u, 0, 0o755)
    assert owner(cfs.mnt / "a" / "tasks") == (u, 0, 0o644)
    assert owner(cfs.mnt / "a" / "container.subtree") == (u, 0, 0o644)
    others = [f for f in files(cfs.mnt / "a") if f.name not in ("tasks", "container.subtree")]
    assert others and all(owner(f)[:2] == (0, 0) for f in others)
    shown = ls_owners(user.sh(cfs, "ls -ld a && ls -l a").stdout)
    assert shown["a"] == shown["tasks"] == shown["container.subtree"] == (user.name, "root")
    assert shown["container.release"] == shown["container.events"] == ("root", "root")
    cfs.sh(f"chown :{user.name} a")  # the group alone
    assert owner(cfs.mnt / "a")[:2] == (u, g)

    # the user manages inside it: containers it makes are wholly its own
    plus = "echo +pids > a/container.subtree && " if pids else ""
    user.sh(cfs, f"{plus}mkdir a/b && {plus.replace('a/', 'a/b/')}mkdir a/b/c")
    for f in files(cfs.mnt / "a" / "b"):
        # the ID maps grant host IDs: root's always
        roots = f.name.endswith("id_map") or f.name == "container.claim"  # they grant namespaces
        assert owner(f)[:2] == ((0, 0) if roots else (u, g)), f
    assert owner(cfs.mnt / "a" / "b") == (u, g, 0o755)
    if pids:
        user.sh(cfs, "echo 7 > a/b/pids.max && echo 3 > a/b/c/pids.max")
        assert cfs.read("a/b/pids.max") == "7\n" and cfs.read("a/b/c/pids.max") == "3\n"
        user.refused(cfs, "echo 7 > a/pids.max", DENIED)  # its own limit is the parent's
        cfs.sh("echo 5 > a/pids.max")
    user.sh(cfs, "mv a/b/c a/b/d && echo -pids > a/b/container.subtree")
    assert "d" in os.listdir(cfs.mnt / "a" / "b")
    user.sh(cfs, "rmdir a/b/d")
    assert not (cfs.mnt / "a" / "b" / "d").exists()

    # ...and nothing outside it
    user.refused(cfs, "rmdir a", DENIED)
    user.refused(cfs, "mv a z", DENIED)
    user.refused(cfs, "mkdir z", DENIED)
    user.refused(cfs, "echo -pids > container.subtree", DENIED)
    cfs.sh("mkdir other")
    user.refused(cfs, "mkdir other/x", DENIED)
    user.refused(cfs, "echo $$ > other/tasks", DENIED)
    # a container root makes inside the delegated one is root's
    cfs.sh("mkdir a/r")
    assert owner(cfs.mnt / "a" / "r")[:2] == (0, 0)
    user.refused(cfs, "mkdir a/r/x", DENIED)
    user.sh(cfs, "rmdir a/r")  # but it goes with the parent directory's owner, as any entry
    # chown and chmod stay root's, also inside the subtree; chown is for directories
    user.refused(cfs, "chown root a/b", NOT_PERMITTED)
    user.refused(cfs, "chmod 0700 a/b", NOT_PERMITTED)
    r = cfs.sh(f"chown {user.name} a/b/tasks", check=False)
    assert r.returncode != 0 and NOT_PERMITTED in r.stderr
    r = cfs.sh(f"chown {user.name} .", check=False)
    assert r.returncode != 0 and NOT_PERMITTED in r.stderr
    r = cfs.sh("chmod 0777 a", check=False)
    assert r.returncode != 0 and NOT_PERMITTED in r.stderr
    # chown back to root takes the delegation back at once (no cached permission)
    cfs.sh("chown root a")
    user.refused(cfs, "mkdir a/late", DENIED)
    user.refused(cfs, "echo $$ > a/tasks", DENIED)
    user.sh(cfs, "mkdir a/b/still")  # what it made stays its own, as in cgroup v2


def test_a_user_moves_only_its_own_processes_within_its_subtree(user: User, cfs: Mounted) -> None:
    reachable(cfs)
    cfs.sh(CONTROLLERS_ONLY)
    cfs.sh(f"mkdir a y && chown {user.name} a y")
    user.sh(cfs, "mkdir a/b a/c")
    cfs.sh("mkdir a/r")  # root's, inside the delegated one
    base = cgroup2(os.getpid())  # the test runs in its subtree's parent
    mine = cfs.subtree.spawn(user.argv("sleep", "300"))
    roots = cfs.subtree.spawn(["sleep", "300"])
    half = cfs.subtree.spawn(["setpriv", f"--ruid={user.uid}", "sleep", "300"])  # euid 0
    wait_for(lambda: uids(half.pid)[:2] == (user.uid, 0), what="a half-changed process")
    start = cgroup2(mine.pid)

    # a process outside the delegated subtree (here: in the root container) stays there
    user.refused(cfs, f"echo {mine.pid} > a/tasks", NOT_PERMITTED)
    assert cgroup2(mine.pid) == start
    # root puts it in; the user then moves it around inside
    cfs.sh(f"echo {mine.pid} > a/tasks")
    user.sh(cfs, f"echo {mine.pid} > a/b/tasks")
    assert cgroup2(mine.pid).endswith("/a/b/.tasks") and base in cgroup2(mine.pid)
    assert cfs.read("a/b/tasks") == f"{mine.pid}\n"
    user.sh(cfs, f"echo {mine.pid} > a/c/tasks && echo {mine.pid} > a/tasks")
    assert cgroup2(mine.pid).endswith("/a/.tasks")
    # not out of it: the root's tasks are root's, another delegation is another subtree
    user.refused(cfs, f"echo {mine.pid} > tasks", DENIED)
    user.refused(cfs, f"echo {mine.pid} > y/tasks", NOT_PERMITTED)
    user.refused(cfs, f"echo {mine.pid} > a/r/tasks", DENIED)
    assert cgroup2(mine.pid).endswith("/a/.tasks")
    # nor someone else's process, even inside the subtree: real and effective uid
    for other in (roots, half):
        cfs.sh(f"echo {other.pid} > a/tasks")
        user.refused(cfs, f"echo {other.pid} > a/b/tasks", NOT_PERMITTED)
        assert cgroup2(other.pid).endswith("/a/.tasks")
    assert "may move only its own processes" in cfs.log.read_text()
    # a shell of its own moves itself (and its next command runs inside), once
    # root has put it in the subtree
    cfs.sh(f"echo {mine.pid} > a/b/tasks")
    shell = cfs.subtree.spawn(
        user.argv("bash", "-c", "read go; echo $$ > a/c/tasks && cat /proc/self/cgroup"),
        cwd=cfs.mnt,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    cfs.sh(f"echo {shell.pid} > a/tasks")
    out, err = shell.communicate(b"go\n", timeout=30 * TIME_SCALE)
    assert shell.returncode == 0 and b"/a/c/.tasks" in out, err
    # a busy container stays
    user.refused(cfs, "rmdir a/b", "Device or resource busy")
    for proc in (mine, roots, half):
        end(proc)
    wait_for(lambda: cfs.read("a/b/tasks") == "", what="a/b empty")
    user.sh(cfs, "rmdir a/b")


def test_delegation_survives_a_restart(user: User, cfs: Mounted) -> None:
    reachable(cfs)
    cfs.sh(CONTROLLERS_ONLY)
    cfs.sh(f"mkdir a && chown {user.name}:{user.name} a")
    user.sh(cfs, "mkdir a/b")
    cfs.sh("mkdir a/r")
    expect = {
        p: owner(cfs.mnt / p)
        for p in ("a", "a/tasks", "a/container.subtree", "a/container.release", "a/b", "a/b/tasks")
        + ("a/b/container.release", "a/r", "a/r/tasks")
    }
    listing = user.sh(cfs, "ls -lR --time-style=+ a").stdout
    # a crash (the journal) and a clean stop (the snapshot): both keep the owners
    for sig in (signal.SIGKILL, signal.SIGTERM):
        cfs.stop(sig)
        cfs.start()
        assert {p: owner(cfs.mnt / p) for p in expect} == expect, sig
        assert user.sh(cfs, "ls -lR --time-style=+ a").stdout == listing
    saved = json.loads((cfs.state / "state.json").read_text())
    rec = {"/".join(r["path"]): r for r in saved["containers"]}
    assert rec["a"]["owner"] == [user.uid, user.gid] and rec["a"]["admin"] == [0, 0]
    assert rec["a/b"]["owner"] == rec["a/b"]["admin"] == [user.uid, user.gid]
    # and the delegation works as before
    user.sh(cfs, "mkdir a/b/c && rmdir a/b/c")
    user.refused(cfs, "mkdir a/r/x", DENIED)


def test_a_delegated_user_is_held_to_the_limits_its_parent_sets(user: User, cfs: Mounted) -> None:
    """``container.max.depth`` and ``container.max.descendants`` (as cgroup v2's
    ``cgroup.max.*``): the parent's administrator sets them, a delegated container
    gets safe ones, and a mkdir past them is refused with EAGAIN."""
    reachable(cfs)
    cfs.sh(CONTROLLERS_ONLY)
    cfs.sh(f"mkdir a && chown {user.name} a")
    # delegation gives limits (they were max), the parent administrator's to change
    assert cfs.read("a/container.max.depth") == "32\n"
    assert cfs.read("a/container.max.descendants") == "256\n"
    assert cfs.read("container.max.depth") == "max\n"  # root's: not delegated
    assert owner(cfs.mnt / "a" / "container.max.depth") == (0, 0, 0o644)
    user.refused(cfs, "echo max > a/container.max.descendants", DENIED)
    cfs.sh("echo 2 > a/container.max.depth && echo 3 > a/container.max.descendants")

    again = "Resource temporarily unavailable"  # EAGAIN, what cgroup v2's mkdir says
    user.sh(cfs, "mkdir a/b && mkdir a/b/c")
    user.refused(cfs, "mkdir a/b/c/d", again)  # 3 levels below a
    user.sh(cfs, "mkdir a/x")  # the third descendant
    user.refused(cfs, "mkdir a/y", again)
    user.refused(cfs, "mkdir a/b/y", again)
    # the user's own containers are its own to limit, within a's limits
    user.sh(cfs, "echo 0 > a/x/container.max.descendants && echo 1 > a/x/container.max.depth")
    assert cfs.read("a/x/container.max.descendants") == "0\n"
    assert not (cfs.mnt / "a" / "y").exists()

    # bad values change nothing
    for bad in ("-1", "abc", "1.5", "", "max 1", "99999999999"):
        r = cfs.sh(f"echo '{bad}' > a/container.max.descendants", check=False)
        assert r.returncode != 0 and "Invalid argument" in r.stderr, bad
    assert cfs.read("a/container.max.descendants") == "3\n"

    # kept over a crash and a clean stop
    for sig in (signal.SIGKILL, signal.SIGTERM):
        cfs.stop(sig)
        cfs.start()
        assert cfs.read("a/container.max.depth") == "2\n", sig
        assert cfs.read("a/container.max.descendants") == "3\n", sig
        user.refused(cfs, "mkdir a/y", again)
    # a removal frees a place; root raising the limits lets the user go on
    user.sh(cfs, "rmdir a/x && mkdir a/y")
    user.refused(cfs, "mkdir a/z", again)
    cfs.sh("echo max > a/container.max.descendants && echo 5 > a/container.max.depth")
    user.sh(cfs, "mkdir a/z && mkdir a/b/c/d")
    # root is held to them too, as in cgroup v2 (a limit on the root limits everything)
    cfs.sh("echo 0 > a/b/c/d/container.max.depth")
    r = cfs.sh("mkdir a/b/c/d/e", check=False)
    assert r.returncode != 0 and again in r.stderr
    assert not (cfs.mnt / "a" / "b" / "c" / "d" / "e").exists()


def test_a_delegated_users_holders_count_against_its_pids_max(user: User, cfs: Mounted) -> None:
    """Holders live outside the containers' cgroups, so the kernel counts them in no
    ``pids.current``: a mkdir that needs one is refused (EAGAIN) when the subtree's
    tasks and holders would pass an ancestor's ``pids.max``."""
    if not has_kind(cfs, "pids"):
        pytest.skip("no pids controller here")
    reachable(cfs)
    cfs.sh(CONTROLLERS_ONLY + " && echo +pids > container.subtree")
    cfs.sh(f"mkdir a && chown {user.name} a && echo 3 > a/pids.max")
    pins = len(live_pins(str(cfs.mnt)))
    # the user's containers own a UTS namespace each: each costs a holder
    user.sh(cfs, "echo +uts > a/container.subtree && mkdir a/h1 a/h2")
    holder = int(cfs.read("a/h1/container.init"))
    assert holder > 0 and holder not in map(int, cfs.read("a/tasks").split())
    sleeper = subprocess.Popen(
        user.argv("sleep", "60"), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    try:
        cfs.sh(f"echo {sleeper.pid} > a/tasks")  # a task: 1 + 2 holders = 3
        assert cfs.read("a/pids.current") == "1\n"  # the kernel counts the task only
        user.refused(cfs, "mkdir a/h3", "Resource temporarily unavailable")
        assert len(live_pins(str(cfs.mnt))) == pins + 2  # no holder was started
        user.sh(cfs, "echo -uts > a/container.subtree && mkdir a/plain")  # no holder: fine
    finally:
        end(sleeper)
    wait_for(lambda: cfs.read("a/pids.current") == "0\n", what="the task gone")
    user.sh(cfs, "echo +uts > a/container.subtree && mkdir a/h3")  # room again
    user.refused(cfs, "mkdir a/h4", "Resource temporarily unavailable")
    user.sh(cfs, "rmdir a/h1 && mkdir a/h4")
    assert len(live_pins(str(cfs.mnt))) == pins + 3


# -- 3. inside a container: no host tree, only its own values ------------------------


def mount_points(pid: int) -> list[tuple[str, str]]:
    """(mount point, fstype) of every mount in the process's mount namespace."""
    out = []
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        out.append((fields[4], fields[fields.index("-", 6) + 1]))
    return out


@pytest.mark.parametrize("kinds", ["+mnt", "+mnt +user"])
def test_a_container_sees_none_of_the_host_tree(cfs: Mounted, kinds: str) -> None:
    cfs.sh(f"echo '{kinds}' > container.subtree && mkdir c")
    init = int(cfs.read("c/container.init"))
    wait_for(  # the views are bound in after mkdir answers
        lambda: any(
            p.startswith("/proc/sys/") and t == "fuse.containerfs" for p, t in mount_points(init)
        ),
        what="views bound",
    )
    points = mount_points(init)
    assert str(cfs.mnt) not in [p for p, _t in points]
    # its own views are there, bound over /proc/sys files (other daemons' mounts
    # on a shared machine are other daemons' business)
    if kinds == "+mnt":  # a process inside (user-namespaced: its holder is the witness)
        seen = cfs.exec(
            "c", "sh", "-c", f"ls -A {cfs.mnt}; grep -c ' {cfs.mnt} ' /proc/self/mountinfo; true"
        )
        assert seen.stdout.split() == ["0"], seen.stdout


def test_internal_views_show_only_the_containers_own_values(cfs: Mounted) -> None:
    host = Path("/proc/sys/kernel/shmmni").read_text()
    cfs.sh("mkdir a b")
    cfs.exec("a", "sh", "-c", "echo 111 > /proc/sys/kernel/shmmni")
    cfs.exec("b", "sh", "-c", "echo 222 > /proc/sys/kernel/shmmni")
    assert cfs.exec("a", "cat", "/proc/sys/kernel/shmmni").stdout == "111\n"
    assert cfs.exec("b", "cat", "/proc/sys/kernel/shmmni").stdout == "222\n"
    assert cfs.read("a/ipc.shm_mni.internal") == "111\n"
    assert cfs.read("b/ipc.shm_mni.internal") == "222\n"
    assert Path("/proc/sys/kernel/shmmni").read_text() == host
    assert cfs.read("ipc.shm_mni.internal") == host
    # the kernel in each namespace holds its own effective value
    for c, value in (("a", "111"), ("b", "222")):
        init = cfs.read(f"{c}/container.init").strip()
        got = subprocess.run(
            ["nsenter", "-t", init, "-i", "sh", "-c", "ipcs -l | grep -i 'max number of segments'"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert got.split()[-1] == value, got
