"""Prometheus's text exposition format (0.0.4), and what containerfs reports in it.

Pure: families of samples in, text out, and the request statistics the FUSE
adapter feeds. The service gathers the kernel's readings (``service/metrics.py``)
and the engine's own state, and this module names and shapes them.

The format is written here rather than by ``prometheus_client``: its renderer
took about 40 ms for the 8,000 samples of 1,000 containers on the project's
machine, the whole budget of a scrape (README "Monitoring"); the tests parse
this output with ``prometheus_client``'s parser and check it with ``promtool``.

Names follow Prometheus's conventions (``containerfs_`` prefix, base units,
``_total`` on counters) and cAdvisor's where it has the same measure. Labels
are bounded by the tree: ``container`` (its path), ``id`` (its cgroup),
``view`` and ``field`` of a knob, ``kind`` of a namespace, ``operation`` of a
request.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .views import Knob, KnobState, Value

#: The content type a scraper is answered with.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    """One metric: its name, type, help, and its sample lines, rendered as added
    (a scrape of a thousand containers has some 60,000 of them)."""

    name: str
    type: str  # "counter", "gauge" or "histogram"
    help: str
    lines: list[str] = field(default_factory=list)

    def add(self, labels: Labels, value: float, suffix: str = "") -> None:
        self.add_text(label_text(labels), value, suffix)

    def add_text(self, labels: str, value: float, suffix: str = "") -> None:
        """A sample whose labels are already ``label_text``."""
        if labels:
            self.lines.append(f"{self.name}{suffix}{{{labels}}} {format_value(value)}\n")
        else:
            self.lines.append(f"{self.name}{suffix} {format_value(value)}\n")


def label_text(labels: Labels) -> str:
    """``k="v",...`` with the values escaped as the format says."""
    return ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)


def _escape_label(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """As Prometheus writes numbers: integers without a point, ``+Inf``, ``NaN``."""
    if type(value) is int:
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**63:
        return str(int(value))
    return repr(value)


def render(families: Iterable[Family]) -> str:
    """The exposition text of ``families``, in their order (one family each name)."""
    out: list[str] = []
    for fam in families:
        out.append(f"# HELP {fam.name} {_escape_help(fam.help)}\n# TYPE {fam.name} {fam.type}\n")
        out.extend(fam.lines)
    return "".join(out)


# -- the daemon's requests ------------------------------------------------------------

#: Upper bounds of the request latency histogram, in seconds: 10 µs (a page-cached
#: open) to 2.5 s (a mkdir on a loaded host).
BUCKETS: tuple[float, ...] = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


@dataclass
class _OpStats:
    count: int = 0
    errors: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))


class RequestStats:
    """Counts and latencies of the daemon's FUSE requests, by operation.

    Fed once per request (``fuse.errors.fuse_errors``): a dict lookup, an add and a
    bisect, well under a microsecond. Operations are FUSE's, a fixed set.
    """

    def __init__(self) -> None:
        self._ops: dict[str, _OpStats] = {}

    def observe(self, operation: str, seconds: float, failed: bool) -> None:
        op = self._ops.get(operation)
        if op is None:
            op = self._ops[operation] = _OpStats()
        op.count += 1
        op.seconds += seconds
        if failed:
            op.errors += 1
        i = bisect.bisect_left(BUCKETS, seconds)
        if i < len(BUCKETS):
            op.buckets[i] += 1

    def count(self, operation: str) -> int:
        op = self._ops.get(operation)
        return 0 if op is None else op.count

    def families(self) -> list[Family]:
        total = Family(
            "containerfs_requests_total", "counter", "FUSE requests answered, by operation."
        )
        errors = Family(
            "containerfs_request_errors_total",
            "counter",
            "FUSE requests answered with an error, by operation.",
        )
        latency = Family(
            "containerfs_request_duration_seconds",
            "histogram",
            "Time the daemon took to answer a FUSE request, by operation.",
        )
        for name in sorted(self._ops):
            op = self._ops[name]
            labels: Labels = (("operation", name),)
            total.add(labels, op.count)
            errors.add(labels, op.errors)
            running = 0
            for bound, n in zip(BUCKETS, op.buckets, strict=True):
                running += n
                latency.add((*labels, ("le", format_value(bound))), running, "_bucket")
            latency.add((*labels, ("le", "+Inf")), op.count, "_bucket")
            latency.add(labels, op.seconds, "_sum")
            latency.add(labels, op.count, "_count")
        return [total, errors, latency]


# -- containers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """What the kernel said of one container's cgroups; None where it has no value
    (a controller the container shares with its parent, or a file that vanished)."""

    cpu_seconds: float | None = None
    memory_bytes: float | None = None
    memory_limit: float | None = None  # +Inf for max
    pids: float | None = None
    pids_limit: float | None = None  # +Inf for max
    processes: float | None = None


@dataclass(frozen=True)
class ContainerFacts:
    """The engine's side of one container, taken in one pass (no await)."""

    path: str  # "/" for the root, "/a/b" below it
    cgroup: str  # its cgroup, as /proc/PID/cgroup spells the v2 line
    populated: bool
    released: int
    uid: int = 0  # the engine's id of the container (what the knob lines are kept by)
    views: Mapping[str, KnobState] = field(default_factory=dict)  # knob file -> views
    labels: str = ""  # its ``container`` and ``id`` labels as ``label_text``, if made already


