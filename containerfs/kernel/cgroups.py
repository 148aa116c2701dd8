"""Cgroup v1, v2 and hybrid hosts behind one v2-shaped interface.

The rest of containerfs thinks in cgroup v2 terms: controller *kinds* named as
v2 names them (``cpu``, ``memory``, ``io``...), control files named as v2 names
them (``memory.max``, ``cpu.max``...) and written in v2 syntax. This module is
the one place that knows where the hierarchies are mounted, which of them are
v1, and how a v2 value maps onto v1 files, so nothing above it has to care.

Everything is discovered from ``/proc/<pid>/cgroup`` and
``/proc/<pid>/mountinfo`` rather than assumed at ``/sys/fs/cgroup``: hosts mount
cgroups in different places, containers see their own cgroup namespace root,
and tests point discovery at a fake ``/proc``.

Value parsing and conversion are small pure functions at the top of the module
so they can be unit-tested without root; every write is fully validated before
the first byte reaches the kernel, so a bad value changes nothing.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CONTROL_FILES",
    "STANDARD_KINDS",
    "CgroupBackend",
    "ControlFile",
    "Hierarchy",
    "MountEntry",
    "bytes_limit_from_v1",
    "bytes_limit_to_v1",
    "cpu_max_from_v1",
    "cpu_stat_from_v1",
    "format_bytes_limit",
    "format_cpu_max",
    "format_cpulist",
    "format_io_max",
    "io_max_from_v1",
    "kind_of",
    "parse_bytes_limit",
    "parse_cpu_max",
    "parse_cpu_weight",
    "parse_cpulist",
    "parse_io_max",
    "parse_io_weight",
    "parse_mountinfo",
    "parse_pid_cgroup",
    "parse_pids_max",
    "parse_proc_cgroups",
    "shares_to_weight",
    "weight_to_shares",
]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Kinds
# ---------------------------------------------------------------------------

#: Controller kinds every host is asked about, whether or not it has them, so
#: that callers always see a reason for a missing one rather than silence.
STANDARD_KINDS: tuple[str, ...] = (
    "cpu",
    "cpuset",
    "memory",
    "io",
    "pids",
    "hugetlb",
    "rdma",
    "misc",
)

# v1 controllers whose v2 successor has another name. Everything else keeps its
# kernel name (v1-only controllers such as freezer or devices included).
_V1_KIND = {"cpu": "cpu", "cpuacct": "cpu", "blkio": "io"}

#: Names a container may not take: the v2 leaf and the holders' cgroup live
#: beside child containers in the same directory.
RESERVED_NAMES = frozenset({".tasks", ".pins"})
TASKS = ".tasks"
PINS = ".pins"


def kind_of(controller: str) -> str:
    """Map a kernel controller name (v1 or v2) to its kind name."""
    return _V1_KIND.get(controller, controller)


# ---------------------------------------------------------------------------
# Pure value parsing, formatting and v1 <-> v2 conversion
# ---------------------------------------------------------------------------

U64_MAX = (1 << 64) - 1
_LONG_MAX = (1 << 63) - 1

_SUFFIX = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
_BYTES_RE = re.compile(r"(\d+)([kmgtpe]?)", re.IGNORECASE)
_UINT_RE = re.compile(r"\d+")


def _uint(text: str, what: str) -> int:
    """Parse a plain decimal, refusing signs, hex and octal spellings.

    The kernel parses several of these files with base 0 (``010`` is eight);
    accepting only decimal and writing the normalised number back means what we
    validated is exactly what the kernel sees.
    """
    if not _UINT_RE.fullmatch(text):
        raise ValueError(f"{what}: expected a decimal number, got {text!r}")
    return int(text)


def parse_bytes_limit(text: str) -> int | None:
    """Parse a v2 memory limit: ``max`` (``None``) or bytes with an optional suffix.

    Suffixes K, M, G, T, P, E (either case) are powers of 1024, as the
    kernel's ``memparse`` reads them for ``memory.max``. Values past 2^64-1
    are refused because the kernel would silently wrap them.
    """
    s = text.strip()
    if s == "max":
        return None
    m = _BYTES_RE.fullmatch(s)
    if m is None:
        raise ValueError(f"expected 'max' or bytes with an optional K/M/G/T suffix, got {s!r}")
    value = int(m.group(1)) << _SUFFIX[m.group(2).lower()]
    if value > U64_MAX:
        raise ValueError(f"{s!r} is out of range")
    return value


def format_bytes_limit(limit: int | None) -> str:
    """The v2 spelling of a memory limit, without newline."""
    return "max" if limit is None else str(limit)


def bytes_limit_to_v1(limit: int | None) -> str:
    """The value to write to a v1 ``*.limit_in_bytes`` file.

    v1 has no ``max`` token; ``-1`` is its spelling of "no limit".
    """
    return "-1" if limit is None else str(limit)


def bytes_limit_from_v1(text: str, page_size: int) -> str:
    """Translate a v1 ``*.limit_in_bytes`` reading into v2 syntax.

    v1 shows "no limit" as the page counter's ceiling in bytes (LONG_MAX rounded
    down to a page, 9223372036854771712 with 4 KiB pages); v2 shows ``max``.
    Anything at or above that ceiling is unlimited.
    """
    value = _uint(text.strip(), "v1 limit")
    unlimited = (_LONG_MAX // page_size) * page_size
    return "max" if value >= unlimited else str(value)


PID_MAX_LIMIT = 4 * 1024 * 1024


def parse_pids_max(text: str) -> int | None:
    """Parse ``pids.max``: ``max`` (``None``) or 0..PID_MAX_LIMIT, as the kernel accepts."""
    s = text.strip()
    if s == "max":
        return None
    value = _uint(s, "pids.max")
    if value > PID_MAX_LIMIT:
        raise ValueError(f"pids.max must be at most {PID_MAX_LIMIT}, got {value}")
    return value


# CFS bandwidth bounds, in microseconds, as kernel/sched enforces them
# (checked on this kernel: 999 and 1000001 are refused, 2^44-1 accepted).
CFS_MIN_US = 1000
CFS_PERIOD_MAX_US = 1_000_000
CFS_QUOTA_MAX_US = (1 << 44) - 1


def parse_cpu_max(text: str) -> tuple[int | None, int | None]:
    """Parse ``cpu.max``: ``"$MAX [$PERIOD]"``, returning (quota or None=max, period or None).

    A missing period means "keep the current one", which is what v2 does.
    """
    tokens = text.split()
    if not 1 <= len(tokens) <= 2:
        raise ValueError(f"cpu.max: expected '$MAX [$PERIOD]', got {text.strip()!r}")
    quota: int | None = None
    if tokens[0] != "max":
        quota = _uint(tokens[0], "cpu.max quota")
        if not CFS_MIN_US <= quota <= CFS_QUOTA_MAX_US:
            raise ValueError(
                f"cpu.max quota must be 'max' or {CFS_MIN_US}..{CFS_QUOTA_MAX_US}, got {quota}"
            )
    period: int | None = None
    if len(tokens) == 2:
        period = _uint(tokens[1], "cpu.max period")
        if not CFS_MIN_US <= period <= CFS_PERIOD_MAX_US:
            raise ValueError(
                f"cpu.max period must be {CFS_MIN_US}..{CFS_PERIOD_MAX_US}, got {period}"
            )
    return quota, period


def format_cpu_max(quota: int | None, period: int | None) -> str:
    """The v2 spelling of a cpu.max value, without newline."""
    q = "max" if quota is None else str(quota)
    return q if period is None else f"{q} {period}"


def cpu_max_from_v1(quota_text: str, period_text: str) -> str:
    """Build ``cpu.max`` from v1 ``cpu.cfs_quota_us`` (-1 = no limit) and ``cpu.cfs_period_us``."""
    quota = int(quota_text.strip())
    period = _uint(period_text.strip(), "cpu.cfs_period_us")
    return format_cpu_max(None if quota < 0 else quota, period)


WEIGHT_MIN, WEIGHT_MAX = 1, 10000
SHARES_MIN, SHARES_MAX = 2, 262144


def parse_cpu_weight(text: str) -> int:
    """Parse ``cpu.weight``: 1..10000."""
    value = _uint(text.strip(), "cpu.weight")
    if not WEIGHT_MIN <= value <= WEIGHT_MAX:
        raise ValueError(f"cpu.weight must be {WEIGHT_MIN}..{WEIGHT_MAX}, got {value}")
    return value


def weight_to_shares(weight: int) -> int:
    """v2 weight -> v1 ``cpu.shares``, the linear map runc and crun use.

    It sends 1..10000 onto 2..262144 (the v1 range), so the relative order of
    containers survives; note v2's default 100 is not v1's default 1024.
    """
    if not WEIGHT_MIN <= weight <= WEIGHT_MAX:
        raise ValueError(f"weight {weight} out of range")
    return SHARES_MIN + ((weight - 1) * (SHARES_MAX - SHARES_MIN)) // (WEIGHT_MAX - WEIGHT_MIN)


def shares_to_weight(shares: int) -> int:
    """v1 ``cpu.shares`` -> v2 weight, the inverse of :func:`weight_to_shares`.

    runc's reverse formula floors, so writing weight 100 reads back as 99.
    Rounding up instead makes every weight round-trip exactly (the forward map
    has slope > 1, so each weight owns a distinct shares value), and maps any
    other shares value to the smallest weight whose shares are not smaller.
    """
    shares = min(max(shares, SHARES_MIN), SHARES_MAX)
    num = (shares - SHARES_MIN) * (WEIGHT_MAX - WEIGHT_MIN)
    den = SHARES_MAX - SHARES_MIN
    return WEIGHT_MIN + (num + den - 1) // den


CPULIST_MAX = 1 << 16
_CPULIST_ITEM = re.compile(r"(\d+)(?:-(\d+)(?::(\d+)/(\d+))?)?")


def parse_cpulist(text: str) -> frozenset[int]:
    """Parse a cpu/node list (``0-3,5``, ``0-7:2/4``, or empty) into its members.

    Numbers are bounded (65536) only so that a typo cannot make us build a
    giant set; the kernel refuses anything past its own CPU/node count anyway.
    """
    s = text.strip()
    if not s:
        return frozenset()
    members: set[int] = set()
    for item in s.split(","):
        m = _CPULIST_ITEM.fullmatch(item)
        if m is None:
            raise ValueError(f"bad cpu/node list item {item!r} in {s!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"range {item!r} runs backwards")
        if hi >= CPULIST_MAX:
            raise ValueError(f"cpu/node number in {item!r} is too large")
        used = group = 1
        if m.group(3) is not None:
            used, group = int(m.group(3)), int(m.group(4))
            if group == 0 or used == 0 or used > group:
                raise ValueError(f"bad stride {used}/{group} in {item!r}")
        for start in range(lo, hi + 1, group):
            members.update(range(start, min(start + used, hi + 1)))
    return frozenset(members)


def format_cpulist(members: Iterable[int]) -> str:
    """The kernel's canonical list spelling: sorted, with runs as ranges."""
    out: list[str] = []
    run: list[int] = []
    for n in sorted(set(members)):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [n]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


