"""``containerfs top``: containers by CPU, memory, pids and tasks, as ``systemd-cgtop``.

It reads the mount root's ``metrics`` file once a refresh (every container's
figures in one read, ``engine/metrics.py`` parses it back), so it works for any
user who may read the tree. CPU % is the growth of a container's CPU time over
the refresh interval (100% is one CPU busy), so the first screen has none.
The screen is drawn with curses (Python's own binding of ncurses); ``--batch``
prints plain tables instead, for scripts and logs.
"""

from __future__ import annotations

import curses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .engine.metrics import parse
from .treeview import find_top

#: key -> (column, sorts descending?): systemd-cgtop's keys where it has the column
ORDERS: dict[str, tuple[str, bool]] = {
    "p": ("path", False),
    "t": ("tasks", True),
    "c": ("cpu", True),
    "m": ("memory", True),
    "n": ("pids", True),
}
ORDER_NAMES = {column: key for key, (column, _desc) in ORDERS.items()}


@dataclass
class Row:
    path: str
    tasks: float | None = None
    cpu_seconds: float | None = None
    cpu: float | None = None  # % over the last interval
    memory: float | None = None
    pids: float | None = None


_FIGURES = {
    "containerfs_processes": "tasks",
    "containerfs_cpu_usage_seconds_total": "cpu_seconds",
    "containerfs_memory_usage_bytes": "memory",
    "containerfs_pids_current": "pids",
}


def sample(metrics: Path, below: str) -> dict[str, Row]:
    """Rows of every container at or below ``below`` ("/" for all), from one read."""
    rows: dict[str, Row] = {}
    prefix = below.rstrip("/") + "/"
    for name, labels, value in parse(metrics.read_text()):
        attr = _FIGURES.get(name)
        path = labels.get("container")
        if attr is None or path is None or not (path == below or path.startswith(prefix)):
            continue
        row = rows.get(path)
        if row is None:
            row = rows[path] = Row(path)
        setattr(row, attr, value)
    return rows


def with_cpu(now: dict[str, Row], before: dict[str, Row] | None, seconds: float) -> None:
    """Fill in CPU % from the growth of CPU time since ``before``."""
    if before is None or seconds <= 0:
        return
    for path, row in now.items():
        old = before.get(path)
        if old is None or old.cpu_seconds is None or row.cpu_seconds is None:
            continue
        row.cpu = max(0.0, (row.cpu_seconds - old.cpu_seconds) / seconds * 100)


def ordered(rows: dict[str, Row], column: str) -> list[Row]:
    """By ``column`` (the largest first but for the path), ties and unknowns
    (``-``, last) by path."""
    by_path = sorted(rows.values(), key=lambda r: r.path)
    if column == "path":
        return by_path

    def key(r: Row) -> float:
        v = getattr(r, column)
        return -math.inf if v is None else float(v)

    return sorted(by_path, key=key, reverse=dict(ORDERS.values())[column])


def _bytes(v: float | None) -> str:
    if v is None:
        return "-"
    for unit in ("B", "K", "M", "G", "T"):
        if v < 1024 or unit == "T":
            return f"{v:.0f}{unit}" if unit == "B" else f"{v:.1f}{unit}"
        v /= 1024
    raise AssertionError


def _num(v: float | None) -> str:
    return "-" if v is None else str(int(v))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


HEADER = ("Container", "Tasks", "%CPU", "Memory", "Pids")


def table(rows: list[Row], width: int) -> list[str]:
    """Lines of the table, the path column as wide as ``width`` leaves room for."""
    widths = (7, 7, 9, 7)
    pathw = max(10, width - sum(widths) - 1)
    head = f"{HEADER[0]:<{pathw}}" + "".join(
        f"{h:>{w}}" for h, w in zip(HEADER[1:], widths, strict=True)
    )
    lines = [head]
    for r in rows:
        path = r.path if len(r.path) <= pathw - 1 else "…" + r.path[-(pathw - 2) :]
        cells = (_num(r.tasks), _pct(r.cpu), _bytes(r.memory), _num(r.pids))
        lines.append(
            f"{path:<{pathw}}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
        )
    return lines


class Sampler:
    """Successive samples with CPU % between them."""

    def __init__(self, metrics: Path, below: str, clock: Callable[[], float] = time.monotonic):
        self.metrics, self.below, self.clock = metrics, below, clock
        self._last: tuple[float, dict[str, Row]] | None = None

    def next(self) -> dict[str, Row]:
        now = self.clock()
        rows = sample(self.metrics, self.below)
        if self._last is not None:
            with_cpu(rows, self._last[1], now - self._last[0])
        self._last = (now, rows)
        return rows


def _below(mount: Path, top: Path) -> str:
    return "/" + "/".join(top.relative_to(mount).parts)


def run(path: str | None, delay: float, order: str, iterations: int | None, batch: bool) -> int:
    mount, top = find_top(path)
    sampler = Sampler(mount / "metrics", _below(mount, top))
    if batch:
        n = 0
        while True:
            rows = sampler.next()
            sys.stdout.write("\n".join(table(ordered(rows, order), 80)) + "\n\n")
            sys.stdout.flush()
            n += 1
            if iterations is not None and n >= iterations:
                return 0
            time.sleep(delay)
    return curses.wrapper(_screen, sampler, delay, order, iterations)


def _screen(
    scr: curses.window, sampler: Sampler, delay: float, order: str, iterations: int | None
) -> int:
    curses.curs_set(0)
    scr.timeout(100)  # getch waits at most this long, in ms
    n = 0
    rows = sampler.next()
    due = time.monotonic() + delay
    while True:
        height, width = scr.getmaxyx()
        scr.erase()
        lines = table(ordered(rows, order), width - 1)
        key_help = "  ".join(f"{k}:{col}" for k, (col, _d) in ORDERS.items())
        status = f"containerfs top  {sampler.below}  order {order}  ({key_help}  q:quit)"
        scr.addnstr(0, 0, status, width - 1)
        scr.addnstr(1, 0, lines[0], width - 1, curses.A_REVERSE)
        for y, line in enumerate(lines[1 : height - 2], start=2):
            scr.addnstr(y, 0, line, width - 1)
        scr.refresh()
        while time.monotonic() < due:
            ch = scr.getch()
            if ch in (ord("q"), ord("Q")):
                return 0
            if 0 <= ch < 256 and chr(ch) in ORDERS:
                order = ORDERS[chr(ch)][0]
                break  # redraw at once in the new order
        else:
            n += 1
            if iterations is not None and n >= iterations:
                return 0
            rows = sampler.next()
            due = time.monotonic() + delay
