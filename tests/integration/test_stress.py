"""Load and faults: eight shells at once, and the daemon killed in the middle of it.

Eight bash loops pick, at random, `mkdir`, `rmdir`, a `tasks` write of one of
a few sleeping processes, a `pids.max` or `uts.hostname` write, a `containerfs
exec` and reads, on an overlapping set of names (parents and their children),
for a bounded time. Afterwards the tree, the kernel and cgroupfs must agree
exactly (``check_consistent``): one cgroup directory per container and no
other, one living holder per container and no other, each container's
namespaces those of its holder, each sleeper in exactly one container (its
cgroup and namespaces in the kernel are that container's), one mount. A
killed daemon is restarted with the same state dir and checked the same way.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from containerfs import statefile

from .conftest import CONTAINERFS, Mounted, close_pipes, live_pins, wait_for

pytestmark = pytest.mark.root

SHELLS = 8
NAMES = ("a", "b", "c", "a/x", "a/y", "b/x", "a/x/z")
NS_KINDS = ("ipc", "uts", "mnt")  # what the load's containers own: movable by `tasks`
SUBTREE = (
    "-net -pid -cgroup -time -user"  # off the root's default: a running process can enter the rest
)


def load_script(duration: float, sleepers: list[int], seed: int) -> str:
    """One shell's loop; it prints how many operations it made."""
    exec_cmd = " ".join(CONTAINERFS)
    return f"""
RANDOM={seed}
names=({" ".join(NAMES)})
pids=({" ".join(map(str, sleepers or [0]))})
end=$(( $(date +%s%N) + {int(duration * 1e9)} ))
ops=0
while [ "$(date +%s%N)" -lt "$end" ]; do
  n=${{names[RANDOM % ${{#names[@]}}]}}
  case $((RANDOM % 9)) in
    0|1) mkdir "$n" ;;
    2) rmdir "$n" ;;
    3) echo "${{pids[RANDOM % ${{#pids[@]}}]}}" > "$n/tasks" ;;
    4) echo "${{pids[RANDOM % ${{#pids[@]}}]}}" > tasks ;;
    5) echo $((RANDOM % 100 + 20)) > "$n/pids.max" ;;
    6) echo "h$RANDOM" > "$n/uts.hostname" ;;
    7) timeout 20 {exec_cmd} exec "$n" -- true ;;
    8) cat "$n/pids.max" "$n/container.subsystems" "$n/tasks" "$n/uts.hostname" ;;
  esac >/dev/null 2>&1
  ops=$((ops+1))
done
echo "$ops"
"""


def start_load(
    cfs: Mounted, duration: float, sleepers: list[int], seed: int
) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            ["bash", "-c", load_script(duration, sleepers, seed * 100 + i)],
            cwd=cfs.mnt,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for i in range(SHELLS)
    ]


def finish_load(shells: list[subprocess.Popen[str]], timeout: float) -> list[int]:
    """Each shell's operation count; every shell must end: an operation that never
    answers (a deadlock) keeps its shell running past ``timeout``."""
    counts = []
    deadline = time.monotonic() + timeout
    try:
        for sh in shells:
            out, _ = sh.communicate(timeout=max(1.0, deadline - time.monotonic()))
            counts.append(int(out.split()[-1]) if out.split() else 0)
    finally:
        for sh in shells:
            if sh.poll() is None:
                sh.kill()
                sh.wait()
            close_pipes(sh)
    return counts


def containers(cfs: Mounted) -> set[tuple[str, ...]]:
    """The tree as the mount shows it (directories only), root excluded."""
    out = set()
    for top, dirs, _files in os.walk(cfs.mnt):
        rel = Path(top).relative_to(cfs.mnt).parts
        out |= {(*rel, d) for d in dirs}
    return out


def cgroup_dirs(base: Path) -> set[tuple[str, ...]]:
    return {
        p.relative_to(base).parts
        for p in base.rglob("*")
        if p.is_dir() and not any(part.startswith(".") for part in p.relative_to(base).parts)
    }


def ns_ino(pid: int | str, kind: str) -> str:
    return str(os.stat(f"/proc/{pid}/ns/{kind}").st_ino)


def own_ids(cfs: Mounted, path: tuple[str, ...]) -> dict[str, str]:
    rows = [r.split() for r in cfs.read("/".join((*path, "container.subsystems"))).splitlines()]
    return {r[0]: r[2] for r in rows if len(r) >= 3 and r[1] == "own"}


