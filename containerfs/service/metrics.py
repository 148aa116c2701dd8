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

import contextlib
import logging
import math
import time
from collections import Counter

import trio

from ..engine import metrics
from ..engine.errors import NotFound
from ..engine.kinds import NAMESPACE_NAMES
from ..engine.metrics import ContainerFacts, Reading
from ..engine.tree import Container, Engine
from ..engine.views import Knob, KnobState
from .listing import Listing
from .runtime import Runtime

log = logging.getLogger("containerfs")

#: What the kernel is asked of a container: its path, cgroup path, owned controllers.
_Ask = tuple[str, tuple[str, ...], frozenset[str]]

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

    async def render(self) -> str:
        facts, owned = self._facts()
        readings = await trio.to_thread.run_sync(self._read_all, owned)
        counts = await self._namespace_counts()
        families = [
            metrics.containers_family(len(facts) - 1),
            *metrics.container_families(facts, readings),
            metrics.namespace_family(counts),
            *self.requests.families(),
        ]
        return metrics.render(families)

    def _facts(self) -> tuple[list[ContainerFacts], list[_Ask]]:
        """The engine's side, in one pass with no await: what the kernel is asked for
        (path, cgroup path, controller kinds the container owns) and the rest."""
        rt = self.rt
        engine = rt.engine
        controllers = frozenset(k for k in engine.available if k not in NAMESPACE_NAMES)
        facts: list[ContainerFacts] = []
        owned: list[_Ask] = []
        for c in engine.root.walk():
            if c.removed:
                continue
            path = "/" + "/".join(c.path)
            try:
                cgroup = rt.cgroups.cgroup_of(c.cgpath)
            except OSError:
                cgroup = ""
            facts.append(
                ContainerFacts(
                    path=path,
                    cgroup=cgroup,
                    populated=True if c.is_root else c.populated,
                    released=c.released,
                    knobs=_knobs(engine, c),
                )
            )
            owned.append((path, c.cgpath, c.owned & controllers))
        return facts, owned

    def _read_all(self, owned: list[_Ask]) -> dict[str, Reading]:
        """Every container's figures (blocking: on a worker thread)."""
        usage = self.rt.cgroups.usage
        return {path: Reading(**usage(cgpath, kinds)) for path, cgpath, kinds in owned}

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


def _knobs(engine: Engine, c: Container) -> tuple[tuple[Knob, KnobState], ...]:
    """The knobs with views of the kinds ``c`` owns, as the engine records them
    (what the files show; the kernel is not asked)."""
    if c.is_root:
        return ()
    out = []
    for name, state in c.views.items():
        with contextlib.suppress(NotFound):  # saved on a host that served more knobs
            out.append((engine.knob(name)[0], state))
    return tuple(out)
