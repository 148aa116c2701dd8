"""The core hierarchy, driven as an administrator would: mkdir, echo, cat, exec.

Every claim is checked against the kernel: /proc/PID/ns links, /proc/PID/cgroup,
the v1 cgroup files, and the kernel refusing a fork past pids.max.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import CONTAINERFS, Mounted, on_terminal, wait_for

pytestmark = pytest.mark.root

NS = ("ipc", "uts", "net", "pid", "mnt", "cgroup", "time")


def ns_inode(pid: int | str, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for the host's init to reap it counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def listed(m: Mounted, container: str) -> dict[str, tuple[str, str]]:
    rows = m.read(f"{container}/container.subsystems").split("\n")
    return {r.split()[0]: (r.split()[1], r.split()[2]) for r in rows if r}


def v1_dir(m: Mounted, controller: str) -> Path | None:
    """This test's own cgroup directory in the v1 hierarchy of ``controller``, if any."""
    for d, version, ctrls in zip(
        m.subtree.dirs, m.subtree.versions, m.subtree.controllers, strict=True
    ):
        if version == 1 and controller in ctrls:
            return d
    return None


def test_subsystems_file_declares_every_kind(cfs: Mounted) -> None:
    rows = [line.split() for line in cfs.read("subsystems").splitlines()]
    assert all(len(r) == 6 for r in rows), rows
    by_name = {r[0]: r for r in rows}
    for kind in (*NS, "user"):
        want = "spawn" if kind in ("pid", "time", "user") else "migrate"
        assert by_name[kind][1:3] == ["namespace", want], kind
        assert by_name[kind][3] == "mkdir,clone"
    controllers = [r for r in rows if r[1] == "controller"]
    assert controllers, "a host always offers some controller"
    assert all(r[2] == "migrate" and r[3] == "mkdir" for r in controllers)
    if v1_dir(cfs, "pids"):
        assert by_name["pids"][5] == "yes"
        assert by_name["memory"][5] == "yes"


def test_mkdir_makes_real_namespaces_and_cgroups(cfs: Mounted) -> None:
    cfs.sh("mkdir web")
    rows = listed(cfs, "web")
    init = int(cfs.read("web/container.init"))
    assert init > 0
    for kind in NS:
        state, ident = rows[kind]
        assert state == "own", kind
        # the holder lives in exactly the namespaces the file names, and they are new
        # (time: the holder keeps it for its children, so offsets stay settable)
        assert ns_inode(init, "time_for_children" if kind == "time" else kind) == int(ident), kind
        assert int(ident) != ns_inode("self", kind), kind
    assert rows["user"][0] == "shared"
    assert int(rows["user"][1]) == ns_inode("self", "user")
    # a pid-namespace init: pid 1 inside
    status = Path(f"/proc/{init}/status").read_text()
    nspid = next(line for line in status.splitlines() if line.startswith("NSpid:"))
    assert nspid.split()[-1] == "1"
    pids = v1_dir(cfs, "pids")
    if pids is not None:
        assert (pids / "web").is_dir()
        assert rows["pids"] == ("own", rows["pids"][1])
        assert rows["pids"][1].endswith("/web")
    # empty and persistent: no tasks, not populated, the holder not counted
    assert cfs.read("web/tasks") == ""
    assert cfs.read("web/container.events") == "populated 0\nreleased 0\n"


def test_hostname_is_per_container_and_seen_inside(cfs: Mounted) -> None:
    host = os.uname().nodename
    cfs.sh("mkdir web && echo web-1 > web/uts.hostname")
    assert cfs.read("web/uts.hostname") == "web-1\n"
    assert cfs.exec("web", "hostname").stdout == "web-1\n"
    assert os.uname().nodename == host
    assert cfs.read("uts.hostname") == host + "\n"
    cfs.sh("echo example.org > web/uts.domainname")
    inside = cfs.exec("web", "cat", "/proc/sys/kernel/domainname").stdout
    assert inside == "example.org\n" == cfs.read("web/uts.domainname")
    assert Path("/proc/sys/kernel/domainname").read_text() != inside
    # the root's objects belong to the host: read-only
    bad = cfs.sh("echo nope > uts.hostname", check=False)
    assert bad.returncode != 0 and "Permission denied" in bad.stderr
    assert os.uname().nodename == host


