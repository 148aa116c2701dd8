"""Release policies, containers found from unshare/ip netns, restart without loss.

Each test drives the mounted daemon as an administrator would (mkdir, echo,
cat, mv, ``containerfs exec``, ``unshare``, ``ip netns``) and checks the
kernel's side in /proc and cgroupfs.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import secrets
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerfs import statefile

from .conftest import Mounted, close_pipes, wait_for
from .test_core import gone, listed, ns_inode
from .test_inject import EPERM_ACTION, SECCOMP

pytestmark = pytest.mark.root


def events(m: Mounted, container: str) -> dict[str, int]:
    text = m.read(f"{container}/container.events")
    return {k: int(v) for k, v in (line.split() for line in text.splitlines())}


def exists(m: Mounted, container: str) -> bool:
    return (m.mnt / container).is_dir()


def v2_dir(m: Mounted) -> Path:
    d = m.subtree.v2_dir
    assert d is not None, "no cgroup2 hierarchy for the test"
    return d


def background(m: Mounted, container: str, script: str) -> subprocess.Popen[bytes]:
    """A shell in the container running ``script``; ended at teardown if still running."""
    return m.spawn(container, "sh", "-c", script)


# -- release policies ---------------------------------------------------------------


def test_ignore_keeps_an_emptied_container_and_counts_the_release(cfs: Mounted) -> None:
    cfs.sh("mkdir keep")
    assert cfs.read("keep/container.release") == "ignore\n"
    assert cfs.read("keep/container.origin") == "mkdir\n"
    holder = int(cfs.read("keep/container.init"))
    cfs.exec("keep", "true")
    wait_for(lambda: events(cfs, "keep")["released"] == 1, what="the release")
    assert events(cfs, "keep")["populated"] == 0
    assert not gone(holder)
    cfs.sh("echo kept-host > keep/uts.hostname")
    assert cfs.exec("keep", "hostname").stdout == "kept-host\n"  # re-enterable
    wait_for(lambda: events(cfs, "keep")["released"] == 2, what="the second release")


def test_delete_removes_the_container_and_its_kernel_objects(cfs: Mounted) -> None:
    cfs.sh("mkdir tmp && echo delete > tmp/container.release")
    holder = int(cfs.read("tmp/container.init"))
    proc = background(cfs, "tmp", "sleep 0.3")
    wait_for(lambda: cfs.read("tmp/tasks") != "", what="the task")
    proc.wait(timeout=10)
    wait_for(lambda: not exists(cfs, "tmp"), what="the container to go")
    wait_for(lambda: gone(holder), what="its holder to go")
    for d in cfs.subtree.dirs:
        assert not (d / "tmp").exists(), d
    assert "tmp deleted on release" in cfs.log.read_text()


def test_container_kill_ends_every_task_below_then_rmdir_works(cfs: Mounted) -> None:
    cfs.sh("mkdir web && mkdir web/worker")
    procs = [
        background(cfs, "web", "sleep 300"),
        background(cfs, "web/worker", "sleep 300 & sleep 300 & wait"),
    ]
    wait_for(lambda: len(cfs.read("web/worker/tasks").split()) == 3, what="the tasks")
    wait_for(lambda: cfs.read("web/tasks") != "", what="the task")
    n = sum(len(cfs.read(f"{c}/tasks").split()) for c in ("web", "web/worker"))
    cfs.sh("echo 1 > web/container.kill && rmdir web/worker web")  # empty on return
    for p in procs:
        assert p.wait(timeout=10) != 0
    # At least those counted before (web's shell may have forked its sleep since).
    killed = re.search(r"web: killed \((\d+) task\(s\)\)", cfs.log.read_text())
    assert killed is not None and int(killed.group(1)) >= n
    assert not (cfs.mnt / "container.kill").exists()  # the root has none
    cfs.sh("mkdir a")
    r = cfs.sh("echo 2 > a/container.kill", check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert cfs.read("a/container.kill") == ""


def test_rmdir_racing_a_release_delete_is_never_an_internal_error(cfs: Mounted) -> None:
    for i in range(15):
        name = f"r{i}"
        cfs.sh(f"mkdir {name} && echo delete > {name}/container.release")
        background(cfs, name, "exec sleep 300")  # one process, which forks nothing
        wait_for(lambda n=name: cfs.read(f"{n}/tasks") != "", what="the task")  # type: ignore[misc]
        for pid in cfs.read(f"{name}/tasks").split():
            os.kill(int(pid), signal.SIGKILL)
        r = cfs.sh(f"rmdir {name}", check=False)  # races the release's own delete
        assert r.returncode == 0 or "Input/output error" not in r.stderr, r.stderr
        wait_for(lambda n=name: not exists(cfs, n), what="the container to go")  # type: ignore[misc]
    text = cfs.log.read_text()
    assert "internal error" not in text and "Traceback" not in text


def test_delete_waits_for_children_then_cascades(cfs: Mounted) -> None:
    cfs.sh(
        "mkdir p && echo delete > p/container.release && echo +uts > p/container.subtree"
        " && mkdir p/c && echo delete > p/c/container.release"
    )
    proc = background(cfs, "p/c", "sleep 0.3")
    wait_for(lambda: cfs.read("p/c/tasks") != "", what="the task")
    proc.wait(timeout=10)
    wait_for(lambda: not exists(cfs, "p"), what="child, then parent, to go")
    assert not (v2_dir(cfs) / "p").exists()


def test_notify_runs_the_release_agent_with_the_path(cfs: Mounted, tmp_path: Path) -> None:
    out = tmp_path / "agent.out"
    agent = tmp_path / "agent.sh"
    agent.write_text(f'#!/bin/sh\necho "$@" >> {out}\n')
    agent.chmod(0o755)
    cfs.sh(f"echo {agent} > release_agent")
    assert cfs.read("release_agent") == f"{agent}\n"
    cfs.sh("mkdir n && echo notify > n/container.release && echo +uts > n/container.subtree")
    cfs.sh("mkdir n/inner && echo notify > n/inner/container.release")
    cfs.exec("n/inner", "true")
    wait_for(lambda: out.exists() and out.read_text() != "", what="the notification")
    assert events(cfs, "n/inner")["released"] == 1
    assert exists(cfs, "n/inner")  # notify only tells
    # n emptied too, but it still has a child: not released until that goes
    assert events(cfs, "n")["released"] == 0
    cfs.sh("rmdir n/inner")
    wait_for(lambda: out.read_text().count("\n") == 2, what="the parent's notification")
    assert out.read_text().split() == ["/n/inner", "/n"]


def test_release_agent_refuses_bad_paths(cfs: Mounted) -> None:
    for bad in ("relative/agent", "/no/such/agent", "/bin/true extra"):
        r = cfs.sh(f"echo '{bad}' > release_agent", check=False)
        assert r.returncode != 0 and "Invalid argument" in r.stderr, bad
        assert cfs.read("release_agent") == ""


# A release agent that records what it was given, then waits for the file GO
# (so a test decides when runs end).
AGENT = """\
import json, os, sys, time
start = time.time()
fds = {}
for n in os.listdir("/proc/self/fd"):
    try:
        fds[n] = os.readlink(f"/proc/self/fd/{n}")
    except OSError:  # the listing's own fd, closed by now
        pass