IO_MAX_KEYS = ("rbps", "wbps", "riops", "wiops")
# v1 throttle files per io.max key. v1 reads 0 as "no rule", v2 refuses 0.
IO_MAX_V1_FILES = {
    "rbps": "blkio.throttle.read_bps_device",
    "wbps": "blkio.throttle.write_bps_device",
    "riops": "blkio.throttle.read_iops_device",
    "wiops": "blkio.throttle.write_iops_device",
}
_DEV_RE = re.compile(r"(\d+):(\d+)")


def _device(token: str) -> str:
    m = _DEV_RE.fullmatch(token)
    if m is None:
        raise ValueError(f"expected a device as MAJOR:MINOR, got {token!r}")
    return f"{int(m.group(1))}:{int(m.group(2))}"


def parse_io_max(text: str) -> tuple[str, dict[str, int | None]]:
    """Parse one ``io.max`` line: ``MAJ:MIN [rbps=N|max] [wbps=..] [riops=..] [wiops=..]``.

    Values are positive decimals (v2 refuses 0; suffixes are *not* accepted,
    unlike memory files: the kernel would read ``1M`` as 1). ``None`` = max.
    """
    tokens = text.split()
    if not tokens:
        raise ValueError("io.max: expected 'MAJOR:MINOR key=value...'")
    dev = _device(tokens[0])
    limits: dict[str, int | None] = {}
    for tok in tokens[1:]:
        key, sep, val = tok.partition("=")
        if not sep or key not in IO_MAX_KEYS:
            raise ValueError(f"io.max: unknown setting {tok!r}; use {'/'.join(IO_MAX_KEYS)}=N|max")
        if val == "max":
            limits[key] = None
            continue
        n = _uint(val, f"io.max {key}")
        if not 1 <= n <= U64_MAX:
            raise ValueError(f"io.max {key} must be 1..{U64_MAX} or 'max', got {val}")
        limits[key] = n
    return dev, limits