#: Seconds a scrape's cgroup figures may be old: read ahead of a steady scraper, or at
#: the scrape itself (``read_ahead_at``).
FIGURES_FRESH = 1.0

#: Scrapes further apart than this are not read ahead of: the figure files are closed
#: by then (``service/metrics.py``'s ``FILES_IDLE``).
READ_AHEAD_MAX = 300.0


def read_ahead_at(scrapes: tuple[float, float], read_at: float) -> float | None:
    """When to read every container's figures ahead of the next scrape, given the
    times of the last two (``scrapes``) and of the last read (``read_at``); None
    for no steady pace to go by (a first scrape, or a long pause).

    A scraper comes at a steady pace (Prometheus's ``scrape_interval``, ``top``'s
    refresh), so the next scrape is due one interval after the last: the figures
    are read half a freshness window before it, and that scrape finds them young
    enough to use (``FIGURES_FRESH``) and only renders; a scrape that comes
    early or late reads them itself. One read a scrape, as without reading
    ahead, but never more than two a window however fast the reads come."""
    before, last = scrapes
    interval = last - before
    if not 0 < interval <= READ_AHEAD_MAX:
        return None
    lead = min(FIGURES_FRESH / 2, interval / 2)
    return max(last + interval - lead, read_at + FIGURES_FRESH / 2)


#: The fields of a knob with several numbers, as proc(5) names them.
KNOB_FIELDS: Mapping[str, tuple[str, ...]] = {
    "ipc.sem": ("semmsl", "semmns", "semopm", "semmni"),
    "net.ip_local_port_range": ("low", "high"),
}

_CONTAINER_GAUGES: tuple[tuple[str, str, str, str], ...] = (
    # (attribute of Reading, metric, type, help)
    ("cpu_seconds", "containerfs_cpu_usage_seconds_total", "counter",
     "CPU time used by the container's tasks and those below it (cgroup cpu.stat usage_usec)."),
    ("memory_bytes", "containerfs_memory_usage_bytes", "gauge",
     "Memory charged to the container's memory cgroup (memory.current), where it owns one."),
    ("memory_limit", "containerfs_memory_limit_bytes", "gauge",
     "The container's memory.max (+Inf: max), where it owns a memory cgroup."),
    ("pids", "containerfs_pids_current", "gauge",
     "Tasks counted by the container's pids cgroup (pids.current), where it owns one."),
    ("pids_limit", "containerfs_pids_limit", "gauge",
     "The container's pids.max (+Inf: max), where it owns a pids cgroup."),
    ("processes", "containerfs_processes", "gauge",
     "Processes in the container itself, as its tasks file lists them."),
)  # fmt: skip


def knob_metric(knob: Knob) -> str:
    """``containerfs_ipc_shm_mni`` for ``ipc.shm_mni``."""
    return "containerfs_" + knob.file.replace(".", "_")


#: Knob file -> its knob, or None for one this host does not serve.
KnobLookup = Callable[[str], "Knob | None"]


class KnobLines:
    """Rendered samples of each container's knobs, kept while their values stay
    the same: they are most of a scrape's lines (some 50 per container) and
    change only when a view is written."""

    def __init__(self) -> None:
        # container uid -> (its labels, its values, knob file -> (knob, lines))
        self._kept: dict[int, tuple[str, tuple[object, ...], list[tuple[Knob, list[str]]]]] = {}
        self._next: dict[int, tuple[str, tuple[object, ...], list[tuple[Knob, list[str]]]]] = {}

    def of(
        self, uid: int, labels: str, views: Mapping[str, KnobState], lookup: KnobLookup
    ) -> list[tuple[Knob, list[str]]]:
        values = tuple((s.internal, s.external) for s in views.values())
        kept = self._kept.get(uid)
        if kept is None or kept[0] != labels or kept[1] != values:
            block = []
            for name, state in views.items():
                knob = lookup(name)
                if knob is None:
                    continue
                fam = Family(knob_metric(knob), "gauge", "")
                _add_knob(fam, labels, knob, state)
                block.append((knob, fam.lines))
            kept = (labels, values, block)
        self._next[uid] = kept
        return kept[2]

    def done(self) -> None:
        """End of a scrape: forget what it did not ask for (removed containers)."""
        self._kept, self._next = self._next, {}


