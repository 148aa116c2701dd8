"""Reading and writing containers' control files in v2 terms, translated to v1 where needed.

The part of :class:`cgroups.CgroupBackend` that serves control files: which
files a kind offers on this host, and reading or writing one by its v2 name
and in v2 syntax, whichever cgroup version carries the kind.  The table of
files is :mod:`cgfiles`; the value conversions are pure functions in
:mod:`cgvalues`.  Every write is fully validated before the first byte reaches
the kernel, so a bad value changes nothing.
"""

from __future__ import annotations

import errno
import logging
import math
import os
from pathlib import Path

from . import cgfs
from .cgfiles import CONTROL_FILES, V1_SAME, ControlFile, normalise
from .cghierarchy import Hierarchy, HostCgroups, check_path
from .cgvalues import (
    IO_MAX_V1_FILES,
    bytes_limit_from_v1,
    bytes_limit_to_v1,
    cpu_max_from_v1,
    cpu_stat_from_v1,
    io_max_from_v1,
    parse_bytes_limit,
    parse_cpu_max,
    parse_io_max,
    parse_uint,
    shares_to_weight,
    weight_to_shares,
)

log = logging.getLogger(__name__)


class ControlFiles(HostCgroups):
    """Control files by their v2 names, on whichever hierarchy carries their kind."""

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
        check_path(path)
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

    @staticmethod
    def is_limit(name: str) -> bool:
        """A file that holds a setting (changed only by writing it), not a reading."""
        cf = CONTROL_FILES.get(name)
        return cf is not None and cf.writable

    @staticmethod
    def write_may_work(name: str) -> bool:
        """Whether writing control file ``name`` can make the kernel work for long
        (memory limits reclaim, cpusets move tasks and pages): such writes belong
        on a worker thread; the rest only store a value."""
        return name.startswith(("memory.", "cpuset."))

    def read(self, path: tuple[str, ...], name: str) -> str:
        """Value of control file `name` in container `path`'s own directory, v2 syntax."""
        check_path(path)
        _, h = self._spec(name)
        text = cgfs.read(h.dir(path) / name) if h.version == 2 else self._read_v1(path, name)
        return text if not text or text.endswith("\n") else text + "\n"

    def _read_v1(self, path: tuple[str, ...], name: str) -> str:
        if name in V1_SAME:
            ctrl, v1_name = V1_SAME[name]
            return cgfs.read(self._need_v1_dir(ctrl, path) / v1_name)
        if name == "memory.max":
            d = self._need_v1_dir("memory", path)
            return bytes_limit_from_v1(cgfs.read(d / "memory.limit_in_bytes"), self.page_size)
        if name == "cpu.max":
            d = self._need_v1_dir("cpu", path)
            return cpu_max_from_v1(
                cgfs.read(d / "cpu.cfs_quota_us"), cgfs.read(d / "cpu.cfs_period_us")
            )
        if name == "cpu.weight":
            d = self._need_v1_dir("cpu", path)
            shares = parse_uint(cgfs.read(d / "cpu.shares").strip(), "cpu.shares")
            return str(shares_to_weight(shares))
        if name == "cpu.stat":
            cpu = self._v1_dir("cpu", path)
            acct = self._v1_dir("cpuacct", path)
            usage = None
            if acct is not None:
                usage = {}
                for f in ("cpuacct.usage", "cpuacct.usage_user", "cpuacct.usage_sys"):
                    if (acct / f).exists():
                        usage[f] = cgfs.read(acct / f)
            return cpu_stat_from_v1(cgfs.read(cpu / "cpu.stat") if cpu else None, usage)
        if name == "io.max":
            d = self._need_v1_dir("blkio", path)
            return io_max_from_v1({k: cgfs.read(d / f) for k, f in IO_MAX_V1_FILES.items()})
        raise AssertionError(f"no v1 reader for {name}")

    def write(self, path: tuple[str, ...], name: str, value: str) -> None:
        """Set control file `name` of container `path` from a v2-syntax `value`.

        The value is validated completely first (ValueError, nothing written);
        kernel refusals after that surface as OSError.
        """
        check_path(path)
        cf, h = self._spec(name)
        if not cf.writable:
            raise PermissionError(errno.EACCES, f"{name} is read-only", name)
        text = normalise(name, value)
        if h.version == 2:
            cgfs.write(h.dir(path) / name, text)
            return
        if name in V1_SAME:
            ctrl, v1_name = V1_SAME[name]
            cgfs.write(self._need_v1_dir(ctrl, path) / v1_name, text)
        elif name == "memory.max":
            self._write_v1_memory_max(self._need_v1_dir("memory", path), parse_bytes_limit(text))
        elif name == "cpu.weight":
            d = self._need_v1_dir("cpu", path)
            cgfs.write(d / "cpu.shares", str(weight_to_shares(int(text))))
        elif name == "cpu.max":
            self._write_v1_cpu_max(self._need_v1_dir("cpu", path), *parse_cpu_max(text))
        elif name == "io.max":
            d = self._need_v1_dir("blkio", path)
            dev, limits = parse_io_max(text)
            for key, limit in limits.items():
                cgfs.write(d / IO_MAX_V1_FILES[key], f"{dev} {0 if limit is None else limit}")
        else:
            raise AssertionError(f"no v1 writer for {name}")

    def _write_v1_memory_max(self, d: Path, limit: int | None) -> None:
        """``memory.limit_in_bytes``, which v1 keeps at or below
        ``memory.memsw.limit_in_bytes`` (memory plus swap; ``EINVAL`` past it). A
        runtime sets that one too (podman: twice ``--memory``), so a raise past it
        raises it first by the same amount: the swap it allowed beyond the memory
        limit stays what it was, as v2's separate ``memory.swap.max`` would."""
        limit_file, memsw_file = d / "memory.limit_in_bytes", d / "memory.memsw.limit_in_bytes"
        memsw = self._v1_bytes(memsw_file) if memsw_file.exists() else None
        if memsw is None or (limit is not None and limit <= memsw):
            cgfs.write(limit_file, bytes_limit_to_v1(limit))
            return
        old = self._v1_bytes(limit_file)
        swap = memsw - old if old is not None else 0
        cgfs.write(memsw_file, bytes_limit_to_v1(None if limit is None else limit + swap))
        try:
            cgfs.write(limit_file, bytes_limit_to_v1(limit))
        except OSError:
            try:
                cgfs.write(memsw_file, str(memsw))
            except OSError as e:
                log.warning("memory.max rollback: cannot write %s to %s: %s", memsw, memsw_file, e)
            raise

    def _v1_bytes(self, f: Path) -> int | None:
        """A v1 ``*.limit_in_bytes`` as a number of bytes, None for no limit."""
        value = bytes_limit_from_v1(cgfs.read(f), self.page_size)
        return None if value == "max" else int(value)

    @staticmethod
    def _write_v1_cpu_max(d: Path, quota: int | None, period: int | None) -> None:
        """Write quota and period as one change, as v2's cpu.max does.

        Lifting the quota first means no intermediate (old quota, new period)
        pair can break the hierarchy's bandwidth rule; if a later write fails,
        the old pair is put back.
        """
        quota_file, period_file = d / "cpu.cfs_quota_us", d / "cpu.cfs_period_us"
        old_quota, old_period = cgfs.read(quota_file).strip(), cgfs.read(period_file).strip()
        if period is None or period == int(old_period):
            cgfs.write(quota_file, "-1" if quota is None else str(quota))
            return
        try:
            cgfs.write(quota_file, "-1")
            cgfs.write(period_file, str(period))
            if quota is not None:
                cgfs.write(quota_file, str(quota))
        except OSError:
            for f, v in ((quota_file, "-1"), (period_file, old_period), (quota_file, old_quota)):
                try:
                    cgfs.write(f, v)
                except OSError as e:
                    log.warning("cpu.max rollback: cannot write %s to %s: %s", v, f, e)
            raise


