"""Scale: many containers, one ``mkdir`` at a time; time, memory and cleanup.

Run as root: ``python -m bench.scale [--count N] [--net-count M] [--json FILE]``.
It starts ``containerfs mount`` in a cgroup subtree of its own (as the tests
do) and removes everything it made.

1. The root's ``container.subtree`` is set to ``ipc uts mnt pid memory pids``
   (every other kind it lists is removed with ``-KIND``).
2. ``--count`` containers (default 1000) are made one by one with
   ``os.mkdir``; each call is timed and reported per batch of ``--batch``
   (median, p90, worst), to show whether the cost climbs with the count.
   ``mkdir`` answers before the knobs' internal views are bound over
   ``/proc/sys`` inside the container (a background task of the daemon), so
   the run then waits until every holder's mount table shows its binds
   (**settle**) before taking the figures.
3. Figures: the daemon's CPU use over 3 s of idling (its periodic clone
   discovery), its VmRSS and PSS (the process whose command line is
   ``containerfs mount MNT``), its loopback helper's PSS, the holders'
   (``containerfs-pin`` processes of this mount: count, RSS and PSS summed),
   the size of the state files (``state.json`` and its journal ``state.log``),
   and deltas of ``/proc/meminfo`` against the
   start (kernel memory: slab, per-cpu, page tables, kernel stacks;
   whole-machine figures, so anything else running on the host shows in them
   too).  Then ``ls -R MNT``: the first (cold) and the median of the next
   ``--ls-runs``, and the daemon's RSS and the slab after them (``ls -R``
   makes the daemon and the kernel keep an inode for every file it lists).
4. ``+net`` is added to the root's ``container.subtree`` and ``--net-count``
   more containers (default 100) are made the same way, with the same figures.
5. Every container is removed with ``rmdir``, timed one by one (per batch),
   and the figures are taken once more.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import mounted, summary

WANTED = ("ipc", "uts", "mnt", "pid", "memory", "pids")
NAMESPACE_KINDS = frozenset({"ipc", "uts", "net", "pid", "mnt", "user", "cgroup", "time"})
MEMINFO_KEYS = ("MemAvailable", "Slab", "SUnreclaim", "Percpu", "KernelStack", "PageTables")
SETTLE_TIMEOUT = 300.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# =============================================================================
# Processes and memory
# =============================================================================


def _cmdline(pid: str) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def daemon_pid(mnt: Path) -> int:
    """The process whose command line is ``... containerfs mount MNT ...``."""
    want = str(mnt).encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        args = _cmdline(pid)
        for i, arg in enumerate(args[:-1]):
            if (
                arg == b"mount"
                and args[i + 1] == want
                and any(b"containerfs" in a for a in args[:i])
            ):
                return int(pid)
    raise SystemExit(f"bench.scale: no daemon process found for {mnt}")


def loopback_pids(daemon: int) -> list[int]:
    """The daemon's loopback helper (``python -m containerfs.fuse.loopback``)."""
    out = []
    for tid in os.listdir(f"/proc/{daemon}/task"):
        try:
            children = Path(f"/proc/{daemon}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        out += [int(c) for c in children if b"containerfs.fuse.loopback" in b" ".join(_cmdline(c))]
    return out


def holder_pids(mnt: Path) -> list[int]:
    """``containerfs-pin`` processes of this mount (their command line names it)."""
    want = str(mnt).encode()
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm", "rb") as f:
                if f.read().strip() != b"containerfs-pin":
                    continue
        except OSError:
            continue
        if want in _cmdline(pid):
            out.append(int(pid))
    return out


def rss_pss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, Pss) of a process in kB; (0, 0) if it is gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in MEMINFO_KEYS:
            out[key] = int(rest.split()[0])
    return out


# =============================================================================
# The steps
# =============================================================================


