"""The root's ``metrics`` file: the tree's state in Prometheus's text format.

One read gathers the engine's facts in one pass (no await between, so a
consistent tree), the kernel's figures for every container, the namespace
counts, and the daemon's request statistics, and renders them
(``engine/metrics.py``). ``--metrics-listen`` serves the same bytes over HTTP
(``metrics_http.py``).

The figures (six files a container, a third of a scrape's time at 1,000 of
them) are read on a worker thread, at the scrape or ahead of it: a scraper at
a steady pace gets figures read half a second before it came
(``engine.metrics.read_ahead_at``), at most ``FIGURES_FRESH`` old, and only
waits for the render. What is written through containerfs shows at the next
scrape all the same (``touched``).

The namespace counts come from the walk behind ``namespaces``, the one costly
part (tens of milliseconds with thousands of processes): a scrape gets the
last counts and, when they are older than :data:`COUNTS_FRESH`, starts a new
walk in the background for the next one. Only the first scrape waits for it.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ..engine import metrics
from ..engine.errors import NotFound
from ..engine.kinds import NAMESPACE_NAMES
from ..engine.metrics import ContainerFacts, Reading
from ..engine.tree import Container
from ..engine.views import Knob
from ..kernel.cgcontrol import UsageFiles
from ..shared import SharedRuns
from .listing import Listing
from .runtime import Runtime

log = logging.getLogger("containerfs")

#: Seconds without a scrape after which the figure files kept open are closed.
FILES_IDLE = 300.0

#: Seconds the namespace counts are used before a scrape starts a new walk.
COUNTS_FRESH = 10.0

#: In ``Metrics._touched``: a write that changed every container's figures.
_EVERY = -1


@dataclass(slots=True)
class _Row:
    """A container as every scrape reports it, worked out once per tree version."""

    container: Container
    path: str
    cgroup: str
    labels: str  # ``container="...",id="..."``
    files: UsageFiles | None


class Metrics:
    """Renders ``metrics`` (and the HTTP endpoint's body)."""

    def __init__(self, rt: Runtime, listing: Listing) -> None:
        self.rt = rt
        self.listing = listing
        self.requests = rt.requests
        self._counts: dict[str, int] | None = None
        self._counted_at = -math.inf
        self._counting = False
        self._knob_lines = metrics.KnobLines()
        self._knobs_version: tuple[int, int] | None = None
        self._knobs_rendered = b""
        self._layout_of: tuple[int, list[_Row]] | None = None  # (engine version, rows)
        self._renders: SharedRuns[bool, bytes] = SharedRuns(self._render)
        self._idle_at = 0.0  # when the kept figure files are closed (``_keep_files``)
        self._closer = False
        self._reading = 0  # renders whose threads read the kept files now
        self._prune: set[str] | None = None  # the files to keep, once no render reads
        # The last figures read, by container uid, and when that read began; what was
        # written since (uid -> when) is not taken from them.
        self._sample: dict[int, Reading] = {}
        self._read_at = -math.inf
        self._touched: dict[int, float] = {}
        self._read_lock = trio.Lock()  # one read of the figures at a time (KeptFiles)
        self._scrapes = (-math.inf, -math.inf)  # the last two, for the pace
        self._ahead_at: float | None = None
        self._replanned = trio.Event()
        self._ahead = False  # the read-ahead task runs

    async def render(self, reader: tuple[int, int] = (0, 0)) -> bytes:
        """The text for ``reader`` (fsuid, fsgid; the HTTP endpoint reads as root).
        Readers at once share renders (``SharedRuns``), so a user reading in a loop
        from many processes costs the daemon one render at a time. Only root gets
        the host's namespace counts: another user's ``namespaces`` shows only what
        its own ``lsns`` would."""
        return await self._renders.get(reader[0] == 0)

    def touched(self, c: Container, everything: bool = False) -> None:
        """Something of `c` was written through containerfs (a limit): the next scrape
        reads its figures anew rather than use those read ahead. `everything` for a
        write that changes other containers' figures too (a process moved by
        ``tasks`` leaves another container, and both have ancestors counting it). A
        read under way when it comes keeps nothing of what it covers (``_keep``)."""
        if everything:
            self._sample = {}
        else:
            self._sample.pop(c.uid, None)
        if self._reading:
            self._touched[_EVERY if everything else c.uid] = time.monotonic()

    async def _render(self, as_root: bool) -> bytes:
        version = self.rt.engine.views_version
        facts, asks = self._facts()
        now = time.monotonic()
        self._scrapes = (self._scrapes[1], now)
        by_uid = await self._figures(asks)
        self._plan_ahead()
        self._keep_files()
        readings = {path: r for uid, path, _f in asks if (r := by_uid.get(uid)) is not None}
        families = [
            metrics.containers_family(len(facts) - 1),
            *metrics.container_families(facts, readings),
            *self.requests.families(),
        ]
        if as_root:
            families.append(metrics.namespace_family(await self._namespace_counts()))
        # The knob text, most of the bytes, is kept encoded: joined, not copied twice.
        return b"".join((metrics.render(families).encode(), self._knob_text(facts, version)))

    def _knob_text(self, facts: list[ContainerFacts], version: tuple[int, int]) -> bytes:
        """The knob families, rendered again only when a container or a view changed
        (``Engine.views_version``, taken with ``facts`` before any await: a mkdir
        during the scrape must not be filed under the version it made): most of
        the text, and between two scrapes usually the same."""
        if version != self._knobs_version:
            fams = metrics.knob_families(facts, self._knob, self._knob_lines)
            self._knobs_rendered = metrics.render(fams).encode()
            self._knobs_version = version
        return self._knobs_rendered

    def _facts(self) -> tuple[list[ContainerFacts], list[tuple[int, str, UsageFiles]]]:
        """The engine's side, in one pass with no await (a consistent tree), and
        what the kernel is asked of each container: (uid, path, its figures' files)."""
        facts: list[ContainerFacts] = []
        asks: list[tuple[int, str, UsageFiles]] = []
        for row in self._layout():
            c = row.container
            if row.files is not None:
                asks.append((c.uid, row.path, row.files))
            facts.append(
                ContainerFacts(
                    row.path,
                    row.cgroup,
                    True if c.is_root else c.populated,
                    c.released,
                    c.uid,
                    {} if c.is_root else c.views,
                    row.labels,
                )
            )
        return facts, asks

    def _layout(self) -> list[_Row]:
        """Every container with its path, cgroup, labels and figure files, worked out
        again only when the tree changed (``Engine.version``: mkdir, rmdir, rename);
        the kept files of containers gone are closed then (``_keep_files``)."""
        rt = self.rt
        engine = rt.engine
        if self._layout_of is not None and self._layout_of[0] == engine.version:
            return self._layout_of[1]
        controllers = frozenset(k for k in engine.available if k not in NAMESPACE_NAMES)
        rows: list[_Row] = []
        for c in engine.root.walk():
            if c.removed:
                continue
            cgpath = c.cgpath
            try:
                cgroup = rt.cgroups.cgroup_of(cgpath)
                files: UsageFiles | None = rt.cgroups.usage_files(cgpath, c.owned & controllers)
            except OSError:
                cgroup, files = "", None
            path = "/" + "/".join(c.path)
            labels = metrics.label_text((("container", path), ("id", cgroup)))
            rows.append(_Row(c, path, cgroup, labels, files))
        self._layout_of = (engine.version, rows)
        self._prune = {name for row in rows for _key, name in row.files or ()}
        return rows

    # -- the figures ---------------------------------------------------------------

    async def _figures(self, asks: list[tuple[int, str, UsageFiles]]) -> dict[int, Reading]:
        """Each container's figures by uid: those read ahead while no older than
        ``FIGURES_FRESH`` (and not touched since), the rest read now. A read ahead
        under way is waited for rather than done twice."""
        async with self._read_lock:
            fresh = time.monotonic() - self._read_at <= metrics.FIGURES_FRESH
            # a copy: a write while this scrape reads the rest may drop entries
            sample = dict(self._sample) if fresh else {}
            missing = [(uid, files) for uid, _path, files in asks if uid not in sample]
            if not missing:
                return sample
            start = time.monotonic()
            got = await self._read(missing)
            self._keep(got, start, whole=not fresh)
            return {**sample, **got} if fresh else got

    async def _read(self, asks: list[tuple[int, UsageFiles]]) -> dict[int, Reading]:
        self._reading += 1
        try:
            return await _read_all(self.rt.cgroups.read_usage, asks)
        finally:
            self._reading -= 1

    def _keep(self, got: dict[int, Reading], start: float, whole: bool) -> None:
        """Keep what a read that began at `start` found, but not of a container
        written to since (its figures may predate the write). Reads are one at a
        time, so what was touched during this one is of no use after it."""
        late = {uid for uid, at in self._touched.items() if at >= start}
        self._touched.clear()
        kept = {} if _EVERY in late else {u: r for u, r in got.items() if u not in late}
        if whole:
            self._sample, self._read_at = kept, start
        else:
            self._sample.update(kept)

    def _plan_ahead(self) -> None:
        """After a scrape: when to read ahead of the next (``read_ahead_at``)."""
        self._ahead_at = metrics.read_ahead_at(self._scrapes, self._read_at)
        self._replanned.set()
        if not self._ahead and self._ahead_at is not None and self.rt.nursery is not None:
            self._ahead = True
            self.rt.nursery.start_soon(self._read_ahead)

    async def _read_ahead(self) -> None:
        """The task that reads every container's figures when a plan says, and waits
        for the next plan; it ends after a scraper has gone quiet."""
        try:
            while True:
                self._replanned = trio.Event()
                due = self._ahead_at
                if due is None:
                    with trio.move_on_after(FILES_IDLE):
                        await self._replanned.wait()
                    if self._ahead_at is None:
                        return
                    continue
                left = due - time.monotonic()
                if left > 0:
                    with trio.move_on_after(left):
                        await self._replanned.wait()
                    continue
                self._ahead_at = None
                async with self._read_lock:
                    # a scrape read them while this waited, or planned anew
                    young = time.monotonic() - self._read_at < metrics.FIGURES_FRESH / 2
                    if young or self._ahead_at is not None:
                        continue
                    asks = [(r.container.uid, r.files) for r in self._layout() if r.files]
                    start = time.monotonic()
                    try:
                        got = await self._read(asks)
                    except Exception:  # only ever a head start: the scrape reads itself
                        log.exception("metrics: reading the figures ahead failed")
                        continue
                    self._keep(got, start, whole=True)
        finally:
            self._ahead = False

    def _keep_files(self) -> None:
        """Close the kept files of removed containers once no render reads them, and
        all of them after :data:`FILES_IDLE` seconds without a scrape (``KeptFiles``)."""
        if self._prune is not None and not self._reading:
            self.rt.cgroups.kept_files.keep_only(self._prune)
            self._prune = None
        self._idle_at = time.monotonic() + FILES_IDLE
        if not self._closer and self.rt.nursery is not None:
            self._closer = True
            self.rt.nursery.start_soon(self._close_when_idle)

    async def _close_when_idle(self) -> None:
        try:
            # never while a render's threads read them
            while (left := self._idle_at - time.monotonic()) > 0 or self._reading:
                await trio.sleep(max(left, 1.0))
            self.rt.cgroups.kept_files.close()
        finally:
            self._closer = False

    def close(self) -> None:
        self.rt.cgroups.kept_files.close()

    def _knob(self, name: str) -> Knob | None:
        """The knob of a view file; None for one saved on a host that served more."""
        try:
            return self.rt.engine.knob(name)[0]
        except NotFound:
            return None

    async def _namespace_counts(self) -> dict[str, int]:
        if self._counts is None:
            await self._count()
        elif time.monotonic() - self._counted_at > COUNTS_FRESH and not self._counting:
            nursery = self.rt.nursery
            if nursery is not None:
                self._counting = True
                nursery.start_soon(self._count)
        return self._counts or {}

    async def _count(self) -> None:
        self._counting = True
        try:
            entries = await self.listing.scans.get(None)
            self._counts = dict(Counter(e.kind for e in entries))
            self._counted_at = time.monotonic()
        except OSError as exc:
            log.warning("metrics: cannot count the host's namespaces: %s", exc)
            self._counts = self._counts or {}
        finally:
            self._counting = False


async def _read_all(
    read_usage: Callable[[UsageFiles], dict[str, float]], asks: list[tuple[int, UsageFiles]]
) -> dict[int, Reading]:
    """The figures of `asks`, by container uid, on one worker thread: a read is
    mostly kernel time (about 2 µs a file here), and a second thread measured no
    faster, taking turns with the first at the interpreter's lock."""

    def read() -> dict[int, Reading]:
        return {uid: Reading(**read_usage(files)) for uid, files in asks}

    return await trio.to_thread.run_sync(read)
