"""Container creation, removal and entry: containerfs beside unshare, runc and nsenter.

Run as root: ``python -m bench.creation [--runs N] [--json FILE]``.  It starts
``containerfs mount`` in a cgroup subtree of its own (``harness.mounted``), sets
the root's ``container.subtree`` to exactly ``ipc uts net pid mnt cgroup time
memory pids`` (``+`` those, ``-`` every other available kind), and removes
everything it made.  Every figure is wall time in milliseconds, median with
p10/p90; the measures run interleaved, one of each per round.

- **cfs_mkdir** / **cfs_rmdir**: ``mkdir`` and ``rmdir`` of such a container
  (seven namespaces kept alive by a holder, memory and pids cgroups).
- **unshare_2cgroups**: ``unshare --fork --pid --mount --uts --ipc --net --cgroup
  --time true`` plus ``mkdir`` of a scratch cgroup in the memory and the pids
  hierarchies (below this run's own subtree); **cgroup_rmdir** removes those two
  (the namespaces went with the process).
- **runc_run**: ``runc run`` of ``/bin/true`` on a busybox bundle (Debian's
  ``runc`` and ``busybox-static``, installed with apt-get if missing): ``runc
  spec``, then a terminal-less process, a cgroup namespace added, and
  ``linux.cgroupsPath`` relative, so that runc's cgroups are made below this
  run's subtree.  runc 1.1 puts its cgroup2 directory of a hybrid host at
  ``/sys/fs/cgroup/unified/<cgroupsPath>`` whatever its own cgroup, and joins the
  ``name=systemd`` hierarchy: the path is chosen so that the first lands in the
  subtree, and a scratch ``name=systemd`` cgroup is made (and removed) for the
  second.  runc keeps its state in a temporary ``--root``.  If runc cannot run
  here, the row says why.  runc 1.1 has no time namespace: its container has
  one kind fewer than containerfs's.
- **pid_move**: the kernel's cost that ``cfs_mkdir`` no longer pays: a pid written
  to ``cgroup.procs`` of a fresh cgroup2 directory below this run's subtree (a
  ``sleep`` started for it, then killed), each round after the others, so mostly
  after a pause of other moves: the write waits for an RCU grace period then
  (``cgroup_threadgroup_rwsem``). A ``mkdir`` used to make one or two of these;
  its holder is now forked into place (``containerfs/kernel/pin.c``, "Cgroup
  placement").
- **cfs_mkdir_exec_rmdir**: a whole containerfs round (mkdir, ``containerfs exec
  C -- /bin/true``, rmdir), the like of what ``runc run`` does.
- **cfs_exec** / **nsenter_exec**: ``containerfs exec C -- /bin/true`` against
  ``nsenter -t HOLDER -a /bin/true`` (HOLDER from ``C/container.init``; it does not
  place the command in the container's cgroups, and ``-a`` takes the holder's
  own time namespace, not the container's).  ``cfs_exec`` runs Python as it
  runs by default, with bytecode cached (in a temporary ``PYTHONPYCACHEPREFIX``);
  ``cfs_exec_no_pyc`` as this environment has it (``PYTHONDONTWRITEBYTECODE`` set:
  every module compiled at each start); ``cfs_exec_lean`` calls
  ``containerfs.execute.run`` from ``python -c`` (the command line module is
  skipped, which imports the daemon); ``python_startup`` is ``python -c pass``.
  ``cfs_exec`` hands over to the C program (``containerfs-exec``) once Python has
  started; ``cfs_exec_python`` is the same with ``CONTAINERFS_EXEC_IN_PYTHON=1``,
  which keeps it in Python (``containerfs/execute.py``, the path before the C
  program, measured in the same rounds).
- **cfs_exec_cmd**: ``containerfs exec C -- /bin/true`` by the venv's
  ``containerfs`` command, as a user types it: the C program itself where
  ``make`` installed it (no Python at all), pip's entry script otherwise (the row's
  note says which).  The target of issue 17: at most 10 ms.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from bench.control import Measure, figures, print_table, write_json
from bench.harness import CONTAINERFS, mounted
from tests.cgtree import OwnSubtree

KINDS = ("ipc", "uts", "net", "pid", "mnt", "cgroup", "time", "memory", "pids")
UNSHARE = ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "--cgroup"]
UNSHARE += ["--time", "true"]
RUNC_PACKAGES = ("runc", "busybox-static")
HYBRID_V2 = Path("/sys/fs/cgroup/unified")  # where runc 1.1 puts cgroup2 dirs on a hybrid host


def run(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    """Run ``argv``; its failure ends the benchmark with the command's own words."""
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, cwd=cwd)
    if r.returncode != 0:
        raise SystemExit(f"bench.creation: {argv[0]} failed ({r.returncode}): {r.stderr!r}")