def check_consistent(cfs: Mounted, sleepers: list[subprocess.Popen[bytes]]) -> None:
    """The tree, /proc and cgroupfs agree exactly; the daemon is alive and sane."""
    assert cfs.daemon.poll() is None, f"daemon died:\n{cfs.log_tail()}"
    assert "Traceback" not in cfs.log.read_text(errors="replace"), cfs.log_tail(60)
    tree = containers(cfs)
    saved = statefile.load(cfs.state)
    assert saved is not None
    assert {tuple(c["path"]) for c in saved["containers"]} - {()} == tree, "state file differs"
    base = cfs.subtree.v2_dir
    if base is not None:
        assert cgroup_dirs(base) == tree, "cgroup2 directories and the tree differ"
    owned = {path: own_ids(cfs, path) for path in tree}
    for d, version, ctrls in zip(
        cfs.subtree.dirs, cfs.subtree.versions, cfs.subtree.controllers, strict=True
    ):
        if version == 1 and "pids" in ctrls:  # a v1 directory for each owner of pids
            want = {path for path, ids in owned.items() if "pids" in ids}
            assert cgroup_dirs(d) == want, "v1 pids directories and the tree differ"
    # container.init: the holder of its own namespaces, or its nearest owner's.
    inits = {path: int(cfs.read("/".join((*path, "container.init")))) for path in tree}
    holders = {inits[path] for path, ids in owned.items() if set(ids) & set(NS_KINDS)}
    assert len(holders) == sum(1 for ids in owned.values() if set(ids) & set(NS_KINDS))
    try:
        wait_for(lambda: live_pins(str(cfs.mnt)) == holders, what="holders == containers")
    except AssertionError:
        pins = live_pins(str(cfs.mnt))
        extra = {p: Path(f"/proc/{p}/cgroup").read_text() for p in pins - holders}
        raise AssertionError(
            f"holders {sorted(holders)} but pins {sorted(pins)}; extra: {extra}\n{cfs.log_tail(40)}"
        ) from None
    for path, init in inits.items():
        for kind in NS_KINDS:
            if kind in owned[path]:
                assert owned[path][kind] == ns_ino(init, kind), (path, kind)
    # Each living sleeper is in exactly one container (the root counts), and the
    # kernel agrees: its cgroup and its namespaces are that container's.
    listed = {path: set(cfs.read("/".join((*path, "tasks"))).split()) for path in tree}
    listed[()] = set(cfs.read("tasks").split())
    for sleeper in sleepers:
        # One may have been killed: a daemon killed in the middle of moving it
        # takes it along rather than leave it running half-changed (inject.py).
        if sleeper.poll() is not None:
            continue
        pid = sleeper.pid
        where = [path for path, pids in listed.items() if str(pid) in pids]
        assert len(where) == 1, (pid, where, Path(f"/proc/{pid}/cgroup").read_text())
        path = where[0]
        if path:
            unified = [
                line[3:]
                for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                if line.startswith("0::")
            ]
            if cfs.subtree.v2_dir is not None:
                assert unified[0].endswith("/" + "/".join(path) + "/.tasks"), (pid, path, unified)
            holder = inits[path]
            for kind in NS_KINDS:
                assert ns_ino(pid, kind) == ns_ino(holder, kind), (pid, path, kind)
    mounts = [
        line for line in Path("/proc/mounts").read_text().splitlines() if str(cfs.mnt) in line
    ]
    assert len(mounts) == 1, mounts


def tear_down_tree(cfs: Mounted, sleepers: list[subprocess.Popen[bytes]]) -> None:
    """End the sleepers and remove every container: nothing may stay behind."""
    for s in sleepers:
        s.kill()
        s.wait()
    for path in sorted(containers(cfs), key=len, reverse=True):
        wait_for(
            lambda p=path: subprocess.run(["rmdir", "/".join(p)], cwd=cfs.mnt).returncode == 0,
            what=f"rmdir {'/'.join(path)}",
        )
    assert containers(cfs) == set()
    wait_for(lambda: live_pins(str(cfs.mnt)) == set(), what="every holder gone")
    if cfs.subtree.v2_dir is not None:
        assert cgroup_dirs(cfs.subtree.v2_dir) == set()


def prepare(cfs: Mounted) -> list[subprocess.Popen[bytes]]:
    cfs.sh(f"echo '{SUBTREE}' > container.subtree")
    for name in ("a", "b", "a/x"):
        cfs.sh(f"mkdir {name}")
    return [cfs.subtree.spawn(["sleep", "600"]) for _ in range(4)]


def test_eight_shells_at_once_leave_tree_kernel_and_cgroups_in_agreement(cfs: Mounted) -> None:
    sleepers = prepare(cfs)
    pids = [s.pid for s in sleepers]
    duration = 15.0
    shells = start_load(cfs, duration, pids, seed=random.randrange(1000))
    counts = finish_load(shells, timeout=duration + 60)
    assert all(n > 0 for n in counts), counts
    check_consistent(cfs, sleepers)
    # Still fully usable afterwards.
    cfs.sh("mkdir after && echo 7 > after/pids.max")
    assert cfs.read("after/pids.max") == "7\n"
    tear_down_tree(cfs, sleepers)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_in_the_middle_of_the_load_then_restart(cfs: Mounted, seed: int) -> None:
    rng = random.Random(seed)
    sleepers = prepare(cfs)
    pids = [s.pid for s in sleepers]
    duration = 6.0
    shells = start_load(cfs, duration, pids, seed=seed)
    time.sleep(rng.uniform(1.0, duration - 1.0))
    assert cfs.stop(signal.SIGKILL) == -signal.SIGKILL
    finish_load(shells, timeout=duration + 60)  # they fail fast: ENOTCONN
    cfs.start()
    check_consistent(cfs, sleepers)
    # A second run of the load on the restarted daemon, then check again. Only
    # living sleepers: a reaped one's pid may be anybody's by now.
    pids = [s.pid for s in sleepers if s.poll() is None]
    shells = start_load(cfs, 3.0, pids, seed=seed + 50)
    finish_load(shells, timeout=3.0 + 60)
    check_consistent(cfs, sleepers)
    tear_down_tree(cfs, sleepers)
