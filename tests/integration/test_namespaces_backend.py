"""The namespace backend against the real kernel: holders, setns threads, pids, exec.

No containerfs mount is involved: holders are spawned directly and
``containerfs exec`` is driven through a fake container directory whose
``tasks`` is a plain file.  Every holder a test starts is killed at teardown,
mounts a test makes are unmounted in ``finally``, and the checks read
``/proc`` rather than trusting the code under test.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from containerfs import execute
from containerfs.kernel import enter, holder_start, procs, sysctls
from containerfs.kernel import namespaces as ns
from containerfs.kernel.holder import Holder
from containerfs.nskinds import KINDS
from tests.integration.conftest import PIN, holder_skip_reason, live_pins

root = pytest.mark.skipif(holder_skip_reason() is not None, reason=holder_skip_reason() or "")


def mine(kind: str) -> int:
    return ns.ns_inode("self", kind)


def proc_inodes(pid: int) -> dict[str, int]:
    """Read straight from /proc, independent of the code under test."""
    return {k: os.stat(f"/proc/{pid}/ns/{k}").st_ino for k in KINDS}


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)


def gone(pid: int) -> bool:
    """No process and no zombie with this pid any more (only for our own children
    and processes a holder reaps: an exited holder waits for the host's init)."""
    return not os.path.exists(f"/proc/{pid}")


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def holder_fds(pid: int) -> list[str]:
    """What a holder's fds point at, sorted: /dev/null on 0-2, both ends of its
    socketpair with the daemon, and the sys and sysvipc directories of a proc
    instance of its own, mounted nowhere (which show as "/sys", "/sysvipc")."""
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:  # closed meanwhile
            continue
    return sorted("socket" if link.startswith("socket:[") else link for link in links)


HOLDER_FDS = ["/dev/null", "/dev/null", "/dev/null", "/sys", "/sysvipc", "socket", "socket"]


def proc_container_inodes(pid: int) -> dict[str, int]:
    """A holder's container namespaces straight from /proc: time is its time_for_children."""
    inodes = proc_inodes(pid)
    inodes["time"] = os.stat(f"/proc/{pid}/ns/time_for_children").st_ino
    return inodes


_spawners = itertools.count()


class Spawner:
    """Starts holders for one test and kills every one of them afterwards.

    It keeps a pidfd of its own on each holder, so even a holder whose
    ``Holder`` the test closed is killed at the end.
    """

    def __init__(self, mountpoint: str = "") -> None:
        self.holders: list[Holder] = []
        self.placed: list[int] = []
        self.mountpoint = (
            mountpoint or f"/nonexistent-containerfs-mount-{os.getpid()}-{next(_spawners)}"
        )
        self._own: list[Holder] = []

    def __call__(self, *kinds: str, parent: Holder | None = None, mountpoint: str = "") -> Holder:
        holder = holder_start.spawn_holder(
            parent=parent,
            unshare=frozenset(kinds),
            place=self.placed.append,
            mountpoint=mountpoint or self.mountpoint,
            pin_path=str(PIN),
        )
        self.holders.append(holder)
        self._own.append(Holder(holder.pid, holder.dup_pidfd(), holder.inodes))
        return holder

    def cleanup(self) -> None:
        try:
            for own in reversed(self._own):
                try:
                    own.kill()
                finally:
                    own.close()
        finally:
            for holder in self.holders:
                holder.close()


@pytest.fixture
def spawn() -> Iterator[Spawner]:
    reason = holder_skip_reason()
    if reason:
        pytest.skip(reason)
    spawner = Spawner()
    try:
        yield spawner
    finally:
        spawner.cleanup()
    # The first pin process of every spawn is ours and must have been reaped.
    for pid in spawner.placed:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    leaked = live_pins(spawner.mountpoint)
    assert not leaked, f"holders left running: {leaked}"


@pytest.fixture
def tmpfs_mount() -> Iterator[str]:
    """A tmpfs mounted on a fresh directory, standing in for the containerfs mount."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    path = tempfile.mkdtemp(prefix="cfs-ns-mnt-")
    subprocess.run(["mount", "-t", "tmpfs", "cfs-ns-test", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)
        os.rmdir(path)


# -- holders ------------------------------------------------------------------------


@root
def test_uts_ipc_holder_owns_exactly_those(spawn: Spawner) -> None:
    holder = spawn("uts", "ipc")
    seen = proc_inodes(holder.pid)
    assert holder.inodes == seen
    for kind in KINDS:
        if kind in ("uts", "ipc"):
            assert seen[kind] != mine(kind), kind
        else:
            assert seen[kind] == mine(kind), kind
    assert holder.alive()
    # Never our child: the first pin process forked it and was reaped by us.
    assert int(status_field(holder.pid, "PPid")) != os.getpid()
    assert spawn.placed and spawn.placed[0] != holder.pid
    # Detached: own session, cwd "/", /dev/null on 0-2, and only its socket
    # to us and /proc/sys (for the sysctls it serves) besides.
    assert os.getsid(holder.pid) == holder.pid
    assert os.readlink(f"/proc/{holder.pid}/cwd") == "/"
    assert {os.readlink(f"/proc/{holder.pid}/fd/{fd}") for fd in (0, 1, 2)} == {"/dev/null"}
    assert holder_fds(holder.pid) == HOLDER_FDS
    # Its own proc instance (another superblock than our /proc): its lookups
    # there never walk the dentries of every other namespace's /proc/sys files.
    assert os.stat(f"/proc/{holder.pid}/fd/5").st_dev != os.stat("/proc/sys").st_dev
    # A holder that owns nothing just pins its parent's (here: our) namespaces.
    assert spawn().inodes == {kind: mine(kind) for kind in KINDS}


@root
def test_holder_owning_all_eight_is_pid_1_and_reported_in_our_pid_ns(spawn: Spawner) -> None:
    holder = spawn(*KINDS)
    seen = proc_container_inodes(holder.pid)
    assert holder.inodes == seen
    for kind in KINDS:
        assert seen[kind] != mine(kind), kind
    # The holder did not enter the container's time namespace: it is only the
    # one its children would get (so its offsets are still writable).
    assert proc_inodes(holder.pid)["time"] == mine("time")
    # SO_PASSCRED gave the pid translated into our namespace, though the holder
    # sits in a new pid namespace inside a user namespace without a uid_map.
    nspid = [int(x) for x in status_field(holder.pid, "NSpid").split()]
    assert nspid == [holder.pid, 1]
    assert Path(f"/proc/{holder.pid}/uid_map").read_text() == ""
    assert status_field(holder.pid, "Uid").split()[0] == "0"  # kuid 0, shown from outside
    # The holder ignores catchable signals: only SIGKILL ends it.
    signal.pidfd_send_signal(holder.pidfd, signal.SIGTERM)
    signal.pidfd_send_signal(holder.pidfd, signal.SIGINT)
    time.sleep(0.05)
    assert holder.alive()


@root
def test_nested_holder_shares_parent_kinds(spawn: Spawner) -> None:
    parent = spawn("pid", "user", "mnt")
    child = spawn("uts", "net", parent=parent)
    p, c = proc_inodes(parent.pid), proc_inodes(child.pid)
    assert child.inodes == c
    for kind in ("pid", "user", "mnt"):
        assert c[kind] == p[kind] != mine(kind), kind
    for kind in ("uts", "net"):
        assert c[kind] != p[kind] and c[kind] != mine(kind), kind
        assert p[kind] == mine(kind), kind
    for kind in ("ipc", "cgroup", "time"):
        assert c[kind] == p[kind] == mine(kind), kind
    # The pin joined through the parent's pidfd and kept no copy of it.
    assert holder_fds(child.pid) == HOLDER_FDS
    # The child lives in the parent's pid namespace, not as its init.
    nspid = [int(x) for x in status_field(child.pid, "NSpid").split()]
    assert nspid[0] == child.pid and len(nspid) == 2 and nspid[1] > 1
    assert procs.translate_pid(nspid[1], parent.pid) == child.pid
    # The child's uts namespace belongs to the parent's user namespace, a child
    # of ours: a setns thread of the daemon still writes its hostname.
    sysctls.write_sysctl(child, "uts", "kernel.hostname", "nested-box")
    out = subprocess.run(
        ["nsenter", "-t", str(child.pid), "-u", "hostname"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "nested-box\n"
    # Killing the parent's pid-namespace init ends the child holder too.
    parent.kill()
    assert not parent.alive() and parent.gone()
    wait_until(child.gone, 5, "the child holder to die with its pid namespace")


@root
def test_mount_namespace_is_private_and_mountpoint_detached(
    spawn: Spawner, tmpfs_mount: str
) -> None:
    holder = spawn("mnt", mountpoint=tmpfs_mount)
    inside = Path(f"/proc/{holder.pid}/mountinfo").read_text()
    assert f" {tmpfs_mount} " not in inside
    assert "shared:" not in inside
    assert os.path.ismount(tmpfs_mount)  # ours is untouched
    # Mounts copied into a mount namespace owned by a new user namespace are
    # locked there: the pin detaches the mountpoint in a mount namespace of its
    # own first, from which the container's is then copied.
    userns = spawn("user", "mnt", mountpoint=tmpfs_mount)
    assert f" {tmpfs_mount} " not in Path(f"/proc/{userns.pid}/mountinfo").read_text()
    assert os.path.ismount(tmpfs_mount)


@root
def test_spawn_failures_raise_with_errno_and_leave_nothing(spawn: Spawner) -> None:
    parent = spawn("user", "pid")
    # A user namespace without a uid_map cannot create a nested one: the pin
    # reports unshare's EPERM from inside the parent's pid namespace (a forked
    # process), and the whole chain exits.
    with pytest.raises(OSError) as info:
        spawn("user", parent=parent)
    assert info.value.errno == errno.EPERM
    assert "unshare" in str(info.value)

    def refuse(pid: int) -> None:
        raise RuntimeError(f"no cgroup for {pid}")

    with pytest.raises(RuntimeError, match="no cgroup"):
        holder_start.spawn_holder(
            parent=None,
            unshare=frozenset({"uts"}),
            place=refuse,
            mountpoint="/",
            pin_path=str(PIN),
        )
    with pytest.raises(ValueError, match="unknown namespace kind"):
        spawn("bogus")
    with pytest.raises(FileNotFoundError):
        holder_start.spawn_holder(
            parent=None,
            unshare=frozenset(),
            place=lambda pid: None,
            mountpoint="/",
            pin_path="/nonexistent/containerfs-pin",
        )
    # A pin that never answers: the spawn times out and kills it.
    silent = Path(tempfile.mkdtemp(prefix="cfs-ns-pin-")) / "pin"
    try:
        silent.write_text("#!/bin/sh\nexec sleep 100\n")
        silent.chmod(0o755)
        started: list[int] = []
        with pytest.raises(TimeoutError):
            holder_start.spawn_holder(
                parent=None,
                unshare=frozenset({"uts"}),
                place=started.append,
                mountpoint="/",
                pin_path=str(silent),
                timeout=0.3,
            )
        assert gone(started[0])
    finally:
        silent.unlink(missing_ok=True)
        silent.parent.rmdir()
    dead = spawn("uts")
    dead.kill()
    with pytest.raises(ProcessLookupError):
        spawn("ipc", parent=dead)


@root
def test_kill_leaves_no_process_and_no_zombie(spawn: Spawner) -> None:
    holder = spawn("pid", "uts")
    # A process inside the pid namespace (its parent, nsenter, is ours), and an
    # orphan there that the holder, as init, adopts and must reap by itself.
    inner = subprocess.Popen(
        ["nsenter", "-t", str(holder.pid), "-p", "--", "sh", "-c", "echo $$; exec sleep 1000"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert inner.stdout is not None
        sleeper = procs.translate_pid(int(inner.stdout.readline()), holder.pid)
        out = subprocess.run(
            [
                "nsenter",
                "-t",
                str(holder.pid),
                "-p",
                "--",
                "sh",
                "-c",
                "sleep 1000 >/dev/null 2>&1 & echo $!",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        orphan = procs.translate_pid(int(out.stdout), holder.pid)
        assert int(status_field(orphan, "PPid")) == holder.pid
        os.kill(orphan, signal.SIGKILL)
        wait_until(lambda: gone(orphan), 5, "the holder to reap its orphan")
        assert not holder.gone()
        holder.kill()
        assert not holder.alive() and holder.gone()
        assert inner.wait(timeout=5) != 0
        assert gone(sleeper)
    finally:
        if inner.poll() is None:
            inner.kill()
        inner.wait()
        assert inner.stdout is not None
        inner.stdout.close()
    # The host's init reaps the holder, in its own time: gone() does not wait for that.
    holder.kill()  # harmless on a dead holder
    copy = Holder(holder.pid, -1, holder.inodes)  # no pidfd: judged from /proc/PID
    assert copy.gone()


@root
def test_attach_existing_holder(spawn: Spawner) -> None:
    holder = spawn("uts")
    again = Holder.attach(holder.pid, holder.inodes)
    try:
        assert again.inodes == holder.inodes
        assert again.alive()
    finally:
        again.close()


@root
def test_spawn_refuses_a_closed_or_changed_parent(spawn: Spawner) -> None:
    parent = spawn("uts")
    view = Holder(parent.pid, parent.dup_pidfd(), parent.inodes)
    view.close()
    placed = list(spawn.placed)
    with pytest.raises(ProcessLookupError):
        spawn("ipc", parent=view)
    assert spawn.placed == placed  # refused before starting anything
    # Holder data that no longer matches its process (as after a pid reuse):
    # the pin joins the real process through the pidfd, and the new holder's
    # namespaces then differ from the ones asked for: it is killed.
    liar = Holder(parent.pid, parent.dup_pidfd(), parent.inodes | {"net": 1})
    try:
        with pytest.raises(OSError, match="parent holder changed") as info:
            spawn("ipc", parent=liar)
        assert info.value.errno == errno.ESRCH
    finally:
        liar.close()
    assert len(spawn.holders) == 1  # only the parent; the fixture checks no pin is left


# -- running code in a holder's namespaces ---------------------------------------------


@root
def test_sysctl_through_a_setns_thread_leaves_the_caller_alone(spawn: Spawner) -> None:
    holder = spawn("uts", "ipc", "net")
    before = os.stat("/proc/thread-self/ns/uts").st_ino
    host = os.uname().nodename
    threads = len(os.listdir("/proc/self/task"))
    sysctls.write_sysctl(holder, "uts", "kernel.hostname", "box-1")
    assert sysctls.read_sysctl(holder, "uts", "kernel.hostname") == "box-1\n"
    out = subprocess.run(
        ["nsenter", "-t", str(holder.pid), "-u", "hostname"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "box-1\n"
    assert os.uname().nodename == host
    assert os.stat("/proc/thread-self/ns/uts").st_ino == before
    assert len(os.listdir("/proc/self/task")) == threads  # the setns thread exited
    # Per-namespace sysctls of other kinds.
    sysctls.write_sysctl(holder, "ipc", "kernel.shmmni", "1000")
    assert sysctls.read_sysctl(holder, "ipc", "kernel.shmmni") == "1000\n"
    assert Path("/proc/sys/kernel/shmmni").read_text() != "1000\n"
    sysctls.write_sysctl(holder, "net", "net.ipv4.ip_forward", "1")
    assert sysctls.read_sysctl(holder, "net", "net.ipv4.ip_forward") == "1\n"
    with pytest.raises(ValueError):
        sysctls.read_sysctl(holder, "uts", "kernel..hostname")
    with pytest.raises(FileNotFoundError):
        sysctls.read_sysctl(holder, "uts", "kernel.no_such_sysctl")


@root
def test_run_in_namespaces_kinds_results_and_errors(spawn: Spawner) -> None:
    import socket

    holder = spawn("mnt", "net", "cgroup", "pid", "uts")
    kinds = ["mnt", "net", "cgroup", "pid", "uts"]

    def look() -> tuple[dict[str, int], list[str]]:
        names = [name for _, name in socket.if_nameindex()]
        got = {k: os.stat(f"/proc/thread-self/ns/{k}").st_ino for k in ("mnt", "net", "uts")}
        got["pid_for_children"] = os.stat("/proc/thread-self/ns/pid_for_children").st_ino
        got["cgroup"] = os.stat("/proc/thread-self/ns/cgroup").st_ino
        return got, names

    got, names = ns.run_in_namespaces(holder, kinds, look)
    assert names == ["lo"]
    for kind in ("mnt", "net", "uts", "cgroup"):
        assert got[kind] == holder.inodes[kind]
    assert got["pid_for_children"] == holder.inodes["pid"]
    for kind in KINDS:
        assert os.stat(f"/proc/thread-self/ns/{kind}").st_ino == mine(kind)

    class Boom(Exception):
        pass

    def boom() -> None:
        raise Boom("inside")

    with pytest.raises(Boom, match="inside"):
        ns.run_in_namespaces(holder, ["uts"], boom)
    for refused in ("user", "time"):
        with pytest.raises(ValueError, match=refused):
            ns.run_in_namespaces(holder, [refused], lambda: None)


def our_pidfds() -> set[int]:
    """Our open pidfds (each a copy of a holder's that was not closed would show)."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[pidfd]":
                found.add(int(name))
        except OSError:
            continue
    return found


@root
def test_run_in_namespaces_uses_its_own_pidfd(spawn: Spawner) -> None:
    holder = spawn("uts")
    dead = spawn("uts")
    dead.kill()
    sysctls.write_sysctl(holder, "uts", "kernel.hostname", "dup-box")
    view = Holder(holder.pid, holder.dup_pidfd(), holder.inodes)
    view_fd = view.pidfd
    fds = our_pidfds()
    assert {holder.pidfd, view_fd} <= fds
    entered = threading.Event()
    release = threading.Event()
    results: list[object] = []

    def slow() -> str:
        entered.set()
        release.wait(10)
        return os.uname().nodename

    def visit() -> None:
        try:
            results.append(ns.run_in_namespaces(view, ["uts"], slow))
        except BaseException as exc:
            results.append(exc)

    visitor = threading.Thread(target=visit)
    visitor.start()
    try:
        assert entered.wait(10)
        view.close()  # as the daemon may, on another thread, mid-visit
    finally:
        release.set()
        visitor.join(10)
    assert results == ["dup-box"]
    assert our_pidfds() == fds - {view_fd}  # the visit closed its copy
    with pytest.raises(ProcessLookupError):
        ns.run_in_namespaces(view, ["uts"], lambda: None)
    # A holder whose process is gone: setns reports ESRCH.
    with pytest.raises(ProcessLookupError):
        ns.run_in_namespaces(dead, ["uts"], lambda: None)
    assert our_pidfds() == fds - {view_fd}


@root
async def test_run_in_namespaces_async_keeps_the_loop_running(spawn: Spawner) -> None:
    holder = spawn("uts")
    await sysctls.write_sysctl_async(holder, "uts", "kernel.hostname", "async-box")
    assert await sysctls.read_sysctl_async(holder, "uts", "kernel.hostname") == "async-box\n"
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0.01)

    def slow() -> str:
        time.sleep(0.3)
        return os.uname().nodename

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        name = await ns.run_in_namespaces_async(holder, ["uts"], slow)
        nursery.cancel_scope.cancel()
    assert name == "async-box"
    assert ticks >= 5

    # A pooled worker thread that calls it stays in our namespace afterwards.
    def visit_then_look() -> int:
        ns.run_in_namespaces(holder, ["uts"], lambda: None)
        return os.stat("/proc/thread-self/ns/uts").st_ino

    assert await trio.to_thread.run_sync(visit_then_look) == mine("uts")
    assert threading.current_thread() is threading.main_thread()

    closed = Holder(holder.pid, -1, holder.inodes)
    with pytest.raises(ProcessLookupError):
        await ns.run_in_namespaces_async(closed, ["uts"], lambda: None)


# -- sysctls served by the holder ---------------------------------------------------


@root
def test_holder_serves_pid_max_of_its_own_pid_namespace(spawn: Spawner) -> None:
    host = Path("/proc/sys/kernel/pid_max").read_text()
    holder = spawn("pid")
    assert holder.sysctl("kernel.pid_max") == "4194304\n"  # a new pid namespace's own value
    # A setns thread cannot see it: pid_max follows the *active* pid namespace
    # of the reader, and setns(CLONE_NEWPID) changes only the children's.
    assert sysctls.read_sysctl(holder, "pid", "kernel.pid_max") == host
    holder.set_sysctl("kernel.pid_max", "1000")
    assert holder.sysctl("kernel.pid_max") == "1000\n"
    assert Path("/proc/sys/kernel/pid_max").read_text() == host
    inside = subprocess.run(
        ["nsenter", "-t", str(holder.pid), "-p", "--", "cat", "/proc/sys/kernel/pid_max"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert inside.stdout == "1000\n"
    # The kernel's own validation comes back as the errno.
    with pytest.raises(OSError) as info:
        holder.set_sysctl("kernel.pid_max", "300")  # below its minimum
    assert info.value.errno == errno.EINVAL
    assert holder.sysctl("kernel.pid_max") == "1000\n"


@root
def test_holder_serves_user_namespace_limits_and_the_kernel_enforces_them(
    spawn: Spawner,
) -> None:
    host = Path("/proc/sys/user/max_net_namespaces").read_text()
    parent = spawn("user")
    value = parent.sysctl("user.max_net_namespaces")
    inside = subprocess.run(
        [
            "nsenter",
            "-t",
            str(parent.pid),
            "-U",
            "--preserve-credentials",
            "--",
            "cat",
            "/proc/sys/user/max_net_namespaces",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert value == inside.stdout
    parent.set_sysctl("user.max_net_namespaces", "0")
    assert parent.sysctl("user.max_net_namespaces") == "0\n"
    assert Path("/proc/sys/user/max_net_namespaces").read_text() == host
    # A nested container that would own a network namespace: the kernel
    # charges it to the parent's user namespace and refuses.
    with pytest.raises(OSError) as info:
        spawn("net", parent=parent)
    assert info.value.errno == errno.ENOSPC
    assert "unshare" in str(info.value)
    parent.set_sysctl("user.max_net_namespaces", "1")
    child = spawn("net", parent=parent)
    assert child.inodes["net"] != parent.inodes["net"]
    with pytest.raises(OSError) as info:
        spawn("net", parent=parent)  # the second one is over the limit again
    assert info.value.errno == errno.ENOSPC


@root
def test_holder_refuses_bad_requests_and_keeps_serving(spawn: Spawner) -> None:
    holder = spawn("uts", "mnt")
    holder.set_sysctl("kernel.hostname", "served-box")
    for name in ("kernel..hostname", "../kernel/hostname", "kernel/../x", "kernel.host name", ""):
        with pytest.raises(ValueError):
            holder.sysctl(name)
        with pytest.raises(ValueError):
            holder.set_sysctl(name, "x")
    # Raw requests, as the holder sees them: pin.c checks for itself.
    bad = [
        b"",
        b"r",
        b"r ",
        b"x kernel/hostname",
        b"r /etc/passwd",
        b"r /proc/sys/kernel/hostname",
        b"r ../../etc/passwd",
        b"r kernel/../../../etc/passwd",
        b"r kernel/./hostname",
        b"r kernel//hostname",
        b"r kernel/hostname/",
        b"r kernel/hostname\0junk",
        b"w kernel/hostname",
        b"w ../kernel/hostname x",
        b"r " + b"a/" * 3000,
    ]
    for request in bad:
        with pytest.raises(OSError) as info:
            holder._request(request, None)
        assert info.value.errno == errno.EINVAL, request
    with pytest.raises(OSError) as info:
        holder._request(b"r " + b"a" * 9000, None)  # longer than the holder reads
    assert info.value.errno == errno.EMSGSIZE
    # Noise (never a write): every message gets exactly one answer.
    rng = random.Random(3)
    for _ in range(300):
        noise = rng.randbytes(rng.randrange(0, 300))
        if noise[:1] == b"w":
            noise = b"x" + noise[1:]
        if rng.random() < 0.5:
            noise = b"r " + noise
        try:
            holder._request(noise, None)
        except OSError as exc:
            assert exc.errno not in (errno.EPROTO, errno.ESRCH, errno.ETIMEDOUT), noise
    with pytest.raises(FileNotFoundError):
        holder.sysctl("kernel.no_such_sysctl")
    with pytest.raises(IsADirectoryError):
        holder.sysctl("kernel")
    with pytest.raises(OSError) as info:
        holder.set_sysctl("kernel.ostype", "x")  # read-only
    assert info.value.errno in (errno.EACCES, errno.EPERM)
    assert holder.alive()
    assert holder.sysctl("kernel.hostname") == "served-box\n"
    assert holder_fds(holder.pid) == HOLDER_FDS


@root
def test_holder_reads_the_kernel_under_mounts_made_inside(spawn: Spawner, tmp_path: Path) -> None:
    holder = spawn("uts", "mnt")
    holder.set_sysctl("kernel.hostname", "real-box")
    fake = tmp_path / "fake-hostname"
    fake.write_text("fake-box\n")
    # What the container (or containerfs, binding its views) mounts over
    # /proc/sys inside: processes there see it, the holder does not.
    for argv in (
        ["mount", "-t", "tmpfs", "x", "/proc/sys/fs"],
        ["mount", "--bind", str(fake), "/proc/sys/kernel/hostname"],
    ):
        subprocess.run(["nsenter", "-t", str(holder.pid), "-m", "--", *argv], check=True)
    inside = subprocess.run(
        [
            "nsenter",
            "-t",
            str(holder.pid),
            "-m",
            "-u",
            "--",
            "sh",
            "-c",
            "ls -A /proc/sys/fs | wc -l; cat /proc/sys/kernel/hostname; hostname",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert inside.stdout.split() == ["0", "fake-box", "real-box"]
    assert holder.sysctl("kernel.hostname") == "real-box\n"
    assert holder.sysctl("fs.file-max") == Path("/proc/sys/fs/file-max").read_text()
    holder.set_sysctl("kernel.hostname", "still-real")
    assert fake.read_text() == "fake-box\n"
    # Likewise for a holder in a user namespace of its own that shares its
    # parent's mounts (it copied /proc/sys before it entered its user namespace).
    child = spawn("user", "uts", parent=holder)
    assert child.sysctl("fs.file-max") == Path("/proc/sys/fs/file-max").read_text()
    child.set_sysctl("kernel.hostname", "child-box")
    assert child.sysctl("kernel.hostname") == "child-box\n"


@root
def test_holder_serves_many_threads_without_mixing_replies(spawn: Spawner) -> None:
    holder = spawn("uts", "ipc")
    holder.set_sysctl("kernel.hostname", "many-box")
    holder.set_sysctl("kernel.msgmni", "77")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(40):
                value = str(1000 + n * 100 + i)
                holder.set_sysctl("kernel.shmmni", value)  # others write meanwhile
                assert holder.sysctl("kernel.hostname") == "many-box\n"
                assert holder.sysctl("kernel.msgmni") == "77\n"
                assert 1000 <= int(holder.sysctl("kernel.shmmni")) < 2700
                with pytest.raises(FileNotFoundError):
                    holder.sysctl("kernel.nope")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    assert Path("/proc/sys/kernel/hostname").read_text() != "many-box\n"


@root
def test_holder_channel_timeout_close_and_death(spawn: Spawner) -> None:
    holder = spawn("uts")
    holder.set_sysctl("kernel.hostname", "slow-box")
    # A stopped holder does not answer: the request times out, and its late
    # reply is skipped, not taken for the next request's.
    os.kill(holder.pid, signal.SIGSTOP)
    try:
        with pytest.raises(TimeoutError):
            holder.sysctl("kernel.domainname", timeout=0.2)
        with pytest.raises(TimeoutError):
            holder.sysctl("kernel.ostype", timeout=0.1)
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    assert holder.sysctl("kernel.hostname") == "slow-box\n"
    assert holder.sysctl("kernel.ostype") == "Linux\n"
    # Closing while a request waits fails that request at once.
    os.kill(holder.pid, signal.SIGSTOP)
    results: list[BaseException | str] = []

    def ask() -> None:
        try:
            results.append(holder.sysctl("kernel.hostname", timeout=30))
        except BaseException as exc:
            results.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        time.sleep(0.1)
        started = time.monotonic()
        holder.close()
        asker.join(10)
        assert time.monotonic() - started < 5
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    assert len(results) == 1 and isinstance(results[0], ProcessLookupError)
    with pytest.raises(OSError) as info:
        holder.sysctl("kernel.hostname")
    assert info.value.errno == errno.ENOTCONN
    # The holder keeps its copy of our end: it keeps holding and serving.
    assert holder_fds(holder.pid) == HOLDER_FDS
    assert not holder.gone()  # judged from /proc/PID now that the pidfd is closed
    # Attached again (as after a daemon restart): the request left unanswered
    # above is skipped, and the new channel serves.
    again = Holder.attach(holder.pid, holder.inodes)
    try:
        assert again.has_channel
        assert again.sysctl("kernel.hostname") == "slow-box\n"
    finally:
        again.close()
    # A holder that died answers nothing.
    dead = spawn("uts")
    dead.kill()
    with pytest.raises(ProcessLookupError):
        dead.sysctl("kernel.hostname")


@root
async def test_holder_sysctl_async(spawn: Spawner) -> None:
    holder = spawn("uts", "pid")
    await holder.set_sysctl_async("kernel.hostname", "async-served")
    assert await holder.sysctl_async("kernel.hostname") == "async-served\n"
    await holder.set_sysctl_async("kernel.pid_max", "5000")
    assert await holder.sysctl_async("kernel.pid_max") == "5000\n"
    with pytest.raises(FileNotFoundError):
        await holder.sysctl_async("kernel.nope")


# -- pid translation -------------------------------------------------------------------


@root
def test_translate_pid_picks_the_openers_namespace(spawn: Spawner) -> None:
    a = spawn("pid")
    b = spawn("pid")
    assert procs.translate_pid(1, a.pid) == a.pid
    assert procs.translate_pid(1, b.pid) == b.pid
    me = os.getpid()
    assert procs.translate_pid(me, me) == me
    with pytest.raises(ProcessLookupError):
        procs.translate_pid(4_000_000, a.pid)
    with pytest.raises(ProcessLookupError):
        procs.translate_pid(0, me)
    # A process inside a's namespace, found by its pid there.
    out = subprocess.run(
        ["nsenter", "-t", str(a.pid), "-p", "--", "sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    inner = int(out.stdout)
    host = procs.translate_pid(inner, a.pid)
    try:
        assert status_field(host, "NSpid").split() == [str(host), str(inner)]
        assert procs.process_inodes(host)["pid"] == a.inodes["pid"]
    finally:
        os.kill(host, signal.SIGKILL)


# -- containerfs exec ---------------------------------------------------------------


def test_parse_subsystems_keeps_namespaces_only() -> None:
    text = "ipc own 4026532771\nuts shared 4026531838\n\ncpu own /web\npids shared /\n"
    assert execute.parse_subsystems(text) == {"ipc": 4026532771, "uts": 4026531838}
    with pytest.raises(execute.ExecError):
        execute.parse_subsystems("uts mine 1\n")
    with pytest.raises(execute.ExecError):
        execute.parse_subsystems("uts own /web\n")


def test_read_init(tmp_path: Path) -> None:
    assert execute.read_init(str(tmp_path)) == 0
    (tmp_path / "container.init").write_text("0\n")
    assert execute.read_init(str(tmp_path)) == 0
    (tmp_path / "container.init").write_text("1234\n")
    assert execute.read_init(str(tmp_path)) == 1234
    (tmp_path / "container.init").write_text("x\n")
    with pytest.raises(execute.ExecError):
        execute.read_init(str(tmp_path))


def fake_container(tmp: Path, holder: Holder | None, owned: set[str]) -> Path:
    """A directory with the three files exec reads; ``tasks`` is a plain file."""
    (tmp / "tasks").write_text("")
    if holder is not None:
        (tmp / "container.init").write_text(f"{holder.pid}\n")
        lines = [f"{k} {'own' if k in owned else 'shared'} {holder.inodes[k]}" for k in KINDS]
        (tmp / "container.subsystems").write_text("\n".join(lines + ["cpu own /x"]) + "\n")
    return tmp


def run_exec(container: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``execute.run`` in a child interpreter: it changes the namespaces of its caller."""
    code = (
        "import sys; from containerfs.execute import run; sys.exit(run(sys.argv[1], sys.argv[2:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(container), *argv],
        capture_output=True,
        text=True,
        timeout=30,
    )


def tasks_pids(container: Path) -> list[int]:
    return [int(x) for x in (container / "tasks").read_text().split()]


@root
def test_enter_holder_checks_before_it_joins(spawn: Spawner) -> None:
    holder = spawn("uts")
    before = {k: mine(k) for k in KINDS}
    with pytest.raises(OSError, match="not in the container's uts namespace") as info:
        enter.enter_holder(holder.pid, holder.inodes | {"uts": 1})
    assert info.value.errno == errno.ESRCH
    with pytest.raises(ProcessLookupError, match="is gone"):
        enter.enter_holder(4_194_305, holder.inodes)  # above the largest possible pid
    # Nothing differs from ours: nothing to join.
    enter.enter_holder(holder.pid, {k: v for k, v in holder.inodes.items() if k != "uts"})
    assert {k: mine(k) for k in KINDS} == before


@root
def test_enter_holder_joins_and_keeps_the_cwd_by_path(spawn: Spawner, tmp_path: Path) -> None:
    holder = spawn("mnt", "uts", "pid")
    sysctls.write_sysctl(holder, "uts", "kernel.hostname", "enter-box")
    code = (
        "import json, os, sys; from containerfs.kernel.enter import enter_holder; "
        "enter_holder(int(sys.argv[1]), json.loads(sys.argv[2])); "
        "print(json.dumps([os.uname().nodename, os.getcwd(), "
        "os.stat('/proc/self/ns/mnt').st_ino, os.stat('/proc/self/ns/pid_for_children').st_ino]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(holder.pid), json.dumps(holder.inodes)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    name, cwd, mnt, pid_ns = json.loads(done.stdout)
    assert (name, cwd) == ("enter-box", str(tmp_path))
    assert (mnt, pid_ns) == (holder.inodes["mnt"], holder.inodes["pid"])


@root
def test_exec_runs_in_every_namespace_and_registers_first(spawn: Spawner, tmp_path: Path) -> None:
    holder = spawn(*KINDS)
    sysctls.write_sysctl(holder, "uts", "kernel.hostname", "exec-box")
    box = fake_container(tmp_path, holder, set(KINDS))
    script = (
        "hostname; while read -r l; do case $l in NSpid*) echo $l;; esac; done </proc/self/status; "
        "for k in ipc uts net pid mnt user cgroup time; do stat -L -c %i /proc/self/ns/$k; done"
    )
    done = run_exec(box, "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert lines[0] == "exec-box"
    nspid = lines[1].split()[1:]
    assert len(nspid) == 2 and nspid[1] != "1"
    # The pid went to tasks before the command ran, as the parent sees it.
    assert tasks_pids(box) == [int(nspid[0])]
    assert [int(x) for x in lines[2:10]] == [holder.inodes[k] for k in KINDS]


@root
def test_exec_passes_status_and_signals_back(spawn: Spawner, tmp_path: Path) -> None:
    holder = spawn("uts", "pid")
    box = fake_container(tmp_path, holder, {"uts", "pid"})
    assert run_exec(box, "sh", "-c", "exit 7").returncode == 7
    assert run_exec(box, "sh", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM
    # The command gets default SIGINT although its parent ignores it.
    assert run_exec(box, "sh", "-c", "kill -INT $$").returncode == 128 + signal.SIGINT
    missing = run_exec(box, "no-such-command-xyz")
    assert missing.returncode == 127
    assert missing.stderr.startswith("containerfs exec: failed to execute no-such-command-xyz")
    notexec = tmp_path / "notexec"
    notexec.write_text("#!/bin/sh\n")
    assert run_exec(box, str(notexec)).returncode == 126
    assert len(tasks_pids(box)) == 1  # each write lands at offset 0 of the plain file


@root
def test_exec_parent_ignores_sigint_and_child_keeps_the_process_group(
    spawn: Spawner, tmp_path: Path
) -> None:
    holder = spawn("uts")
    box = fake_container(tmp_path, holder, {"uts"})
    code = (
        "import sys; from containerfs.execute import run; sys.exit(run(sys.argv[1], sys.argv[2:]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(box), "sh", "-c", "sleep 0.5; ps -o pgid= -p $$"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until(lambda: bool(tasks_pids(box)), 10, "the command to be registered")
        proc.send_signal(signal.SIGINT)  # only the exec client, not the group
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert int(out) == proc.pid  # the command runs in the client's process group


@root
def test_exec_refuses_a_holder_with_other_namespaces(spawn: Spawner, tmp_path: Path) -> None:
    holder = spawn("uts")
    other = spawn("uts")
    box = fake_container(tmp_path, holder, {"uts"})
    (box / "container.init").write_text(f"{other.pid}\n")  # e.g. a reused pid
    done = run_exec(box, "true")
    assert done.returncode == 1
    assert "not in the container's uts namespace" in done.stderr
    assert tasks_pids(box) == []
    other.kill()
    (box / "container.init").write_text(f"{other.pid}\n")
    done = run_exec(box, "true")
    assert done.returncode == 1 and done.stderr.startswith("containerfs exec: ")


@root
def test_exec_kills_the_command_when_tasks_refuses(spawn: Spawner, tmp_path: Path) -> None:
    holder = spawn("uts")
    box = fake_container(tmp_path, holder, {"uts"})
    (box / "tasks").unlink()
    (box / "tasks").symlink_to("/dev/full")  # every write fails with ENOSPC
    marker = tmp_path / "ran"
    done = run_exec(box, "touch", str(marker))
    assert done.returncode == 1
    assert done.stderr == (
        "containerfs exec: cannot add process to the container: No space left on device\n"
    )
    assert not marker.exists()


def test_exec_root_container_joins_nothing(tmp_path: Path) -> None:
    box = fake_container(tmp_path, None, set())
    done = run_exec(box, "sh", "-c", "readlink /proc/self/ns/uts")
    assert done.returncode == 0
    assert done.stdout == os.readlink("/proc/self/ns/uts") + "\n"
    assert len(tasks_pids(box)) == 1
    missing = run_exec(tmp_path / "nope", "true")
    assert missing.returncode == 1
    assert missing.stderr.startswith("containerfs exec: cannot open ")


# -- time namespaces ----------------------------------------------------------------------

SEC = 1_000_000_000


def offsets(holder: Holder) -> list[tuple[str, int, int]]:
    rows = [line.split() for line in holder.time_offsets().splitlines()]
    return [(name, int(s), int(n)) for name, s, n in rows]


def clocks_in(box: Path) -> tuple[int, float, float]:
    """(time ns inode, CLOCK_MONOTONIC, CLOCK_BOOTTIME) of a command exec'd into ``box``."""
    code = (
        "import os, time; print(os.stat('/proc/self/ns/time').st_ino, "
        "time.clock_gettime(time.CLOCK_MONOTONIC), time.clock_gettime(time.CLOCK_BOOTTIME))"
    )
    done = run_exec(box, sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    ino, mono, boot = done.stdout.split()
    return int(ino), float(mono), float(boot)


@root
def test_time_offsets_are_settable_until_the_first_process_enters(
    spawn: Spawner, tmp_path: Path
) -> None:
    holder = spawn("time", "uts")
    assert holder.inodes["time"] != mine("time")
    assert offsets(holder) == [("monotonic", 0, 0), ("boottime", 0, 0)]
    holder.set_time_offsets(5 * SEC, 0)
    holder.set_time_offsets(3600 * SEC + 5, -2 * SEC - 1)  # still nobody inside: again
    assert offsets(holder) == [("monotonic", 3600, 5), ("boottime", -3, SEC - 1)]
    # Out of range (the clock would go below zero): refused, nothing changed.
    for monotonic in (-(10**9) * SEC, 10**30):  # below zero; past what the kernel parses
        with pytest.raises(OSError) as info:
            holder.set_time_offsets(monotonic, 0)
        assert info.value.errno == errno.ERANGE
    assert offsets(holder) == [("monotonic", 3600, 5), ("boottime", -3, SEC - 1)]
    box = fake_container(tmp_path, holder, {"time", "uts"})
    before = time.clock_gettime(time.CLOCK_MONOTONIC), time.clock_gettime(time.CLOCK_BOOTTIME)
    ino, mono, boot = clocks_in(box)
    after = time.clock_gettime(time.CLOCK_MONOTONIC), time.clock_gettime(time.CLOCK_BOOTTIME)
    assert ino == holder.inodes["time"]
    assert before[0] + 3600 <= mono <= after[0] + 3600 + 0.001
    assert before[1] - 2 - 0.001 <= boot <= after[1] - 2 + 0.001
    # /proc/uptime inside follows CLOCK_BOOTTIME there.
    done = run_exec(box, "cat", "/proc/uptime")
    inside = float(done.stdout.split()[0])
    outside = float(Path("/proc/uptime").read_text().split()[0])
    assert outside - 2 - 1 <= inside <= outside - 2 + 0.02
    # A process has entered: the kernel fixed the offsets.
    with pytest.raises(OSError) as info:
        holder.set_time_offsets(0, 0)
    assert info.value.errno == errno.EBUSY
    assert offsets(holder) == [("monotonic", 3600, 5), ("boottime", -3, SEC - 1)]
    # The holder itself never entered it.
    assert proc_inodes(holder.pid)["time"] == mine("time")


@root
def test_exec_into_pid_and_time_lands_in_both(spawn: Spawner, tmp_path: Path) -> None:
    holder = spawn("pid", "time")
    holder.set_time_offsets(0, 7 * SEC)
    box = fake_container(tmp_path, holder, {"pid", "time"})
    script = "echo $$; stat -L -c %i /proc/self/ns/time /proc/self/ns/pid"
    done = run_exec(box, "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    pid, time_ino, pid_ino = (int(x) for x in done.stdout.split())
    assert pid > 1
    assert (time_ino, pid_ino) == (holder.inodes["time"], holder.inodes["pid"])
    # enter_holder checks the time namespace it joins like every other.
    with pytest.raises(OSError, match="not in the container's time namespace"):
        enter.enter_holder(holder.pid, holder.inodes | {"time": 1})


@root
def test_nested_containers_share_or_own_time(spawn: Spawner, tmp_path: Path) -> None:
    parent = spawn("time", "user", "pid")
    parent.set_time_offsets(100 * SEC, 0)
    # A child that shares time lands in the parent's time namespace (its pin
    # joined it from our user namespace first, then the parent's user one).
    sharer = spawn("uts", parent=parent)
    assert sharer.inodes["time"] == parent.inodes["time"]
    assert proc_inodes(sharer.pid)["time"] == parent.inodes["time"]  # it entered it
    # ...so the parent's offsets are fixed from then on.
    with pytest.raises(OSError) as info:
        parent.set_time_offsets(0, 0)
    assert info.value.errno == errno.EBUSY
    (tmp_path / "s").mkdir()
    box = fake_container(tmp_path / "s", sharer, {"uts"})
    ino, mono, _ = clocks_in(box)
    assert ino == parent.inodes["time"]
    assert mono >= time.clock_gettime(time.CLOCK_MONOTONIC) + 99
    # A child that owns time starts from the parent's offsets and can change
    # its own while nobody is inside.
    owner = spawn("time", "uts", parent=parent)
    assert owner.inodes["time"] not in (parent.inodes["time"], mine("time"))
    assert offsets(owner) == [("monotonic", 100, 0), ("boottime", 0, 0)]
    owner.set_time_offsets(200 * SEC, 0)
    (tmp_path / "o").mkdir()
    box = fake_container(tmp_path / "o", owner, {"time", "uts"})
    ino, mono, _ = clocks_in(box)
    assert ino == owner.inodes["time"]
    assert mono >= time.clock_gettime(time.CLOCK_MONOTONIC) + 199
    # Its own child, sharing, lands in its time namespace, not the parent's.
    grandchild = spawn("ipc", parent=owner)
    assert grandchild.inodes["time"] == owner.inodes["time"]