def test_exec_joins_every_namespace_and_passes_status(cfs: Mounted) -> None:
    cfs.sh("mkdir box")
    rows = listed(cfs, "box")
    links = cfs.exec(
        "box", "sh", "-c", "for k in " + " ".join(NS) + "; do readlink /proc/self/ns/$k; done"
    )
    got = links.stdout.split()
    for kind, link in zip(NS, got, strict=True):
        assert link == f"{kind}:[{rows[kind][1]}]"
    # its cgroup namespace is rooted at the container's own cgroups
    inside = cfs.exec("box", "cat", "/proc/self/cgroup").stdout.splitlines()
    for line in inside:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # the cgroup2 tree: the container's leaf for its tasks
            assert path == "/.tasks", line
        elif "pids" in controllers.split(","):
            assert path == "/", line
    # inside its own pid namespace, above the init
    pid_inside = int(cfs.exec("box", "sh", "-c", "echo $$").stdout)
    assert pid_inside > 1
    assert cfs.exec("box", "sh", "-c", "exit 7", check=False).returncode == 7
    killed = cfs.exec("box", "sh", "-c", "kill -TERM $$", check=False)
    assert killed.returncode == 128 + signal.SIGTERM
    assert cfs.exec("box", "no-such-command-xyz", check=False).returncode == 127


def test_exec_runs_an_interactive_shell_on_a_terminal(cfs: Mounted) -> None:
    cfs.sh("mkdir tty && echo tty-box > tty/uts.hostname")
    text, status = on_terminal(
        [*CONTAINERFS, "exec", str(cfs.mnt / "tty"), "--", "sh", "-i"],
        b"tty -s && echo on-a-tty; echo host=$(hostname); exit 3\n",
    )
    assert "on-a-tty" in text and "host=tty-box" in text, text
    assert status == 3, text


def test_pids_max_makes_the_kernel_refuse_a_sixth_process(cfs: Mounted) -> None:
    if v1_dir(cfs, "pids") is None and "pids" not in cfs.read("subsystems"):
        pytest.skip("no pids controller on this host")
    cfs.sh("mkdir lim && echo 5 > lim/pids.max")
    assert cfs.read("lim/pids.max") == "5\n"
    # one python process forks until the kernel says no; it is the first of the five
    script = textwrap.dedent(
        """
        import errno, os, time
        kids = []
        try:
            for _ in range(10):
                pid = os.fork()
                if pid == 0:
                    time.sleep(30)
                    os._exit(0)
                kids.append(pid)
        except OSError as e:
            print(len(kids), errno.errorcode[e.errno])
        for k in kids:
            os.kill(k, 9)
            os.waitpid(k, 0)
        """
    )
    # the interpreter itself, not a wrapper script that would fork on its own
    out = cfs.exec("lim", sys.executable, "-c", script).stdout.split()
    assert out == ["4", "EAGAIN"]
    pids = v1_dir(cfs, "pids")
    if pids is not None:
        assert (pids / "lim" / "pids.max").read_text() == "5\n"


def test_memory_max_is_translated_to_v1(cfs: Mounted) -> None:
    mem = v1_dir(cfs, "memory")
    if mem is None:
        pytest.skip("memory is not a v1 controller on this host")
    cfs.sh("mkdir m && echo 64M > m/memory.max")
    assert (mem / "m" / "memory.limit_in_bytes").read_text() == "67108864\n"
    assert cfs.read("m/memory.max") == "67108864\n"
    cfs.sh("echo max > m/memory.max")
    assert cfs.read("m/memory.max") == "max\n"
    assert int(cfs.read("m/memory.current")) >= 0


