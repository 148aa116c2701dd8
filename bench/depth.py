"""Depth: ``mkdir`` and ``rmdir`` along one chain of containers, by depth.

Run as root: ``python -m bench.depth [--count N] [--batch B] [--json FILE]``. It
starts ``containerfs mount`` in a cgroup subtree of its own (``harness.mounted``),
makes ``top`` and below it a chain ``c/c/c/...`` of ``--count`` containers (default
1,500; a cgroup path reaches PATH_MAX near 2,000 levels of one-letter names), one
``mkdir`` at a time through directory fds, as a shell that ``cd``s into each new
directory would, then removes the chain from the bottom. The chain's containers own
nothing (a new container's ``container.subtree`` is empty): each costs a cgroup
directory and no holder. Each call is timed; the rows are per batch of ``--batch``
levels (default 250): flat rows mean a cost that does not grow with depth (the issue
measured 23 ms per ``mkdir`` at depth 250 and 434 ms at 1,000, before the walks
stopped depending on depth).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.harness import mounted, report, summary

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.depth: needs root")
    made: list[float] = []
    removed: list[float] = []
    with mounted("depth") as (mnt, _subtree):
        os.mkdir(mnt / "top")
        fd = os.open(mnt / "top", O_DIR)
        try:
            for _ in range(args.count):
                start = time.perf_counter()
                os.mkdir("c", dir_fd=fd)
                made.append(time.perf_counter() - start)
                nxt = os.open("c", O_DIR, dir_fd=fd)
                os.close(fd)
                fd = nxt
            for _ in range(args.count):
                parent = os.open("..", O_DIR, dir_fd=fd)
                os.close(fd)
                fd = parent
                start = time.perf_counter()
                os.rmdir("c", dir_fd=fd)
                removed.append(time.perf_counter() - start)
        finally:
            os.close(fd)
    removed.reverse()  # by depth, as made
    results = {}
    for lo in range(0, args.count, args.batch):
        hi = min(lo + args.batch, args.count)
        results[f"mkdir_{lo + 1}-{hi}"] = summary(made[lo:hi])
    for lo in range(0, args.count, args.batch):
        hi = min(lo + args.batch, args.count)
        results[f"rmdir_{lo + 1}-{hi}"] = summary(removed[lo:hi])
    report(results, args.json)


if __name__ == "__main__":
    main()