def format_io_max(dev: str, limits: dict[str, int | None]) -> str:
    """One ``io.max`` line in key order, without newline."""
    parts = [dev]
    parts.extend(
        f"{k}={'max' if limits[k] is None else limits[k]}" for k in IO_MAX_KEYS if k in limits
    )
    return " ".join(parts)


def io_max_from_v1(files: dict[str, str]) -> str:
    """Merge the four v1 throttle files (key -> content) into v2 ``io.max`` text.

    Like v2, a device appears once any limit is set, with ``max`` for the rest.
    """
    per_dev: dict[tuple[int, int], dict[str, int | None]] = {}
    for key, content in files.items():
        for line in content.splitlines():
            fields = line.split()
            if len(fields) != 2:
                continue
            m = _DEV_RE.fullmatch(fields[0])
            if m is None:
                continue
            dev = (int(m.group(1)), int(m.group(2)))
            per_dev.setdefault(dev, dict.fromkeys(IO_MAX_KEYS))[key] = int(fields[1])
    return "".join(
        format_io_max(f"{maj}:{mnr}", per_dev[(maj, mnr)]) + "\n" for maj, mnr in sorted(per_dev)
    )


def parse_io_weight(text: str) -> str:
    """Validate one ``io.weight`` line (``[default|MAJ:MIN] N`` or ``MAJ:MIN default``).

    Returns the normalised line. A bare number sets the default, as in v2.
    """
    tokens = text.split()
    if len(tokens) == 1:
        tokens = ["default", tokens[0]]
    if len(tokens) != 2:
        raise ValueError("io.weight: expected '[default|MAJOR:MINOR] WEIGHT'")
    target = tokens[0] if tokens[0] == "default" else _device(tokens[0])
    if tokens[1] == "default" and target != "default":
        return f"{target} default"
    weight = _uint(tokens[1], "io.weight")
    if not WEIGHT_MIN <= weight <= WEIGHT_MAX:
        raise ValueError(f"io.weight must be {WEIGHT_MIN}..{WEIGHT_MAX}, got {weight}")
    return f"{target} {weight}"


def cpu_stat_from_v1(cpu_stat: str | None, cpuacct: dict[str, str] | None) -> str:
    """Build v2 ``cpu.stat`` from v1 ``cpu.stat`` and the ``cpuacct.usage*`` files.

    v1 keeps usage (nanoseconds) in cpuacct and throttling in cpu, possibly in
    two hierarchies; v2 has one file in microseconds. Either half may be absent
    when its controller is not mounted.
    """
    lines: list[str] = []
    if cpuacct is not None:
        for v1_name, v2_name in (
            ("cpuacct.usage", "usage_usec"),
            ("cpuacct.usage_user", "user_usec"),
            ("cpuacct.usage_sys", "system_usec"),
        ):
            if v1_name in cpuacct:
                lines.append(f"{v2_name} {int(cpuacct[v1_name].strip()) // 1000}")
    if cpu_stat is not None:
        stat: dict[str, str] = {}
        for line in cpu_stat.splitlines():
            key, _, val = line.partition(" ")
            stat[key] = val
        for v1_name, v2_name, div in (
            ("nr_periods", "nr_periods", 1),
            ("nr_throttled", "nr_throttled", 1),
            ("throttled_time", "throttled_usec", 1000),
            ("nr_bursts", "nr_bursts", 1),
            ("burst_time", "burst_usec", 1000),
        ):
            if v1_name in stat:
                lines.append(f"{v2_name} {int(stat[v1_name]) // div}")
    return "".join(line + "\n" for line in lines)


