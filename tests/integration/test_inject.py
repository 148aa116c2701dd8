"""Moving running processes into namespaces by ptrace injection, against the real kernel.

Destination namespaces come from ``unshare --uts --ipc --net [--mount] sleep
600`` (hostname "moved"); the processes that get moved are started by the
tests.  Every process a test starts is killed by its pid at teardown, which
also ends the namespaces it made.  The checks read ``/proc`` (or ask the moved
process itself), not the code under test.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from containerfs.kernel import inject, inject_move, ptrace_call, ptrace_rules

from .conftest import close_pipes

KINDS = ("uts", "ipc", "net")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if os.uname().machine != "x86_64":
        return "injection is x86_64 only"
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} missing (util-linux)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def ns(pid: int, kind: str, tid: int | None = None) -> int:
    path = f"/proc/{pid}/ns/{kind}" if tid is None else f"/proc/{pid}/task/{tid}/ns/{kind}"
    return os.stat(path).st_ino


def thread_inodes(pid: int, kind: str) -> dict[int, int]:
    """tid -> namespace inode, for every thread still there when read."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):  # exited meanwhile
            out[int(name)] = ns(pid, kind, int(name))
    return out


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@dataclass
class Dest:
    """A set of fresh namespaces held by a ``sleep`` (hostname "moved")."""

    pid: int
    kinds: tuple[str, ...]

    @property
    def targets(self) -> dict[str, int]:
        return {k: ns(self.pid, k) for k in self.kinds}

    @property
    def sources(self) -> dict[str, str | int]:
        return {k: f"/proc/{self.pid}/ns/{k}" for k in self.kinds}

    def move(self, pid: int, **kw: float) -> None:
        inject.move_into(pid, self.targets, sources=self.sources, **kw)


class Procs:
    """Processes a test started; all killed (by pid) at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str], **kw: object) -> subprocess.Popen[str]:
        proc: subprocess.Popen[str] = subprocess.Popen(argv, text=True, **kw)  # type: ignore[call-overload]
        self.started.append(proc)
        return proc

    def python(self, code: str, **kw: object) -> subprocess.Popen[str]:
        return self.start(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, **kw
        )

    def dest(self, *kinds: str) -> Dest:
        flags = [f"--{'mount' if k == 'mnt' else k}" for k in kinds]
        proc = self.start(["unshare", *flags, "sleep", "600"])
        wait_until(lambda: all(ns(proc.pid, k) != ns(os.getpid(), k) for k in kinds), 5, "unshare")
        subprocess.run(["nsenter", "-t", str(proc.pid), "-u", "hostname", "moved"], check=True)
        return Dest(proc.pid, kinds)

    def kill_all(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
            proc.wait(timeout=10)
            close_pipes(proc)


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.kill_all()


def readline(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def send(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def blocked(pid: int) -> bool:
    """The process sleeps in a system call (so the move catches it there)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "S"


def unchanged(pid: int, before: dict[str, dict[int, int]]) -> None:
    for kind, inodes in before.items():
        assert thread_inodes(pid, kind) == inodes, kind
    assert status_field(pid, "TracerPid") == "0"


def snapshot(pid: int, kinds: tuple[str, ...] = KINDS) -> dict[str, dict[int, int]]:
    return {k: thread_inodes(pid, k) for k in kinds}


# -- moving ---------------------------------------------------------------------


