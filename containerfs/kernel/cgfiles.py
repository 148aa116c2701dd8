"""The control files the cgroup backend serves, by their v2 names, and how a write is checked.

A table, not code: which kind each file belongs to, whether it can be
written, on which cgroup versions it can be offered, which v1 file carries
the same value under another name, and the validator that turns a v2-syntax
write into the exact text the kernel gets.  The backend's control-file
operations (:mod:`cgcontrol`) read and write through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cgvalues import (
    format_bytes_limit,
    format_cpu_max,
    format_cpulist,
    format_io_max,
    parse_bytes_limit,
    parse_cpu_max,
    parse_cpu_weight,
    parse_cpulist,
    parse_io_max,
    parse_io_weight,
    parse_pids_max,
)


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

#: v1 files that carry the same value as their v2 name, by (controller, file).
V1_SAME = {
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


def normalise(name: str, value: str) -> str:
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
