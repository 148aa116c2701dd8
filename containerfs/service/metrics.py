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
import os
import time
from collections import Counter
from collections.abc import Callable

import trio

from ..engine import metrics
from ..engine.errors import NotFound
from ..engine.kinds import NAMESPACE_NAMES
from ..engine.metrics import ContainerFacts, Reading
from ..engine.views import Knob
from ..kernel.cgcontrol import UsageFiles
from ..shared import SharedRuns
from .listing import Listing
from .runtime import Runtime

log = logging.getLogger("containerfs")

#: Most worker threads a scrape reads the cgroups with.
READERS = 4

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
        # (container uid, origin) -> the files of its figures (its cgroups do not move;
        # a claim moves its processes from its .tasks leaf into its directory)
        self._files: dict[tuple[int, str], UsageFiles] = {}
        self._renders: SharedRuns[None, str] = SharedRuns(self._render)

    async def render(self) -> str:
        """The text; readers at once share renders (``SharedRuns``), so a user reading
        in a loop from many processes costs the daemon one render at a time."""
        return await self._renders.get(None)

    async def _render(self, _key: None) -> str:
        facts, asks = self._facts()
        readings = await _read_all(self.rt.cgroups.read_usage, asks)
        counts = await self._namespace_counts()
        families = [
            metrics.containers_family(len(facts) - 1),
            *metrics.container_families(facts, readings, self._knob, self._knob_lines),
            metrics.namespace_family(counts),
            *self.requests.families(),
        ]
        return metrics.render(families)

    def _facts(self) -> tuple[list[ContainerFacts], list[tuple[str, UsageFiles]]]:
        """The engine's side, in one pass with no await (a consistent tree), and
        what the kernel is asked of each container: (path, its figures' files)."""
        rt = self.rt
        engine = rt.engine
        controllers = frozenset(k for k in engine.available if k not in NAMESPACE_NAMES)
        facts: list[ContainerFacts] = []
        asks: list[tuple[str, UsageFiles]] = []
        files: dict[tuple[int, str], UsageFiles] = {}
        for c in engine.root.walk():
            if c.removed:
                continue
            path = "/" + "/".join(c.path)
            try:
                cgroup = rt.cgroups.cgroup_of(c.cgpath)
                key = (c.uid, c.origin)  # a claim moves its processes (``direct``)
                found = self._files.get(key)
                if found is None:
                    found = rt.cgroups.usage_files(c.cgpath, c.owned & controllers)
                files[key] = found
                asks.append((path, found))
            except OSError:
                cgroup = ""
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
        self._files = files  # removed containers forgotten
        return facts, asks

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
    """Every container's figures, read on a worker thread per CPU (up to
    :data:`READERS`): most of a read is the kernel's, which runs side by side."""
    out: dict[str, Reading] = {}

    def read(part: list[tuple[str, UsageFiles]]) -> None:
        for path, files in part:
            out[path] = Reading(**read_usage(files))

    n = max(1, min(READERS, os.cpu_count() or 1, len(asks) // 50))
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(trio.to_thread.run_sync, read, asks[i::n])
    return out
