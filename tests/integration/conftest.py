"""A mounted containerfs per test, started the way a user would start it.

Each test gets its own cgroup subtree (``tests/cgtree.py``), mountpoint and
state dir; the daemon runs in a subprocess placed in that subtree, exactly as
``containerfs mount`` runs under a delegated cgroup. Teardown ends the
processes the test started, stops the daemon with SIGTERM (which must
unmount), then removes the subtree, even when the test failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cgtree import OwnSubtree, close_pipes, own_subtree

BIN = Path(sys.executable).parent
CONTAINERFS = [sys.executable, "-m", "containerfs"]


PIN = BIN / "containerfs-pin"

#: Multiplies every timeout of these helpers (``wait_for`` included): a slow
#: machine, such as the emulated guest of ``tools/v2vm``, sets it.
TIME_SCALE = float(os.environ.get("CFS_TEST_TIME_SCALE") or 1)
KEEP_LOGS = os.environ.get("CFS_TEST_KEEP_LOGS")  # a directory: each daemon's whole log goes there


def holder_skip_reason() -> str | None:
    """Why tests that start namespace holders themselves cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    if not PIN.exists():
        return "containerfs-pin not built (make .venv/bin/containerfs-pin)"
    return None


def live_pins(mountpoint: str) -> set[int]:
    """Living (not zombie) holders started with this MOUNTPOINT argument.

    Other sessions may run holders of their own meanwhile: each test passes a
    mountpoint of its own, so only its holders count.
    """
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/exe") != str(PIN):
                continue
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if len(argv) > 5 and argv[5] == os.fsencode(mountpoint) and state != b"Z":
            found.add(int(name))
    return found


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if not (BIN / "containerfs-pin").exists():
        return "containerfs-pin not built (run `make test`)"
    if shutil.which("fusermount3") is None:
        return "fusermount3 missing (Debian package fuse3)"
    return None