class Usage(ControlFiles):
    """A container's figures for monitoring (``service/metrics.py``), in base units.

    A scrape reads six small files of each of a thousand containers: the paths
    are worked out once per container (:meth:`usage_files`) and read with bare
    syscalls (:func:`read_usage`), since ``Path`` objects and the v2-name
    translation cost more than the reads themselves.
    """

    def cgroup_of(self, path: tuple[str, ...]) -> str:
        """Container `path`'s cgroup as ``/proc/PID/cgroup`` spells the v2 line (its
        ``id`` in metrics, as cAdvisor's): every container has one there."""
        check_path(path)
        v2 = self._v2()
        return "/" + "/".join([p for p in v2.base.split("/") if p] + list(path))

    def usage_files(self, path: tuple[str, ...], kinds: frozenset[str]) -> UsageFiles:
        """What :func:`read_usage` reads for container `path`: CPU time (the v2
        ``cpu.stat``, kept in every cgroup whatever its controllers), the processes
        of its tasks leaf (and the start cgroup's, for the root, as ``procs``), and
        memory and pids, current and limit, for the controller `kinds` it owns."""
        check_path(path)
        d = str(self._v2().dir(path))
        files: list[tuple[str, str]] = [("cpu_seconds", f"{d}/cpu.stat")]
        files.append(("processes", f"{self._v2().dir(self.task_dir(path))}/cgroup.procs"))
        if not path:
            files.append(("processes", f"{d}/cgroup.procs"))
        for kind, key, name in _USAGE_FILES:
            if kind not in kinds:
                continue
            h = self._carrier(kind)
            if h is None:
                continue
            if h.version == 2:
                files.append((key, f"{h.dir(path)}/{name}"))
            else:
                files.append((key, f"{h.dir(path)}/{_USAGE_V1[name]}"))
        return tuple(files)

    def read_usage(self, files: UsageFiles) -> dict[str, float]:
        """The figures of one container (blocking), through the files kept open."""
        return self.kept_files.read(files)

    @property
    def kept_files(self) -> KeptFiles:
        kept: KeptFiles | None = getattr(self, "_kept_files", None)
        if kept is None:
            kept = self._kept_files = KeptFiles()
        return kept


