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

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.harness import arguments, report, summary
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


def ms_summary(ms: list[float]) -> dict[str, float]:
    return summary([m / 1000 for m in ms])


def main() -> None:
    args = arguments("bench.inject", __doc__)
    three = ("uts", "ipc", "net")
    results: dict[str, dict[str, float]] = {}
    with started(["unshare", "--uts", "--ipc", "--net", "--mount", "sleep", "600"]) as holder:
        time.sleep(0.1)
        h = holder.pid
        with started(["sleep", "600"]) as p:
            results["sleep_3kinds"] = ms_summary(measure(p.pid, h, three, args.runs))
            results["sleep_uts"] = ms_summary(measure(p.pid, h, ("uts",), args.runs))
            results["noop"] = ms_summary(noop(p.pid, h, three, args.runs))
        with started(["bash"]) as p:
            time.sleep(0.1)
            results["bash_3kinds"] = ms_summary(measure(p.pid, h, three, args.runs))
            results["bash_mnt_uts"] = ms_summary(measure(p.pid, h, ("mnt", "uts"), args.runs))
        for n in (4, 16):
            with started([sys.executable, "-c", THREADS, str(n)]) as p:
                assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
                results[f"python_{n}threads"] = ms_summary(measure(p.pid, h, three, args.runs))
    report(results, args.json)


if __name__ == "__main__":
    main()