# ---------------------------------------------------------------------------
# Pure parsing of /proc files
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MountEntry:
    """The fields of one ``mountinfo`` line that discovery needs."""

    device: str  # major:minor, identical for every mount of one hierarchy
    root: str  # the cgroup that is the top of this mount
    point: Path
    fstype: str
    super_options: frozenset[str]


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal ``\\ooo``."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse ``/proc/<pid>/mountinfo`` keeping only cgroup and cgroup2 mounts."""
    out: list[MountEntry] = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 4:
            continue
        fstype = fields[sep + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        out.append(
            MountEntry(
                device=fields[2],
                root=_unescape(fields[3]),
                point=Path(_unescape(fields[4])),
                fstype=fstype,
                super_options=frozenset(fields[sep + 3].split(",")),
            )
        )
    return out


def parse_pid_cgroup(text: str) -> list[tuple[int, frozenset[str], str]]:
    """Parse ``/proc/<pid>/cgroup`` into (hierarchy id, controller names, path).

    The controller field is the kernel's own list of what is bound to each
    hierarchy, so it is more reliable than reading mount options (which mix
    controllers with flags such as ``clone_children``). ``name=...`` entries
    are kept so callers can recognise named hierarchies.
    """
    out: list[tuple[int, frozenset[str], str]] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        ctrls = frozenset(c for c in parts[1].split(",") if c)
        path = parts[2]
        if path.endswith(" (deleted)"):
            path = path[: -len(" (deleted)")]
        out.append((int(parts[0]), ctrls, path))
    return out


def parse_proc_cgroups(text: str) -> dict[str, bool]:
    """Parse ``/proc/cgroups``: controller name -> enabled."""
    out: dict[str, bool] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) >= 4:
            out[fields[0]] = fields[3] == "1"
    return out


# ---------------------------------------------------------------------------
# Control files
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlFile:
    """A v2-named control file containerfs serves for a kind."""

    kind: str
    writable: bool
    versions: frozenset[int]  # cgroup versions on which it can be offered


def _cf(kind: str, writable: bool, *versions: int) -> ControlFile:
    return ControlFile(kind, writable, frozenset(versions))


#: Every control file this backend serves. v2-only files have no faithful v1
#: equivalent (v1 ``soft_limit_in_bytes`` is not ``memory.high``, ``memory.stat``
#: keys differ), so they are not faked on v1.
CONTROL_FILES: dict[str, ControlFile] = {
    "memory.max": _cf("memory", True, 1, 2),
    "memory.high": _cf("memory", True, 2),
    "memory.low": _cf("memory", True, 2),
    "memory.min": _cf("memory", True, 2),
    "memory.swap.max": _cf("memory", True, 2),
    "memory.current": _cf("memory", False, 1, 2),
    "memory.peak": _cf("memory", False, 1, 2),
    "memory.stat": _cf("memory", False, 2),
    "memory.events": _cf("memory", False, 2),
    "pids.max": _cf("pids", True, 1, 2),
    "pids.current": _cf("pids", False, 1, 2),
    "pids.peak": _cf("pids", False, 1, 2),
    "pids.events": _cf("pids", False, 1, 2),
    "cpu.max": _cf("cpu", True, 1, 2),
    "cpu.weight": _cf("cpu", True, 1, 2),
    "cpu.stat": _cf("cpu", False, 1, 2),
    "cpuset.cpus": _cf("cpuset", True, 1, 2),
    "cpuset.mems": _cf("cpuset", True, 1, 2),
    "cpuset.cpus.effective": _cf("cpuset", False, 1, 2),
    "cpuset.mems.effective": _cf("cpuset", False, 1, 2),
    "io.max": _cf("io", True, 1, 2),
    "io.weight": _cf("io", True, 2),
    "io.stat": _cf("io", False, 2),
}

# v1 files that carry the same value as their v2 name, by (controller, file).
_V1_SAME = {
    "memory.current": ("memory", "memory.usage_in_bytes"),
    "memory.peak": ("memory", "memory.max_usage_in_bytes"),
    "pids.max": ("pids", "pids.max"),
    "pids.current": ("pids", "pids.current"),
    "pids.peak": ("pids", "pids.peak"),
    "pids.events": ("pids", "pids.events"),
    "cpuset.cpus": ("cpuset", "cpuset.cpus"),
    "cpuset.mems": ("cpuset", "cpuset.mems"),
    "cpuset.cpus.effective": ("cpuset", "cpuset.effective_cpus"),
    "cpuset.mems.effective": ("cpuset", "cpuset.effective_mems"),
}


def _normalise(name: str, value: str) -> str:
    """Validate a v2 write and return the exact text to hand the kernel (no newline)."""
    if name in ("memory.max", "memory.high", "memory.low", "memory.min", "memory.swap.max"):
        return format_bytes_limit(parse_bytes_limit(value))
    if name == "pids.max":
        limit = parse_pids_max(value)
        return "max" if limit is None else str(limit)
    if name == "cpu.max":
        return format_cpu_max(*parse_cpu_max(value))
    if name == "cpu.weight":
        return str(parse_cpu_weight(value))
    if name in ("cpuset.cpus", "cpuset.mems"):
        return format_cpulist(parse_cpulist(value))
    if name == "io.max":
        return format_io_max(*parse_io_max(value))
    if name == "io.weight":
        return parse_io_weight(value)
    raise AssertionError(f"no validator for {name}")


# ---------------------------------------------------------------------------
# Hierarchies and the backend
# ---------------------------------------------------------------------------


def _check_name(name: str) -> None:
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\0" in name
        or "\n" in name
        or name in RESERVED_NAMES
    ):
        raise ValueError(f"invalid container name {name!r}")


def _check_path(path: tuple[str, ...]) -> None:
    """Refuse names that would escape the base or collide with ``.tasks``/``.pins``."""
    for name in path:
        _check_name(name)


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy as seen from the daemon's start cgroup."""

    mount: Path
    version: int
    controllers: frozenset[str]
    base: str
    root: str = "/"  # the cgroup mounted at `mount` (not "/" for bind or namespaced mounts)

    @functools.cached_property
    def kinds(self) -> frozenset[str]:
        """Kinds this hierarchy carries (v1 ``cpu`` and ``cpuacct`` are both ``cpu``)."""
        return frozenset(kind_of(c) for c in self.controllers)

    @functools.cached_property
    def _base_dir(self) -> Path:
        inner = _below(self.root, self.base)
        if inner is None:
            raise ValueError(f"base {self.base} is not below the mounted root {self.root}")
        return self.mount.joinpath(*inner)

    def dir(self, rel: tuple[str, ...] = ()) -> Path:
        """``mount/base/rel...``, with base taken relative to the mounted root."""
        return self._base_dir.joinpath(*rel) if rel else self._base_dir

    def contains(self, path: Path) -> bool:
        """True when `path` is the base directory or below it."""
        top = self.dir()
        return path == top or top in path.parents