#: (key, file) pairs of a container's figures (``Usage.usage_files``).
UsageFiles = tuple[tuple[str, str], ...]

#: (kind, key of ``read_usage``, v2 file) of the controller figures in metrics.
_USAGE_FILES = (
    ("memory", "memory_bytes", "memory.current"),
    ("memory", "memory_limit", "memory.max"),
    ("pids", "pids", "pids.current"),
    ("pids", "pids_limit", "pids.max"),
)
_USAGE_V1 = {
    "memory.current": "memory.usage_in_bytes",
    "memory.max": "memory.limit_in_bytes",
    "pids.current": "pids.current",
    "pids.max": "pids.max",
}
#: v1 shows "no memory limit" as LONG_MAX rounded down to a page (cgvalues).
_V1_UNLIMITED = 2**63 - 2**16


class KeptFiles:
    """Figure files kept open between scrapes and read again with ``pread`` at 0,
    which makes kernfs render them anew: an ``open`` walks the whole cgroup path
    (10 to 30 us here), the ``pread`` costs about 1 us. Each costs the kernel a
    few kB while open: the service closes them all after a while without a scrape
    (``close``), and those of removed containers at the next (``keep_only``). Reads
    of different containers may run on several threads at once (each path is
    read by one); ``keep_only`` and ``close`` run when no read does."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def read(self, files: UsageFiles) -> dict[str, float]:
        """The figures in base units: ``inf`` for a limit of ``max``. A file that
        cannot be read (the cgroup went meanwhile) or holds no number is left out."""
        out: dict[str, float] = {}
        for key, name in files:
            try:
                data = self._read(name)
                if key == "processes":
                    out[key] = out.get(key, 0) + data.count(b"\n")
                elif key == "cpu_seconds":
                    out[key] = int(data.split(b"usage_usec ", 1)[1].split(b"\n", 1)[0]) / 1e6
                else:
                    word = data.strip()
                    value: float = math.inf if word == b"max" else int(word)
                    if key == "memory_limit" and value >= _V1_UNLIMITED:
                        value = math.inf
                    out[key] = value
            except (OSError, ValueError, IndexError):
                continue
        return out

    def _read(self, name: str) -> bytes:
        fd = self._fds.get(name)
        if fd is None:
            fd = self._fds[name] = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, _READ, 0)
            if len(data) == _READ:  # a long cgroup.procs
                chunks = [data]
                while len(chunks[-1]) == _READ:
                    chunks.append(os.pread(fd, _READ, _READ * len(chunks)))
                data = b"".join(chunks)
        except OSError:  # ENODEV: the cgroup was removed; opened again next time
            del self._fds[name]
            os.close(fd)
            raise
        return data

    def keep_only(self, names: set[str]) -> None:
        for name in [n for n in self._fds if n not in names]:
            os.close(self._fds.pop(name))

    def close(self) -> None:
        self.keep_only(set())

    def __len__(self) -> int:
        return len(self._fds)


_READ = 65536