with open("/proc/self/environ") as f:  # as exec'd: Python may add to os.environ
    env = f.read().split("\\0")[:-1]
open(os.path.join(OUT, f"{os.getpid()}.start"), "w").close()
deadline = start + 60
while not os.path.exists(GO) and time.time() < deadline:
    time.sleep(0.02)
rec = {"path": sys.argv[1:], "start": start, "end": time.time(), "cwd": os.getcwd(),
       "env": env, "fds": fds, "session": os.getsid(0) == os.getpid()}
with open(os.path.join(OUT, f"{os.getpid()}.tmp"), "w") as f:
    json.dump(rec, f)
os.rename(f.name, os.path.join(OUT, f"{os.getpid()}.json"))  # whole, for the test to read
"""


def most_at_once(runs: list[dict[str, object]]) -> int:
    edges = sorted(
        [(float(r["start"]), 1) for r in runs] + [(float(r["end"]), -1) for r in runs]  # type: ignore[arg-type]
    )
    now = top = 0
    for _t, step in edges:  # an end sorts before a start at the same time
        now += step
        top = max(top, now)
    return top


def test_release_agents_run_a_few_at_a_time_coalesced_with_nothing_inherited(
    cfs: Mounted, tmp_path: Path
) -> None:
    """README *Release*: a burst of emptyings starts at most four agents at once
    (415 ran at once before), a path already waiting is not queued twice, and each
    agent gets what cgroup v1's kernel gives its own: HOME=/ and the system PATH,
    cwd /, stdin /dev/null, no other descriptor of the daemon's."""
    out, go = tmp_path / "runs", tmp_path / "go"
    out.mkdir()
    agent = tmp_path / "agent.py"
    agent.write_text(f"#!{sys.executable} -I\nOUT = {str(out)!r}\nGO = {str(go)!r}\n" + AGENT)
    agent.chmod(0o755)
    cfs.sh(f"echo {agent} > release_agent")
    cfs.sh("echo '-ipc -uts -net -pid -mnt -cgroup -time' > container.subtree")
    names = [f"p{i}" for i in range(24)]
    for n in names:
        cfs.sh(f"mkdir {n} && echo notify > {n}/container.release && mkdir {n}/c")
    cfs.sh("mkdir q && echo notify > q/container.release")
    try:
        # 24 emptyings at once (the last child going counts), then 20 more of q
        # alone, all while the first agents wait for GO
        cfs.sh(" && ".join(f"rmdir {n}/c" for n in names))
        cfs.sh("for i in $(seq 20); do mkdir q/c && rmdir q/c; done")
        assert events(cfs, "q")["released"] == 20  # every emptying counts
        assert all(events(cfs, n)["released"] == 1 for n in names)
        wait_for(lambda: len(list(out.glob("*.start"))) >= 4, 30, "the first agents")
        time.sleep(1.0)  # room for more to start, if anything let them
        assert len(list(out.glob("*.start"))) == 4
    finally:
        go.touch()

    def runs() -> list[dict[str, object]]:
        return [json.loads(p.read_text()) for p in out.glob("*.json")]

    wait_for(lambda: len(runs()) == len(names) + 1, 60, "an agent run for every path")
    time.sleep(0.5)  # a run too many, if one is due
    found = runs()
    assert sorted(r["path"] for r in found) == sorted([f"/{n}"] for n in [*names, "q"])  # type: ignore[type-var]
    assert most_at_once(found) <= 4, most_at_once(found)
    for r in found:
        assert r["cwd"] == "/"
        assert sorted(r["env"]) == ["HOME=/", "PATH=/sbin:/bin:/usr/sbin:/usr/bin"]  # type: ignore[call-overload]
        fds = r["fds"]
        assert isinstance(fds, dict)
        assert sorted(fds) == ["0", "1", "2"], fds
        assert fds["0"] == "/dev/null"
        assert r["session"]
    assert "Traceback" not in cfs.log.read_text()