def _below(root: str, path: str) -> list[str] | None:
    """Components of cgroup `path` below cgroup `root`, or None when it is not below."""
    root_parts = [p for p in root.split("/") if p]
    parts = [p for p in path.split("/") if p]
    if parts[: len(root_parts)] != root_parts:
        return None
    return parts[len(root_parts) :]


def _read(path: Path) -> str:
    """Read a whole cgroup file with raw syscalls (half the cost of ``Path.read_text``)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def _write(path: Path, text: str) -> None:
    """Write a cgroup file in one ``write(2)`` without ``O_CREAT``/``O_TRUNC``.

    cgroup files act on each write call, so the value must arrive whole; and
    opening a missing file must fail with ENOENT rather than try to create it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        # A zero-length write may never reach the kernel's handler; a lone
        # newline does, and every cgroup parser strips it.
        os.write(fd, text.encode() or b"\n")
    finally:
        os.close(fd)


def _procs_of(path: Path) -> list[int]:
    return [int(line) for line in _read(path / "cgroup.procs").split()]


def _make_dir(path: Path) -> None:
    """mkdir(2); a seam for unit tests, whose fake tree must fill new directories itself."""
    path.mkdir()


def _remove_dir(path: Path) -> None:
    """rmdir(2); a seam for unit tests (a cgroup directory is 'empty' with files in it)."""
    path.rmdir()


def _mkdir(path: Path, created: list[Path]) -> bool:
    """mkdir that tolerates an existing directory (restarts, pass-throughs)."""
    try:
        _make_dir(path)
    except FileExistsError:
        if not path.is_dir():
            # A container named like a control file (``tasks`` on v1).
            raise
        return False
    created.append(path)
    return True


