"""The root's ``metrics`` file: the tree's state in Prometheus's text format.

One read gathers the engine's facts in one pass (no await between, so a
consistent tree), the kernel's figures for every container on one worker
thread, the namespace counts, and the daemon's request statistics, and
renders them (``engine/metrics.py``). ``--metrics-listen`` serves the same
bytes over HTTP (``metrics_http.py``).

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
        self._knobs_rendered = ""
        # (engine version, each container's path, cgroup and figure files): ``_layout``
        self._layout_of: tuple[int, list[tuple[Container, str, str, UsageFiles | None]]] | None
        self._layout_of = None
        self._renders: SharedRuns[bool, str] = SharedRuns(self._render)
        self._idle_at = 0.0  # when the kept figure files are closed (``_keep_files``)
        self._closer = False
        self._rendering = False

    async def render(self, reader: tuple[int, int] = (0, 0)) -> str:
        """The text for ``reader`` (fsuid, fsgid; the HTTP endpoint reads as root).
        Readers at once share renders (``SharedRuns``), so a user reading in a loop
        from many processes costs the daemon one render at a time. Only root gets
        the host's namespace counts: another user's ``namespaces`` shows only what
        its own ``lsns`` would."""
        return await self._renders.get(reader[0] == 0)

    async def _render(self, as_root: bool) -> str:
        version = self.rt.engine.views_version
        facts, asks = self._facts()
        self._rendering = True
        try:
            readings = await _read_all(self.rt.cgroups.read_usage, asks)
        finally:
            self._rendering = False
        self._keep_files(asks)
        families = [
            metrics.containers_family(len(facts) - 1),
            *metrics.container_families(facts, readings),
            *self.requests.families(),
        ]
        if as_root:
            families.append(metrics.namespace_family(await self._namespace_counts()))
        return metrics.render(families) + self._knob_text(facts, version)

    def _knob_text(self, facts: list[ContainerFacts], version: tuple[int, int]) -> str:
        """The knob families, rendered again only when a container or a view changed
        (``Engine.views_version``, taken with ``facts`` before any await: a mkdir
        during the scrape must not be filed under the version it made): most of
        the text, and between two scrapes usually the same."""
        if version != self._knobs_version:
            fams = metrics.knob_families(facts, self._knob, self._knob_lines)
            self._knobs_rendered = metrics.render(fams)
            self._knobs_version = version
        return self._knobs_rendered

    def _facts(self) -> tuple[list[ContainerFacts], list[tuple[str, UsageFiles]]]:
        """The engine's side, in one pass with no await (a consistent tree), and
        what the kernel is asked of each container: (path, its figures' files)."""
        facts: list[ContainerFacts] = []
        asks: list[tuple[str, UsageFiles]] = []
        for c, path, cgroup, files in self._layout():
            if files is not None:
                asks.append((path, files))
            facts.append(
                ContainerFacts(
                    path=path,
                    cgroup=cgroup,
                    populated=True if c.is_root else c.populated,
                    released=c.released,
                    uid=c.uid,
                    views={} if c.is_root else c.views,
                )
            )
        return facts, asks

    def _layout(self) -> list[tuple[Container, str, str, UsageFiles | None]]:
        """Every container with its path, cgroup and figure files, worked out again
        only when the tree changed (``Engine.version``: mkdir, rmdir, rename)."""
        rt = self.rt
        engine = rt.engine
        if self._layout_of is not None and self._layout_of[0] == engine.version:
            return self._layout_of[1]
        controllers = frozenset(k for k in engine.available if k not in NAMESPACE_NAMES)
        layout: list[tuple[Container, str, str, UsageFiles | None]] = []
        for c in engine.root.walk():
            if c.removed:
                continue
            cgpath = c.cgpath
            try:
                cgroup = rt.cgroups.cgroup_of(cgpath)
                files: UsageFiles | None = rt.cgroups.usage_files(cgpath, c.owned & controllers)
            except OSError:
                cgroup, files = "", None
            layout.append((c, "/" + "/".join(c.path), cgroup, files))
        self._layout_of = (engine.version, layout)
        return layout

    def _keep_files(self, asks: list[tuple[str, UsageFiles]]) -> None:
        """Close the kept files of removed containers now, and all of them after
        :data:`FILES_IDLE` seconds without a scrape (``KeptFiles``)."""
        kept = self.rt.cgroups.kept_files
        kept.keep_only({name for _path, files in asks for _key, name in files})
        self._idle_at = time.monotonic() + FILES_IDLE
        if not self._closer and self.rt.nursery is not None:
            self._closer = True
            self.rt.nursery.start_soon(self._close_when_idle)

    async def _close_when_idle(self) -> None:
        try:
            # never while a render's threads read them
            while (left := self._idle_at - time.monotonic()) > 0 or self._rendering:
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
    read_usage: Callable[[UsageFiles], dict[str, float]], asks: list[tuple[str, UsageFiles]]
) -> dict[str, Reading]:
    """Every container's figures, on one worker thread: with the files kept open a
    read is about a microsecond of kernel time, and more threads would only take
    turns at the interpreter's lock."""

    def read() -> dict[str, Reading]:
        return {path: Reading(**read_usage(files)) for path, files in asks}

    return await trio.to_thread.run_sync(read)