def container_families(
    facts: Sequence[ContainerFacts], readings: Mapping[str, Reading]
) -> list[Family]:
    """Per-container families of the cgroup figures (keyed by the container's
    path), ``populated`` and ``released``: labels ``container`` and ``id``."""
    fams = [Family(name, kind, text) for _attr, name, kind, text in _CONTAINER_GAUGES]
    populated = Family(
        "containerfs_populated", "gauge", "1 while a process lives in the container or below it."
    )
    released = Family(
        "containerfs_released_total",
        "counter",
        "Times the container emptied and its release policy ran (container.events released).",
    )
    # Inline rather than through ``Family.add_text``: 8,000 samples at 1,000 containers.
    gauges = zip(_CONTAINER_GAUGES, fams, strict=True)
    columns = [(attr, fam.name, fam.lines) for (attr, *_rest), fam in gauges]
    fmt = format_value
    for f in facts:
        labels = f.labels or label_text((("container", f.path), ("id", f.cgroup)))
        reading = readings.get(f.path)
        if reading is not None:
            for attr, name, lines in columns:
                value = getattr(reading, attr)
                if value is not None:
                    lines.append(f"{name}{{{labels}}} {fmt(value)}\n")
        populated.lines.append(f"containerfs_populated{{{labels}}} {1 if f.populated else 0}\n")
        released.lines.append(f"containerfs_released_total{{{labels}}} {f.released}\n")
    return [*fams, populated, released]


def knob_families(
    facts: Sequence[ContainerFacts], lookup: KnobLookup, knob_lines: KnobLines | None = None
) -> list[Family]:
    """A family per knob with the views of every container owning its kind; label
    ``container`` only (a knob is a namespace's, not a cgroup's)."""
    cache = knob_lines or KnobLines()
    knobs: dict[str, Family] = {}
    for f in facts:
        if not f.views:
            continue
        container = label_text((("container", f.path),))
        for knob, lines in cache.of(f.uid, container, f.views, lookup):
            kfam = knobs.get(knob.file)
            if kfam is None:
                kfam = knobs[knob.file] = Family(
                    knob_metric(knob),
                    "gauge",
                    f"The namespace knob {knob.file} ({knob.sysctl}) by view: the parent's "
                    "limit (external, +Inf: max), the container's own (internal), and the "
                    "value the kernel enforces (effective).",
                )
            kfam.lines.extend(lines)
    cache.done()
    return list(knobs.values())


def _add_knob(fam: Family, labels: str, knob: Knob, state: KnobState) -> None:
    views: tuple[tuple[str, Value | None], ...] = (
        ("external", state.external),
        ("internal", state.internal),
        ("effective", state.effective(knob.type)),
    )
    names = KNOB_FIELDS.get(knob.file)
    for view, value in views:
        parts: Sequence[int | None] = [None] * knob.type.arity if value is None else value
        for i, part in enumerate(parts):
            extra = f'view="{view}"'
            if len(parts) > 1:
                extra += f',field="{names[i] if names else i}"'
            fam.add_text(f"{labels},{extra}", math.inf if part is None else part)


def namespace_family(counts: Mapping[str, int]) -> Family:
    fam = Family(
        "containerfs_namespaces",
        "gauge",
        "Namespaces on the host by kind, as the root's namespaces file lists them.",
    )
    for kind in sorted(counts):
        fam.add((("kind", kind),), counts[kind])
    return fam


def containers_family(n: int) -> Family:
    fam = Family("containerfs_containers", "gauge", "Containers in the tree, the root excluded.")
    fam.add((), n)
    return fam


# -- reading it back (``containerfs top``) -----------------------------------------------


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of exposition text as (name, labels, value); comments skipped.

    Enough for this module's own output (what ``containerfs top`` reads), not a
    general parser: no timestamps, label values escaped as ``render`` does.
    """
    out: list[tuple[str, dict[str, str], float]] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        labels: dict[str, str] = {}
        if "{" in line:
            name, rest = line.split("{", 1)
            i = 0
            while rest[i] != "}":
                eq = rest.index("=", i)
                key = rest[i:eq].lstrip(",")
                j = eq + 2  # past ="
                chars: list[str] = []
                while rest[j] != '"':
                    if rest[j] == "\\":
                        j += 1
                        chars.append("\n" if rest[j] == "n" else rest[j])
                    else:
                        chars.append(rest[j])
                    j += 1
                labels[key] = "".join(chars)
                i = j + 1
            value_text = rest[i + 1 :].split()[0]
        else:
            name, value_text = line.split()[:2]
        out.append((name, labels, float(value_text)))
    return out
