"""Holders across daemon restarts, in namespaces joined by fd, and shielded from ptrace.

Against the real kernel, as root, with no containerfs mount and no cgroup
touched (``place`` only records the pid).  Every holder a test starts is
killed at teardown through a pidfd of the test's own (even when the test
closed its ``Holder``), every helper process (``unshare ... sleep``) is killed
by pid, every ``ip netns`` name is deleted and every fd the test opened is
closed, even when the test fails.  The checks read ``/proc`` and run ``ip``
and ``nsenter`` rather than trusting the code under test.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import trio

from containerfs.kernel import holder_start
from containerfs.kernel import namespaces as ns
from containerfs.kernel import sys as ksys
from containerfs.kernel.holder import HOLDER_CHANNEL_FD, Holder, _proc_exited
from containerfs.nskinds import KINDS
from tests.integration.conftest import PIN, holder_skip_reason, live_pins

pytestmark = pytest.mark.skipif(holder_skip_reason() is not None, reason=holder_skip_reason() or "")


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def ns_ino(pid: int, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def fd_links(pid: int) -> dict[int, str]:
    """fd number -> what it points at, straight from /proc."""
    links = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            links[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
    return links


def our_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def ok(*argv: str) -> str:
    done = run(*argv)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


def is_sleep(pid: int) -> bool:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "sleep"
    except OSError:
        return False


_boxes = itertools.count()


class Box:
    """Everything one test starts, ended at teardown."""

    def __init__(self) -> None:
        self.placed: list[int] = []
        self.mountpoint = f"/nonexistent-containerfs-mount-hl-{os.getpid()}-{next(_boxes)}"
        self._own: list[Holder] = []  # our own pidfd on every holder started
        self.holders: list[Holder] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pids: list[int] = []  # processes that are not our children
        self.netns: list[str] = []
        self.fds: list[int] = []

    def spawn(
        self,
        *kinds: str,
        parent: Holder | None = None,
        join_fds: Mapping[str, int] | None = None,
    ) -> Holder:
        holder = holder_start.spawn_holder(
            parent=parent,
            unshare=frozenset(kinds),
            place=self.placed.append,
            mountpoint=self.mountpoint,
            pin_path=str(PIN),
            join_fds=join_fds or {},
        )
        self.holders.append(holder)
        self._own.append(Holder(holder.pid, holder.dup_pidfd(), holder.inodes))
        return holder

    def attach(self, pid: int, inodes: Mapping[str, int]) -> Holder:
        holder = Holder.attach(pid, inodes)
        self.holders.append(holder)
        return holder

    def open_ns(self, path: str) -> int:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.fds.append(fd)
        return fd

    def close_fd(self, fd: int) -> None:
        self.fds.remove(fd)
        os.close(fd)

    def sleeper(self, *unshare_args: str) -> int:
        """``unshare ARGS sleep 600``: the pid of the sleep, once it runs in its namespaces.

        With ``--fork`` (implied by ``--pid`` here) the sleep is unshare's
        child, which ``--kill-child`` ties to it.
        """
        forks = "--pid" in unshare_args or "--fork" in unshare_args
        argv = ["unshare", *unshare_args, *(["--kill-child"] if forks else []), "sleep", "600"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.procs.append(proc)
        if not forks:
            wait_until(lambda: is_sleep(proc.pid), 10, "unshare to exec sleep")
            return proc.pid
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        wait_until(lambda: children.read_text().split() != [], 10, "unshare to fork")
        child = int(children.read_text().split()[0])
        self.pids.append(child)
        wait_until(lambda: is_sleep(child), 10, "the child to exec sleep")
        return child

    def kill(self, pid: int) -> None:
        """SIGKILL a helper process and wait until it is gone (reaped, if it is our child)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            if proc.pid == pid:
                proc.wait(10)
        wait_until(lambda: _proc_exited(pid), 10, f"process {pid} to end")

    def enter(self, target: int, flags: list[str], *argv: str) -> int:
        """Start ``argv`` through nsenter (which execs it): its pid."""
        proc = subprocess.Popen(
            ["nsenter", "-t", str(target), *flags, "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc.pid

    def add_netns(self) -> str:
        name = f"cfs-hl-{secrets.token_hex(4)}"
        self.netns.append(name)
        ok("ip", "netns", "add", name)
        return name

    def cleanup(self) -> None:
        errors: list[BaseException] = []

        def attempt(fn: Callable[[], object]) -> None:
            try:
                fn()
            except BaseException as exc:  # go on cleaning; report the first at the end
                errors.append(exc)

        for own in reversed(self._own):
            attempt(own.kill)
            attempt(own.close)
        for holder in self.holders:
            attempt(holder.close)
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            if proc.poll() is None:
                attempt(proc.kill)
            attempt(lambda proc=proc: proc.wait(10))
        for name in self.netns:
            if os.path.exists(f"/run/netns/{name}"):
                attempt(lambda name=name: ok("ip", "netns", "del", name))
        for fd in self.fds:
            attempt(lambda fd=fd: os.close(fd))
        if errors:
            raise errors[0]


@pytest.fixture
def box() -> Iterator[Box]:
    b = Box()
    try:
        yield b
    finally:
        b.cleanup()
    for pid in b.placed:  # the first pin process of every spawn was reaped
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    leaked = live_pins(b.mountpoint)
    assert not leaked, f"holders left running: {leaked}"


def recv_tagged(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    return sock.recv(70000)


# -- reconnecting ---------------------------------------------------------------------


def test_holder_keeps_the_daemons_end_at_its_fixed_fd(box: Box) -> None:
    holder = box.spawn("uts")
    links = fd_links(holder.pid)
    assert sorted(links) == [0, 1, 2, 3, 4, 5, 6]
    assert [links[i] for i in (0, 1, 2)] == ["/dev/null"] * 3
    assert links[3].startswith("socket:[") and links[4].startswith("socket:[")
    assert links[5] == "/sys"  # /proc/sys of its own proc instance, mounted nowhere
    assert links[6] == "/sysvipc"  # and its /proc/sysvipc (pin.c "i")
    # fd 3 is the very socket we talk through: our end, not a copy of the holder's.
    assert holder._channel is not None
    ours = os.fstat(holder._channel.fileno()).st_ino
    assert links[3] == f"socket:[{ours}]"
    assert links[4] != links[3]


def test_reconnect_after_close(box: Box) -> None:
    holder = box.spawn("uts", "ipc")
    holder.set_sysctl("kernel.hostname", "reconnect-box")
    pid, inodes = holder.pid, dict(holder.inodes)
    holder.close()
    assert not holder.has_channel
    assert not _proc_exited(pid)  # close() is not a kill
    time.sleep(0.05)
    assert sorted(fd_links(pid)) == [0, 1, 2, 3, 4, 5, 6]  # it did not drop the channel

    for round_ in range(3):  # as after several daemon restarts
        again = box.attach(pid, inodes)
        assert again.has_channel and again.inodes == inodes and again.alive()
        assert again.sysctl("kernel.hostname") == (
            "reconnect-box\n" if round_ == 0 else f"again-{round_ - 1}\n"
        )
        again.set_sysctl("kernel.hostname", f"again-{round_}")
        # The write happened in the holder's uts namespace, not ours.
        assert ok("nsenter", "-t", str(pid), "-u", "hostname").strip() == f"again-{round_}"
        again.close()
    assert Path("/proc/sys/kernel/hostname").read_text().strip() != "again-2"

    # Only the kinds the caller knows.
    part = box.attach(pid, {"uts": inodes["uts"]})
    assert part.sysctl("kernel.hostname") == "again-2\n"
    part.close()


def test_attach_refuses_a_changed_or_wrong_process(box: Box) -> None:
    holder = box.spawn("uts")
    before = our_fds()
    for wrong in ({"uts": holder.inodes["uts"] + 1}, {"net": holder.inodes["net"] + 1}):
        with pytest.raises(OSError, match="pid reused or container changed") as info:
            Holder.attach(holder.pid, holder.inodes | wrong)
        assert info.value.errno == errno.ESRCH
    # A process that is not a containerfs-pin, even one with the right namespaces.
    sleeper = box.sleeper("--uts")
    with pytest.raises(OSError, match="not a containerfs-pin") as info:
        Holder.attach(sleeper, {"uts": ns_ino(sleeper, "uts")})
    assert info.value.errno == errno.ESRCH
    with pytest.raises(OSError) as info:
        Holder.attach(os.getpid(), {})
    assert info.value.errno == errno.ESRCH
    # A process that is gone.
    done = subprocess.Popen(["true"])
    done.wait()
    with pytest.raises(ProcessLookupError):
        Holder.attach(done.pid, {})
    with pytest.raises(ValueError):
        Holder.attach(holder.pid, {"bogus": 1})
    assert our_fds() == before  # nothing leaked on the way out


def test_stale_replies_are_skipped_after_a_reconnect(box: Box) -> None:
    holder = box.spawn("uts")
    holder.set_sysctl("kernel.hostname", "stale-box")
    holder.set_sysctl("kernel.domainname", "fresh-domain")
    channel = holder._channel
    assert channel is not None
    # An old daemon killed right after a request: the reply is queued on the
    # shared end, unread.
    channel.send(b"17 r kernel/hostname")
    poller = select.poll()
    poller.register(channel, select.POLLIN)
    assert poller.poll(5000), "no reply queued"
    # One killed while the holder was still working (stopped here): the
    # requests are read after the new daemon's.
    os.kill(holder.pid, signal.SIGSTOP)
    try:
        channel.send(b"18 r kernel/hostname")
        with pytest.raises(TimeoutError):
            holder.sysctl("kernel.hostname", timeout=0.1)
        holder.close()
        again = box.attach(holder.pid, holder.inodes)
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    assert again.sysctl("kernel.domainname") == "fresh-domain\n"
    assert again.sysctl("kernel.ostype") == "Linux\n"
    # The stale replies were consumed on the way, not left for later.
    assert again._channel is not None
    again._channel.settimeout(0.0)
    with pytest.raises(BlockingIOError):
        again._channel.recv(100)


def test_tags_on_the_wire(box: Box) -> None:
    """Raw requests on the channel fd as a restarted daemon takes it (pidfd_getfd)."""
    holder = box.spawn("uts")
    holder.set_sysctl("kernel.hostname", "wire-box")
    fd = ksys.pidfd_getfd(holder.pidfd, HOLDER_CHANNEL_FD)
    with socket.socket(fileno=fd) as raw:
        assert raw.type == socket.SOCK_SEQPACKET
        cases = [
            (b"42 r kernel/hostname", b"42 ok wire-box\n"),
            (b"000123 w kernel/domainname wired", b"000123 ok"),
            (b"7 r kernel/nope", b"7 err %d" % errno.ENOENT),
            (b"8 x", b"8 err %d" % errno.EINVAL),
            (b"9 ", b"9 err %d" % errno.EINVAL),
            (b"12345678901234567890 r kernel/domainname", b"12345678901234567890 ok wired\n"),
            (b"10 r " + b"a" * 9000, b"10 err %d" % errno.EMSGSIZE),
            # No well-formed tag: answered with tag 0.
            (b"r kernel/hostname", b"0 err %d" % errno.EINVAL),
            (b"12x r kernel/hostname", b"0 err %d" % errno.EINVAL),
            (b"123456789012345678901 r kernel/hostname", b"0 err %d" % errno.EINVAL),
            (b"5", b"0 err %d" % errno.EINVAL),
            (b"", b"0 err %d" % errno.EINVAL),
        ]
        for request, reply in cases:
            raw.send(request)
            assert recv_tagged(raw) == reply, request
    assert holder.sysctl("kernel.domainname") == "wired\n"


def test_several_sysctls_in_one_exchange(box: Box) -> None:
    """``sysctls_async`` (a new container's views): every request goes out before the
    first reply is read; the answers come back in order, None for a sysctl the holder
    has no file of, the first other error raised, and the channel serves on."""
    holder = box.spawn("uts")
    holder.set_sysctl("kernel.hostname", "many-box")
    names = ["kernel.hostname", "kernel.nope", "kernel.domainname", *["kernel.ostype"] * 40]
    got = trio.run(holder.sysctls_async, names)
    assert got[:3] == ["many-box\n", None, holder.sysctl("kernel.domainname")]
    assert got[3:] == [holder.sysctl("kernel.ostype")] * 40
    with pytest.raises(PermissionError):  # write-only (0200), even to root
        trio.run(holder.sysctls_async, ["kernel.hostname", "vm.drop_caches", "kernel.ostype"])
    assert holder.sysctl("kernel.hostname") == "many-box\n"


def test_channel_ends_when_the_holder_dies(box: Box) -> None:
    holder = box.spawn("uts")
    holder.close()
    again = box.attach(holder.pid, holder.inodes)
    again.kill()
    with pytest.raises(ProcessLookupError):
        again.sysctl("kernel.hostname")
    with pytest.raises(ProcessLookupError):
        Holder.attach(holder.pid, holder.inodes)


# -- joining namespaces by fd ------------------------------------------------------------


def test_join_net_and_uts_of_a_process_and_outlive_it(box: Box) -> None:
    sleeper = box.sleeper("--net", "--uts")
    assert ns_ino(sleeper, "net") != ns_ino(os.getpid(), "net")
    ok("nsenter", "-t", str(sleeper), "-u", "hostname", "joined-box")
    ok("nsenter", "-t", str(sleeper), "-n", "ip", "addr", "add", "10.77.0.1/32", "dev", "lo")
    net = box.open_ns(f"/proc/{sleeper}/ns/net")
    uts = box.open_ns(f"/proc/{sleeper}/ns/uts")
    want = {"net": os.fstat(net).st_ino, "uts": os.fstat(uts).st_ino}
    holder = box.spawn("ipc", join_fds={"net": net, "uts": uts})
    for kind in ("net", "uts"):
        assert ns_ino(holder.pid, kind) == want[kind] == holder.inodes[kind]
    assert ns_ino(holder.pid, "ipc") not in (ns_ino(sleeper, "ipc"), ns_ino(os.getpid(), "ipc"))
    for kind in ("mnt", "pid", "user", "cgroup"):
        assert holder.inodes[kind] == ns_ino(os.getpid(), kind)
    assert holder.sysctl("kernel.hostname") == "joined-box\n"

    box.kill(sleeper)
    box.close_fd(net)
    box.close_fd(uts)
    # Nothing but the holder keeps them now.
    for kind in ("net", "uts"):
        assert ns_ino(holder.pid, kind) == want[kind]
    assert "10.77.0.1/32" in ok("nsenter", "-t", str(holder.pid), "-n", "ip", "-o", "addr")
    assert ok("nsenter", "-t", str(holder.pid), "-u", "hostname").strip() == "joined-box"
    holder.set_sysctl("kernel.hostname", "kept-box")
    assert holder.sysctl("kernel.hostname") == "kept-box\n"


def test_join_under_a_parent_holder(box: Box) -> None:
    parent = box.spawn("uts", "ipc", "mnt")
    sleeper = box.sleeper("--net")
    net = box.open_ns(f"/proc/{sleeper}/ns/net")
    child = box.spawn("pid", parent=parent, join_fds={"net": net})
    assert ns_ino(child.pid, "net") == os.fstat(net).st_ino == child.inodes["net"]
    for kind in ("uts", "ipc", "mnt"):
        assert ns_ino(child.pid, kind) == parent.inodes[kind]
    assert child.inodes["pid"] not in (parent.inodes["pid"], ns_ino(os.getpid(), "pid"))
    # A kind the parent already gives needs no join: the same fd is fine.
    uts = box.open_ns(f"/proc/{parent.pid}/ns/uts")
    same = box.spawn(parent=parent, join_fds={"uts": uts})
    assert same.inodes == parent.inodes


def test_join_an_ip_netns_kept_by_a_bind_mount_only(box: Box) -> None:
    name = box.add_netns()
    ok("ip", "-n", name, "addr", "add", "10.77.0.2/32", "dev", "lo")
    fd = box.open_ns(f"/run/netns/{name}")
    ino = os.fstat(fd).st_ino
    holder = box.spawn(join_fds={"net": fd})
    assert ns_ino(holder.pid, "net") == ino == holder.inodes["net"]
    ok("ip", "netns", "del", name)
    box.close_fd(fd)
    assert not os.path.exists(f"/run/netns/{name}")
    assert ns_ino(holder.pid, "net") == ino
    assert "10.77.0.2/32" in ok("nsenter", "-t", str(holder.pid), "-n", "ip", "-o", "addr")
    # Per-netns sysctls are the joined namespace's.
    holder.set_sysctl("net.ipv4.ip_default_ttl", "33")
    ttl = ok("nsenter", "-t", str(holder.pid), "-n", "cat", "/proc/sys/net/ipv4/ip_default_ttl")
    assert ttl == "33\n"
    assert Path("/proc/sys/net/ipv4/ip_default_ttl").read_text() != "33\n"


def test_join_a_pid_namespace_as_an_ordinary_process(box: Box) -> None:
    init = box.sleeper("--pid", "--fork", "--mount-proc")
    fd = box.open_ns(f"/proc/{init}/ns/pid")
    holder = box.spawn("uts", join_fds={"pid": fd})
    assert ns_ino(holder.pid, "pid") == os.fstat(fd).st_ino == holder.inodes["pid"]
    assert holder.inodes["pid"] == ns_ino(init, "pid")
    status = Path(f"/proc/{holder.pid}/status").read_text()
    inner = [line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")][0]
    assert len(inner) == 2 and inner[1] != "1"  # inside it, and not its init
    # kernel.pid_max is per pid namespace here: the holder serves the joined one's.
    host = Path("/proc/sys/kernel/pid_max").read_text()
    holder.set_sysctl("kernel.pid_max", "4321")
    inside = ok("nsenter", "-t", str(init), "-p", "-m", "cat", "/proc/sys/kernel/pid_max")
    assert inside == holder.sysctl("kernel.pid_max") == "4321\n"
    assert Path("/proc/sys/kernel/pid_max").read_text() == host
    # The namespace lives as long as its init: the holder goes with it.
    box.kill(init)
    wait_until(holder.gone, 10, "the holder to die with its pid namespace")


def test_join_a_user_namespace_last(box: Box) -> None:
    sleeper = box.sleeper("--user", "--map-root-user")
    fd = box.open_ns(f"/proc/{sleeper}/ns/user")
    ino = os.fstat(fd).st_ino
    # It owns a uts namespace, made after joining the user namespace.
    holder = box.spawn("uts", join_fds={"user": fd})
    assert ns_ino(holder.pid, "user") == ino == holder.inodes["user"]
    uts = os.open(f"/proc/{holder.pid}/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
    try:
        owner = ksys.ns_get_userns(uts)
        try:
            assert os.fstat(owner).st_ino == ino
        finally:
            os.close(owner)
    finally:
        os.close(uts)
    # The other kinds are ours: joined before the user namespace, with our
    # capabilities, they did not change.
    for kind in ("net", "ipc", "mnt", "pid", "cgroup"):
        assert holder.inodes[kind] == ns_ino(os.getpid(), kind)
    holder.set_sysctl("kernel.hostname", "userns-box")
    assert holder.sysctl("kernel.hostname") == "userns-box\n"
    # A network namespace owned by the initial user namespace, joined along:
    # from inside the joined user namespace that would be refused (EPERM).
    netfd = box.open_ns(f"/run/netns/{box.add_netns()}")
    both = box.spawn(join_fds={"user": fd, "net": netfd})
    assert both.inodes["user"] == ino and both.inodes["net"] == os.fstat(netfd).st_ino
    box.kill(sleeper)
    box.close_fd(fd)
    assert ns_ino(holder.pid, "user") == ino
    assert Path(f"/proc/{holder.pid}/uid_map").read_text().split() == ["0", "0", "1"]
    assert holder.sysctl("kernel.hostname") == "userns-box\n"


def test_join_several_kinds_at_once_including_time(box: Box) -> None:
    source = box.spawn("net", "uts", "ipc", "time", "cgroup")
    source.set_time_offsets(0, 3_600_000_000_000)
    fds = {k: box.open_ns(f"/proc/{source.pid}/ns/{k}") for k in ("net", "uts", "ipc", "cgroup")}
    fds["time"] = box.open_ns(f"/proc/{source.pid}/ns/time_for_children")
    holder = box.spawn(join_fds=fds)
    for kind, fd in fds.items():
        assert holder.inodes[kind] == os.fstat(fd).st_ino == source.inodes[kind], kind
    for kind in ("mnt", "pid", "user"):
        assert holder.inodes[kind] == ns_ino(os.getpid(), kind)
    offsets = Path(f"/proc/{holder.pid}/timens_offsets").read_text().splitlines()
    assert [line.split() for line in offsets] == [
        ["monotonic", "0", "0"],
        ["boottime", "3600", "0"],
    ]
    with pytest.raises(OSError) as info:  # joining it was entering it
        source.set_time_offsets(0, 0)
    assert info.value.errno == errno.EBUSY


def test_join_refuses_bad_fds_before_starting_anything(box: Box) -> None:
    sleeper = box.sleeper("--net")
    net = box.open_ns(f"/proc/{sleeper}/ns/net")
    null = box.open_ns("/dev/null")
    for unshare, join, match in (
        ((), {"uts": net}, "not a uts namespace"),
        (("net",), {"net": net}, "both join and own"),
        ((), {"net": null}, "not a namespace fd"),
        ((), {"nett": net}, "unknown namespace kind"),
    ):
        with pytest.raises(ValueError, match=match):
            box.spawn(*unshare, join_fds=join)
    assert box.placed == []


def test_reconnect_to_a_holder_in_joined_namespaces(box: Box) -> None:
    sleeper = box.sleeper("--user", "--map-root-user", "--uts", "--net")
    fds = {k: box.open_ns(f"/proc/{sleeper}/ns/{k}") for k in ("user", "uts", "net")}
    holder = box.spawn("ipc", join_fds=fds)
    holder.set_sysctl("kernel.hostname", "joined-again")
    holder.close()
    again = box.attach(holder.pid, {k: os.fstat(fd).st_ino for k, fd in fds.items()})
    assert again.sysctl("kernel.hostname") == "joined-again\n"


# -- not dumpable ------------------------------------------------------------------------


def test_a_root_in_the_holders_user_namespace_cannot_look_inside_it(box: Box) -> None:
    holder = box.spawn("user", "uts")
    # Root of the container's user namespace is the host's root, as with
    # --map-root-user: the case where only the dumpable flag stands in the way.
    # (Writing the maps is itself a /proc/HOLDER write by the daemon.)
    for name in ("uid_map", "gid_map"):
        Path(f"/proc/{holder.pid}/{name}").write_text("0 0 1\n")
    inside = ["-U"]
    # Control: a plain process of that user namespace, whose root may read it.
    other = box.enter(holder.pid, inside, "sleep", "600")
    wait_until(
        lambda: is_sleep(other) and ns_ino(other, "user") == holder.inodes["user"],
        10,
        "the control sleep",
    )
    assert ok("nsenter", "-t", str(holder.pid), *inside, "cat", f"/proc/{other}/environ") != ""
    assert ok("nsenter", "-t", str(holder.pid), *inside, "id", "-u").strip() == "0"
    for argv in (
        ["cat", f"/proc/{holder.pid}/environ"],
        ["readlink", "-v", f"/proc/{holder.pid}/fd/{HOLDER_CHANNEL_FD}"],
        ["readlink", "-v", f"/proc/{holder.pid}/ns/uts"],
    ):
        done = run("nsenter", "-t", str(holder.pid), *inside, *argv)
        assert done.returncode != 0, argv
        assert "ermission denied" in done.stderr, (argv, done.stderr)
    # The daemon (root with CAP_SYS_PTRACE in the initial user namespace) still can.
    assert Path(f"/proc/{holder.pid}/environ").read_bytes() is not None
    assert fd_links(holder.pid)[HOLDER_CHANNEL_FD].startswith("socket:[")
    assert {
        k: ns.ns_inode_for_children(holder.pid, k) if k == "time" else ns_ino(holder.pid, k)
        for k in KINDS
    } == holder.inodes
    holder.close()
    again = box.attach(holder.pid, {"user": ns_ino(holder.pid, "user")})
    again.set_sysctl("kernel.hostname", "sealed-box")
    assert again.sysctl("kernel.hostname") == "sealed-box\n"