def test_bash_blocked_in_read_runs_next_command_in_new_namespaces(procs: Procs) -> None:
    dest = procs.dest(*KINDS)
    bash = procs.start(["bash"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    send(bash, "echo started")
    assert readline(bash) == "started"
    wait_until(lambda: blocked(bash.pid), 5, "bash to block in read")
    assert Path(f"/proc/{bash.pid}/syscall").read_text().split()[0] == "0"  # read

    dest.move(bash.pid)

    for kind in KINDS:
        assert thread_inodes(bash.pid, kind) == {bash.pid: dest.targets[kind]}
    assert status_field(bash.pid, "TracerPid") == "0"
    send(bash, "hostname; echo $?")
    assert readline(bash) == "moved"
    assert readline(bash) == "0"
    send(bash, "exit 7")
    assert bash.wait(timeout=10) == 7


def test_sleep_moved_mid_sleep_ends_on_time_with_status_0(procs: Procs) -> None:
    dest = procs.dest(*KINDS)
    sleeper = procs.start(["sleep", "2"])
    start = time.monotonic()
    time.sleep(0.5)
    dest.move(sleeper.pid)
    assert ns(sleeper.pid, "uts") == dest.targets["uts"]
    assert sleeper.wait(timeout=10) == 0
    elapsed = time.monotonic() - start
    # Not early, and not the full 2 s again from the move (which would end at >= 2.5 s).
    assert 1.95 < elapsed < 2.4, elapsed


FOUR_THREADS = r"""
import os, sys, threading, time
go = threading.Event()
def worker(i):
    if i == 0:
        while not go.is_set():
            time.sleep(0.01)          # nanosleep
    elif i == 1:
        go.wait()                     # futex
    else:
        n = 0
        while not go.is_set():        # busy in user space
            n += 1
    os.write(1, f"{i} {os.uname().nodename}\n".encode())
threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
for t in threads:
    t.start()
print("ready", flush=True)
sys.stdin.readline()                  # main thread: read
go.set()
for t in threads:
    t.join()
print("main", os.uname().nodename, flush=True)
"""


def test_every_thread_of_a_four_thread_program_moves(procs: Procs) -> None:
    dest = procs.dest(*KINDS)
    prog = procs.python(FOUR_THREADS)
    assert readline(prog) == "ready"
    wait_until(lambda: len(os.listdir(f"/proc/{prog.pid}/task")) == 4, 5, "4 threads")

    dest.move(prog.pid)

    for kind in KINDS:
        inodes = thread_inodes(prog.pid, kind)
        assert len(inodes) == 4
        assert set(inodes.values()) == {dest.targets[kind]}, kind
    send(prog, "go")
    assert prog.stdout is not None
    lines = sorted(prog.stdout.read().split("\n")[:-1])
    assert lines == ["0 moved", "1 moved", "2 moved", "main moved"]
    assert prog.wait(timeout=10) == 0


CHURN = r"""
import os, sys, threading, time
stop = False
def short():
    time.sleep(0.001)
def churn():
    while not stop:
        t = threading.Thread(target=short)
        t.start()
        t.join(0.0005)
for _ in range(3):
    threading.Thread(target=churn, daemon=True).start()
print("ready", flush=True)
sys.stdin.readline()
print(os.uname().nodename, flush=True)
"""


def test_threads_made_during_the_move_are_moved_too(procs: Procs) -> None:
    dest = procs.dest(*KINDS)
    prog = procs.python(CHURN)
    assert readline(prog) == "ready"
    for _ in range(10):
        dest.move(prog.pid)
        # Threads keep coming and going; every one there now is in the
        # destination (new ones inherit it from a moved creator).
        assert set(thread_inodes(prog.pid, "uts").values()) == {dest.targets["uts"]}
        assert status_field(prog.pid, "TracerPid") == "0"
        # and back, to have something to do next round
        home = {k: ns(os.getpid(), k) for k in KINDS}
        inject.move_into(prog.pid, home, sources={k: f"/proc/self/ns/{k}" for k in KINDS})
        assert set(thread_inodes(prog.pid, "uts").values()) == {home["uts"]}
    send(prog, "go")
    assert readline(prog) == os.uname().nodename
    assert prog.poll() is None or prog.wait(timeout=10) == 0


SOCKETS = r"""
import socket, sys
port = int(sys.argv[1])
tcp = socket.create_connection(("127.0.0.1", port))
a, b = socket.socketpair()
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "old":
        tcp.sendall(b"ping\n")
        a.sendall(b"x")
        print("old", b.recv(1).decode(), flush=True)
    elif cmd == "new":
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            print("new connected", flush=True)
        except OSError as e:
            print("new failed", e.errno, flush=True)
    elif cmd == "ifs":
        print("ifs", ",".join(sorted(n for _, n in socket.if_nameindex())), flush=True)
"""


def test_sockets_before_the_move_keep_working_new_ones_land_in_the_new_netns(
    procs: Procs,
) -> None:
    dest = procs.dest(*KINDS)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        prog = procs.start(
            [sys.executable, "-c", SOCKETS, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        conn, _ = server.accept()
        with conn:
            assert readline(prog) == "ready"
            host_ifs = sorted(n for _, n in socket.if_nameindex())
            send(prog, "ifs")
            assert readline(prog) == "ifs " + ",".join(host_ifs)

            dest.move(prog.pid)

            send(prog, "old")
            assert readline(prog) == "old x"  # the socketpair
            assert conn.recv(5) == b"ping\n"  # the TCP connection made in the host netns
            send(prog, "new")
            assert readline(prog) == f"new failed {errno.ENETUNREACH}"  # lo is down there
            send(prog, "ifs")
            assert readline(prog) == "ifs lo"
            dev = Path(f"/proc/{prog.pid}/net/dev").read_text().splitlines()[2:]
            assert [line.split(":")[0].strip() for line in dev] == ["lo"]


def test_a_stopped_process_moves_and_stays_stopped(procs: Procs) -> None:
    dest = procs.dest(*KINDS)
    sleeper = procs.start(["sleep", "1"])
    os.kill(sleeper.pid, signal.SIGSTOP)
    wait_until(lambda: status_field(sleeper.pid, "State").startswith("T"), 5, "stop")
    dest.move(sleeper.pid)
    assert ns(sleeper.pid, "net") == dest.targets["net"]
    time.sleep(0.1)
    assert status_field(sleeper.pid, "State").startswith("T (stopped)")
    assert status_field(sleeper.pid, "TracerPid") == "0"
    os.kill(sleeper.pid, signal.SIGCONT)
    assert sleeper.wait(timeout=10) == 0


# CPython's handlers cannot count: its C handler only sets a flag, so signals that
# arrive between two checks of the eval loop make one call.  A C handler counts.
SIGNALS_C = r"""
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
static volatile sig_atomic_t count;
static void on(int sig) { (void)sig; count++; }
int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGRTMIN, &sa, NULL);
    char line[64];
    struct utsname u;
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        uname(&u);
        printf("%d %s\n", (int)count, u.nodename);
        fflush(stdout);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def signal_counter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("sigcount")
    (d / "count.c").write_text(SIGNALS_C)
    subprocess.run([cc, "-O1", "-o", str(d / "count"), str(d / "count.c")], check=True)
    return d / "count"


def test_signals_arriving_during_moves_are_delivered_once(
    procs: Procs, signal_counter: Path
) -> None:
    """Real-time signals queue: each one sent must be handled exactly once, including
    the many that arrive while a thread runs injected calls (held back, then
    delivered when it is let go)."""
    import threading

    dest = procs.dest(*KINDS)
    prog = procs.start([str(signal_counter)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert readline(prog) == "ready"
    home = {k: ns(os.getpid(), k) for k in KINDS}
    home_sources: dict[str, str | int] = {k: f"/proc/self/ns/{k}" for k in KINDS}
    sent = 0
    stop = threading.Event()

    def pelt() -> None:
        nonlocal sent
        while not stop.is_set():
            try:
                os.kill(prog.pid, signal.SIGRTMIN)
            except OSError:
                continue  # EAGAIN: the queue is full for now; not sent
            sent += 1
            time.sleep(0.00005)

    sender = threading.Thread(target=pelt)
    sender.start()
    try:
        for i in range(60):
            if i % 2:
                dest.move(prog.pid)
            else:
                inject.move_into(prog.pid, home, sources=home_sources)
    finally:
        stop.set()
        sender.join()
    dest.move(prog.pid)
    deadline = time.monotonic() + 5
    while True:
        send(prog, "report")
        count, host = readline(prog).split()
        if int(count) >= sent or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (int(count), host) == (sent, "moved")


def test_mount_namespace_of_a_single_threaded_process(procs: Procs) -> None:
    dest = procs.dest("uts", "mnt")
    with tempfile.TemporaryDirectory(prefix="cfs-inject-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        marker = Path(tmp) / "mnt"
        marker.mkdir()
        subprocess.run(
            ["nsenter", "-t", str(dest.pid), "-m", "sh", "-c",
             f"mount -t tmpfs none {marker} && echo inside > {marker}/file"],
            check=True,
        )  # fmt: skip
        assert not (marker / "file").exists()
        bash = procs.start(["bash"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=work)
        send(bash, "echo started")
        assert readline(bash) == "started"
        wait_until(lambda: blocked(bash.pid), 5, "bash to block in read")

        dest.move(bash.pid)

        assert ns(bash.pid, "mnt") == dest.targets["mnt"]
        send(bash, f"cat {marker}/file; pwd; hostname")
        assert readline(bash) == "inside"
        assert readline(bash) == str(work)  # the current directory, looked up again
        assert readline(bash) == "moved"


def test_mount_namespace_refused_for_a_multithreaded_process(procs: Procs) -> None:
    dest = procs.dest("uts", "mnt")
    prog = procs.python(FOUR_THREADS)
    assert readline(prog) == "ready"
    before = snapshot(prog.pid, ("uts", "mnt"))
    with pytest.raises(OSError) as err:
        dest.move(prog.pid)
    assert err.value.errno == errno.EINVAL
    assert "single-threaded" in str(err.value)
    unchanged(prog.pid, before)


# -- refusals and rollback ----------------------------------------------------------


def test_spawn_kinds_are_refused(procs: Procs) -> None:
    sleeper = procs.start(["sleep", "60"])
    for kind in ("pid", "time", "user"):
        with pytest.raises(ValueError, match="spawn"):
            inject.move_into(sleeper.pid, {kind: 1}, sources={kind: f"/proc/self/ns/{kind}"})


def test_a_traced_process_is_busy_and_left_alone(procs: Procs) -> None:
    if shutil.which("strace") is None:
        pytest.skip("strace missing")
    dest = procs.dest(*KINDS)
    sleeper = procs.start(["sleep", "60"])
    procs.start(["strace", "-qq", "-o", "/dev/null", "-p", str(sleeper.pid)])
    wait_until(lambda: status_field(sleeper.pid, "TracerPid") != "0", 5, "strace to attach")
    before = {k: thread_inodes(sleeper.pid, k) for k in KINDS}
    with pytest.raises(OSError) as err:
        dest.move(sleeper.pid)
    assert err.value.errno == errno.EBUSY
    for kind, inodes in before.items():
        assert thread_inodes(sleeper.pid, kind) == inodes


SEIZER = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
if libc.ptrace(0x4206, int(sys.argv[1]), None, None) != 0:
    raise SystemExit(ctypes.get_errno())
print("seized", flush=True)
sys.stdin.readline()
"""


def test_a_process_seized_by_another_tracer_is_busy(procs: Procs) -> None:
    dest = procs.dest(*KINDS)
    sleeper = procs.start(["sleep", "60"])
    seizer = procs.start(
        [sys.executable, "-c", SEIZER, str(sleeper.pid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert readline(seizer) == "seized"
    with pytest.raises(OSError) as err:
        dest.move(sleeper.pid)
    assert err.value.errno == errno.EBUSY
    assert f"traced by process {seizer.pid}" in str(err.value)
    assert ns(sleeper.pid, "uts") != dest.targets["uts"]


def test_a_process_we_may_not_ptrace_is_refused(procs: Procs) -> None:
    """The kernel refuses PTRACE_SEIZE on a kernel thread, even to root: EPERM."""
    dest = procs.dest(*KINDS)
    if Path("/proc/2/comm").read_text().strip() != "kthreadd":
        pytest.skip("pid 2 is not kthreadd")
    with pytest.raises(OSError) as err:
        dest.move(2)
    assert err.value.errno == errno.EPERM
    assert "not allowed to ptrace" in str(err.value)


def test_a_process_without_cap_sys_admin_is_refused_untouched(procs: Procs) -> None:
    dest = procs.dest(*KINDS)
    nobody = procs.start(
        [sys.executable, "-c", "import os,time; os.setgid(65534); os.setuid(65534); time.sleep(60)"]
    )
    wait_until(lambda: status_field(nobody.pid, "Uid").split()[0] == "65534", 5, "setuid")
    before = snapshot(nobody.pid)
    with pytest.raises(OSError) as err:
        dest.move(nobody.pid)
    assert err.value.errno == errno.EPERM
    assert "CAP_SYS_ADMIN" in str(err.value)
    unchanged(nobody.pid, before)


def test_a_missing_source_fails_before_anything_moves(procs: Procs) -> None:
    dest = procs.dest(*KINDS)
    sleeper = procs.start(["sleep", "60"])
    before = snapshot(sleeper.pid)
    sources = dest.sources
    sources["net"] = "/proc/999999999/ns/net"
    with pytest.raises(OSError) as err:
        inject.move_into(sleeper.pid, dest.targets, sources=sources)
    assert err.value.errno == errno.ENOENT
    unchanged(sleeper.pid, before)


def test_a_source_in_another_namespace_than_expected_is_refused(procs: Procs) -> None:
    dest = procs.dest(*KINDS)
    sleeper = procs.start(["sleep", "60"])
    before = snapshot(sleeper.pid)
    targets = dest.targets
    targets["uts"] += 1
    with pytest.raises(OSError) as err:
        inject.move_into(sleeper.pid, targets, sources=dest.sources)
    assert err.value.errno == errno.ESRCH
    unchanged(sleeper.pid, before)


def test_no_such_process(procs: Procs) -> None:
    dest = procs.dest(*KINDS)
    gone = procs.start(["true"])
    gone.wait()
    with pytest.raises(ProcessLookupError):
        dest.move(gone.pid)


# A thread installs a seccomp filter on itself: ``setns`` (optionally only with
# the given flags) fails with EPERM; or a syscall kills the process.
SECCOMP = r"""
import ctypes, os, struct, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
nr, action, flag, where = (int(x, 0) for x in sys.argv[1:5])
def stmt(code, k): return struct.pack("<HBBI", code, 0, 0, k)
def jeq(k, jt, jf): return struct.pack("<HBBI", 0x15, jt, jf, k)
ALLOW = 0x7FFF0000
prog = stmt(0x20, 0) + jeq(nr, 0, 3)          # nr == ? else allow
prog += stmt(0x20, 24) + jeq(flag, 0, 1) if flag else stmt(0x20, 0) + jeq(nr, 0, 1)
prog += stmt(0x06, action) + stmt(0x06, ALLOW)
buf = ctypes.create_string_buffer(prog)
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(prog) // 8, ctypes.addressof(buf))
def install():
    assert libc.prctl(38, 1, 0, 0, 0) == 0                            # NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0, ctypes.get_errno()
ready = threading.Barrier(4 if where else 1)
done = threading.Event()
def worker(i):
    if i == where - 1:
        install()
    ready.wait()
    done.wait()
    os.write(1, f"{i} {os.uname().nodename}\n".encode())
threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)] if where else []
for t in threads:
    t.start()
if not where:
    install()
ready.wait()
print("ready", flush=True)
sys.stdin.readline()
done.set()
for t in threads:
    t.join()
print("main", os.uname().nodename, flush=True)
"""

EPERM_ACTION = 0x00050000 | errno.EPERM
KILL_PROCESS = 0x80000000
CLONE_NEWNET = 0x40000000


def seccomp_prog(
    procs: Procs, nr: int, action: int, flag: int, where: int
) -> subprocess.Popen[str]:
    prog = procs.start(
        [sys.executable, "-c", SECCOMP, str(nr), hex(action), hex(flag), str(where)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert readline(prog) == "ready"
    return prog


def finish(prog: subprocess.Popen[str], hostname: str) -> None:
    send(prog, "go")
    assert prog.stdout is not None
    lines = prog.stdout.read().split("\n")[:-1]
    assert lines and all(line.split()[1:] == [hostname] for line in lines), lines
    assert prog.wait(timeout=10) == 0


def test_rollback_when_a_later_kind_fails(procs: Procs) -> None:
    """uts and ipc are joined, then net fails (EPERM): both are undone."""
    dest = procs.dest(*KINDS)
    prog = seccomp_prog(procs, 308, EPERM_ACTION, CLONE_NEWNET, where=0)
    before = snapshot(prog.pid)
    with pytest.raises(OSError) as err:
        dest.move(prog.pid)
    assert err.value.errno == errno.EPERM
    assert "net namespace" in str(err.value)
    unchanged(prog.pid, before)
    finish(prog, os.uname().nodename)


def test_rollback_when_a_later_thread_fails(procs: Procs) -> None:
    """The main thread and the first two workers move; the third cannot: all go back."""
    dest = procs.dest(*KINDS)
    prog = seccomp_prog(procs, 308, EPERM_ACTION, 0, where=3)
    before = snapshot(prog.pid)
    assert len(before["uts"]) == 4
    with pytest.raises(OSError) as err:
        dest.move(prog.pid)
    assert err.value.errno == errno.EPERM
    unchanged(prog.pid, before)
    finish(prog, os.uname().nodename)
    # Sanity: without the filter the same program moves.
    ok = seccomp_prog(procs, 308, EPERM_ACTION, 0x1, where=3)  # only flag 1: never matches
    dest.move(ok.pid)
    finish(ok, "moved")


def test_on_failed_runs_while_the_process_is_still_held(procs: Procs) -> None:
    """The caller's undo (the daemon puts the cgroups back) runs before the threads
    go on; once only, and not at all for a move that went through."""
    dest = procs.dest(*KINDS)
    prog = seccomp_prog(procs, 308, EPERM_ACTION, 0, where=0)
    seen: list[str] = []

    def on_failed() -> None:
        seen.append(status_field(prog.pid, "TracerPid"))  # still ours: not let go yet

    with pytest.raises(OSError) as err:
        dest.move(prog.pid, on_failed=on_failed)  # type: ignore[arg-type]
    assert err.value.errno == errno.EPERM
    assert len(seen) == 1 and seen[0] != "0", seen
    assert status_field(prog.pid, "TracerPid") == "0"
    finish(prog, os.uname().nodename)
    ok = procs.start(["sleep", "60"])
    dest.move(ok.pid, on_failed=lambda: seen.append("called"))  # type: ignore[arg-type]
    assert len(seen) == 1


def test_a_seccomp_filter_that_would_kill_is_respected(procs: Procs) -> None:
    dest = procs.dest(*KINDS)
    prog = seccomp_prog(procs, 53, KILL_PROCESS, 0, where=0)  # socketpair kills
    before = snapshot(prog.pid)
    with pytest.raises(OSError) as err:
        dest.move(prog.pid)
    assert err.value.errno == errno.EPERM
    assert "seccomp" in str(err.value)
    unchanged(prog.pid, before)
    finish(prog, os.uname().nodename)


@contextlib.contextmanager
def frozen_cgroup() -> Iterator[Path]:
    """A v1 freezer cgroup below ours, thawed and removed at the end."""
    line = next(
        (
            line
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.split(":")[1] == "freezer"
        ),
        None,
    )
    root = Path("/sys/fs/cgroup/freezer")
    if line is None or not (root / "freezer.state").exists() and not root.is_dir():
        pytest.skip("no v1 freezer hierarchy")
    path = root / line.split(":", 2)[2].lstrip("/") / f"cfs-inject-{secrets.token_hex(4)}"
    path.mkdir()
    try:
        yield path
    finally:
        (path / "freezer.state").write_text("THAWED")
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        wait_until(lambda: not (path / "cgroup.procs").read_text().split(), 10, "empty cgroup")
        path.rmdir()


def test_a_thread_that_cannot_stop_times_out_and_is_released(procs: Procs) -> None:
    dest = procs.dest(*KINDS)
    with frozen_cgroup() as cg:
        start = time.monotonic()
        sleeper = procs.start(["sleep", "1"])
        (cg / "cgroup.procs").write_text(str(sleeper.pid))
        (cg / "freezer.state").write_text("FROZEN")
        wait_until(lambda: (cg / "freezer.state").read_text().strip() == "FROZEN", 5, "frozen")
        before = snapshot(sleeper.pid)
        with pytest.raises(OSError) as err:
            dest.move(sleeper.pid, timeout=0.3)
        assert err.value.errno == errno.EAGAIN
        assert "did not stop" in str(err.value)
        unchanged(sleeper.pid, before)  # no tracer left either
        (cg / "freezer.state").write_text("THAWED")
        assert sleeper.wait(timeout=10) == 0
        assert time.monotonic() - start < 3


def test_a_process_already_there_is_not_touched(procs: Procs) -> None:
    dest = procs.dest(*KINDS)
    sleeper = procs.start(["nsenter", "-t", str(dest.pid), "-u", "-i", "-n", "sleep", "60"])
    wait_until(lambda: ns(sleeper.pid, "net") == dest.targets["net"], 5, "nsenter")
    dest.move(sleeper.pid)  # nothing to do
    assert ns(sleeper.pid, "uts") == dest.targets["uts"]


# -- permission helper ------------------------------------------------------------


def test_ptrace_refusal(procs: Procs) -> None:
    as_nobody = [sys.executable, "-c",
                 "import os,time; os.setgid(65534); os.setuid(65534); time.sleep(60)"]  # fmt: skip
    a = procs.start(as_nobody)
    b = procs.start(as_nobody)
    root = procs.start(["sleep", "60"])
    for p in (a, b):
        wait_until(lambda p=p: status_field(p.pid, "Uid").split()[0] == "65534", 5, "setuid")  # type: ignore[misc]
    assert ptrace_rules.ptrace_refusal(os.getpid(), a.pid) is None  # root with CAP_SYS_PTRACE
    assert ptrace_rules.ptrace_refusal(a.pid, b.pid) is None  # same uid, dumpable
    reason = ptrace_rules.ptrace_refusal(a.pid, root.pid)
    assert reason is not None and "does not own" in reason
    assert ptrace_rules.ptrace_refusal(a.pid, a.pid) is None


# -- less common shapes of a process --------------------------------------------------

BUSY = r"""
import os, time
end = time.monotonic() + 1.0          # vDSO: no system call in the loop
n = 0
while time.monotonic() < end:
    n += 1
print(os.uname().nodename, flush=True)
"""


def test_a_process_busy_in_user_space(procs: Procs) -> None:
    """No thread sits after a ``syscall`` instruction: one is written and taken back."""
    dest = procs.dest(*KINDS)
    busy = procs.start([sys.executable, "-c", BUSY], stdout=subprocess.PIPE)
    time.sleep(0.3)
    pokes = []
    real = inject_move.Move.release

    def release(self: inject_move.Move) -> list[str]:
        pokes.append(self.calls.code_saved is not None)
        return real(self)

    inject_move.Move.release = release  # type: ignore[method-assign]
    try:
        dest.move(busy.pid)
    finally:
        inject_move.Move.release = real  # type: ignore[method-assign]
    assert pokes == [True]
    assert readline(busy) == "moved"
    assert busy.wait(timeout=10) == 0


OWN_FD_TABLE = r"""
import ctypes, os, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
go = threading.Event()
ready = threading.Barrier(2)
def worker():
    assert libc.unshare(0x400) == 0   # CLONE_FILES: a file table of its own
    ready.wait()
    go.wait()
    fds = sorted(os.listdir("/proc/thread-self/fd"))
    os.write(1, f"worker {os.uname().nodename} {fds}\n".encode())
t = threading.Thread(target=worker)
t.start()
ready.wait()
print("ready", flush=True)
sys.stdin.readline()
go.set()
t.join()
os.write(1, f"main {os.uname().nodename}\n".encode())
"""


def test_a_thread_with_its_own_file_table_gets_its_own_transfer(procs: Procs) -> None:
    dest = procs.dest(*KINDS)
    prog = procs.python(OWN_FD_TABLE)
    assert readline(prog) == "ready"
    fds_before = sorted(os.listdir(f"/proc/{prog.pid}/fd"))
    dest.move(prog.pid)
    assert set(thread_inodes(prog.pid, "net").values()) == {dest.targets["net"]}
    assert sorted(os.listdir(f"/proc/{prog.pid}/fd")) == fds_before  # nothing left behind
    send(prog, "go")
    assert prog.stdout is not None
    out = prog.stdout.read().split("\n")
    assert out[0].startswith("worker moved ['0', '1', '2'")
    assert out[1] == "main moved"


ZOMBIE_LEADER = r"""
import ctypes, os, sys, threading, time
def worker():
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.01)
    os.write(1, f"worker {os.uname().nodename}\n".encode())
    os._exit(0)
threading.Thread(target=worker).start()
print("ready", flush=True)
ctypes.CDLL(None).pthread_exit(None)  # the main thread ends: the leader stays a zombie
"""


def test_a_process_whose_main_thread_exited(procs: Procs) -> None:
    dest = procs.dest(*KINDS)
    with tempfile.TemporaryDirectory() as tmp:
        flag = Path(tmp) / "go"
        prog = procs.start([sys.executable, "-c", ZOMBIE_LEADER, str(flag)], stdout=subprocess.PIPE)
        assert readline(prog) == "ready"
        wait_until(lambda: status_field(prog.pid, "State").startswith("Z"), 5, "zombie leader")
        dest.move(prog.pid)
        worker = next(t for t in thread_inodes(prog.pid, "uts") if t != prog.pid)
        assert ns(prog.pid, "uts", worker) == dest.targets["uts"]
        flag.touch()
        assert readline(prog) == "worker moved"
        assert prog.wait(timeout=10) == 0


def test_no_room_below_the_stack_maps_a_page(procs: Procs, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = procs.dest(*KINDS)
    sleeper = procs.start(["sleep", "1"])
    time.sleep(0.1)
    maps_before = Path(f"/proc/{sleeper.pid}/maps").read_text()
    monkeypatch.setattr(ptrace_call, "_RED_ZONE", 1 << 30)  # far below any stack: unmapped
    dest.move(sleeper.pid)
    assert ns(sleeper.pid, "uts") == dest.targets["uts"]
    assert Path(f"/proc/{sleeper.pid}/maps").read_text() == maps_before  # unmapped again
    assert sleeper.wait(timeout=10) == 0


def test_a_process_in_its_own_mount_and_pid_namespace(procs: Procs) -> None:
    """Its /proc is another one: nothing is looked up by path on its side."""
    dest = procs.dest(*KINDS)
    outer = procs.start(["unshare", "--mount", "--pid", "--fork", "--mount-proc", "sleep", "60"])

    def inner() -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(Path(f"/proc/{outer.pid}/task/{outer.pid}/children").read_text().split()[0])
        return None

    wait_until(lambda: inner() is not None and ns(inner() or 0, "mnt") != ns(os.getpid(), "mnt"),
               5, "the inner sleep")  # fmt: skip
    pid = inner()
    assert pid is not None
    wait_until(lambda: Path(f"/proc/{pid}/comm").read_text().strip() == "sleep", 5, "exec")
    dest.move(pid)
    for kind in KINDS:
        assert ns(pid, kind) == dest.targets[kind]
    assert status_field(pid, "NSpid").split()[1] == "1"


def test_mount_namespace_rollback_restores_root_and_cwd(procs: Procs) -> None:
    """mnt is joined first; net then fails: the process is back in its mount namespace,
    with its current directory."""
    dest = procs.dest("uts", "mnt", "net")
    with tempfile.TemporaryDirectory(prefix="cfs-inject-") as tmp:
        prog = procs.start(
            [sys.executable, "-c", SECCOMP, "308", hex(EPERM_ACTION), hex(CLONE_NEWNET), "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=tmp,
        )
        assert readline(prog) == "ready"
        before = snapshot(prog.pid, ("uts", "mnt", "net"))
        with pytest.raises(OSError) as err:
            dest.move(prog.pid)
        assert err.value.errno == errno.EPERM
        unchanged(prog.pid, before)
        assert os.readlink(f"/proc/{prog.pid}/cwd") == tmp
        assert os.stat(f"/proc/{prog.pid}/root").st_ino == os.stat("/").st_ino
        finish(prog, os.uname().nodename)


THREE_SLEEPERS = r"""
import threading, time
for _ in range(3):
    threading.Thread(target=time.sleep, args=(60,)).start()
print("ready", flush=True)
time.sleep(60)
"""


def test_a_process_killed_during_the_move(procs: Procs) -> None:
    """The move fails with ESRCH (or completes), quickly, and the parent still gets
    the exit status: the tracer must not reap what is not its to reap."""
    import random
    import threading

    dest = procs.dest(*KINDS)
    for _ in range(25):
        prog = procs.python(THREE_SLEEPERS)
        assert readline(prog) == "ready"
        killer = threading.Timer(random.uniform(0, 0.003), os.kill, (prog.pid, signal.SIGKILL))
        killer.start()
        start = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            dest.move(prog.pid)
        assert time.monotonic() - start < 1.0
        killer.join()
        assert prog.wait(timeout=5) == -signal.SIGKILL