def test_release_agent_must_be_an_executable_regular_file(cfs: Mounted, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\ntrue\n")
    plain.chmod(0o644)
    for bad, why in [(tmp_path, "not a regular file"), (plain, "not executable")]:
        r = cfs.sh(f"echo {bad} > release_agent", check=False)
        assert r.returncode != 0 and "Invalid argument" in r.stderr, bad
        assert cfs.read("release_agent") == ""
        assert f"release_agent {bad}: {why}" in cfs.log.read_text()
    plain.chmod(0o755)
    link = tmp_path / "link"
    link.symlink_to(plain)
    cfs.sh(f"echo {link} > release_agent")  # a symlink to one is one
    assert cfs.read("release_agent") == f"{link}\n"


def test_a_refused_move_leaves_no_trace_release_state_included(
    cfs: Mounted, tmp_path: Path
) -> None:
    """A process whose seccomp filter refuses ``setns``: its moves into a ``delete``
    and a ``notify`` container fail and are undone. The kernel saw each container
    populated for a moment; that is not an emptying: the ``delete`` one stays,
    no agent runs, ``released`` stays 0 (both happened before)."""
    out = tmp_path / "agent.out"
    agent = tmp_path / "agent.sh"
    agent.write_text(f'#!/bin/sh\necho "$@" >> {out}\n')
    agent.chmod(0o755)
    cfs.sh(f"echo {agent} > release_agent")
    cfs.sh("echo '-pid -time -mnt -cgroup' > container.subtree")  # moves need only setns
    cfs.sh("mkdir del note && echo delete > del/container.release")
    cfs.sh("echo notify > note/container.release")
    prog = cfs.subtree.spawn(
        [sys.executable, "-c", SECCOMP, "308", hex(EPERM_ACTION), "0", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert prog.stdout is not None and prog.stdout.readline() == "ready\n"
        cgroups = Path(f"/proc/{prog.pid}/cgroup").read_text()
        uts = ns_inode(prog.pid, "uts")
        for _ in range(10):
            for c in ("del", "note"):
                r = cfs.sh(f"echo {prog.pid} > {c}/tasks", check=False)
                assert r.returncode != 0 and "Operation not permitted" in r.stderr, r.stderr
        assert Path(f"/proc/{prog.pid}/cgroup").read_text() == cgroups
        assert ns_inode(prog.pid, "uts") == uts
        assert str(prog.pid) in cfs.read("tasks").split()
        time.sleep(1.0)  # the release watcher's turn, had it taken these for emptyings
        assert exists(cfs, "del"), cfs.log_tail()
        assert events(cfs, "del") == {"populated": 0, "released": 0}
        assert events(cfs, "note") == {"populated": 0, "released": 0}
        assert not out.exists()
        assert "released" not in cfs.log.read_text()
    finally:
        prog.kill()
        prog.wait()
        close_pipes(prog)
    # The same containers count a move that went through, and its task's exit.
    sleeper = cfs.subtree.spawn(["sleep", "300"])
    cfs.sh(f"echo {sleeper.pid} > note/tasks")
    assert cfs.read("note/tasks") == f"{sleeper.pid}\n"
    sleeper.kill()
    sleeper.wait()
    wait_for(lambda: out.exists() and out.read_text() == "/note\n", what="the notification")
    assert events(cfs, "note") == {"populated": 0, "released": 1}


# Writes its own pid to each tasks file named (so the move finishes after the
# write is answered), under a seccomp filter that refuses every setns (EPERM).
SELF_MOVE = r"""
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
def stmt(code, k): return struct.pack("<HBBI", code, 0, 0, k)
def jeq(k, jt, jf): return struct.pack("<HBBI", 0x15, jt, jf, k)
prog = stmt(0x20, 0) + jeq(308, 0, 1) + stmt(0x06, 0x00050001) + stmt(0x06, 0x7FFF0000)
buf = ctypes.create_string_buffer(prog)
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(prog) // 8, ctypes.addressof(buf))
assert libc.prctl(38, 1, 0, 0, 0) == 0
assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0
for path in sys.argv[1:]:
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)
        print("written", flush=True)
    except OSError as exc:
        print("refused", exc.errno, flush=True)
print("host", os.uname().nodename, flush=True)
"""


def test_a_refused_move_of_the_writer_itself_leaves_no_trace(cfs: Mounted, tmp_path: Path) -> None:
    """``echo $$ > tasks``: the namespace move ends after the write is answered.
    When it fails then (undone, logged), the containers are as they were too."""
    out = tmp_path / "agent.out"
    agent = tmp_path / "agent.sh"
    agent.write_text(f'#!/bin/sh\necho "$@" >> {out}\n')
    agent.chmod(0o755)
    cfs.sh(f"echo {agent} > release_agent")
    cfs.sh("echo '-pid -time -mnt -cgroup' > container.subtree")
    cfs.sh("mkdir del note && echo delete > del/container.release")
    cfs.sh("echo notify > note/container.release")
    paths = [str(cfs.mnt / c / "tasks") for c in ("del", "note") for _ in range(5)]
    prog = cfs.subtree.spawn(
        [sys.executable, "-c", SELF_MOVE, *paths], stdout=subprocess.PIPE, text=True
    )
    stdout, _ = prog.communicate(timeout=60)
    close_pipes(prog)
    lines = stdout.splitlines()
    assert lines[-1] == f"host {os.uname().nodename}", lines  # never moved
    assert len(lines) == len(paths) + 1, lines
    time.sleep(1.0)  # the release watcher's turn
    assert exists(cfs, "del"), cfs.log_tail()
    assert events(cfs, "del") == {"populated": 0, "released": 0}
    assert events(cfs, "note") == {"populated": 0, "released": 0}
    assert not out.exists()
    assert "released" not in cfs.log.read_text()


def test_events_wake_inotify_and_poll_watchers(cfs: Mounted) -> None:
    cfs.sh("mkdir w")
    path = str(cfs.mnt / "w" / "container.events")
    libc = ctypes.CDLL(None, use_errno=True)
    ino = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert ino >= 0
    fd = os.open(path, os.O_RDONLY)
    try:
        assert libc.inotify_add_watch(ino, path.encode(), 0x2) >= 0  # IN_MODIFY
        os.read(fd, 4096)
        poller = select.poll()
        poller.register(fd, select.POLLPRI)
        assert poller.poll(0) == []
        cfs.exec("w", "true")
        assert poller.poll(5000), "poll() was not woken"
        os.lseek(fd, 0, os.SEEK_SET)
        assert b"populated" in os.read(fd, 4096)  # reading from 0 renders it anew
        watch = select.poll()
        watch.register(ino, select.POLLIN)
        assert watch.poll(5000), "no inotify event"
        wd, mask, _c, _n = struct.unpack_from("iIII", os.read(ino, 4096))
        assert mask & 0x2
        wait_for(lambda: events(cfs, "w")["released"] == 1, what="the release")
    finally:
        os.close(fd)
        os.close(ino)


# -- containers found from unshare and ip netns --------------------------------------


def clones(m: Mounted, parent: str) -> list[str]:
    base = m.mnt / parent
    return sorted(
        p.name
        for p in base.iterdir()
        if p.is_dir() and m.read(f"{parent}/{p.name}/container.origin") == "clone\n"
    )


def test_unshare_inside_shows_up_as_a_child_and_goes_with_its_task(cfs: Mounted) -> None:
    cfs.sh("mkdir web")
    proc = background(cfs, "web", "exec unshare --net --uts sleep 300")
    wait_for(lambda: len(clones(cfs, "web")) == 1, timeout=5, what="a clone child")
    name = clones(cfs, "web")[0]
    wait_for(lambda: cfs.read(f"web/{name}/tasks") != "", what="its task to move in")
    pid = int(cfs.read(f"web/{name}/tasks"))
    assert name == f"sleep-{pid}"
    rows = listed(cfs, f"web/{name}")
    assert rows["net"] == ("own", str(ns_inode(pid, "net")))
    assert rows["uts"] == ("own", str(ns_inode(pid, "uts")))
    assert rows["ipc"] == ("shared", listed(cfs, "web")["ipc"][1])
    assert cfs.read(f"web/{name}/container.release") == "delete\n"
    assert cfs.read("web/tasks") == ""  # moved into the child
    proc.kill()
    proc.wait(timeout=10)
    wait_for(lambda: not exists(cfs, f"web/{name}"), what="the clone to go")
    assert not (v2_dir(cfs) / "web" / name).exists()


def test_unshare_past_a_limit_is_logged_once_and_not_added(cfs: Mounted) -> None:
    cfs.sh("mkdir web && echo 0 > web/container.max.descendants")
    proc = background(cfs, "web", "exec unshare --net sleep 300")
    said = "web: not adding a container: web: container.max.descendants is 0"
    wait_for(lambda: said in cfs.log.read_text(), timeout=5, what="the refusal logged")
    time.sleep(1)  # a few more looks: the same refusal is not logged again
    assert cfs.log.read_text().count(said) == 1
    assert clones(cfs, "web") == []
    (task,) = cfs.read("web/tasks").split()  # left where it was, in its own netns
    assert str(ns_inode(int(task), "net")) != listed(cfs, "web")["net"][1]
    assert proc.poll() is None
    cfs.sh("echo max > web/container.max.descendants")  # room: the next look adds it
    wait_for(lambda: len(clones(cfs, "web")) == 1, timeout=5, what="a clone child")


@contextlib.contextmanager
def netns_in(m: Mounted, container: str) -> Iterator[str]:
    """``ip netns add`` inside ``container`` under a unique name; deleted again after.

    ``ip`` creates the file ``/run/netns/NAME`` on the host's /run (the mount on
    it stays inside the container): it is removed here even if the test fails.
    """
    name = f"cfs-{secrets.token_hex(4)}"
    m.exec(container, "ip", "netns", "add", name)
    try:
        yield name
    finally:
        m.exec(container, "ip", "netns", "del", name, check=False)
        stray = Path("/run/netns") / name
        if stray.is_file() and not os.path.ismount(stray) and stray.stat().st_size == 0:
            stray.unlink()


def test_ip_netns_add_is_found_and_goes_with_ip_netns_del(cfs: Mounted) -> None:
    cfs.sh("mkdir box")
    with netns_in(cfs, "box") as blue:
        wait_for(lambda: exists(cfs, f"box/{blue}"), timeout=5, what="the netns container")
        assert cfs.read(f"box/{blue}/container.origin") == "clone\n"
        assert cfs.read(f"box/{blue}/tasks") == ""  # kept by its bind mount only
        rows = listed(cfs, f"box/{blue}")
        assert rows["net"][0] == "own" and rows["net"][1] != listed(cfs, "box")["net"][1]
        # the holder sits in it: exec reaches the namespace `ip netns exec` reaches
        via_exec = cfs.exec(f"box/{blue}", "readlink", "/proc/self/ns/net").stdout
        via_ip = cfs.exec("box", "ip", "netns", "exec", blue, "readlink", "/proc/self/ns/net")
        assert via_exec == via_ip.stdout
        cfs.exec("box", "ip", "netns", "del", blue)
        wait_for(lambda: not exists(cfs, f"box/{blue}"), timeout=5, what="it to go")


def test_a_namespace_bound_outside_before_mkdir_is_no_clone(cfs: Mounted, tmp_path: Path) -> None:
    """A net namespace bound on the host (as ``ip netns add`` or a container runtime
    binds one) when a container is made is copied into the container's new mount
    namespace with every other mount: it was not made inside, must not become a
    child container (whose bind nobody inside would remove: rmdir then refused),
    and must not be kept alive by the container."""
    bound = tmp_path / "outside-net"
    bound.touch()
    subprocess.run(["unshare", f"--net={bound}", "true"], check=True)
    try:
        cfs.sh("mkdir box")  # owns mnt and net (the root's subtree)
        holder = int(cfs.read("box/container.init"))
        mounts = Path(f"/proc/{holder}/mountinfo").read_text()
        assert " - nsfs " not in mounts, mounts
        time.sleep(1.5)  # discovery looks three times a second
        assert clones(cfs, "box") == []
        cfs.sh("rmdir box")
    finally:
        subprocess.run(["umount", str(bound)], check=False)


def test_a_clone_can_be_renamed_and_made_persistent(cfs: Mounted) -> None:
    cfs.sh("mkdir host")
    proc = background(cfs, "host", "exec unshare --net sleep 300")
    wait_for(lambda: len(clones(cfs, "host")) == 1, timeout=5, what="a clone child")
    name = clones(cfs, "host")[0]
    wait_for(lambda: cfs.read(f"host/{name}/tasks") != "", what="its task to move in")
    net = listed(cfs, f"host/{name}")["net"][1]
    cfs.sh(f"mv host/{name} host/kept && echo ignore > host/kept/container.release")
    assert not exists(cfs, f"host/{name}")
    r = cfs.sh("mv host/kept other", check=False)
    assert r.returncode != 0  # within the parent only
    proc.kill()
    proc.wait(timeout=10)
    wait_for(lambda: events(cfs, "host/kept")["released"] == 1, what="the release")
    assert listed(cfs, "host/kept")["net"][1] == net  # the namespace persists
    assert cfs.exec("host/kept", "readlink", "/proc/self/ns/net").stdout == f"net:[{net}]\n"
    cfs.sh("rmdir host/kept")


# -- namespaces listing ---------------------------------------------------------


def lsns(*args: str) -> set[tuple[str, str]]:
    out = subprocess.run(
        ["lsns", "-J", "-o", "TYPE,NS", *args], capture_output=True, text=True, check=True
    ).stdout
    return {(ns["type"], str(ns["ns"])) for ns in json.loads(out)["namespaces"]}


def test_namespaces_lists_what_lsns_lists(cfs: Mounted) -> None:
    cfs.sh("mkdir lst")
    with netns_in(cfs, "lst") as green:
        wait_for(lambda: exists(cfs, f"lst/{green}"), timeout=5, what="the netns container")
        before = lsns()
        text = cfs.read("namespaces")
        after = lsns()
        rows = [line.split() for line in text.splitlines()]
        assert all(len(r) == 7 for r in rows)  # the 7th: NSID
        ours = {(r[0], r[1]): r for r in rows}
        missing = (before & after) - set(ours)  # namespaces that lived through both looks
        assert not missing
        for kind, (state, ino) in listed(cfs, "lst").items():
            if state == "own" and kind in ("ipc", "uts", "net", "pid", "mnt", "cgroup", "time"):
                assert ours[(kind, ino)][5] == "/lst", kind
        net = listed(cfs, f"lst/{green}")["net"][1]
        assert ours[("net", net)][5] == f"/lst/{green}"
        assert ours[("net", str(ns_inode("self", "net")))][5] == "/"
        # its holder is a process in it (lsns counts it too)
        assert int(ours[("net", net)][2]) >= 1


# -- restart without loss -----------------------------------------------------------


def test_sigterm_then_start_gives_back_the_same_tree(cfs: Mounted) -> None:
    cfs.sh(
        "mkdir a && echo alpha > a/uts.hostname && echo 7 > a/pids.max"
        " && echo notify > a/container.release && echo 4 > a/ipc.shm_mni"
        " && echo +uts > a/container.subtree && mkdir a/b"
    )
    task = background(cfs, "a", "sleep 300")
    wait_for(lambda: cfs.read("a/tasks") != "", what="the task")
    before = {p: cfs.read(p) for p in ("a/container.subsystems", "a/b/container.subsystems")}
    holder = int(cfs.read("a/container.init"))
    assert cfs.stop(signal.SIGTERM) == 0
    assert not gone(holder) and task.poll() is None
    cfs.start()
    for p, text in before.items():
        assert cfs.read(p) == text, p
    assert cfs.read("a/uts.hostname") == "alpha\n"
    assert cfs.read("a/pids.max") == "7\n"
    assert cfs.read("a/container.release") == "notify\n"
    assert cfs.read("a/ipc.shm_mni") == "4\n"
    assert cfs.read("a/container.subtree") == "uts\n"
    assert cfs.read("a/container.init") == f"{holder}\n"
    assert cfs.read("a/tasks").split() != []
    # the bind mounts inside were redone for the new mount
    assert cfs.exec("a", "cat", "/proc/sys/kernel/shmmni").stdout.strip().isdigit()
    assert cfs.read("a/ipc.shm_mni.effective") == "4\n"
    # sysctls the holder serves answer the new daemon
    if (cfs.mnt / "a" / "pid.max.internal").exists():
        assert cfs.read("a/pid.max.internal").strip().isdigit()


def test_a_killed_daemon_loses_nothing_and_catches_up(cfs: Mounted) -> None:
    cfs.sh("mkdir keep && mkdir gone && echo delete > gone/container.release")
    keep_holder = int(cfs.read("keep/container.init"))
    task = background(cfs, "gone", "exec sleep 300")
    wait_for(lambda: cfs.read("gone/tasks") != "", what="the task")
    gone_holder = int(cfs.read("gone/container.init"))
    assert cfs.stop(signal.SIGKILL) == -signal.SIGKILL
    task.kill()  # it empties while no daemon watches
    task.wait(timeout=10)
    cfs.start()
    wait_for(lambda: not exists(cfs, "gone"), what="the catch-up delete")
    wait_for(lambda: gone(gone_holder), what="its holder to go")
    assert exists(cfs, "keep") and not gone(keep_holder)
    assert cfs.exec("keep", "true").returncode == 0
    stale = [line for line in Path("/proc/mounts").read_text().splitlines() if str(cfs.mnt) in line]
    assert len(stale) == 1, stale


def test_kill_9_in_the_middle_of_churn_leaves_a_consistent_tree(cfs: Mounted) -> None:
    # two controller-only containers a process can be moved between with `tasks`
    ns_kinds = "ipc uts net pid mnt cgroup time"
    cfs.sh(
        f"echo '{' '.join('-' + k for k in ns_kinds.split())}' > container.subtree"
        f" && mkdir t1 t2 && echo '{' '.join('+' + k for k in ns_kinds.split())}'"
        " > container.subtree"
    )
    sleeper = cfs.subtree.spawn(["sleep", "300"])
    churn = (
        f"i=0; while :; do i=$((i+1)); mkdir c$i; echo {sleeper.pid} > t$((i%2+1))/tasks;"
        " echo 5 > c$i/pids.max; echo c$i > c$i/uts.hostname; rmdir c$((i-2)); done"
    )
    proc = subprocess.Popen(
        ["bash", "-c", churn], cwd=cfs.mnt, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(1.5)
        assert cfs.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait(timeout=30)
    cfs.start()
    state = statefile.load(cfs.state)
    assert state is not None
    tree = {tuple(c["path"]) for c in state["containers"]}
    holders = {c["holder"] for c in state["containers"] if c["holder"]}
    base = v2_dir(cfs)
    dirs = {
        tuple(p.relative_to(base).parts)
        for p in base.rglob("*")
        if p.is_dir() and not any(part.startswith(".") for part in p.relative_to(base).parts)
    }
    assert dirs == tree - {()}, "cgroup dirs and the tree differ"

    def pins() -> set[int]:
        return {int(x) for x in (base / ".pins" / "cgroup.procs").read_text().split()}

    wait_for(lambda: pins() == holders, what="leftover holders to go")
    for path in tree - {()}:
        name = "/".join(path)
        assert exists(cfs, name)
        assert cfs.exec(name, "true").returncode == 0
    mounts = [
        line for line in Path("/proc/mounts").read_text().splitlines() if str(cfs.mnt) in line
    ]
    assert len(mounts) == 1, mounts
    assert sleeper.poll() is None and str(sleeper.pid) in cfs.read("t1/tasks") + cfs.read(
        "t2/tasks"
    )