@dataclass
class Mounted:
    mnt: Path
    state: Path
    subtree: OwnSubtree
    daemon: subprocess.Popen[bytes]
    log: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: The ``containerfs`` command this mount was started with (exec, spawn, start use it).
    command: Sequence[str] = tuple(CONTAINERFS)

    def run(
        self, argv: list[str], what: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the mount's directory; with ``check``, a failure names
        ``what`` and shows the daemon's log."""
        result = subprocess.run(
            argv, cwd=self.mnt, capture_output=True, text=True, timeout=timeout * TIME_SCALE
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{what} exited {result.returncode}: {result.stderr.strip()}\n"
                f"daemon log tail:\n{self.log_tail()}"
            )
        return result

    def sh(
        self, script: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command as the administrator would, in the mount's directory."""
        return self.run(["bash", "-c", script], repr(script), check, timeout)

    def read(self, rel: str) -> str:
        return (self.mnt / rel).read_text()

    def exec(
        self, container: str, *argv: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            [*self.command, "exec", str(self.mnt / container), "--", *argv],
            f"exec {container} {argv}",
            check,
        )

    def spawn(self, container: str, *argv: str) -> subprocess.Popen[bytes]:
        """Start a long-running process in a container (root: "."); ended at teardown."""
        proc = subprocess.Popen(
            [*self.command, "exec", str(self.mnt / container), "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.started.append(proc)
        return proc

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the daemon (SIGTERM: a clean stop; SIGKILL: a crash); its exit status."""
        self.daemon.send_signal(sig)
        try:
            return self.daemon.wait(timeout=30 * TIME_SCALE)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the daemon did not stop on signal {sig}; where it was:\n{self.dump_stacks()}"
            ) from None

    def dump_stacks(self) -> str:
        """End a daemon that hangs with SIGABRT: under ``python -X dev`` (``make test``)
        faulthandler then prints every thread's stack to its log."""
        self.daemon.send_signal(signal.SIGABRT)
        try:
            self.daemon.wait(timeout=10 * TIME_SCALE)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait(timeout=10)
        return self.log_tail(120)

    def start(self, *extra: str) -> None:
        """Start a daemon again on the same mountpoint, state dir and cgroups."""
        self.daemon = start_daemon(
            self.subtree, self.mnt, self.state, self.log, *extra, command=self.command
        )
        wait_for(
            lambda: _mounted(self.mnt) or self.daemon.poll() is not None, 20, "the mount again"
        )
        if not _mounted(self.mnt):
            raise AssertionError(f"daemon exited {self.daemon.poll()}:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-n:])
        except OSError:
            return "(no log)"


def on_terminal(argv: list[str], typed: bytes, timeout: float = 20) -> tuple[str, int]:
    """Run ``argv`` on a new pseudo-terminal as a user typing ``typed`` at it would:
    what the terminal showed, and the exit status."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a user typing at a terminal
        os.execv(argv[0], argv)
    try:
        os.write(fd, typed)
        out = b""
        deadline = time.monotonic() + timeout * TIME_SCALE
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the terminal's last process closed it
                    break
                if not chunk:
                    break
                out += chunk
        else:
            os.kill(pid, signal.SIGKILL)  # never hang the suite
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(status)


#: A Python program that forks children (each waits) until the kernel refuses,
#: then prints the highest pid it got and the errno's name, and ends them all:
#: how ``pid.max`` is seen from inside.
FORK_UNTIL_REFUSED = """
import errno, os, signal
kids = []
try:
    while len(kids) < 400:
        pid = os.fork()
        if pid == 0:
            signal.pause()
            os._exit(0)
        kids.append(pid)
except OSError as e:
    print(max(kids), errno.errorcode[e.errno])
for k in kids:
    os.kill(k, 9)
    os.waitpid(k, 0)
"""


#: A Python program that listens with a backlog of 1000 and prints the backlog the
#: kernel gave the socket (``ss`` shows it as Send-Q): ``net.core.somaxconn`` caps it.
LISTEN_BACKLOG = """
import socket, subprocess
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1000)
port = s.getsockname()[1]
out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True)
print(out.stdout.split()[2])
"""


def _mounted(mnt: Path) -> bool:
    """A live mount: ``os.path.ismount`` is also true for a dead one (ENOTCONN)."""
    try:
        os.statvfs(mnt)  # answered by the daemon itself (stat may come from the cache)
        return os.path.ismount(mnt)
    except OSError:
        return False


def wait_for(predicate: object, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout * TIME_SCALE
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def netns_prefix(state: Path) -> str:
    """The ``ip netns`` prefix of the daemon of ``state``: one of its own, so that
    daemons of tests and of other sessions running at once never share one, and
    every name it made can be removed after it (``remove_netns_names``)."""
    return "cfs-t" + hashlib.sha256(str(state).encode()).hexdigest()[:12]


def remove_netns_names(prefix: str) -> list[str]:
    """Remove every ``ip netns`` name of ``prefix`` (the containers stay after a
    SIGTERM, and their names with them); the names there were."""
    from containerfs.kernel import netns

    found = [n for n in netns.names() if n.startswith(prefix + ":")]
    for name in found:
        with contextlib.suppress(OSError):
            netns.unbind(name, None)
    return found


def start_daemon(
    subtree: OwnSubtree,
    mnt: Path,
    state: Path,
    log: Path,
    *extra: str,
    command: Sequence[str] = CONTAINERFS,
) -> subprocess.Popen[bytes]:
    if not any(a.startswith("--netns-prefix") for a in extra):
        extra = (*extra, "--netns-prefix", netns_prefix(state))
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*command, "mount", str(mnt), "--state-dir", str(state), *extra],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=subtree.join,  # start below our own cgroups
        )


def stop_daemon(m: Mounted) -> None:
    for proc in m.started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10 * TIME_SCALE)
        close_pipes(proc)
    if m.daemon.poll() is None:
        m.daemon.send_signal(signal.SIGTERM)
        try:
            m.daemon.wait(timeout=20 * TIME_SCALE)
        except subprocess.TimeoutExpired:
            m.daemon.kill()
            m.daemon.wait(timeout=10)
    if _in_mounts(m.mnt):  # also a dead mount, which os.path.ismount cannot see
        subprocess.run(["fusermount3", "-u", "-z", str(m.mnt)], check=False)
    if _in_mounts(m.mnt):
        subprocess.run(["umount", "-l", str(m.mnt)], check=False)


def _in_mounts(mnt: Path) -> bool:
    return any(
        line.split()[1] == str(mnt) for line in Path("/proc/self/mounts").read_text().splitlines()
    )


def _check_warnings(log: Path) -> None:
    """Under ``python -X dev`` (``PYTHONDEVMODE=1``, as CI runs the suite) the daemon
    prints ResourceWarnings and errors in finalizers, which never fail it: they
    fail the test instead."""
    text = log.read_text(errors="replace") if log.exists() else ""
    found = [
        line
        for line in text.splitlines()
        if "ResourceWarning" in line or "Exception ignored" in line
    ]
    if found:
        raise AssertionError("the daemon warned:\n" + "\n".join(found[:10]))


@pytest.fixture
def cfs(request: pytest.FixtureRequest) -> Iterator[Mounted]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    extra: tuple[str, ...] = getattr(request, "param", ())
    with mounted(request.node.name, *extra) as m:
        yield m


@contextlib.contextmanager
def mounted(
    name: str,
    *extra: str,
    command: Sequence[str] = CONTAINERFS,
    subtree_of: Callable[[str], AbstractContextManager[OwnSubtree]] = own_subtree,
) -> Iterator[Mounted]:
    """What the ``cfs`` fixture gives, for a test named ``name``, started with
    ``command`` (another install's ``containerfs``, say) and its ``extra`` arguments,
    in the cgroups ``subtree_of`` makes (``test_oci``'s: one path in every hierarchy)."""
    tmp = Path(tempfile.mkdtemp(prefix="cfs-test-"))
    mnt, state, log = tmp / "mnt", tmp / "state", tmp / "daemon.log"
    mnt.mkdir()
    try:
        with subtree_of(name[:20]) as subtree:
            daemon = start_daemon(subtree, mnt, state, log, *extra, command=command)
            m = Mounted(mnt, state, subtree, daemon, log, command=tuple(command))
            try:
                wait_for(lambda: os.path.ismount(mnt) or daemon.poll() is not None, 20, "the mount")
                if not os.path.ismount(mnt):
                    raise AssertionError(f"daemon exited {daemon.poll()}:\n{m.log_tail()}")
                yield m
            finally:
                stop_daemon(m)
                remove_netns_names(netns_prefix(state))
                print(f"daemon log tail:\n{m.log_tail(60)}")  # shown by pytest on failure only
                if KEEP_LOGS:  # the whole log, to read after the run
                    safe = name.replace("/", "_")  # parameters may hold paths
                    shutil.copy(log, Path(KEEP_LOGS) / f"{tmp.name}-{safe}.log")
                _check_warnings(log)
    finally:
        if not _in_mounts(mnt):
            shutil.rmtree(tmp, ignore_errors=True)
