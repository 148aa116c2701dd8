"""Moving a running process into namespaces (``kernel/inject.py``): wall time of one move.

Run as root: ``python -m bench.inject [--runs N] [--json FILE]``.  Destination
namespaces come from ``unshare``; each measure moves one target back and forth
between them and this script's own namespaces (every move changes every
thread), timing ``move_into`` from call to return: stopping every thread,
the fd transfer, the ``setns`` calls, the inode check and the release.

- **sleep_3kinds**: a ``sleep`` blocked in nanosleep, uts+ipc+net.
- **bash_3kinds**: a bash blocked in ``read``, uts+ipc+net.
- **python_4threads** / **python_16threads**: threads blocked in sleep, futex
  and read, uts+ipc+net.
- **sleep_uts**: one kind only.
- **bash_mnt_uts**: a single-threaded bash, mount + uts namespace.
- **noop**: the process is already there (no ptrace at all).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from containerfs.kernel import inject

THREADS = r"""
import sys, threading, time
n = int(sys.argv[1])
ev = threading.Event()
for i in range(n - 1):
    threading.Thread(target=(lambda: time.sleep(600)) if i % 2 else ev.wait, daemon=True).start()
print("ready", flush=True)
sys.stdin.readline()
"""


@contextmanager
def started(argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def ino(pid: int, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def measure(pid: int, holder: int, kinds: tuple[str, ...], runs: int) -> list[float]:
    there = {k: ino(holder, k) for k in kinds}
    there_src: dict[str, str | int] = {k: f"/proc/{holder}/ns/{k}" for k in kinds}
    home = {k: ino(os.getpid(), k) for k in kinds}
    home_src: dict[str, str | int] = {k: f"/proc/self/ns/{k}" for k in kinds}
    ms = []
    for i in range(runs):
        targets, sources = (there, there_src) if i % 2 == 0 else (home, home_src)
        start = time.perf_counter()
        inject.move_into(pid, targets, sources=sources)
        ms.append((time.perf_counter() - start) * 1000)
        time.sleep(0.002)  # let it settle back into its blocking call
    return ms


def noop(pid: int, holder: int, kinds: tuple[str, ...], runs: int) -> list[float]:
    there = {k: ino(holder, k) for k in kinds}
    src: dict[str, str | int] = {k: f"/proc/{holder}/ns/{k}" for k in kinds}
    inject.move_into(pid, there, sources=src)
    ms = []
    for _ in range(runs):
        start = time.perf_counter()
        inject.move_into(pid, there, sources=src)
        ms.append((time.perf_counter() - start) * 1000)
    return ms


def summary(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {
        "runs": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2),
        "max_ms": round(ms[-1], 2),
        "min_ms": round(ms[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.inject: needs root")
    three = ("uts", "ipc", "net")
    results: dict[str, dict[str, float]] = {}
    with started(["unshare", "--uts", "--ipc", "--net", "--mount", "sleep", "600"]) as holder:
        time.sleep(0.1)
        h = holder.pid
        with started(["sleep", "600"]) as p:
            results["sleep_3kinds"] = summary(measure(p.pid, h, three, args.runs))
            results["sleep_uts"] = summary(measure(p.pid, h, ("uts",), args.runs))
            results["noop"] = summary(noop(p.pid, h, three, args.runs))
        with started(["bash"]) as p:
            time.sleep(0.1)
            results["bash_3kinds"] = summary(measure(p.pid, h, three, args.runs))
            results["bash_mnt_uts"] = summary(measure(p.pid, h, ("mnt", "uts"), args.runs))
        for n in (4, 16):
            with started([sys.executable, "-c", THREADS, str(n)]) as p:
                assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
                results[f"python_{n}threads"] = summary(measure(p.pid, h, three, args.runs))
    print(f"{'measure':<18} {'runs':>5} {'median':>9} {'p90':>9} {'worst':>9}")
    for name, r in results.items():
        print(
            f"{name:<18} {r['runs']:>5} {r['median_ms']:>7.2f}ms {r['p90_ms']:>7.2f}ms"
            f" {r['max_ms']:>7.2f}ms"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