def test_tasks_write_moves_cgroups_and_refuses_namespaces(cfs: Mounted) -> None:
    cfs.sh("mkdir full")
    # a process of the test's own, started in the test's cgroup subtree (the root container)
    sleeper = cfs.subtree.spawn(["sleep", "300"])
    # full owns namespaces a running process cannot enter: refused, nothing moved
    before = Path(f"/proc/{sleeper.pid}/cgroup").read_text()
    bad = cfs.sh(f"echo {sleeper.pid} > full/tasks", check=False)
    assert bad.returncode != 0 and "Invalid argument" in bad.stderr
    assert cfs.read("full/tasks") == ""
    assert Path(f"/proc/{sleeper.pid}/cgroup").read_text() == before
    assert "cannot move a running process" in cfs.log.read_text()
    # a container owning only controllers takes it
    cfs.sh("echo '-ipc -uts -net -pid -mnt -cgroup -time' > container.subtree")
    cfs.sh("mkdir cg")
    assert all(listed(cfs, "cg")[k][0] == "shared" for k in NS)
    cfs.sh(f"echo {sleeper.pid} > cg/tasks")
    assert cfs.read("cg/tasks") == f"{sleeper.pid}\n"
    assert str(sleeper.pid) not in cfs.read("tasks").split()
    assert cfs.read("cg/container.events").startswith("populated 1\n")
    cgroup = Path(f"/proc/{sleeper.pid}/cgroup").read_text()
    pids = v1_dir(cfs, "pids")
    if pids is not None:
        line = next(x for x in cgroup.splitlines() if ":pids:" in x)
        assert line.endswith("/cg")
    # bad PIDs change nothing
    for text, message in [
        ("abc", "Invalid argument"),
        ("0", "Invalid argument"),
        ("4194303", "No such process"),
    ]:
        r = cfs.sh(f"echo {text} > cg/tasks", check=False)
        assert r.returncode != 0 and message in r.stderr, (text, r.stderr)
    # the daemon's own processes are not tasks: its holders, itself
    for pid in [cfs.read("full/container.init").strip(), str(cfs.daemon.pid)]:
        r = cfs.sh(f"echo {pid} > cg/tasks", check=False)
        assert r.returncode != 0 and "Invalid argument" in r.stderr, pid
    assert cfs.read("cg/tasks") == f"{sleeper.pid}\n"
    sleeper.kill()
    sleeper.wait()
    wait_for(
        lambda: cfs.read("cg/container.events").startswith("populated 0\n"), what="unpopulated"
    )