def clock(m: Measure, fn: Callable[..., object], *args: object, **kwargs: object) -> None:
    """Time one call of ``fn`` into ``m``."""
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    m.times.append(time.perf_counter() - t0)


# -- runc ---------------------------------------------------------------------------


def ensure_packages(names: tuple[str, ...]) -> str | None:
    """Install the Debian packages that are missing; None, or why it failed."""
    missing = [
        n for n in names if subprocess.run(["dpkg", "-s", n], capture_output=True).returncode != 0
    ]
    if not missing:
        return None
    print(f"bench.creation: installing {' '.join(missing)}", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        r = subprocess.run(argv, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
            return f"{' '.join(argv[:2])} failed: {tail[0]}"
    return None


def named_hierarchy_dirs() -> list[Path]:
    """This process's cgroup in every mounted named v1 hierarchy (``name=systemd``):
    runc joins those, which ``own_subtree`` does not cover."""
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-", 6)
        if fields[sep + 1] == "cgroup" and fields[3] == "/":
            for opt in fields[sep + 3].split(","):
                if opt.startswith("name="):
                    mounts[opt] = Path(fields[4])
    out = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _hid, names, path = line.split(":", 2)
        for n in names.split(","):
            if n in mounts:
                out.append(mounts[n].joinpath(*[p for p in path.split("/") if p]))
    return out


def remove_tree(top: Path) -> None:
    """rmdir a cgroup directory and everything below it, deepest first."""
    for root, _dirs, _files in os.walk(top, topdown=False):
        deadline = time.monotonic() + 5
        while True:
            try:
                os.rmdir(root)
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


@dataclass
class Runc:
    bundle: Path
    state: Path
    skipped: str = ""

    def argv(self, cid: str) -> list[str]:
        return ["runc", "--root", str(self.state), "run", "--bundle", str(self.bundle), cid]


@contextmanager
def runc_bundle(subtree: OwnSubtree) -> Iterator[Runc]:
    """A busybox bundle whose cgroups land in ``subtree``; ``skipped`` says why not."""
    tmp = Path(tempfile.mkdtemp(prefix="cfs-bench-runc-"))
    rc = Runc(tmp / "bundle", tmp / "state")
    scratch: list[Path] = []
    try:
        why = ensure_packages(RUNC_PACKAGES)
        v2 = subtree.v2_dir
        if why is None and v2 is not None and v2 != HYBRID_V2 / subtree.name:
            why = (
                f"runc 1.1 would make its cgroup2 directory in {HYBRID_V2}, outside this"
                f" run's subtree {v2}"
            )
        if why:
            rc.skipped = why
            yield rc
            return
        for d in named_hierarchy_dirs():
            (d / subtree.name).mkdir()
            scratch.append(d / subtree.name)
        rootfs = rc.bundle / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
        (rootfs / "bin" / "true").symlink_to("busybox")
        run(["runc", "spec"], cwd=rc.bundle)
        spec = json.loads((rc.bundle / "config.json").read_text())
        spec["process"]["terminal"] = False
        spec["process"]["args"] = ["/bin/true"]
        spec["linux"]["namespaces"].append({"type": "cgroup"})
        # Relative: runc joins it to its own cgroup in each v1 hierarchy, which is
        # where own_subtree made the subtree; and to HYBRID_V2 for cgroup2.
        spec["linux"]["cgroupsPath"] = f"{subtree.name}/runc-bench"
        (rc.bundle / "config.json").write_text(json.dumps(spec, indent=1))
        r = subprocess.run(rc.argv("probe"), stdin=subprocess.DEVNULL, capture_output=True)
        if r.returncode != 0:
            lines = r.stderr.decode(errors="replace").strip().splitlines()
            rc.skipped = f"runc run failed ({r.returncode}): {lines[-1] if lines else ''}"
        yield rc
    finally:
        if rc.state.exists():
            listed = subprocess.run(
                ["runc", "--root", str(rc.state), "list", "-q"], capture_output=True, text=True
            ).stdout.split()
            for cid in listed:
                subprocess.run(["runc", "--root", str(rc.state), "delete", "--force", cid])
        for d in scratch:
            remove_tree(d)
        shutil.rmtree(tmp)


# -- the benchmark ------------------------------------------------------------------


def set_subtree(mnt: Path) -> None:
    """The root's container.subtree: exactly KINDS."""
    available = [
        f[0]
        for f in (line.split() for line in (mnt / "subsystems").read_text().splitlines())
        if f and f[-1] == "yes"
    ]
    words = " ".join(("+" if k in KINDS else "-") + k for k in available)
    (mnt / "container.subtree").write_text(words + "\n")
    got = set((mnt / "container.subtree").read_text().split())
    if got != set(KINDS):
        raise SystemExit(f"bench.creation: container.subtree is {sorted(got)}")


def bench(mnt: Path, subtree: OwnSubtree, runs: int, pycache: Path) -> list[Measure]:
    names = (
        "cfs_mkdir",
        "unshare_2cgroups",
        "runc_run",
        "cfs_mkdir_exec_rmdir",
        "pid_move",
        "cfs_rmdir",
        "cgroup_rmdir",
        "cfs_exec_cmd",
        "cfs_exec",
        "cfs_exec_python",
        "cfs_exec_no_pyc",
        "cfs_exec_lean",
        "nsenter_exec",
        "python_startup",
    )
    ms = {n: Measure(n) for n in names}
    ms["cfs_mkdir"].vs = ("runc_run", "unshare_2cgroups")
    ms["cfs_mkdir_exec_rmdir"].vs = ("runc_run",)
    ms["cfs_rmdir"].vs = ("cgroup_rmdir",)
    ms["cfs_exec"].vs = ("nsenter_exec",)
    ms["cfs_exec_cmd"].vs = ("nsenter_exec",)
    ms["cfs_exec_python"].vs = ("nsenter_exec",)
    ms["cfs_exec_no_pyc"].vs = ("nsenter_exec",)
    ms["cfs_exec_lean"].vs = ("nsenter_exec",)
    ms["cfs_exec"].note = "python -m containerfs exec (hands over to C), bytecode cached"
    ms["cfs_exec_python"].note = "python -m containerfs exec kept in Python (the old path)"
    command = Path(sys.executable).parent / "containerfs"
    is_c = command.read_bytes()[:4] == b"\x7fELF"
    ms["cfs_exec_cmd"].note = (
        "the containerfs command: the C program" if is_c else "containerfs: pip's entry script"
    )
    ms["cfs_exec_lean"].note = "python -c: containerfs.execute.run only"

    set_subtree(mnt)
    mem, pids = subtree.dir_for("memory"), subtree.dir_for("pids")
    if mem is None or pids is None:
        raise SystemExit("bench.creation: needs v1 memory and pids hierarchies")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    if "PYTHONDONTWRITEBYTECODE" not in os.environ:
        ms["cfs_exec_no_pyc"].note = "PYTHONDONTWRITEBYTECODE is not set here"
    e = mnt / "E"
    os.mkdir(e)
    holder = (e / "container.init").read_text().strip()
    exec_argv = [*CONTAINERFS, "exec", str(e), "--", "/bin/true"]
    cmd_argv = [str(command), "exec", str(e), "--", "/bin/true"]
    py_env = {**env, "CONTAINERFS_EXEC_IN_PYTHON": "1"}
    lean = (
        "import sys; from containerfs.execute import run as r;"
        " sys.exit(r(sys.argv[1], ['/bin/true']))"
    )
    lean_argv = [sys.executable, "-c", lean, str(e)]
    nsenter_argv = ["nsenter", "-t", holder, "-a", "/bin/true"]

    def cfs_round(i: int) -> None:
        c = mnt / f"f{i}"
        os.mkdir(c)
        run([*CONTAINERFS, "exec", str(c), "--", "/bin/true"], env=env)
        os.rmdir(c)

    def unshare_round(i: int) -> None:
        run(UNSHARE)
        os.mkdir(mem / f"scratch-{i}")
        os.mkdir(pids / f"scratch-{i}")

    def cgroup_rmdir(i: int) -> None:
        os.rmdir(mem / f"scratch-{i}")
        os.rmdir(pids / f"scratch-{i}")

    def pid_move(i: int) -> None:
        if subtree.v2_dir is None:
            ms["pid_move"].note = "no cgroup2 hierarchy here"
            return
        d = subtree.v2_dir / f"move-{i}"
        os.mkdir(d)
        sleeper = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
        try:
            time.sleep(0.03)  # no other move of ours just before
            clock(ms["pid_move"], (d / "cgroup.procs").write_text, str(sleeper.pid))
        finally:
            sleeper.kill()
            sleeper.wait()
            with suppress(OSError):
                d.rmdir()

    try:
        with runc_bundle(subtree) as rc:
            if rc.skipped:
                ms["runc_run"].note = rc.skipped
            # Warm up once, untimed (the page cache, the bytecode cache).
            run(exec_argv, env=env)
            run(exec_argv, env=py_env)
            run(cmd_argv, env=env)
            run(lean_argv, env=env)
            for i in range(runs):
                c = mnt / f"c{i}"
                clock(ms["cfs_mkdir"], os.mkdir, c)
                clock(ms["cfs_rmdir"], os.rmdir, c)
                clock(ms["unshare_2cgroups"], unshare_round, i)
                clock(ms["cgroup_rmdir"], cgroup_rmdir, i)
                if not rc.skipped:
                    clock(ms["runc_run"], run, rc.argv(f"bench-{i}"))
                clock(ms["cfs_mkdir_exec_rmdir"], cfs_round, i)
                pid_move(i)
                clock(ms["cfs_exec_cmd"], run, cmd_argv, env=env)
                clock(ms["cfs_exec"], run, exec_argv, env=env)
                clock(ms["cfs_exec_python"], run, exec_argv, env=py_env)
                if "PYTHONDONTWRITEBYTECODE" in os.environ:
                    clock(ms["cfs_exec_no_pyc"], run, exec_argv)
                clock(ms["cfs_exec_lean"], run, lean_argv, env=env)
                clock(ms["nsenter_exec"], run, nsenter_argv)
                clock(ms["python_startup"], run, [sys.executable, "-c", "pass"], env=env)
    finally:
        for d in (mem, pids):
            for s in d.glob("scratch-*"):
                with suppress(OSError):
                    s.rmdir()
        os.rmdir(e)
    return list(ms.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.creation: needs root")
    pycache = Path(tempfile.mkdtemp(prefix="cfs-bench-pycache-"))
    try:
        with mounted("creation") as (mnt, subtree):
            measures = bench(mnt, subtree, args.runs, pycache)
    finally:
        shutil.rmtree(pycache)
    rows = figures(measures, "ms")
    print_table(rows, "ms")
    goals: dict[str, dict[str, object]] = {}
    mk = rows["cfs_mkdir"].get("speedup", {})
    if "runc_run" in mk:
        s = float(mk["runc_run"])
        goals["mkdir_vs_runc_run"] = {"speedup": s, "met": s > 1}
        print(
            f"\ntarget: a container made faster than runc starts one: cfs_mkdir is "
            f"{s:.2f}x runc_run's speed ({'met' if s > 1 else 'NOT met'})"
        )
    else:
        print(f"\ntarget: runc_run skipped: {rows['runc_run'].get('skipped')}")
    ex = rows["cfs_exec_cmd"].get("median_ms")
    if ex is not None:
        met = float(ex) <= 10
        goals["exec_at_most_10ms"] = {"median_ms": ex, "met": met}
        print(
            f"target: `containerfs exec C -- true` in at most 10 ms: cfs_exec_cmd is "
            f"{float(ex):.1f} ms ({'met' if met else 'NOT met'})"
        )
    if "unshare_2cgroups" in mk:
        # Issue 17: at most 2x unshare of the same namespaces plus two cgroup
        # mkdirs (the aim: 1.5x).
        ratio = 1 / float(mk["unshare_2cgroups"])
        goals["mkdir_vs_unshare_2cgroups"] = {"ratio": round(ratio, 3), "met": ratio <= 2}
        print(
            f"target: cfs_mkdir within 2x (aim 1.5x) of unshare_2cgroups: {ratio:.2f}x"
            f" ({'met' if ratio <= 2 else 'NOT met'})"
        )
    write_json(args.json, {"unit": "ms", "measures": rows, "targets": goals})


if __name__ == "__main__":
    main()