@dataclass
class Run:
    mnt: Path
    daemon: int
    batch: int
    mem0: dict[str, int] = field(default_factory=dict)
    daemon_rss0_kb: int = 0
    made: list[str] = field(default_factory=list)

    def set_subtree(self) -> dict[str, object]:
        """Make the root's container.subtree exactly WANTED; returns what it was."""
        f = self.mnt / "container.subtree"
        before = f.read_text().split()
        words = [f"-{k}" for k in before if k not in WANTED]
        words += [f"+{k}" for k in WANTED if k not in before]
        if words:
            f.write_text(" ".join(words) + "\n")
        after = f.read_text().split()
        if sorted(after) != sorted(WANTED):
            raise SystemExit(f"bench.scale: container.subtree is {after}, wanted {WANTED}")
        return {"before": before, "written": words, "after": after}

    def make(self, prefix: str, count: int) -> list[float]:
        times = []
        for i in range(count):
            name = f"{prefix}{i:04d}"
            start = time.perf_counter()
            os.mkdir(self.mnt / name)
            times.append(time.perf_counter() - start)
            self.made.append(name)
        return times

    def expected_binds(self, name: str) -> int:
        """Knob files bound inside a container: one per ``.internal`` file of an owned
        namespace kind (the daemon binds those only when the container owns mnt)."""
        d = self.mnt / name
        owned = {
            line.split()[0]
            for line in (d / "container.subsystems").read_text().splitlines()
            if line.split()[1] == "own"
        }
        if "mnt" not in owned:
            return 0
        return sum(
            1
            for f in os.listdir(d)
            if f.endswith(".internal") and f.split(".")[0] in owned & NAMESPACE_KINDS
        )

    def settle(self, expected: dict[bool, int]) -> float:
        """Seconds until every holder shows its binds over /proc/sys (``expected``:
        by whether the holder owns a net namespace)."""
        start = time.monotonic()
        host_net = os.readlink(f"/proc/{self.daemon}/ns/net")
        while True:
            pending = 0
            pins = holder_pids(self.mnt)
            for pid in pins:
                try:
                    own_net = os.readlink(f"/proc/{pid}/ns/net") != host_net
                    text = Path(f"/proc/{pid}/mountinfo").read_text()
                except OSError:
                    pending += 1
                    continue
                binds = sum(
                    1
                    for line in text.splitlines()
                    if " /proc/sys/" in line and " - fuse.containerfs " in line
                )
                pending += binds < expected[own_net]
            if not pending and len(pins) >= len(self.made):
                return time.monotonic() - start
            if time.monotonic() - start > SETTLE_TIMEOUT:
                raise SystemExit(f"bench.scale: {pending} holders still unbound after settle")
            time.sleep(0.25)

    def figures(self, ls_runs: int) -> dict[str, object]:
        """Memory and idle CPU first, then ``ls -R`` (which makes the daemon and the
        kernel create an inode per file) and the daemon's RSS and slab after it."""
        cpu0, t0 = cpu_seconds(self.daemon), time.monotonic()
        time.sleep(3)
        idle_cpu = (cpu_seconds(self.daemon) - cpu0) / (time.monotonic() - t0)
        d_rss, d_pss = rss_pss_kb(self.daemon)
        loop = [rss_pss_kb(p) for p in loopback_pids(self.daemon)]
        pins = [rss_pss_kb(p) for p in holder_pids(self.mnt)]
        mem = meminfo()
        state_dir = self.mnt.parent / "state"
        files = [state_dir / "state.json", state_dir / "state.log"]  # snapshot + journal
        out: dict[str, object] = {
            "containers": len(self.made),
            "daemon_idle_cpu_pct": round(idle_cpu * 100, 1),
            "daemon_rss_kb": d_rss,
            "daemon_pss_kb": d_pss,
            "loopback_rss_kb": sum(r for r, _ in loop),
            "loopback_pss_kb": sum(p for _, p in loop),
            "holders": len(pins),
            "holders_rss_kb": sum(r for r, _ in pins),
            "holders_pss_kb": sum(p for _, p in pins),
            "total_pss_kb": d_pss + sum(p for _, p in loop) + sum(p for _, p in pins),
            "state_bytes": sum(f.stat().st_size for f in files if f.exists()),
            "meminfo_delta_kb": {k: mem[k] - self.mem0.get(k, 0) for k in mem},
        }
        if ls_runs:
            out |= self.metrics_reads(METRICS_RUNS)
            ls = []
            for _ in range(ls_runs + 1):
                start = time.perf_counter()
                subprocess.run(["ls", "-R", str(self.mnt)], stdout=subprocess.DEVNULL, check=True)
                ls.append(time.perf_counter() - start)
            after = meminfo()
            out |= {
                "ls_R_first_ms": round(ls[0] * 1000, 1),
                "ls_R_next": summary(ls[1:]),
                "daemon_rss_after_ls_kb": rss_pss_kb(self.daemon)[0],
                "slab_after_ls_delta_kb": after["Slab"] - mem["Slab"],
            }
        return out

    def metrics_reads(self, runs: int) -> dict[str, object]:
        """``cat metrics`` (issue 18: at most 50 ms with 1,000 containers), three ways
        (README "Monitoring"): back to back (the first read waits for the namespace
        walk, so it is reported apart); at a steady pace of 2 s, as Prometheus
        scrapes (the daemon reads the figures ahead of each scrape); and after
        pauses of 1.5 and 4 s in turn, a pace with nothing to go by, so every read
        reads the figures itself."""

        def timed() -> tuple[float, int]:
            start = time.perf_counter()
            size = len((self.mnt / "metrics").read_bytes())
            return time.perf_counter() - start, size

        times, size = [], 0
        for _ in range(runs + 1):
            took, size = timed()
            times.append(took)
        time.sleep(5)  # the back-to-back pace forgotten
        paced = []
        for _ in range(METRICS_PACED + 1):
            time.sleep(2.0)
            paced.append(timed()[0])
        unpaced = []
        for i in range(METRICS_PACED + 1):
            time.sleep(1.5 if i % 2 else 4.0)
            unpaced.append(timed()[0])
        return {
            "metrics_first_ms": round(times[0] * 1000, 1),
            "metrics_next": summary(times[1:]),
            "metrics_paced": summary(paced[1:]),  # the first sets the pace
            "metrics_unpaced": summary(unpaced),
            "metrics_bytes": size,
        }

    def remove(self) -> list[float]:
        times = []
        for name in reversed(self.made[:]):
            start = time.perf_counter()
            os.rmdir(self.mnt / name)
            times.append(time.perf_counter() - start)
            self.made.remove(name)
        return times


