"""CgroupBackend against the real kernel, inside a private cgroup subtree per test.

Each test builds its backend from a process started inside its own subtree
(``own_subtree``), so the base is a cgroup the test made: nothing outside it is
written and everything is removed afterwards, processes included. The checks
look at what the kernel reports (``/proc/PID/cgroup``, the v1 files, a fork
refused by ``pids.max``) rather than at the backend's own view.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from containerfs.kernel import cgfs
from containerfs.kernel.cgroups import CgroupBackend, Hierarchy, kind_of
from tests.cgtree import OwnSubtree, cgroups_available, own_subtree

_why_not = cgroups_available()
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(_why_not is not None, reason=_why_not or ""),
]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tree(request: pytest.FixtureRequest) -> Iterator[OwnSubtree]:
    with own_subtree(request.node.name.removeprefix("test_")[:24]) as t:
        yield t


def backend_in(tree: OwnSubtree) -> CgroupBackend:
    """Discover as a daemon started in the subtree would, via a short-lived process there."""
    anchor = tree.spawn(["sleep", "600"])
    try:
        b = CgroupBackend.discover(pid=str(anchor.pid))
    finally:
        anchor.kill()
        anchor.wait()
    assert sorted(h.dir() for h in b.hierarchies) == sorted(tree.dirs)
    return b


def sleeper(tree: OwnSubtree) -> subprocess.Popen[bytes]:
    return tree.spawn(["sleep", "600"])


def path_in(pid: int, h: Hierarchy) -> str:
    """Where `pid` is in hierarchy `h`, from ``/proc/PID/cgroup``."""
    for key, path in cgroup_of(pid).items():
        if (h.version == 2 and key == "") or set(key.split(",")) == h.controllers:
            return path
    raise AssertionError(f"{h} not in /proc/{pid}/cgroup")


def cgroup_of(pid: int) -> dict[str, str]:
    """``/proc/PID/cgroup`` as {controllers field: path}; cgroup2 is under ""."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        out[ctrls] = path
    return out


def in_v1(tree: OwnSubtree, b: CgroupBackend, kind: str) -> Hierarchy | None:
    """The v1 hierarchy carrying `kind` and usable here, if any."""
    if b.kinds().get(kind) is not None:
        return None
    return next((h for h in b.hierarchies if h.version == 1 and kind in h.kinds), None)


def need(b: CgroupBackend, *kinds: str) -> None:
    missing = {k: r for k, r in b.kinds().items() if k in kinds and r is not None}
    if missing:
        pytest.skip(f"controller kinds unavailable here: {missing}")


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# ---------------------------------------------------------------------------


