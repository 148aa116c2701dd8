"""A private cgroup subtree for one integration test, removed again whatever happens.

Integration tests must never touch a cgroup they did not make, yet they need
real cgroups in every hierarchy to start the daemon (or plain processes) in.
:func:`own_subtree` makes one fresh cgroup directly below the test process's
own cgroup in each mounted hierarchy and tears all of it down on exit: it kills
only processes found inside those directories (the test started them all),
waits for them to leave, then removes every directory bottom-up.

This helper parses ``/proc`` on its own rather than using
``containerfs.kernel.cgroups``, so that a bug in the code under test cannot
also break the fixture that checks it.

Delegated runs (``CFS_TEST_CGROUP_DELEGATED=1``): the test runner was started
in a cgroup2 cgroup delegated to it, as a systemd service with
``Delegate=yes`` is: controllers are offered (``cgroup.controllers``) but not
enabled for children. Test subtrees would get no controllers at all, so the
runner does what a delegated manager must: it moves the processes of that
cgroup (its own, by the declaration) into the leaf ``cfs-runner`` (the
no-internal-process rule) and enables every offered controller for the
children, making each test's subtree a delegated cgroup in turn. Without the
variable no cgroup but the tests' own is ever written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OwnSubtree", "cgroup_dirs", "cgroups_available", "own_subtree"]

TEARDOWN_TIMEOUT = 10.0
DELEGATED_ENV = "CFS_TEST_CGROUP_DELEGATED"
RUNNER_LEAF = "cfs-runner"


@dataclass(frozen=True)
class _Mounted:
    mount: Path
    version: int
    controllers: frozenset[str]
    cgroup: str  # the test process's cgroup path in that hierarchy

    @property
    def here(self) -> Path:
        return self.mount.joinpath(*[p for p in self.cgroup.split("/") if p])


def _mounts(proc: Path) -> list[tuple[str, Path, str, frozenset[str]]]:
    """(root, mount point, fstype, super options) of every cgroup mount."""
    out = []
    for line in (proc / "self" / "mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-", 6)
        fstype = fields[sep + 1]
        if fstype in ("cgroup", "cgroup2"):
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            out.append((fields[3], Path(point), fstype, frozenset(fields[sep + 3].split(","))))
    return out


def cgroup_dirs(proc: Path = Path("/proc")) -> list[_Mounted]:
    """The current process's cgroup in every mounted controller hierarchy and cgroup2.

    Named v1 hierarchies (``name=systemd``) are skipped: they carry no
    controllers and belong to the init system. Only mounts whose root is ``/``
    are used, which is all a test runner on the host needs.
    """
    mounts = [m for m in _mounts(proc) if m[0] == "/"]
    found: list[_Mounted] = []
    for line in (proc / "self" / "cgroup").read_text().splitlines():
        hid, names, path = line.split(":", 2)
        ctrls = frozenset(n for n in names.split(",") if n and not n.startswith("name="))
        if hid == "0":
            if _delegated() and path.rstrip("/").endswith(f"/{RUNNER_LEAF}"):
                path = path.rstrip("/")[: -len(RUNNER_LEAF) - 1] or "/"
            point = next((m[1] for m in mounts if m[2] == "cgroup2"), None)
            if point is not None:
                found.append(_Mounted(point, 2, frozenset(), path))
        elif ctrls:
            point = next((m[1] for m in mounts if m[2] == "cgroup" and ctrls <= m[3]), None)
            if point is not None:
                found.append(_Mounted(point, 1, ctrls, path))
    return found


def _delegated() -> bool:
    return os.environ.get(DELEGATED_ENV, "") not in ("", "0")


def _delegate(m: _Mounted) -> None:
    """Make `m` (a delegated cgroup2 cgroup) hand its controllers to test subtrees.

    Idempotent: the runner's processes go to the leaf ``RUNNER_LEAF`` once,
    controllers already enabled are left alone.
    """
    here = m.here
    offered = (here / "cgroup.controllers").read_text().split()
    enabled = set((here / "cgroup.subtree_control").read_text().split())
    todo = [c for c in offered if c not in enabled]
    if not todo or here == m.mount:  # nothing to do; the root cgroup has no such rule
        return
    leaf = here / RUNNER_LEAF
    leaf.mkdir(exist_ok=True)
    for _ in range(100):  # processes forked meanwhile land in `here`: go again
        pids = _members(here)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                (leaf / "cgroup.procs").write_text(str(pid))
    for c in todo:
        (here / "cgroup.subtree_control").write_text(f"+{c}")


def cgroups_available() -> str | None:
    """None when integration tests can run here, else why not (for skip reasons)."""
    if os.geteuid() != 0:
        return "needs root"
    try:
        dirs = cgroup_dirs()
    except OSError as e:
        return f"cannot read /proc: {e}"
    if not dirs:
        return "no cgroup filesystem mounted"
    return None


@dataclass
class OwnSubtree:
    """One test's cgroups: ``dirs[i]`` is its cgroup in hierarchy ``i``."""

    name: str
    dirs: list[Path]
    procs_files: list[Path]
    versions: list[int]
    controllers: list[frozenset[str]]
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def dir_for(self, controller: str) -> Path | None:
        """This subtree's directory in the v1 hierarchy carrying `controller`, if any."""
        for d, ctrls in zip(self.dirs, self.controllers, strict=True):
            if controller in ctrls:
                return d
        return None

    @property
    def v2_dir(self) -> Path | None:
        for d, v in zip(self.dirs, self.versions, strict=True):
            if v == 2:
                return d
        return None

    def join(self) -> None:
        """Move the calling process into every cgroup of the subtree.

        Meant for ``preexec_fn``: the child joins before it execs, so the
        program starts already inside (``pid 0`` would do too; the explicit
        pid keeps the intent readable).
        """
        pid = str(os.getpid()).encode()
        for f in self.procs_files:
            f = _v2_leaf(f)
            fd = os.open(f, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def spawn(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start `argv` inside the subtree; it is reaped (and if needed killed) on exit."""
        user_preexec: Callable[[], None] | None = kwargs.pop("preexec_fn", None)

        def preexec() -> None:
            self.join()
            if user_preexec is not None:
                user_preexec()

        proc: subprocess.Popen[bytes] = subprocess.Popen(argv, preexec_fn=preexec, **kwargs)
        self.started.append(proc)
        return proc


def _v2_leaf(procs_file: Path) -> Path:
    """Where a process joining this cgroup must go: ``.tasks`` once it hands
    controllers to children (cgroup2's no-internal-process rule).

    A daemon started in the subtree enables controllers in it for its
    containers and lives in the leaf ``.tasks`` itself (``CgroupBackend.setup``);
    processes started there later (a restarted daemon, a test's sleeper) belong
    beside it, as with systemd's ``DelegateSubgroup=``. Even a threaded
    controller such as ``pids`` alone matters: a process beside it makes the
    cgroup a thread root and every domain child refuse tasks (EOPNOTSUPP).
    Pure reads, and a mkdir inside the test's own subtree; v1 never has the file.
    """
    d = procs_file.parent
    try:
        enabled = (d / "cgroup.subtree_control").read_text().split()
    except FileNotFoundError:
        return procs_file
    if not enabled:
        return procs_file
    leaf = d / ".tasks"
    with contextlib.suppress(FileExistsError):
        leaf.mkdir()
    return leaf / "cgroup.procs"


def _all_dirs(top: Path) -> list[Path]:
    """`top` and every cgroup directory below it, deepest first."""
    # With a stack: Python 3.11's os.walk recurses, and a test may nest containers
    # deeper than the recursion limit (tests/integration/test_depth.py).
    out: list[Path] = []
    stack = [top]
    while stack:
        d = stack.pop()
        out.append(d)
        with contextlib.suppress(OSError):
            stack.extend(Path(e.path) for e in os.scandir(d) if e.is_dir(follow_symlinks=False))
    out.reverse()  # every directory after all of those below it
    return out


def _members(d: Path) -> list[int]:
    try:
        return [int(x) for x in (d / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def _kill_inside(dirs: list[Path]) -> None:
    """SIGKILL each process inside `dirs`, re-checking membership after pinning it.

    A pidfd is opened first and membership checked afterwards, so a pid that
    was recycled in between can never be signalled unless the new holder is
    itself inside our subtree.
    """
    me = os.getpid()
    for d in dirs:
        for pid in _members(d):
            if pid == me:
                continue  # the test runner joined its own subtree: a bug, reported by timeout
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                if pid in _members(d):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            finally:
                os.close(pidfd)


def _thaw(dirs: list[Path]) -> None:
    """Thaw frozen cgroups: a task frozen by the v1 freezer ignores even SIGKILL."""
    for d in dirs:
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            f = d / name
            if f.exists():
                with contextlib.suppress(OSError):
                    f.write_text(value)


def close_pipes(proc: subprocess.Popen[Any]) -> None:
    """Close a finished process's pipes (``python -X dev`` reports them otherwise)."""
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _teardown(made: list[Path], started: list[subprocess.Popen[bytes]]) -> None:
    """Kill what is inside, wait for it to leave, remove every directory; report leaks.

    Removal is attempted even when processes outlast the deadline, so a stuck
    test leaves as little behind as possible, and the error names what is left.
    """
    deadline = time.monotonic() + TEARDOWN_TIMEOUT
    errors: list[str] = []

    def tree() -> list[Path]:
        return [d for top in made if top.exists() for d in _all_dirs(top)]

    while any(_members(d) for d in tree()):
        if time.monotonic() > deadline:
            errors.append(f"processes still inside after {TEARDOWN_TIMEOUT}s")
            break
        _thaw(tree())
        _kill_inside(tree())
        time.sleep(0.01)
    for p in started:
        if p.poll() is None:
            p.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        close_pipes(p)
    for d in tree():  # deepest first within each top directory
        while True:
            try:
                d.rmdir()
                break
            except OSError as e:
                # A cgroup can stay busy for a moment after its last task left;
                # anything lasting past the deadline is a leak.
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    errors.append(f"{d}: {e}")
                    break
                time.sleep(0.01)
    if errors:
        raise RuntimeError(f"test cgroups {[str(m) for m in made]} not cleaned: {errors}")


@contextlib.contextmanager
def own_subtree(tag: str) -> Iterator[OwnSubtree]:
    """A fresh ``cfs-test-<tag>-<random>`` cgroup below ours in every hierarchy.

    New v1 cpusets get their parent's CPUs and memory nodes, or no task could
    join them. Everything below and including these cgroups is removed on
    exit, after killing whatever the test left running inside.
    """
    # Test names carry brackets, dots and slashes; keep the name readable and safe.
    tag = re.sub(r"[^A-Za-z0-9_-]+", "-", tag).strip("-")[:40] or "x"
    name = f"cfs-test-{tag}-{secrets.token_hex(4)}"
    made: list[Path] = []
    tree = OwnSubtree(name, [], [], [], [])
    try:
        for m in cgroup_dirs():
            if m.version == 2 and _delegated():
                _delegate(m)
            d = m.here / name
            d.mkdir()
            made.append(d)
            if "cpuset" in m.controllers:
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (d / f).write_text((m.here / f).read_text())
            tree.dirs.append(d)
            tree.procs_files.append(d / "cgroup.procs")
            tree.versions.append(m.version)
            tree.controllers.append(m.controllers)
        yield tree
    finally:
        _teardown(made, tree.started)