METRICS_RUNS = 20  # reads of the metrics file timed per stage, back to back
METRICS_PACED = 6  # reads at a steady pace, and at an unsteady one


def batches(times: list[float], size: int) -> list[dict[str, float]]:
    return [summary(times[i : i + size]) for i in range(0, len(times), size)]


# =============================================================================
# Report
# =============================================================================


def print_batches(title: str, rows: list[dict[str, float]], size: int, first: int = 1) -> None:
    print(f"\n{title}: time per call, per batch of {size}")
    print(f"{'calls':>11} {'median':>9} {'p90':>9} {'worst':>9}")
    n = first
    for r in rows:
        runs = int(r["runs"])
        span = f"{n}-{n + runs - 1}"
        print(f"{span:>11} {r['median_ms']:>7.2f}ms {r['p90_ms']:>7.2f}ms {r['max_ms']:>7.2f}ms")
        n += runs


def print_figures(stages: dict[str, dict[str, object]]) -> None:
    def mb(s: dict[str, object], key: str) -> float:
        v = s.get(key, 0)
        assert isinstance(v, int)
        return v / 1024

    def delta(s: dict[str, object], key: str) -> float:
        d = s["meminfo_delta_kb"]
        assert isinstance(d, dict)
        return float(-d["MemAvailable"] if key == "used" else d[key]) / 1024

    print(
        f"\n{'stage':<12} {'count':>5} {'settle':>6} {'cpu%':>5}"
        f" {'dRSS':>6} {'dPSS':>6} {'loopPSS':>7} {'pins':>5} {'pinRSS':>7} {'pinPSS':>7}"
        f" {'totPSS':>7} {'stateKB':>7} {'Δused':>6} {'Δslab':>6} {'Δpcpu':>5} {'Δpgtb':>5}"
        f" {'Δkstk':>5}  {'ls -R ms':>11} {'dRSS>ls':>7} {'Δslab>ls':>8}"
    )
    for label, s in stages.items():
        ls_next = s.get("ls_R_next")
        if isinstance(ls_next, dict):
            ls = f"{s['ls_R_first_ms']:.0f}/{ls_next['median_ms']:.0f}"
            after = (
                f"{mb(s, 'daemon_rss_after_ls_kb'):>7.1f} {mb(s, 'slab_after_ls_delta_kb'):>8.1f}"
            )
        else:
            ls, after = "-", f"{'-':>7} {'-':>8}"
        print(
            f"{label:<12} {s['containers']!s:>5} {s.get('settle_s', '-')!s:>6}"
            f" {s['daemon_idle_cpu_pct']!s:>5}"
            f" {mb(s, 'daemon_rss_kb'):>6.1f} {mb(s, 'daemon_pss_kb'):>6.1f}"
            f" {mb(s, 'loopback_pss_kb'):>7.1f} {s['holders']!s:>5}"
            f" {mb(s, 'holders_rss_kb'):>7.1f} {mb(s, 'holders_pss_kb'):>7.1f}"
            f" {mb(s, 'total_pss_kb'):>7.1f} {mb(s, 'state_bytes'):>7.0f}"
            f" {delta(s, 'used'):>6.0f} {delta(s, 'Slab'):>6.0f} {delta(s, 'Percpu'):>5.1f}"
            f" {delta(s, 'PageTables'):>5.1f} {delta(s, 'KernelStack'):>5.1f}"
            f"  {ls:>11} {after}"
        )
    print(
        "\nMB unless noted (stateKB: state.json + state.log). settle: s from the last mkdir"
        "\nuntil every holder had its /proc/sys binds."
        " cpu%: the daemon while idle, 3 s (one CPU = 100)."
        "\nd = daemon, loop = its loopback helper, pins = holders; totPSS = d + loop + pins."
        "\nΔ: /proc/meminfo against the start, whole machine (Δused = fall of MemAvailable)."
        "\nls -R: first (cold) / median of the next; dRSS>ls, Δslab>ls: after those ls -R."
    )
    for label, s in stages.items():
        m = s.get("metrics_next")
        if isinstance(m, dict):
            print(
                f"cat metrics, {label}: first {s['metrics_first_ms']} ms, then median"
                f" {m['median_ms']:.1f} ms (p90 {m['p90_ms']:.1f}, worst {m['max_ms']:.1f});"
                f" {s['metrics_bytes']} bytes"
            )
            for key, how in (("metrics_paced", "every 2 s"), ("metrics_unpaced", "unpaced")):
                p = s.get(key)
                if isinstance(p, dict):
                    print(
                        f"  {how}: median {p['median_ms']:.1f} ms"
                        f" (p90 {p['p90_ms']:.1f}, worst {p['max_ms']:.1f})"
                    )
    base = stages.get("start")
    for label, s in stages.items():
        n = s["containers"]
        assert isinstance(n, int)
        if base is None or n == 0:
            continue
        print(
            f"per container at {label}: daemon RSS"
            f" +{(mb(s, 'daemon_rss_kb') - mb(base, 'daemon_rss_kb')) * 1024 / n:.1f} kB,"
            f" holder PSS {mb(s, 'holders_pss_kb') * 1024 / n:.1f} kB"
            f" (RSS {mb(s, 'holders_rss_kb') * 1024 / n:.0f} kB),"
            f" kernel slab {delta(s, 'Slab') * 1024 / n:.0f} kB,"
            f" machine {delta(s, 'used') * 1024 / n:.0f} kB"
        )