class CgroupBackend:
    """All cgroup I/O of the daemon, in v2 terms, on v1, v2 or hybrid hosts.

    Methods block (a lone ``cgroup.procs`` write waits for an RCU grace
    period, several milliseconds); call them from a worker thread.
    """

    def __init__(
        self,
        hierarchies: list[Hierarchy],
        *,
        v2_root_controllers: frozenset[str] = frozenset(),
        proc_cgroups: dict[str, bool] | None = None,
        unreachable: frozenset[str] = frozenset(),
        proc: Path = Path("/proc"),
        page_size: int | None = None,
    ) -> None:
        self.hierarchies = hierarchies
        self.v2: Hierarchy | None = next((h for h in hierarchies if h.version == 2), None)
        self.v1 = [h for h in hierarchies if h.version == 1]
        self._v2_root_controllers = v2_root_controllers
        self._proc_cgroups = proc_cgroups or {}
        self._unreachable = unreachable
        self._proc = proc
        self.page_size = page_size or os.sysconf("SC_PAGE_SIZE")

    # -- discovery ----------------------------------------------------------

    @classmethod
    def discover(cls, proc: Path = Path("/proc"), pid: str = "self") -> CgroupBackend:
        """Find every hierarchy the process `pid` is in and where it is mounted.

        Mount points are those of `pid`'s mount namespace, so a foreign pid
        must share the caller's. A mount is usable only when its root is an
        ancestor of the process's cgroup; hierarchies with no such mount are
        reported by :meth:`kinds` as ``not-reachable``. A v2 cgroup ending in
        ``/.tasks`` is taken to be a daemon's own leaf, and its parent is the base,
        so a daemon re-discovering after :meth:`setup` finds the same base.
        """
        cgroup_text = _read(proc / pid / "cgroup")
        mounts = parse_mountinfo(_read(proc / pid / "mountinfo"))
        try:
            proc_cgroups = parse_proc_cgroups(_read(proc / "cgroups"))
        except OSError:
            proc_cgroups = {}
        hierarchies: list[Hierarchy] = []
        unreachable: set[str] = set()
        v2_root: frozenset[str] = frozenset()
        for hid, names, path in parse_pid_cgroup(cgroup_text):
            if hid == 0:
                if path == f"/{TASKS}" or path.endswith(f"/{TASKS}"):
                    path = path[: -len(TASKS) - 1] or "/"
                mount = _pick_mount(mounts, "cgroup2", frozenset(), path)
                if mount is None:
                    continue
                bare = Hierarchy(mount.point, 2, frozenset(), path, mount.root)
                ctrls = frozenset(_read(bare.dir() / "cgroup.controllers").split())
                v2_root = frozenset(_read(mount.point / "cgroup.controllers").split())
                hierarchies.append(Hierarchy(mount.point, 2, ctrls, path, mount.root))
                continue
            ctrls = frozenset(n for n in names if not n.startswith("name="))
            if not ctrls:
                continue  # a named hierarchy such as name=systemd: no controllers
            mount = _pick_mount(mounts, "cgroup", ctrls, path)
            if mount is None:
                unreachable |= ctrls
                continue
            hierarchies.append(Hierarchy(mount.point, 1, ctrls, path, mount.root))
        # v2 first: it is the identity tree and the one every move touches.
        hierarchies.sort(key=lambda h: h.version, reverse=True)
        return cls(
            hierarchies,
            v2_root_controllers=v2_root,
            proc_cgroups=proc_cgroups,
            unreachable=frozenset(unreachable),
            proc=proc,
        )

    # -- kinds --------------------------------------------------------------

    def kinds(self) -> dict[str, str | None]:
        """Every controller kind known here -> None if usable, else a short reason.

        Later rules override earlier ones, from "we have never heard of it" up
        to "a mounted hierarchy carries it".
        """
        result: dict[str, str | None] = dict.fromkeys(STANDARD_KINDS, "not-found")
        for name, enabled in self._proc_cgroups.items():
            result[kind_of(name)] = "not-mounted" if enabled else "disabled"
        for name in self._unreachable:
            result[kind_of(name)] = "not-reachable"
        for name in self._v2_root_controllers:
            result[kind_of(name)] = "not-delegated"
        if self.v2 is not None and self.v2.controllers:
            base = self.v2.dir()
            enabled_here = set(_read(base / "cgroup.subtree_control").split())
            busy = bool(set(_procs_of(base)) - {os.getpid()})
            for name in self.v2.controllers:
                ok = name in enabled_here or not busy
                result[kind_of(name)] = None if ok else "base-has-other-processes"
        for h in self.v1:
            for kind in h.kinds:
                result[kind] = None
        return result

    def _hierarchies_of(self, kind: str) -> list[Hierarchy]:
        return [h for h in self.hierarchies if kind in h.kinds]

    def _v2(self) -> Hierarchy:
        if self.v2 is None:
            raise OSError(errno.EOPNOTSUPP, "no cgroup2 hierarchy is mounted")
        return self.v2

    # -- lifecycle ----------------------------------------------------------

    def setup(self) -> None:
        """Prepare the base: v2 needs the daemon out of it so controllers can be enabled.

        v2 forbids processes in a cgroup that hands controllers to children, so
        the daemon moves down into ``base/.tasks`` (moving down is always
        allowed) and holders get ``base/.pins``. Idempotent.
        """
        if self.v2 is None:
            return
        base = self.v2.dir()
        scratch: list[Path] = []
        _mkdir(base / TASKS, scratch)
        _mkdir(base / PINS, scratch)
        self.move(os.getpid(), [base / TASKS])

    def create(self, path: tuple[str, ...], owned: frozenset[str]) -> None:
        """Make the cgroup directories of container `path`, owning kinds `owned`.

        All or nothing: on failure every directory this call made is removed,
        every controller it enabled is disabled again, and the error re-raised.
        Existing directories are left alone, so creating again is harmless.
        """
        _check_path(path)
        if not path:
            raise ValueError("the root container is the base; it is not created")
        kinds = self.kinds()
        missing = sorted(k for k in owned if kinds.get(k, "not-found") is not None)
        if missing:
            raise OSError(
                errno.EOPNOTSUPP,
                "controller kinds not available: "
                + ", ".join(f"{k} ({kinds.get(k, 'not-found')})" for k in missing),
            )
        created: list[Path] = []
        enabled: list[tuple[Path, str]] = []
        try:
            if self.v2 is not None:
                self._create_v2(self.v2, path, owned, created, enabled)
            for h in self.v1:
                if h.kinds & owned:
                    self._create_v1(h, path, created)
        except BaseException:
            self._undo(created, enabled)
            raise

    def _create_v2(
        self,
        h: Hierarchy,
        path: tuple[str, ...],
        owned: frozenset[str],
        created: list[Path],
        enabled: list[tuple[Path, str]],
    ) -> None:
        wanted = sorted(c for c in h.controllers if kind_of(c) in owned)
        for depth in range(len(path)):
            parent = h.dir(path[:depth])
            have = set(_read(parent / "cgroup.subtree_control").split())
            todo = [c for c in wanted if c not in have]
            if not todo:
                continue
            if depth == 0 and _procs_of(parent):
                # Never impose the no-internal-process rule on processes we do
                # not own (and never rely on the root cgroup's exemption).
                raise OSError(
                    errno.EBUSY, f"{parent} has processes of its own; cannot enable {todo}"
                )
            for c in todo:
                _write(parent / "cgroup.subtree_control", f"+{c}")
                enabled.append((parent, c))
        _mkdir(h.dir(path), created)
        _mkdir(h.dir((*path, TASKS)), created)

    def _create_v1(self, h: Hierarchy, path: tuple[str, ...], created: list[Path]) -> None:
        cpuset = "cpuset" in h.controllers
        for depth in range(1, len(path) + 1):
            d = h.dir(path[:depth])
            if _mkdir(d, created) and cpuset:
                # A v1 cpuset starts empty and refuses tasks until given CPUs and
                # nodes; inherit the parent's so it behaves as a pass-through.
                for name in ("cpuset.cpus", "cpuset.mems"):
                    value = _read(d.parent / name).strip()
                    if value:
                        _write(d / name, value)

    def _undo(self, created: list[Path], enabled: list[tuple[Path, str]]) -> None:
        for d in reversed(created):
            try:
                _remove_dir(d)
            except OSError as e:
                log.warning("rollback: cannot remove %s: %s", d, e)
        for parent, c in reversed(enabled):
            try:
                _write(parent / "cgroup.subtree_control", f"-{c}")
            except OSError as e:
                log.warning("rollback: cannot disable %s in %s: %s", c, parent, e)

    def remove(self, path: tuple[str, ...]) -> None:
        """Remove every directory of container `path` that exists.

        Checks first that nothing is inside (processes or child cgroups) so a
        refusal (EBUSY) leaves every directory in place.
        """
        _check_path(path)
        if not path:
            raise ValueError("the root container cannot be removed")
        dirs: list[Path] = []
        if self.v2 is not None:
            d = self.v2.dir(path)
            if d.exists():
                if self.populated(path):
                    raise OSError(errno.EBUSY, f"container {'/'.join(path)} has processes")
                leaf = d / TASKS
                if any(p.is_dir() and p != leaf for p in d.iterdir()):
                    raise OSError(errno.EBUSY, f"container {'/'.join(path)} has children")
                if leaf.exists():
                    dirs.append(leaf)
                dirs.append(d)
        for h in self.v1:
            d = h.dir(path)
            if not d.exists():
                continue
            if _procs_of(d) or any(p.is_dir() for p in d.iterdir()):
                raise OSError(errno.EBUSY, f"{d} is not empty")
            dirs.append(d)
        for d in dirs:
            _remove_dir(d)

    # -- placement and moves ------------------------------------------------

    def placement(
        self,
        path: tuple[str, ...],
        owner_of: Callable[[str], tuple[str, ...]],
        *,
        leaf: bool = True,
    ) -> list[Path]:
        """The cgroup directories a process of container `path` belongs in.

        On v1 a process sits in its nearest owning ancestor's directory; when
        a hierarchy carries several kinds with different owners, the deepest
        owner wins (hierarchical limits keep the shallower owner's limit in
        force, as with v2 nesting).

        ``leaf=False`` gives the container's v2 directory itself instead of its
        ``.tasks`` leaf: where a process must be when it unshares the
        container's cgroup namespace, whose root is fixed at that moment.
        """
        _check_path(path)
        out: list[Path] = []
        for h in self.hierarchies:
            if h.version == 2:
                out.append(h.dir((*path, TASKS) if leaf else path))
                continue
            owners = [owner_of(k) for k in sorted(h.kinds)]
            owner = max(owners, key=len)
            _check_path(owner)
            out.append(h.dir(owner))
        return out

    def pins_placement(self) -> list[Path]:
        """Where holders live: outside every container's cgroup, never counted as tasks."""
        return [h.dir((PINS,)) if h.version == 2 else h.dir() for h in self.hierarchies]

    def _hierarchy_for_dir(self, d: Path) -> Hierarchy:
        """The hierarchy whose base holds `d` (the deepest, should mounts nest)."""
        found = [h for h in self.hierarchies if h.contains(d)]
        if not found:
            raise ValueError(f"{d} is not inside the daemon's cgroups")
        return max(found, key=lambda h: len(h.dir().parts))

    def _current(self, pid: int) -> dict[Hierarchy, Path]:
        """Where `pid` is now, per hierarchy, from ``/proc/<pid>/cgroup``."""
        try:
            text = _read(self._proc / str(pid) / "cgroup")
        except FileNotFoundError:
            raise ProcessLookupError(errno.ESRCH, f"no process {pid}") from None
        out: dict[Hierarchy, Path] = {}
        for hid, names, path in parse_pid_cgroup(text):
            ctrls = frozenset(n for n in names if not n.startswith("name="))
            for h in self.hierarchies:
                if (h.version == 2 and hid == 0) or (h.version == 1 and h.controllers == ctrls):
                    inner = _below(h.root, path)
                    if inner is not None:
                        out[h] = h.mount.joinpath(*inner)
        return out

    def move(self, pid: int, dirs: list[Path]) -> None:
        """Move process `pid` into every directory of `dirs`, or nowhere.

        Directories it is already in are skipped (each lone write costs an RCU
        grace period). If a write fails, the hierarchies already switched are
        put back where ``/proc/<pid>/cgroup`` said the process was, provided
        that is inside our subtree (we never move a process out of the daemon's
        base), and the original OSError is raised.
        """
        targets = [(self._hierarchy_for_dir(d), d) for d in dirs]
        before = self._current(pid)
        moved: list[Hierarchy] = []
        for h, d in targets:
            if before.get(h) == d:
                continue
            try:
                _write(d / "cgroup.procs", str(pid))
            except OSError:
                for back in reversed(moved):
                    origin = before.get(back)
                    if origin is None or not back.contains(origin):
                        continue
                    try:
                        _write(origin / "cgroup.procs", str(pid))
                    except OSError as e:
                        log.warning("cannot move %d back to %s: %s", pid, origin, e)
                raise
            moved.append(h)

    # -- state --------------------------------------------------------------

    def procs(self, path: tuple[str, ...]) -> list[int]:
        """Processes of container `path` (its v2 leaf), sorted."""
        _check_path(path)
        return sorted(_procs_of(self._v2().dir((*path, TASKS))))

    def populated(self, path: tuple[str, ...]) -> bool:
        """Whether any process lives in container `path` or below it."""
        return self.events_file(path).read_text().split("populated ", 1)[1][:1] == "1"

    def events_file(self, path: tuple[str, ...]) -> Path:
        """The v2 ``cgroup.events`` of container `path`, for inotify/poll watchers."""
        _check_path(path)
        return self._v2().dir(path) / "cgroup.events"

    # -- control files ------------------------------------------------------

    def _carrier(self, kind: str) -> Hierarchy | None:
        """The hierarchy that holds `kind`'s limits (v2 wins when it has it)."""
        hs = self._hierarchies_of(kind)
        return hs[0] if hs else None

    def cgroup_path(self, path: tuple[str, ...], kind: str) -> str:
        """The cgroup, spelled as ``/proc/PID/cgroup`` does, of container `path` for `kind`.

        It identifies a container's instance of a controller kind the way an
        inode number identifies a namespace. It is the container's own
        directory; processes of a container sharing the kind are elsewhere
        (see :meth:`placement`).
        """
        _check_path(path)
        h = self._carrier(kind)
        if h is None:
            raise OSError(errno.EOPNOTSUPP, f"controller kind {kind} is not available")
        return "/" + "/".join([p for p in h.base.split("/") if p] + list(path))

    def files(self, kind: str) -> dict[str, bool]:
        """Control files served for `kind` on this host -> writable."""
        h = self._carrier(kind)
        if h is None:
            return {}
        return {
            name: cf.writable
            for name, cf in CONTROL_FILES.items()
            if cf.kind == kind and h.version in cf.versions
        }

    def _spec(self, name: str) -> tuple[ControlFile, Hierarchy]:
        cf = CONTROL_FILES.get(name)
        h = self._carrier(cf.kind) if cf else None
        if cf is None or h is None or h.version not in cf.versions:
            raise FileNotFoundError(errno.ENOENT, f"no control file {name} here", name)
        return cf, h

    def _v1_dir(self, controller: str, path: tuple[str, ...]) -> Path | None:
        for h in self.v1:
            if controller in h.controllers:
                return h.dir(path)
        return None

    def _need_v1_dir(self, controller: str, path: tuple[str, ...]) -> Path:
        d = self._v1_dir(controller, path)
        if d is None:
            raise FileNotFoundError(errno.ENOENT, f"v1 {controller} is not mounted")
        return d

    def read(self, path: tuple[str, ...], name: str) -> str:
        """Value of control file `name` in container `path`'s own directory, v2 syntax."""
        _check_path(path)
        _, h = self._spec(name)
        text = _read(h.dir(path) / name) if h.version == 2 else self._read_v1(path, name)
        return text if not text or text.endswith("\n") else text + "\n"

    def _read_v1(self, path: tuple[str, ...], name: str) -> str:
        if name in _V1_SAME:
            ctrl, v1_name = _V1_SAME[name]
            return _read(self._need_v1_dir(ctrl, path) / v1_name)
        if name == "memory.max":
            d = self._need_v1_dir("memory", path)
            return bytes_limit_from_v1(_read(d / "memory.limit_in_bytes"), self.page_size)
        if name == "cpu.max":
            d = self._need_v1_dir("cpu", path)
            return cpu_max_from_v1(_read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us"))
        if name == "cpu.weight":
            d = self._need_v1_dir("cpu", path)
            return str(shares_to_weight(_uint(_read(d / "cpu.shares").strip(), "cpu.shares")))
        if name == "cpu.stat":
            cpu = self._v1_dir("cpu", path)
            acct = self._v1_dir("cpuacct", path)
            usage = None
            if acct is not None:
                usage = {}
                for f in ("cpuacct.usage", "cpuacct.usage_user", "cpuacct.usage_sys"):
                    if (acct / f).exists():
                        usage[f] = _read(acct / f)
            return cpu_stat_from_v1(_read(cpu / "cpu.stat") if cpu else None, usage)
        if name == "io.max":
            d = self._need_v1_dir("blkio", path)
            return io_max_from_v1({k: _read(d / f) for k, f in IO_MAX_V1_FILES.items()})
        raise AssertionError(f"no v1 reader for {name}")

    def write(self, path: tuple[str, ...], name: str, value: str) -> None:
        """Set control file `name` of container `path` from a v2-syntax `value`.

        The value is validated completely first (ValueError, nothing written);
        kernel refusals after that surface as OSError.
        """
        _check_path(path)
        cf, h = self._spec(name)
        if not cf.writable:
            raise PermissionError(errno.EACCES, f"{name} is read-only", name)
        text = _normalise(name, value)
        if h.version == 2:
            _write(h.dir(path) / name, text)
            return
        if name in _V1_SAME:
            ctrl, v1_name = _V1_SAME[name]
            _write(self._need_v1_dir(ctrl, path) / v1_name, text)
        elif name == "memory.max":
            d = self._need_v1_dir("memory", path)
            _write(d / "memory.limit_in_bytes", bytes_limit_to_v1(parse_bytes_limit(text)))
        elif name == "cpu.weight":
            d = self._need_v1_dir("cpu", path)
            _write(d / "cpu.shares", str(weight_to_shares(int(text))))
        elif name == "cpu.max":
            self._write_v1_cpu_max(self._need_v1_dir("cpu", path), *parse_cpu_max(text))
        elif name == "io.max":
            d = self._need_v1_dir("blkio", path)
            dev, limits = parse_io_max(text)
            for key, limit in limits.items():
                _write(d / IO_MAX_V1_FILES[key], f"{dev} {0 if limit is None else limit}")
        else:
            raise AssertionError(f"no v1 writer for {name}")

    @staticmethod
    def _write_v1_cpu_max(d: Path, quota: int | None, period: int | None) -> None:
        """Write quota and period as one change, as v2's cpu.max does.

        Lifting the quota first means no intermediate (old quota, new period)
        pair can break the hierarchy's bandwidth rule; if a later write fails,
        the old pair is put back.
        """
        quota_file, period_file = d / "cpu.cfs_quota_us", d / "cpu.cfs_period_us"
        old_quota, old_period = _read(quota_file).strip(), _read(period_file).strip()
        if period is None or period == int(old_period):
            _write(quota_file, "-1" if quota is None else str(quota))
            return
        try:
            _write(quota_file, "-1")
            _write(period_file, str(period))
            if quota is not None:
                _write(quota_file, str(quota))
        except OSError:
            for f, v in ((quota_file, "-1"), (period_file, old_period), (quota_file, old_quota)):
                try:
                    _write(f, v)
                except OSError as e:
                    log.warning("cpu.max rollback: cannot write %s to %s: %s", v, f, e)
            raise


def _pick_mount(
    mounts: list[MountEntry], fstype: str, ctrls: frozenset[str], path: str
) -> MountEntry | None:
    """The mount of a hierarchy through which cgroup `path` is reachable.

    v1 hierarchies are recognised by their controllers appearing in the
    superblock options. Among several mounts of one hierarchy, the one with
    the deepest root that still contains `path` wins (the shortest walk).
    """
    best: MountEntry | None = None
    for m in mounts:
        if m.fstype != fstype or not ctrls <= m.super_options:
            continue
        if _below(m.root, path) is None:
            continue
        if best is None or len(m.root) > len(best.root):
            best = m
    return best
