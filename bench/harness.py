"""Shared pieces of the benchmarks: a mounted daemon in a cgroup subtree of its own,
and the statistics every figure is reported with.

Timings live here, never in the tests. Each benchmark prints a table and can
write its figures as JSON (``--json FILE``) so that runs can be compared.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.cgtree import OwnSubtree, own_subtree

CONTAINERFS = [sys.executable, "-m", "containerfs"]


@contextmanager
def mounted(tag: str, *extra: str) -> Iterator[tuple[Path, OwnSubtree]]:
    """``containerfs mount`` on a fresh mountpoint, started in a new cgroup subtree;
    every container left is removed, the daemon stopped, the subtree removed."""
    tmp = Path(tempfile.mkdtemp(prefix="cfs-bench-"))
    mnt = tmp / "mnt"
    mnt.mkdir()
    with own_subtree(f"bench-{tag}") as subtree, open(tmp / "daemon.log", "wb") as log:
        daemon = subprocess.Popen(
            [*CONTAINERFS, "mount", str(mnt), "--state-dir", str(tmp / "state"), *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=subtree.join,
        )
        try:
            deadline = time.monotonic() + 30
            while not os.path.ismount(mnt):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"daemon did not mount; see {tmp / 'daemon.log'}")
                time.sleep(0.02)
            yield mnt, subtree
        finally:
            for child in sorted(mnt.iterdir()) if os.path.ismount(mnt) else []:
                if child.is_dir():
                    _rmdir_patiently(child)
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
            text = (tmp / "daemon.log").read_text(errors="replace")
            if "Traceback" in text or "internal error" in text:
                print(f"the daemon failed during the benchmark; its log:\n{text[-4000:]}")
    if not os.path.ismount(mnt):
        shutil.rmtree(tmp, ignore_errors=True)


def _rmdir_patiently(path: Path, timeout: float = 5.0) -> None:
    """``rmdir`` a container, again while it is busy: a task killed by a benchmark's
    last step may still be leaving, or a child the daemon deletes on release."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                print(f"bench: cannot remove {path}: {e.strerror}")
                return
        time.sleep(0.05)


def summary(values: list[float]) -> dict[str, float]:
    """Median, spread (p10, p90), best and worst of timings in seconds, in ms."""
    ms = sorted(v * 1000 for v in values)
    return {
        "runs": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p10_ms": round(ms[int(0.1 * (len(ms) - 1))], 2),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2),
        "max_ms": round(ms[-1], 2),
        "min_ms": round(ms[0], 2),
    }


def arguments(module: str, doc: str | None) -> argparse.Namespace:
    """``--runs N`` and ``--json FILE``, the options every benchmark takes; root only."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit(f"{module}: needs root")
    return args


def report(results: dict[str, dict[str, float]], json_path: Path | None) -> None:
    """Print one row per measure (median, spread, worst) and write them as JSON."""
    import json

    print(f"{'measure':<18} {'runs':>5} {'median':>9} {'p10':>9} {'p90':>9} {'worst':>9}")
    for name, r in results.items():
        print(
            f"{name:<18} {r['runs']:>5} {r['median_ms']:>7.2f}ms {r['p10_ms']:>7.2f}ms"
            f" {r['p90_ms']:>7.2f}ms {r['max_ms']:>7.2f}ms"
        )
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=1) + "\n")
