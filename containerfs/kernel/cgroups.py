"""Cgroup v1, v2 and hybrid hosts behind one v2-shaped interface: :class:`CgroupBackend`.

The rest of containerfs thinks in cgroup v2 terms: controller *kinds* named as
v2 names them (``cpu``, ``memory``, ``io``...), control files named as v2 names
them (``memory.max``, ``cpu.max``...) and written in v2 syntax. The backend is
the one place that knows where the hierarchies are mounted, which of them are
v1, and how a v2 value maps onto v1 files, so nothing above it has to care.

This module assembles the backend from its parts, one job each:

- :mod:`cghierarchy`: a mounted hierarchy, kind names, usable kinds;
- :mod:`cgdiscover`: finding the hierarchies from ``/proc`` (and mounting
  cgroup2 on a pure v1 host);
- :mod:`cglifecycle`: making and removing containers' directories;
- :mod:`cgplacement`: placing and moving processes, and who is inside;
- :mod:`cgcontrol` with the table in :mod:`cgfiles`: control files read and
  written in v2 terms;
- :mod:`cgfs`: the low-level cgroupfs file and directory calls;
- :mod:`cgvalues`: value parsing and conversion, pure functions unit-tested
  without root.

The names other modules import from here (``TASKS``, ``Hierarchy``...) stay
importable from here.
"""

from __future__ import annotations

from pathlib import Path

from . import cgdiscover
from .cgcontrol import Usage
from .cghierarchy import PINS, STANDARD_KINDS, TASKS, Hierarchy, kind_of
from .cglifecycle import Lifecycle

__all__ = ["PINS", "STANDARD_KINDS", "TASKS", "CgroupBackend", "Hierarchy", "kind_of"]


class CgroupBackend(Lifecycle, Usage):
    """All cgroup I/O of the daemon, in v2 terms, on v1, v2 or hybrid hosts.

    Methods block (a lone ``cgroup.procs`` write waits for an RCU grace
    period, several milliseconds); call them from a worker thread.
    """

    @classmethod
    def discover(
        cls,
        proc: Path = Path("/proc"),
        pid: str = "self",
        *,
        v2_fallback: Path | None = None,
        service_leaf: str | None = None,
    ) -> CgroupBackend:
        """Find every hierarchy the process `pid` is in and where it is mounted.

        Mount points are those of `pid`'s mount namespace, so a foreign pid
        must share the caller's. A mount is usable only when its root is an
        ancestor of the process's cgroup; hierarchies with no such mount are
        reported by :meth:`kinds` as ``not-reachable``. A v2 cgroup ending in
        ``/.tasks`` is taken to be a daemon's own leaf, and its parent is the base,
        so a daemon re-discovering after :meth:`setup` finds the same base; so is
        ``UNIT.service/LEAF`` when the unit names ``service_leaf`` (systemd's
        ``DelegateSubgroup=``, see ``cghierarchy.daemon_base``).

        containerfs needs a cgroup2 hierarchy (container tasks and
        ``populated`` come from it). When no cgroup2 is mounted at all (a pure
        v1 host), `v2_fallback` is created and cgroup2 mounted there, in the
        caller's mount namespace; :meth:`close` unmounts it. Without a
        fallback, or when cgroup2 is mounted but no mount reaches the
        process's cgroup, this raises ``OSError(EOPNOTSUPP)``.
        """
        return cgdiscover.discover(
            cls, proc, pid, v2_fallback=v2_fallback, service_leaf=service_leaf
        )

    def close(self) -> None:
        """Unmount the cgroup2 hierarchy :meth:`discover` mounted, if any. Idempotent."""
        if self.mounted_v2 is not None:
            cgdiscover.unmount_v2(self.mounted_v2)
            self.mounted_v2 = None
