"""Moving running processes into a container's namespaces with ``echo PID > tasks``.

The kernel's truth after each move: ``/proc/PID/task/*/ns/*`` of every thread,
the hostname the moved process sees, the network namespace its new sockets
land in, and its earlier sockets still working.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import Mounted, wait_for
from .test_core import listed, ns_inode

pytestmark = pytest.mark.root

MOVABLE = ("ipc", "uts", "net", "cgroup")


def make_box(m: Mounted, name: str = "box") -> dict[str, str]:
    """A container owning only the kinds a running process can enter (and controllers)."""
    m.sh(f"echo '-pid -mnt -time' > container.subtree && mkdir {name}")
    m.sh(f"echo {name}-host > {name}/uts.hostname")
    return {k: ino for k, (state, ino) in listed(m, name).items() if k in MOVABLE}


def thread_inodes(pid: int, kind: str) -> set[int]:
    return {
        os.stat(f"/proc/{pid}/task/{tid}/ns/{kind}").st_ino
        for tid in os.listdir(f"/proc/{pid}/task")
    }


def assert_in(pid: int, box: dict[str, str]) -> None:
    for kind, ino in box.items():
        assert thread_inodes(pid, kind) == {int(ino)}, kind


def test_a_sleeping_process_moves_and_ends_on_time(cfs: Mounted) -> None:
    box = make_box(cfs)
    start = time.monotonic()
    sleeper = cfs.subtree.spawn(["sleep", "2"])
    time.sleep(0.3)
    cfs.sh(f"echo {sleeper.pid} > box/tasks")
    assert_in(sleeper.pid, box)
    assert str(sleeper.pid) in cfs.read("box/tasks").split()
    assert sleeper.wait(timeout=10) == 0
    assert 1.9 < time.monotonic() - start < 5


def test_a_shell_blocked_in_read_runs_its_next_command_inside(cfs: Mounted) -> None:
    box = make_box(cfs)
    shell = cfs.subtree.spawn(
        ["bash", "-c", "read x; hostname; readlink /proc/self/ns/net"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    time.sleep(0.3)
    cfs.sh(f"echo {shell.pid} > box/tasks")
    assert_in(shell.pid, box)
    out, _ = shell.communicate(b"go\n", timeout=10)
    assert out.decode().split() == ["box-host", f"net:[{box['net']}]"]


def test_echo_dollar_dollar_moves_the_shell_itself(cfs: Mounted) -> None:
    box = make_box(cfs)
    r = cfs.sh("echo $$ > box/tasks && hostname && readlink /proc/$$/ns/uts /proc/self/ns/net")
    assert r.stdout.split() == ["box-host", f"uts:[{box['uts']}]", f"net:[{box['net']}]"]


PROGRAM = textwrap.dedent(
    """
    import socket, sys, threading, time
    a, b = socket.socketpair()
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait) for _ in range(3)]
    for t in threads:
        t.start()
    print("ready", flush=True)
    sys.stdin.readline()  # moved meanwhile
    a.sendall(b"still works")
    print(b.recv(100).decode(), flush=True)
    print(" ".join(name for _, name in socket.if_nameindex()), flush=True)
    stop.set()
    for t in threads:
        t.join()
    """
)


def test_every_thread_moves_and_old_sockets_keep_working(cfs: Mounted) -> None:
    box = make_box(cfs)
    proc = cfs.subtree.spawn(
        [sys.executable, "-c", PROGRAM], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline() == b"ready\n"
    assert len(os.listdir(f"/proc/{proc.pid}/task")) == 4
    cfs.sh(f"echo {proc.pid} > box/tasks")
    assert_in(proc.pid, box)
    out, _ = proc.communicate(b"\n", timeout=10)
    assert out.decode().splitlines() == ["still works", "lo"]  # the box has only lo


def test_a_traced_process_is_refused_and_left_alone(cfs: Mounted) -> None:
    box = make_box(cfs)
    sleeper = cfs.subtree.spawn(["sleep", "300"])
    seizer = cfs.subtree.spawn(
        [
            sys.executable,
            "-c",
            "import ctypes, sys, time\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            f"assert libc.ptrace(0x4206, {sleeper.pid}, None, None) == 0\n"
            "print('seized', flush=True); time.sleep(300)\n",
        ],
        stdout=subprocess.PIPE,
    )
    assert seizer.stdout is not None and seizer.stdout.readline() == b"seized\n"
    before = {k: ns_inode(sleeper.pid, k) for k in box}
    cgroups = Path(f"/proc/{sleeper.pid}/cgroup").read_text()
    r = cfs.sh(f"echo {sleeper.pid} > box/tasks", check=False)
    assert r.returncode != 0 and "busy" in r.stderr.lower()
    assert {k: ns_inode(sleeper.pid, k) for k in box} == before
    assert Path(f"/proc/{sleeper.pid}/cgroup").read_text() == cgroups
    assert cfs.read("box/tasks") == ""
    assert "already traced" in cfs.log.read_text()
    seizer.kill()
    seizer.wait()


def _freeze(cfs: Mounted, version: int, pid: int) -> Path:
    """Put ``pid`` in a cgroup of the test's own subtree and freeze it there (the v1
    freezer, or cgroup2's ``cgroup.freeze``); that cgroup's directory. The subtree's
    teardown thaws, empties and removes it."""
    if version == 1:
        top = cfs.subtree.dir_for("freezer")
        state, frozen_value = "freezer.state", "FROZEN"
    else:
        top = cfs.subtree.v2_dir
        state, frozen_value = "cgroup.freeze", "1"
    if top is None:
        pytest.skip(f"no cgroup v{version} freezer here")
    cg = top / ".test-frozen"  # a dot: never a container's directory
    cg.mkdir()
    (cg / "cgroup.procs").write_text(str(pid))
    (cg / state).write_text(frozen_value)
    if version == 1:
        wait_for(lambda: (cg / state).read_text().strip() == "FROZEN", what="frozen")
    else:
        wait_for(lambda: "frozen 1" in (cg / "cgroup.events").read_text(), what="frozen")
    return cg


def _still_frozen(cg: Path, version: int) -> bool:
    if version == 1:
        return (cg / "freezer.state").read_text().strip() == "FROZEN"
    return "frozen 1" in (cg / "cgroup.events").read_text()


@pytest.mark.parametrize("version", [1, 2])
def test_a_frozen_process_is_eagain_and_stays_frozen_in_place(cfs: Mounted, version: int) -> None:
    """README: a process that cannot stop (frozen) is refused with EAGAIN. Issue 14: the
    move took it out of its frozen cgroup first, which thawed it, and moved it."""
    box = make_box(cfs)
    sleeper = cfs.subtree.spawn(["sleep", "300"])
    cg = _freeze(cfs, version, sleeper.pid)
    before = {k: ns_inode(sleeper.pid, k) for k in box}
    cgroups = Path(f"/proc/{sleeper.pid}/cgroup").read_text()
    r = cfs.sh(f"echo {sleeper.pid} > box/tasks", check=False)
    assert r.returncode != 0 and "temporarily unavailable" in r.stderr, r.stderr
    # the kernel's truth: still frozen, in the same cgroups and namespaces
    assert _still_frozen(cg, version)
    assert str(sleeper.pid) in (cg / "cgroup.procs").read_text().split()
    assert Path(f"/proc/{sleeper.pid}/cgroup").read_text() == cgroups
    assert {k: ns_inode(sleeper.pid, k) for k in box} == before
    assert cfs.read("box/tasks") == ""
    assert "cannot stop to be moved" in cfs.log.read_text()
    # thawed, the same write moves it
    (cg / ("freezer.state" if version == 1 else "cgroup.freeze")).write_text(
        "THAWED" if version == 1 else "0"
    )
    cfs.sh(f"echo {sleeper.pid} > box/tasks")
    assert_in(sleeper.pid, box)


def test_spawn_kinds_and_threads_into_mnt_are_refused(cfs: Mounted) -> None:
    cfs.sh("mkdir full")  # owns pid and time too: a running process cannot enter those
    sleeper = cfs.subtree.spawn(["sleep", "300"])
    r = cfs.sh(f"echo {sleeper.pid} > full/tasks", check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert cfs.read("full/tasks") == ""
    assert ns_inode(sleeper.pid, "uts") == ns_inode("self", "uts")
    # mnt is entered by single-threaded processes only
    cfs.sh("echo '-pid -time' > container.subtree && mkdir withmnt")
    proc = cfs.subtree.spawn(
        [sys.executable, "-c", PROGRAM], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    r = cfs.sh(f"echo {proc.pid} > withmnt/tasks", check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert "threads" in cfs.log.read_text()
    single = cfs.subtree.spawn(["sleep", "300"])
    cfs.sh(f"echo {single.pid} > withmnt/tasks")
    mnt = listed(cfs, "withmnt")["mnt"][1]
    assert ns_inode(single.pid, "mnt") == int(mnt)
    proc.kill()


def test_only_a_writer_that_may_ptrace_the_target_moves_it(cfs: Mounted) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is missing")
    box = make_box(cfs)
    # a process of another user that still has CAP_SYS_ADMIN (so it could setns)
    target = cfs.subtree.spawn(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+sys_admin",
            "--ambient-caps=+sys_admin",
            "sleep",
            "300",
        ]
    )
    wait_for(lambda: Path(f"/proc/{target.pid}/comm").read_text() == "sleep\n", what="the target")
    # root without CAP_SYS_PTRACE: another user's process is out of its reach
    r = cfs.sh(
        f"setpriv --bounding-set=-sys_ptrace bash -c 'echo {target.pid} > box/tasks'",
        check=False,
    )
    assert r.returncode != 0 and "not permitted" in r.stderr.lower(), r.stderr
    assert cfs.read("box/tasks") == ""
    # root with it may
    cfs.sh(f"echo {target.pid} > box/tasks")
    assert_in(target.pid, box)


def test_a_vanished_process_is_esrch(cfs: Mounted) -> None:
    make_box(cfs)
    gone = subprocess.Popen(["true"])
    gone.wait()
    r = cfs.sh(f"echo {gone.pid} > box/tasks", check=False)
    assert r.returncode != 0 and "No such process" in r.stderr
    assert cfs.daemon.poll() is None


def test_a_shell_inside_a_container_moves_itself_into_a_child(cfs: Mounted) -> None:
    make_box(cfs)  # box does not own mnt: the mount is visible inside it
    cfs.sh("echo +uts > box/container.subtree && mkdir box/inner")
    cfs.sh("echo inner-host > box/inner/uts.hostname")
    r = cfs.exec("box", "bash", "-c", f"hostname; echo $$ > {cfs.mnt}/box/inner/tasks; hostname")
    assert r.stdout.split() == ["box-host", "inner-host"]


def test_exec_of_a_command_killed_at_once_reports_the_signal(cfs: Mounted) -> None:
    # Killed as soon as it is placed: before or after `exec` lets it run, the
    # exit status is 128+9, never an error of exec's own (it was a Broken pipe).
    cfs.sh("mkdir box")
    for _ in range(10):
        proc = cfs.spawn("box", "sleep", "300")
        wait_for(lambda: cfs.read("box/tasks") != "", what="the task")
        os.kill(int(cfs.read("box/tasks").split()[0]), 9)
        assert proc.wait(timeout=10) == 128 + 9
        assert proc.stderr is not None and proc.stderr.read() == b""
        wait_for(lambda: cfs.read("box/tasks") == "", what="the task to go")