def test_pid_1_is_never_a_task(cfs: Mounted) -> None:
    """Init is refused by a rule of the daemon's (EINVAL, logged), before anything
    reads its /proc entry: not by whatever reading it happens to fail with."""
    cfs.sh("echo '-ipc -uts -net -pid -mnt -cgroup -time' > container.subtree && mkdir cg")
    before = Path("/proc/1/cgroup").read_text()
    r = cfs.sh("echo 1 > cg/tasks", check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr, r.stderr
    assert "1 is the init of the daemon's pid namespace, not a task" in cfs.log.read_text()
    assert cfs.read("cg/tasks") == ""
    assert Path("/proc/1/cgroup").read_text() == before
    assert cfs.read("cg/container.events") == "populated 0\nreleased 0\n"


def test_rmdir_frees_kernel_objects_and_refuses_busy(cfs: Mounted) -> None:
    cfs.sh("mkdir a && echo +uts > a/container.subtree && mkdir a/b")
    holder = int(cfs.read("a/container.init"))
    inner_holder = int(cfs.read("a/b/container.init"))
    assert holder != inner_holder
    busy = cfs.sh("rmdir a", check=False)
    assert busy.returncode != 0 and "busy" in busy.stderr.lower()
    sleeper = cfs.spawn("a/b", "sleep", "300")
    wait_for(lambda: cfs.read("a/b/tasks") != "", what="a task in a/b")
    busy = cfs.sh("rmdir a/b", check=False)
    assert busy.returncode != 0 and "busy" in busy.stderr.lower()
    sleeper.kill()
    sleeper.wait()
    wait_for(lambda: cfs.read("a/b/tasks") == "", what="a/b empty")
    cfs.sh("rmdir a/b && rmdir a")
    assert not (cfs.mnt / "a").exists()
    wait_for(lambda: gone(holder) and gone(inner_holder), what="the holders to go")
    for d in cfs.subtree.dirs:
        assert not (d / "a").exists(), d


def test_nested_container_shares_its_parents_namespaces(cfs: Mounted) -> None:
    cfs.sh("mkdir outer && echo +uts > outer/container.subtree && mkdir outer/inner")
    outer, inner = listed(cfs, "outer"), listed(cfs, "outer/inner")
    assert inner["uts"][0] == "own" and inner["uts"][1] != outer["uts"][1]
    for kind in ("pid", "net", "ipc", "mnt"):
        assert inner[kind] == ("shared", outer[kind][1])
    cfs.sh("echo outer > outer/uts.hostname && echo inner > outer/inner/uts.hostname")
    assert cfs.exec("outer/inner", "hostname").stdout == "inner\n"
    assert cfs.exec("outer", "hostname").stdout == "outer\n"
    link = cfs.exec("outer/inner", "readlink", "/proc/self/ns/pid").stdout.strip()
    assert link == f"pid:[{outer['pid'][1]}]"


def test_bad_input_is_refused_and_changes_nothing(cfs: Mounted) -> None:
    cfs.sh("mkdir web && echo 7 > web/pids.max && echo web > web/uts.hostname")
    for name in [".hidden", "a\nb", "two words", "tab\there"]:
        r = subprocess.run(["mkdir", str(cfs.mnt / name)], capture_output=True, text=True)
        assert r.returncode != 0 and "Invalid argument" in r.stderr
    r = subprocess.run(["mkdir", str(cfs.mnt / ("x" * 256))], capture_output=True, text=True)
    assert r.returncode != 0 and "File name too long" in r.stderr
    r = subprocess.run(["mkdir", str(cfs.mnt / "tasks")], capture_output=True, text=True)
    assert r.returncode != 0 and "exists" in r.stderr
    cases = {
        "web/pids.max": ("-3", "7\n"),
        "web/uts.hostname": ("has space", "web\n"),
        "web/container.subtree": ("+bogus", "\n"),
        "web/container.release": ("forever", "ignore\n"),
    }
    for path, (bad, keep) in cases.items():
        r = cfs.sh(f"echo '{bad}' > {path}", check=False)
        assert r.returncode != 0 and "Invalid argument" in r.stderr, path
        assert cfs.read(path) == keep, path
    # read-only files and shared kinds
    cfs.sh("mkdir web/child")
    assert cfs.read("web/child/uts.hostname") == "web\n"
    for path in ["web/child/uts.hostname", "web/child/pids.max", "web/container.events"]:
        r = cfs.sh(f"echo 1 > {path}", check=False)
        assert r.returncode != 0 and "Permission denied" in r.stderr, path
    assert cfs.daemon.poll() is None


def test_release_and_subtree_are_stored(cfs: Mounted) -> None:
    cfs.sh(
        "mkdir r && echo delete > r/container.release && echo '+net +pids' > r/container.subtree"
    )
    assert cfs.read("r/container.release") == "delete\n"
    assert cfs.read("r/container.subtree") == "net pids\n"
    cfs.sh("echo -net > r/container.subtree")
    assert cfs.read("r/container.subtree") == "pids\n"


def test_sigterm_unmounts_and_keeps_containers(cfs: Mounted) -> None:
    cfs.sh("mkdir kept")
    holder = int(cfs.read("kept/container.init"))
    cfs.daemon.send_signal(signal.SIGTERM)
    assert cfs.daemon.wait(timeout=20) == 0
    assert not os.path.ismount(cfs.mnt)
    assert not gone(holder)  # the namespaces live on for the next daemon
    for d in cfs.subtree.dirs:
        if (d / ".tasks").exists() or d == cfs.subtree.v2_dir:
            assert (d / "kept").is_dir(), d


def test_controller_files_reach_the_v1_files(cfs: Mounted) -> None:
    cpu, cpuset = v1_dir(cfs, "cpu"), v1_dir(cfs, "cpuset")
    if cpu is None or cpuset is None:
        pytest.skip("cpu and cpuset are not v1 controllers on this host")
    cfs.sh("mkdir c && echo '50000 100000' > c/cpu.max && echo 200 > c/cpu.weight")
    assert (cpu / "c" / "cpu.cfs_quota_us").read_text() == "50000\n"
    assert (cpu / "c" / "cpu.cfs_period_us").read_text() == "100000\n"
    assert cfs.read("c/cpu.max") == "50000 100000\n"
    assert cfs.read("c/cpu.weight") == "200\n"
    shares = int((cpu / "c" / "cpu.shares").read_text())
    assert shares == 2 + (199 * 262142) // 9999
    cfs.sh("echo 'max 100000' > c/cpu.max")
    assert (cpu / "c" / "cpu.cfs_quota_us").read_text() == "-1\n"
    cfs.sh("echo 0 > c/cpuset.cpus")
    assert (cpuset / "c" / "cpuset.cpus").read_text() == "0\n"
    assert cfs.read("c/cpuset.cpus") == "0\n"
    assert cfs.exec("c", "cat", "/proc/self/status").stdout.count("Cpus_allowed_list:\t0\n") == 1
    for path, bad in [("c/cpu.max", "0 100000"), ("c/cpu.weight", "0"), ("c/cpuset.cpus", "9999")]:
        before = cfs.read(path)
        r = cfs.sh(f"echo '{bad}' > {path}", check=False)
        assert r.returncode != 0, path
        assert cfs.read(path) == before, path


def test_failed_rmdir_leaves_the_container_whole(cfs: Mounted) -> None:
    pids = v1_dir(cfs, "pids")
    if pids is None:
        pytest.skip("pids is not a v1 controller on this host")
    cfs.sh("mkdir w && echo w-host > w/uts.hostname")
    # a process the test starts and puts straight into w's pids cgroup, behind the
    # daemon's back (the cgroup is inside the test's own subtree)
    stray = cfs.subtree.spawn(["sleep", "300"])
    (pids / "w" / "cgroup.procs").write_text(str(stray.pid))
    r = cfs.sh("rmdir w", check=False)
    assert r.returncode != 0 and "busy" in r.stderr.lower()
    assert cfs.read("w/uts.hostname") == "w-host\n"
    assert cfs.exec("w", "hostname").stdout == "w-host\n"
    stray.kill()
    stray.wait()
    wait_for(lambda: (pids / "w" / "cgroup.procs").read_text() == "", what="w's pids empty")
    cfs.sh("rmdir w")


def test_a_bad_subtree_option_is_a_clear_error(tmp_path: Path) -> None:
    from tests.cgtree import own_subtree

    from .conftest import _skip_reason, start_daemon

    if reason := _skip_reason():
        pytest.skip(reason)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with own_subtree("badopt") as subtree:
        daemon = start_daemon(
            subtree, mnt, tmp_path / "state", tmp_path / "log", "--subtree", "+bogus"
        )
        assert daemon.wait(timeout=30) != 0
    out = (tmp_path / "log").read_text()
    assert "--subtree" in out and "bogus" in out and "Traceback" not in out
    assert not os.path.ismount(mnt)


def test_v2_controllers_are_enabled_for_owners_and_disabled_after_the_last(cfs: Mounted) -> None:
    base = cfs.subtree.v2_dir
    if base is None:
        pytest.skip("no cgroup2 hierarchy here")
    offered = set((base / "cgroup.controllers").read_text().split()) & {"memory", "pids"}
    if not offered:
        pytest.skip("no memory or pids controller delegated on cgroup2 here (hybrid host)")
    ctrl = sorted(offered)[0]

    def enabled(*path: str) -> set[str]:
        return set((base.joinpath(*path) / "cgroup.subtree_control").read_text().split())

    cfs.sh(f"echo '+{ctrl}' > container.subtree && mkdir a b")
    cfs.sh(f"echo '+{ctrl}' > a/container.subtree && mkdir a/x")
    assert ctrl in enabled() and ctrl in enabled("a")
    cfs.sh("rmdir a/x")
    assert ctrl not in enabled("a")  # its last owner below a is gone
    assert ctrl in enabled()  # b still owns it
    cfs.sh("rmdir b")
    assert ctrl in enabled()  # a owns it
    cfs.sh("rmdir a")
    assert ctrl not in enabled()