# =============================================================================


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="containers (default 1000)")
    parser.add_argument(
        "--net-count", type=int, default=100, help="more containers with +net (default 100)"
    )
    parser.add_argument("--batch", type=int, default=100, help="report per this many calls")
    parser.add_argument("--ls-runs", type=int, default=1, help="ls -R runs after the first")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.scale: needs root")
    results: dict[str, object] = {
        "count": args.count,
        "net_count": args.net_count,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
    }
    stages: dict[str, dict[str, object]] = {}
    started = time.monotonic()
    with mounted("scale") as (mnt, _subtree):
        run = Run(mnt, daemon_pid(mnt), args.batch)
        results["subtree"] = run.set_subtree()
        run.mem0 = meminfo()
        stages["start"] = run.figures(ls_runs=0)

        made = run.make("c", args.count)
        expected = {False: run.expected_binds("c0000") if args.count else 0}
        plain_settle = run.settle(expected | {True: 0})
        stages[f"{args.count} made"] = run.figures(args.ls_runs) | {
            "settle_s": round(plain_settle, 1)
        }

        (mnt / "container.subtree").write_text("+net\n")
        net_made = run.make("n", args.net_count)
        if args.net_count:
            expected[True] = run.expected_binds("n0000")
        net_settle = run.settle(expected | {True: expected.get(True, 0)})
        stages[f"+{args.net_count} net"] = run.figures(args.ls_runs) | {
            "settle_s": round(net_settle, 1)
        }

        removed = run.remove()
        time.sleep(1)  # the kernel frees namespaces and cgroups after the holders die
        stages["all removed"] = run.figures(ls_runs=0)
        tmp = mnt.parent
    if not os.path.ismount(tmp / "mnt"):
        shutil.rmtree(tmp, ignore_errors=True)
    mkdir_b, net_b, rmdir_b = (batches(t, args.batch) for t in (made, net_made, removed))
    results |= {
        "mkdir": mkdir_b,
        "mkdir_all": summary(made) if made else {},
        "mkdir_net": net_b,
        "rmdir": rmdir_b,
        "rmdir_all": summary(removed) if removed else {},
        "binds_per_container": {"plain": expected.get(False, 0), "net": expected.get(True, 0)},
        "stages": stages,
        "wall_s": round(time.monotonic() - started, 1),
    }

    print(
        f"containerfs, {args.count} containers owning {' '.join(WANTED)}"
        f" + {args.net_count} owning net too; commit {results['commit']}"
    )
    print_batches("mkdir", mkdir_b, args.batch)
    if made:
        print(f"{'all':>11} {statistics.median(made) * 1000:>7.2f}ms")
    print_batches("mkdir with +net", net_b, args.batch)
    if removed:
        print_batches("rmdir (newest first)", rmdir_b, args.batch)
        print(f"{'all':>11} {statistics.median(removed) * 1000:>7.2f}ms")
    print_figures(stages)
    print(f"\nwall time {results['wall_s']} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
