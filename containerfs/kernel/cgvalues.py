"""Pure parsing and formatting of cgroup values and /proc cgroup files.

No I/O: these turn v2-syntax writes into numbers (refusing anything the
kernel would misread), convert them to and from v1 files, and parse
``/proc/PID/cgroup``, ``/proc/cgroups`` and pick the cgroup mounts out of
``/proc/PID/mountinfo`` (whose format :mod:`procfs` parses). Every
write is validated here before the first byte reaches the kernel, so a bad
value changes nothing. ``cgroups`` is the backend that uses them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from containerfs.kernel import procfs

# ---------------------------------------------------------------------------
# Pure value parsing, formatting and v1 <-> v2 conversion
# ---------------------------------------------------------------------------

U64_MAX = (1 << 64) - 1
_LONG_MAX = (1 << 63) - 1

_SUFFIX = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
_BYTES_RE = re.compile(r"(\d+)([kmgtpe]?)", re.IGNORECASE)
_UINT_RE = re.compile(r"\d+")


def _shown(text: str, limit: int = 40) -> str:
    """TEXT for an error message: quoted and cut short (a write may be a megabyte long)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


def parse_uint(text: str, what: str) -> int:
    """Parse a plain decimal, refusing signs, hex and octal spellings.

    The kernel parses several of these files with base 0 (``010`` is eight);
    accepting only decimal and writing the normalised number back means what we
    validated is exactly what the kernel sees.
    """
    if not _UINT_RE.fullmatch(text):
        raise ValueError(f"{what}: expected a decimal number, got {_shown(text)}")
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
        raise ValueError(
            f"expected 'max' or bytes with an optional K/M/G/T suffix, got {_shown(s)}"
        )
    value = int(m.group(1)) << _SUFFIX[m.group(2).lower()]
    if value > U64_MAX:
        raise ValueError(f"{_shown(s)} is out of range")
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
    value = parse_uint(text.strip(), "v1 limit")
    unlimited = (_LONG_MAX // page_size) * page_size
    return "max" if value >= unlimited else str(value)


PID_MAX_LIMIT = 4 * 1024 * 1024


def parse_pids_max(text: str) -> int | None:
    """Parse ``pids.max``: ``max`` (``None``) or 0..PID_MAX_LIMIT, as the kernel accepts."""
    s = text.strip()
    if s == "max":
        return None
    value = parse_uint(s, "pids.max")
    if value > PID_MAX_LIMIT:
        raise ValueError(f"pids.max must be at most {PID_MAX_LIMIT}, got {_shown(s)}")
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
        raise ValueError(f"cpu.max: expected '$MAX [$PERIOD]', got {_shown(text.strip())}")
    quota: int | None = None
    if tokens[0] != "max":
        quota = parse_uint(tokens[0], "cpu.max quota")
        if not CFS_MIN_US <= quota <= CFS_QUOTA_MAX_US:
            bounds = f"'max' or {CFS_MIN_US}..{CFS_QUOTA_MAX_US}"
            raise ValueError(f"cpu.max quota must be {bounds}, got {_shown(tokens[0])}")
    period: int | None = None
    if len(tokens) == 2:
        period = parse_uint(tokens[1], "cpu.max period")
        if not CFS_MIN_US <= period <= CFS_PERIOD_MAX_US:
            raise ValueError(
                f"cpu.max period must be {CFS_MIN_US}..{CFS_PERIOD_MAX_US}, got {_shown(tokens[1])}"
            )
    return quota, period


def format_cpu_max(quota: int | None, period: int | None) -> str:
    """The v2 spelling of a cpu.max value, without newline."""
    q = "max" if quota is None else str(quota)
    return q if period is None else f"{q} {period}"


def cpu_max_from_v1(quota_text: str, period_text: str) -> str:
    """Build ``cpu.max`` from v1 ``cpu.cfs_quota_us`` (-1 = no limit) and ``cpu.cfs_period_us``."""
    quota = int(quota_text.strip())
    period = parse_uint(period_text.strip(), "cpu.cfs_period_us")
    return format_cpu_max(None if quota < 0 else quota, period)


WEIGHT_MIN, WEIGHT_MAX = 1, 10000
SHARES_MIN, SHARES_MAX = 2, 262144


def parse_cpu_weight(text: str) -> int:
    """Parse ``cpu.weight``: 1..10000."""
    value = parse_uint(text.strip(), "cpu.weight")
    if not WEIGHT_MIN <= value <= WEIGHT_MAX:
        raise ValueError(f"cpu.weight must be {WEIGHT_MIN}..{WEIGHT_MAX}, got {_shown(str(value))}")
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
            raise ValueError(f"bad cpu/node list item {_shown(item)} in {_shown(s)}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"range {_shown(item)} runs backwards")
        if hi >= CPULIST_MAX:
            raise ValueError(f"cpu/node number in {_shown(item)} is too large")
        used = group = 1
        if m.group(3) is not None:
            used, group = int(m.group(3)), int(m.group(4))
            if group == 0 or used == 0 or used > group:
                raise ValueError(f"bad stride {used}/{group} in {_shown(item)}")
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
        raise ValueError(f"expected a device as MAJOR:MINOR, got {_shown(token)}")
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
            raise ValueError(
                f"io.max: unknown setting {_shown(tok)}; use {'/'.join(IO_MAX_KEYS)}=N|max"
            )
        if val == "max":
            limits[key] = None
            continue
        n = parse_uint(val, f"io.max {key}")
        if not 1 <= n <= U64_MAX:
            raise ValueError(f"io.max {key} must be 1..{U64_MAX} or 'max', got {_shown(val)}")
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
    weight = parse_uint(tokens[1], "io.weight")
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


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse ``/proc/<pid>/mountinfo`` keeping only cgroup and cgroup2 mounts."""
    out: list[MountEntry] = []
    for mount in procfs.parse_mountinfo(text, skip_malformed=True):
        if mount.fstype not in ("cgroup", "cgroup2") or not mount.super_options:
            continue
        out.append(
            MountEntry(
                device=mount.device,
                root=procfs.unescape_mountinfo(mount.root),
                point=Path(procfs.unescape_mountinfo(mount.mount_point)),
                fstype=mount.fstype,
                super_options=frozenset(mount.super_options.split(",")),
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
