"""Listing every namespace: ``cat MNT/namespaces`` against ``lsns``.

Run as root: ``python -m bench.listing [--runs N] [--json FILE]``; ``make
bench-listns`` runs it in a qemu guest on the newest Debian kernel, which has
``listns()`` (the +2,000 processes in 200 groups load only).  It starts
``containerfs mount`` in a cgroup subtree of its own (as the tests do), then
times, as separate processes with output to ``/dev/null``:

- **containerfs**: ``cat MNT/namespaces``, through the mounted daemon (one
  ``nslist.scan`` per open, on a worker thread, then FUSE);
- **lsns**: plain ``lsns`` (its default columns include each namespace's
  lowest PID, user and command line);
- **lsns -J**: ``lsns -J -o TYPE,NS,NPROCS,PNS,ONS``, the columns the
  ``namespaces`` file has.  util-linux 2.38 has no ``--persistent``, so lsns
  lists only namespaces that a process is in; containerfs also lists those
  kept only by a bind mount, an open fd or ``*_for_children``.

It also times ``nslist.scan()`` in this process (the scan alone, no FUSE, no
``cat``), ``cat /dev/null`` (the price of starting ``cat``) and a process count
from every kind's ns link of each process (``nprocs_only``: what the
``listns()`` path read before it read only the kinds with several namespaces).
The report names the path the daemon takes (``listns()`` on Linux >= 6.19).

Each measure runs on the bare machine, then with extra processes, made as
groups of ``unshare --ipc --uts sh -c '... sleep ... & ...; wait'`` (one shell
and its sleeps per group, each group in a new ipc and uts namespace, so two
namespaces per group).  The loads are ``PROCS/GROUPS`` pairs (``--loads``):
by default 1000/200, 2000/200, 2000/400 and 2000/1000, so that the cost can
be split, by a least-squares fit over all loads, into a fixed part, a part per
process (1000/200 against 2000/200) and a part per namespace (2000 processes
in 400, 800 or 2000 new namespaces).  The load runs in a cgroup subtree of its
own beside the daemon's, as other processes of a host do: inside the daemon's
(its root container) clone discovery would make a container with a holder for
each group, and look at every one of its processes three times a second
(``bench/lifecycle.py`` times discovery). Every process of the load is killed
by its PID (pidfd) when the load changes; the subtree's teardown would kill
anything left.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

from bench.harness import mounted, summary
from containerfs.kernel import nslist
from tests.cgtree import OwnSubtree, own_subtree

LSNS_COLUMNS = "TYPE,NS,NPROCS,PNS,ONS"

#: (label, what the row measures)
MEASURES: tuple[tuple[str, str], ...] = (
    ("containerfs", "cat MNT/namespaces"),
    ("lsns", "lsns"),
    ("lsns_json", f"lsns -J -o {LSNS_COLUMNS}"),
    ("scan_inproc", "nslist.scan() in this process"),
    ("cat_floor", "cat /dev/null"),
    ("nprocs_only", "every kind's ns link of each process (the count before the cut)"),
    ("scan_before", "the listns() path before the cut (Python listing, every kind counted)"),
)

# One group: a shell in new ipc and uts namespaces starts its sleeps, prints
# their PIDs (so that each can be killed by PID) and waits.
GROUP_SCRIPT = (
    'i=0; while [ "$i" -lt "$1" ]; do sleep 3600 </dev/null >/dev/null 2>&1 & '
    'echo "$!"; i=$((i + 1)); done; echo ready; wait'
)
GROUP_ARGV = ("unshare", "--ipc", "--uts", "sh", "-c", GROUP_SCRIPT, "sh")


@dataclass(frozen=True)
class Load:
    procs: int
    groups: int

    @property
    def label(self) -> str:
        return "bare" if self.procs == 0 else f"+{self.procs}p/{self.groups}g"


def parse_load(text: str) -> Load:
    procs, _, groups = text.partition("/")
    load = Load(int(procs), int(groups))
    if load.groups <= 0 or load.procs % load.groups or load.procs // load.groups < 1:
        raise argparse.ArgumentTypeError(f"{text}: PROCS must be a multiple of GROUPS")
    return load


@contextmanager
def load_running(subtree: OwnSubtree, load: Load) -> Iterator[None]:
    """``load.procs`` extra processes in ``load.groups`` ipc+uts namespace pairs."""
    shells: list[subprocess.Popen[bytes]] = []
    pidfds: list[int] = []
    try:
        per_group = load.procs // load.groups
        for _ in range(load.groups):
            shells.append(
                subtree.spawn(
                    [*GROUP_ARGV, str(per_group - 1)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                )
            )
        for shell in shells:
            assert shell.stdout is not None
            for line in shell.stdout:
                if line.strip() == b"ready":
                    break
                # The sleep is the shell's child and unreaped: its PID is still its own.
                pidfds.append(os.pidfd_open(int(line)))
            else:
                raise SystemExit("bench.listing: a load group did not start")
            shell.stdout.close()
        yield
    finally:
        for shell in shells:
            shell.kill()
        for fd in pidfds:
            with suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        for shell in shells:
            shell.wait(timeout=30)
        # A pidfd turns readable once its process has exited; the orphaned
        # sleeps are then reaped by init.
        deadline = time.monotonic() + 30
        for fd in pidfds:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            poller.poll(max(0, int((deadline - time.monotonic()) * 1000)))
            os.close(fd)
        time.sleep(0.2)


def time_command(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def time_scan() -> float:
    start = time.perf_counter()
    nslist.scan()
    return time.perf_counter() - start


def time_nprocs() -> float:
    kinds, _ = nslist._ns_names("/proc")
    fd_counts = nslist._fd_counts_known("/proc")
    start = time.perf_counter()
    nslist._count_processes("/proc", nslist.find_walker(), kinds, fd_counts)
    return time.perf_counter() - start


def time_scan_before() -> float:
    """The listns() path as it was: listing and opens in Python, the processes'
    links of every kind counted by the program (another ``NsOps`` than the live
    one keeps :func:`nslist.scan_listns` off the program's listns() mode)."""
    start = time.perf_counter()
    nslist.scan_listns(walker=nslist.find_walker(), ops=nslist._LiveNs())
    return time.perf_counter() - start


def counts(mnt: Path) -> dict[str, int]:
    """Processes in /proc and namespaces each lister reports, once."""
    ours = (mnt / "namespaces").read_text().splitlines()
    lsns = json.loads(
        subprocess.run(["lsns", "-J", "-o", LSNS_COLUMNS], capture_output=True, check=True).stdout
    )["namespaces"]
    return {
        "processes": sum(1 for name in os.listdir("/proc") if name.isdigit()),
        "ns_containerfs": len(ours),
        "ns_containerfs_nprocs0": sum(1 for line in ours if line.split()[2] == "0"),
        "ns_lsns": len(lsns),
    }


def measure(mnt: Path, runs: int) -> dict[str, dict[str, float]]:
    argvs: dict[str, list[str]] = {
        "containerfs": ["cat", str(mnt / "namespaces")],
        "lsns": ["lsns"],
        "lsns_json": ["lsns", "-J", "-o", LSNS_COLUMNS],
        "cat_floor": ["cat", "/dev/null"],
    }
    times: dict[str, list[float]] = {name: [] for name, _ in MEASURES}
    for argv in argvs.values():  # warm up: caches, page cache of the binaries
        time_command(argv)
    for r in range(runs):
        # Rotate the order so that no lister always runs right after another.
        order = list(argvs)
        order = order[r % len(order) :] + order[: r % len(order)]
        for name in order:
            times[name].append(time_command(argvs[name]))
        times["scan_inproc"].append(time_scan())
        times["nprocs_only"].append(time_nprocs())
        if nslist.listns_available():
            times["scan_before"].append(time_scan_before())
    return {name: summary(values) for name, values in times.items() if values}


def per_unit_costs(results: dict[str, dict[str, object]]) -> dict[str, dict[str, float]]:
    """Least-squares fit ``t = fixed + a * processes + b * namespaces`` over every load.

    Processes as counted in /proc, namespaces as the containerfs listing
    counts them; the loads vary the two separately (1000/200 against
    2000/200, 2000/200 against 2000/400 and 2000/1000).  Needs at least three
    loads that are not all on one line.
    """
    rows: list[tuple[float, float, dict[str, dict[str, float]]]] = []
    for r in results.values():
        c = r["counts"]
        t = r["timings"]
        assert isinstance(c, dict) and isinstance(t, dict)
        rows.append((float(c["processes"]), float(c["ns_containerfs"]), t))
    out: dict[str, dict[str, float]] = {}
    for name, _ in MEASURES[:4]:
        ys = [float(t[name]["median_ms"]) for _, _, t in rows]
        fit = _fit([(p, n) for p, n, _ in rows], ys)
        if fit is None:
            return {}
        fixed, per_proc, per_ns = fit
        out[name] = {
            "fixed_ms": round(fixed, 1),
            "us_per_process": round(per_proc * 1000, 1),
            "us_per_namespace": round(per_ns * 1000, 1),
        }
    return out


def _fit(xs: list[tuple[float, float]], ys: list[float]) -> tuple[float, float, float] | None:
    """Ordinary least squares for ``y = c0 + c1 * x1 + c2 * x2`` (Cramer's rule)."""
    rows = [(1.0, x1, x2) for x1, x2 in xs]
    m = [[sum(r[i] * r[j] for r in rows) for j in range(3)] for i in range(3)]
    v = [sum(r[i] * y for r, y in zip(rows, ys, strict=True)) for i in range(3)]

    def det(a: list[list[float]]) -> float:
        return (
            a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
            - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
            + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
        )

    d = det(m)
    if abs(d) < 1e-9 * max(1.0, abs(m[1][1] * m[2][2])):
        return None
    coef = []
    for k in range(3):
        mk = [[v[i] if j == k else m[i][j] for j in range(3)] for i in range(3)]
        coef.append(det(mk) / d)
    return coef[0], coef[1], coef[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--loads",
        type=parse_load,
        nargs="*",
        default=[parse_load(x) for x in ("1000/200", "2000/200", "2000/400", "2000/1000")],
        metavar="PROCS/GROUPS",
        help="extra processes / groups (each group: a new ipc and uts namespace)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="write the results there; '-': print them after a '--- json' line (a guest's)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.listing: needs root")
    if shutil.which("lsns") is None:
        raise SystemExit("bench.listing: lsns (util-linux) is missing")
    lsns_version = subprocess.run(
        ["lsns", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    has_persistent = (
        "--persistent"
        in subprocess.run(["lsns", "--help"], capture_output=True, text=True, check=False).stdout
    )
    # A pidfd per process of the load: past the usual 1024 fds (the v2vm guest
    # has no pam or systemd to raise it); root may raise the hard limit too.
    need = 2 * max((load.procs for load in args.loads), default=0) + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        hard = hard if hard == resource.RLIM_INFINITY else max(hard, need)
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    loads = [Load(0, 1), *args.loads]
    results: dict[str, dict[str, object]] = {}
    with mounted("listing") as (mnt, _), own_subtree("bench-listing-load") as load_tree:
        for load in loads:
            with load_running(load_tree, load) if load.procs else nullcontext():
                results[load.label] = {
                    "extra_processes": load.procs,
                    "groups": load.groups if load.procs else 0,
                    "counts": counts(mnt),
                    "timings": measure(mnt, args.runs),
                }
        tmp = mnt.parent
    if not os.path.ismount(tmp / "mnt"):
        shutil.rmtree(tmp, ignore_errors=True)
    costs = per_unit_costs(results)
    report(results, costs, lsns_version, has_persistent, args.runs)
    if args.json:
        doc = {
            "lsns_version": lsns_version,
            "lsns_has_persistent": has_persistent,
            "loads": results,
            "per_unit_costs": costs,
        }
        text = json.dumps(doc, indent=1) + "\n"
        if str(args.json) == "-":
            print("--- json\n" + text, end="", flush=True)
        else:
            args.json.write_text(text)


def report(
    results: dict[str, dict[str, object]],
    costs: dict[str, dict[str, float]],
    lsns_version: str,
    has_persistent: bool,
    runs: int,
) -> None:
    print(
        f"{lsns_version}: "
        + (
            "has --persistent"
            if has_persistent
            else "no --persistent (lists only namespaces a process is in)"
        )
    )
    path = "listns()" if nslist.listns_available() else "the /proc walk (no listns() here)"
    print(f"{os.uname().release}: namespaces comes from {path}")
    print(f"medians of {runs} runs, [p10-p90] in ms; ratio = lsns time / containerfs time\n")
    head = f"{'load':<14} {'procs':>6} {'ns cfs/lsns':>12}"
    cols = [name for name, _ in MEASURES]
    head += "".join(f" {name:>20}" for name in cols) + f" {'lsns/cfs':>9} {'lsns-J/cfs':>10}"
    print(head)
    for label, r in results.items():
        c = r["counts"]
        t = r["timings"]
        assert isinstance(c, dict) and isinstance(t, dict)
        line = f"{label:<14} {c['processes']:>6} {c['ns_containerfs']:>5}/{c['ns_lsns']:<6}"
        for name in cols:
            s = t.get(name)
            cell = (
                "-" if s is None else f"{s['median_ms']:.1f} [{s['p10_ms']:.0f}-{s['p90_ms']:.0f}]"
            )
            line += f" {cell:>20}"
        cfs = t["containerfs"]["median_ms"]
        line += f" {t['lsns']['median_ms'] / cfs:>8.1f}x {t['lsns_json']['median_ms'] / cfs:>9.1f}x"
        print(line)
    print()
    for name, label in MEASURES:
        print(f"  {name:<12} {label}")
    if costs:
        print("\ncost model, least squares over the loads: t = fixed + a*processes + b*namespaces")
        print(f"{'measure':<14} {'fixed ms':>9} {'a µs/process':>13} {'b µs/namespace':>15}")
        for name, c in costs.items():
            print(
                f"{name:<14} {c['fixed_ms']:>9.1f} {c['us_per_process']:>13.1f}"
                f" {c['us_per_namespace']:>15.1f}"
            )


if __name__ == "__main__":
    main()