def test_discover_and_setup_from_inside(tree: OwnSubtree) -> None:
    """A daemon started in the subtree sees it as its base and moves itself into .tasks."""
    script = textwrap.dedent(
        """
        import json
        from containerfs.kernel.cgroups import CgroupBackend
        b = CgroupBackend.discover()
        kinds = b.kinds()
        b.setup()
        b.setup()
        again = CgroupBackend.discover()
        print(json.dumps({
            "bases": sorted(str(h.dir()) for h in b.hierarchies),
            "again": sorted(str(h.dir()) for h in again.hierarchies),
            "kinds": kinds,
            "v2mount": str(b.v2.mount) if b.v2 else None,
            "cgroup": open("/proc/self/cgroup").read(),
        }))
        """
    )
    child = tree.spawn([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=REPO)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0
    report = json.loads(out)
    assert report["bases"] == sorted(str(d) for d in tree.dirs)
    assert report["again"] == report["bases"]  # rediscovery after setup finds the same base
    kinds = report["kinds"]
    for ctrls in tree.controllers:
        for c in ctrls:
            assert kinds[kind_of(c)] is None, c
    lines = {}
    for line in report["cgroup"].splitlines():
        _, ctrls, path = line.split(":", 2)
        lines[frozenset(c for c in ctrls.split(",") if c)] = path
    if tree.v2_dir is not None:
        assert lines[frozenset()].endswith(f"/{tree.name}/.tasks")
        assert (tree.v2_dir / ".pins").is_dir()
        offered = set((Path(report["v2mount"]) / "cgroup.controllers").read_text().split())
        delegated = set((tree.v2_dir / "cgroup.controllers").read_text().split())
        for c in offered - delegated:
            assert kinds[c] == "not-delegated"
    for ctrls in tree.controllers:
        if ctrls:  # v1: the daemon stays in the base
            assert lines[ctrls].endswith(f"/{tree.name}")


def test_container_lifecycle(tree: OwnSubtree) -> None:
    b = backend_in(tree)
    usable = frozenset(k for k, r in b.kinds().items() if r is None)
    owned = usable & {"memory", "pids", "cpu", "cpuset"}
    b.create(("a",), owned)
    b.create(("a",), owned)  # again: harmless
    for h in b.hierarchies:
        assert h.dir(("a",)).is_dir() == (h.version == 2 or bool(h.kinds & owned))
    if b.v2 is not None:
        assert b.v2.dir(("a", ".tasks")).is_dir()
    cpuset = next((h for h in b.v1 if "cpuset" in h.controllers and "cpuset" in owned), None)
    if cpuset is not None:
        for f in ("cpuset.cpus", "cpuset.mems"):
            assert (cpuset.dir(("a",)) / f).read_text() == (cpuset.dir() / f).read_text()

    proc = sleeper(tree)
    dirs = b.placement(("a",), lambda kind: ("a",) if kind in owned else ())
    b.move(proc.pid, dirs)
    for h in b.hierarchies:
        if h.version == 2:
            want = f"/{tree.name}/a/.tasks"
        else:
            want = f"/{tree.name}/a" if h.kinds & owned else f"/{tree.name}"
        assert path_in(proc.pid, h).endswith(want), h
    if b.v2 is not None:
        assert b.procs(("a",)) == [proc.pid]
        assert b.populated(("a",))
        with pytest.raises(OSError) as e:
            b.remove(("a",))
        assert e.value.errno == errno.EBUSY
        assert all(h.dir(("a",)).is_dir() for h in b.hierarchies if h.version == 2)

    proc.kill()
    proc.wait()
    if b.v2 is not None:
        wait_until(lambda: not b.populated(("a",)))
        assert b.procs(("a",)) == []
    b.remove(("a",))
    assert not any(h.dir(("a",)).exists() for h in b.hierarchies)


@pytest.mark.parametrize("kill_file", [True, False], ids=["cgroup.kill", "signals"])
def test_kill_ends_every_process_below(tree: OwnSubtree, kill_file: bool) -> None:
    b = backend_in(tree)
    if b.v2 is None:
        pytest.skip("no cgroup2 hierarchy here")
    if kill_file and not (b.v2.dir() / "cgroup.kill").exists():
        pytest.skip("no cgroup.kill (Linux < 5.14)")
    b.create(("a",), frozenset())
    b.create(("a", "b"), frozenset())
    procs = [sleeper(tree) for _ in range(3)]
    # One forks all the time: the kill must catch its children too.
    forker = tree.spawn(["sh", "-c", "while :; do sleep 60 & sleep 0.01; done"])
    outside = sleeper(tree)
    for p, where in zip([*procs, forker], [("a",), ("a", "b"), ("a", "b"), ("a",)], strict=True):
        b.move(p.pid, b.placement(where, lambda kind: ()))
    time.sleep(0.1)
    assert b.kill(("a",), kill_file=kill_file) >= 4
    assert b.procs(("a",)) == b.procs(("a", "b")) == []
    for p in [*procs, forker]:
        assert p.wait(timeout=5) == -9
    assert outside.poll() is None  # not inside: untouched
    with pytest.raises(ValueError):
        b.kill(())
    b.remove(("a", "b"))
    b.remove(("a",))


def test_shared_kinds_and_passthrough(tree: OwnSubtree) -> None:
    """a owns memory, a/b owns pids: b's processes share a's memory cgroup."""
    b = backend_in(tree)
    need(b, "memory", "pids")
    b.create(("a",), frozenset({"memory"}))
    b.create(("a", "b"), frozenset({"pids"}))
    mem = next(h for h in b.hierarchies if "memory" in h.kinds)
    pids = next(h for h in b.hierarchies if "pids" in h.kinds)
    if mem.version == 1:
        assert not mem.dir(("a", "b")).exists()
    assert pids.dir(("a",)).is_dir()  # pass-through parent
    assert pids.dir(("a", "b")).is_dir()

    owners = {"memory": ("a",), "pids": ("a", "b")}
    dirs = b.placement(("a", "b"), lambda kind: owners.get(kind, ()))
    proc = sleeper(tree)
    b.move(proc.pid, dirs)
    if mem.version == 1:
        assert path_in(proc.pid, mem).endswith(f"/{tree.name}/a")
    if pids.version == 1:
        assert path_in(proc.pid, pids).endswith(f"/{tree.name}/a/b")
    if b.v2 is not None:
        assert b.procs(("a", "b")) == [proc.pid]
        assert b.procs(("a",)) == []
        assert b.populated(("a",))  # includes descendants, as v2 does
        with pytest.raises(OSError) as e:
            b.remove(("a",))  # has a child container
        assert e.value.errno == errno.EBUSY
    proc.kill()
    proc.wait()
    b.remove(("a", "b"))
    b.remove(("a",))
    assert not any(h.dir(("a",)).exists() for h in b.hierarchies)


def test_memory_max(tree: OwnSubtree) -> None:
    b = backend_in(tree)
    need(b, "memory")
    b.create(("a",), frozenset({"memory"}))
    v1 = in_v1(tree, b, "memory")
    b.write(("a",), "memory.max", "64M")
    assert b.read(("a",), "memory.max") == "67108864\n"
    if v1 is not None:
        limit = v1.dir(("a",)) / "memory.limit_in_bytes"
        assert limit.read_text() == "67108864\n"
    with pytest.raises(ValueError):
        b.write(("a",), "memory.max", "64Q")
    assert b.read(("a",), "memory.max") == "67108864\n"
    b.write(("a",), "memory.max", "max")
    assert b.read(("a",), "memory.max") == "max\n"
    if v1 is not None:
        assert int(limit.read_text()) > 1 << 62
    assert int(b.read(("a",), "memory.current")) >= 0
    with pytest.raises(PermissionError):
        b.write(("a",), "memory.current", "0")
    b.remove(("a",))


def test_memory_max_raised_past_a_v1_memsw_limit(tree: OwnSubtree) -> None:
    """v1 refuses a memory limit above ``memory.memsw.limit_in_bytes`` (EINVAL),
    which runtimes set (podman: twice ``--memory``): a raise raises memsw first by
    as much, keeping the swap it allowed; a lower limit leaves it alone."""
    b = backend_in(tree)
    need(b, "memory")
    v1 = in_v1(tree, b, "memory")
    if v1 is None:
        pytest.skip("memory is not on a v1 hierarchy here")
    b.create(("a",), frozenset({"memory"}))
    d = v1.dir(("a",))
    limit, memsw = d / "memory.limit_in_bytes", d / "memory.memsw.limit_in_bytes"
    if not memsw.exists():
        b.remove(("a",))
        pytest.skip("no swap accounting here (memory.memsw.*): nothing to keep in step")
    limit.write_text(str(64 << 20))
    memsw.write_text(str(128 << 20))  # what podman's --memory 64m sets
    b.write(("a",), "memory.max", "256M")
    assert limit.read_text() == f"{256 << 20}\n"
    assert memsw.read_text() == f"{320 << 20}\n"  # its 64M of swap kept
    b.write(("a",), "memory.max", "32M")
    assert limit.read_text() == f"{32 << 20}\n" and memsw.read_text() == f"{320 << 20}\n"
    b.write(("a",), "memory.max", "max")
    assert int(limit.read_text()) > 1 << 62 and int(memsw.read_text()) > 1 << 62
    assert b.read(("a",), "memory.max") == "max\n"
    b.remove(("a",))


def test_pids_max_stops_the_sixth_process(tree: OwnSubtree) -> None:
    b = backend_in(tree)
    need(b, "pids")
    b.create(("a",), frozenset({"pids"}))
    b.write(("a",), "pids.max", "5")
    assert b.read(("a",), "pids.max") == "5\n"
    v1 = in_v1(tree, b, "pids")
    if v1 is not None:
        assert (v1.dir(("a",)) / "pids.max").read_text() == "5\n"
    forker = textwrap.dedent(
        """
        import os, signal, sys
        sys.stdin.readline()  # wait until moved into the container
        kids, err = [], None
        for _ in range(10):
            try:
                pid = os.fork()
            except OSError as e:
                err = e.errno
                break
            if pid == 0:
                signal.pause()
                os._exit(0)
            kids.append(pid)
        print(len(kids), err, flush=True)
        for pid in kids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        """
    )
    proc = tree.spawn([sys.executable, "-c", forker], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    b.move(proc.pid, b.placement(("a",), lambda kind: ("a",) if kind == "pids" else ()))
    out, _ = proc.communicate(b"go\n", timeout=30)
    assert out.split() == [b"4", str(errno.EAGAIN).encode()]  # itself + 4 = 5
    with pytest.raises(ValueError):
        b.write(("a",), "pids.max", "-1")
    assert b.read(("a",), "pids.max") == "5\n"
    wait_until(lambda: int(b.read(("a",), "pids.current")) == 0)
    b.remove(("a",))


def test_cpu_max_and_weight(tree: OwnSubtree) -> None:
    b = backend_in(tree)
    need(b, "cpu")
    b.create(("a",), frozenset({"cpu"}))
    v1 = next((h for h in b.v1 if "cpu" in h.controllers), None)
    d = v1.dir(("a",)) if v1 is not None else None

    b.write(("a",), "cpu.max", "50000 100000")
    assert b.read(("a",), "cpu.max") == "50000 100000\n"
    if d is not None:
        assert (d / "cpu.cfs_quota_us").read_text() == "50000\n"
        assert (d / "cpu.cfs_period_us").read_text() == "100000\n"
    b.write(("a",), "cpu.max", "20000 50000")
    assert b.read(("a",), "cpu.max") == "20000 50000\n"
    b.write(("a",), "cpu.max", "30000")  # quota alone keeps the period
    assert b.read(("a",), "cpu.max") == "30000 50000\n"
    b.write(("a",), "cpu.max", "max 100000")
    assert b.read(("a",), "cpu.max") == "max 100000\n"
    if d is not None:
        assert (d / "cpu.cfs_quota_us").read_text() == "-1\n"
    for bad in ("500 100000", "50000 2000000", "lots"):
        with pytest.raises(ValueError):
            b.write(("a",), "cpu.max", bad)
    assert b.read(("a",), "cpu.max") == "max 100000\n"

    b.write(("a",), "cpu.weight", "100")
    assert b.read(("a",), "cpu.weight") == "100\n"
    if d is not None:
        assert (d / "cpu.shares").read_text() == "2597\n"
    b.write(("a",), "cpu.weight", "10000")
    assert b.read(("a",), "cpu.weight") == "10000\n"
    with pytest.raises(ValueError):
        b.write(("a",), "cpu.weight", "0")
    assert b.read(("a",), "cpu.weight") == "10000\n"

    stat = dict(line.split() for line in b.read(("a",), "cpu.stat").splitlines())
    assert "usage_usec" in stat or "nr_periods" in stat
    b.remove(("a",))


def test_cpuset(tree: OwnSubtree) -> None:
    b = backend_in(tree)
    need(b, "cpuset")
    b.create(("a",), frozenset({"cpuset"}))
    # v2 leaves a new cpuset.cpus empty (the parent's CPUs), v1 copies them: the
    # effective list is right on both.
    first = min(
        int(x.split("-")[0]) for x in b.read(("a",), "cpuset.cpus.effective").strip().split(",")
    )
    b.write(("a",), "cpuset.cpus", str(first))
    assert b.read(("a",), "cpuset.cpus") == f"{first}\n"
    assert b.read(("a",), "cpuset.cpus.effective") == f"{first}\n"
    with pytest.raises(ValueError):
        b.write(("a",), "cpuset.cpus", "3-1")
    assert b.read(("a",), "cpuset.cpus") == f"{first}\n"
    proc = sleeper(tree)
    b.move(proc.pid, b.placement(("a",), lambda kind: ("a",) if kind == "cpuset" else ()))
    allowed = next(
        line.split()[1]
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        if line.startswith("Cpus_allowed_list:")
    )
    assert allowed == str(first)
    proc.kill()
    proc.wait()
    b.remove(("a",))


def test_io_max_v1(tree: OwnSubtree) -> None:
    b = backend_in(tree)
    blkio = in_v1(tree, b, "io")
    if blkio is None:
        pytest.skip("no v1 blkio hierarchy here")
    dev = next((p.read_text().strip() for p in sorted(Path("/sys/block").glob("*/dev"))), None)
    if dev is None:
        pytest.skip("no block device")
    b.create(("a",), frozenset({"io"}))
    b.write(("a",), "io.max", f"{dev} rbps=1048576 wiops=100")
    d = blkio.dir(("a",))
    assert (d / "blkio.throttle.read_bps_device").read_text() == f"{dev} 1048576\n"
    assert (d / "blkio.throttle.write_iops_device").read_text() == f"{dev} 100\n"
    assert b.read(("a",), "io.max") == f"{dev} rbps=1048576 wbps=max riops=max wiops=100\n"
    with pytest.raises(ValueError):
        b.write(("a",), "io.max", f"{dev} rbps=1M")
    b.write(("a",), "io.max", f"{dev} rbps=max wiops=max")
    assert b.read(("a",), "io.max") == ""
    b.remove(("a",))


def test_create_is_atomic(tree: OwnSubtree) -> None:
    b = backend_in(tree)
    need(b, "memory")
    mem = next(h for h in b.hierarchies if "memory" in h.kinds)
    if mem.version == 1 and b.v2 is not None:
        # "tasks" is a file in every v1 cgroup but free on v2: v2 succeeds, v1 fails.
        with pytest.raises(FileExistsError):
            b.create(("tasks",), frozenset({"memory"}))
        assert not b.v2.dir(("tasks",)).exists()
    if b.v2 is not None:
        # One descendant allowed: "a" is made, "a/.tasks" refused; "a" must go again.
        limit = b.v2.dir() / "cgroup.max.descendants"
        limit.write_text("1\n")
        with pytest.raises(OSError) as e:
            b.create(("a",), frozenset())
        assert e.value.errno == errno.EAGAIN
        assert not any(h.dir(("a",)).exists() for h in b.hierarchies)
        limit.write_text("max\n")
        b.create(("a",), frozenset())
        b.remove(("a",))


def test_move_rolls_back_on_failure(tree: OwnSubtree) -> None:
    b = backend_in(tree)
    if b.v2 is None or not b.v1:
        pytest.skip("needs a cgroup2 tree and a v1 hierarchy")
    b.create(("a",), frozenset())
    proc = sleeper(tree)
    before = cgroup_of(proc.pid)
    missing = b.v1[0].dir(("no-such-container",))
    with pytest.raises(FileNotFoundError):
        b.move(proc.pid, [b.v2.dir(("a", ".tasks")), missing])
    assert cgroup_of(proc.pid) == before
    with pytest.raises(ValueError):
        b.move(proc.pid, [b.v2.dir().parent])  # outside the base: refused up front
    assert cgroup_of(proc.pid) == before
    proc.kill()
    proc.wait()
    b.remove(("a",))


def backend_below(tree: OwnSubtree, name: str) -> CgroupBackend:
    """A backend whose base is `name` inside the subtree, so the subtree itself is outside it.

    Processes the test starts (in the subtree) then come from outside the
    daemon's base, as they do in real use.
    """
    inner = []
    for d, ctrls in zip(tree.dirs, tree.controllers, strict=True):
        (d / name).mkdir()
        inner.append(d / name / "cgroup.procs")
        if "cpuset" in ctrls:
            for f in ("cpuset.cpus", "cpuset.mems"):
                (d / name / f).write_text((d / f).read_text())

    def join_inner() -> None:
        for f in inner:
            with open(f, "w") as out:
                out.write("0")

    anchor = tree.spawn(["sleep", "600"], preexec_fn=join_inner)
    try:
        b = CgroupBackend.discover(pid=str(anchor.pid))
    finally:
        anchor.kill()
        anchor.wait()
    assert sorted(h.dir() for h in b.hierarchies) == sorted(d / name for d in tree.dirs)
    return b


def container_with_v1_cpuset(b: CgroupBackend) -> tuple[list[Path], Path]:
    """Container "a" owning cpuset (v1) and what else is usable; its placement and cpuset dir."""
    cpuset = next((h for h in b.v1 if "cpuset" in h.controllers), None)
    if cpuset is None or b.kinds()["cpuset"] is not None:
        pytest.skip("no usable v1 cpuset hierarchy here")
    usable = frozenset(k for k, r in b.kinds().items() if r is None)
    owned = usable & {"cpuset", "memory", "pids", "cpu"}
    b.create(("a",), owned)
    dirs = b.placement(("a",), lambda kind: ("a",) if kind in owned else ())
    return dirs, cpuset.dir(("a",))


def test_move_into_an_empty_cpuset_changes_nothing(tree: OwnSubtree) -> None:
    """The reported bug: with cpuset.cpus emptied, move used to leave the process half-moved."""
    b = backend_below(tree, "base")
    dirs, cpuset = container_with_v1_cpuset(b)
    (cpuset / "cpuset.cpus").write_text("\n")
    assert (cpuset / "cpuset.effective_cpus").read_text().strip() == ""
    proc = sleeper(tree)
    before = Path(f"/proc/{proc.pid}/cgroup").read_bytes()
    with pytest.raises(OSError) as e:
        b.move(proc.pid, dirs)
    assert Path(f"/proc/{proc.pid}/cgroup").read_bytes() == before
    assert e.value.errno == errno.ENOSPC
    assert f"{cpuset}: cpuset has no cpus/mems" in str(e.value)  # refused before any write
    proc.kill()
    proc.wait()
    b.remove(("a",))


def test_move_rolls_back_to_outside_the_base(
    tree: OwnSubtree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusal after real v1 moves puts the process back where it was, outside the base."""
    b = backend_below(tree, "base")
    if b.v2 is None:
        pytest.skip("needs a cgroup2 tree")
    dirs, _ = container_with_v1_cpuset(b)
    proc = sleeper(tree)
    before = Path(f"/proc/{proc.pid}/cgroup").read_bytes()
    v2_leaf = b.v2.dir(("a", ".tasks"))
    real_write = cgfs.write
    done: list[Path] = []

    def refuse_v2(path: Path, text: str) -> None:
        if path.parent == v2_leaf:
            raise OSError(errno.ENOSPC, "refused by the test")
        real_write(path, text)
        done.append(path.parent)

    monkeypatch.setattr(cgfs, "write", refuse_v2)
    with pytest.raises(OSError) as e:
        b.move(proc.pid, dirs)
    assert e.value.strerror == "refused by the test"
    assert len(done) >= 2  # the v1 moves happened (cpuset first), then their undoing
    assert done[0].parent.parent == tree.dir_for("cpuset")
    assert Path(f"/proc/{proc.pid}/cgroup").read_bytes() == before
    monkeypatch.undo()
    b.move(proc.pid, dirs)  # the same move, unhindered, succeeds
    assert path_in(proc.pid, b.v2).endswith(f"/{tree.name}/base/a/.tasks")
    proc.kill()
    proc.wait()
    wait_until(lambda: not b.populated(("a",)))
    b.remove(("a",))


def test_pins_placement(tree: OwnSubtree) -> None:
    b = backend_in(tree)
    if b.v2 is not None:
        b.v2.dir((".pins",)).mkdir()
    proc = sleeper(tree)
    b.move(proc.pid, b.pins_placement())
    where = cgroup_of(proc.pid)
    if b.v2 is not None:
        assert where[""].endswith(f"/{tree.name}/.pins")
    proc.kill()
    proc.wait()


def test_own_subtree_cleans_up_after_failure() -> None:
    """Processes (also grandchildren and frozen ones) and nested cgroups all go."""
    with pytest.raises(RuntimeError, match="boom"), own_subtree("cleanup[odd/tag]") as t:
        assert "[" not in t.name and "/" not in t.name
        dirs = list(t.dirs)
        t.spawn(["sleep", "600"])
        t.spawn(["sh", "-c", "sleep 600 & sleep 600"])
        for d in t.dirs:
            (d / "nested").mkdir()
        freezer = t.dir_for("freezer")
        if freezer is not None:
            (freezer / "freezer.state").write_text("FROZEN")
        raise RuntimeError("boom")
    assert not any(d.exists() for d in dirs)
