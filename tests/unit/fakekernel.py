"""A kernel in memory, to drive the service (``containerfs/service/``) without root.

The service reaches the kernel only through one :class:`~containerfs.kernel.system.Kernel`
(and its ``cgroups`` backend and the ``Holder`` objects it hands out), passed in
as httpx takes its transport. :class:`FakeKernel` is that object for the unit
tier: mkdir, control-file writes, ``tasks`` and releases run through the real
``Daemon`` while the "kernel" is a few dicts the tests can read and rig. No
syscall reaches the real kernel for a container, no ``/proc`` is read, no
cgroup is touched: the tests pass as an ordinary user. (A pidfd is the one
exception in spirit: the service closes and dups what ``hold`` and
``open_namespace`` return, so those are fds of ``/dev/null``.)

What it models, and no more than the tests need:

- one cgroup2 hierarchy (pids and memory), as directories (a set of paths),
  per-directory control files (a dict), and where each process is (a dict);
- processes: pid -> namespace inodes, uids, threads (:class:`FakeProcess`);
- namespace instances by inode, each with its sysctls (a dict);
- holders (:class:`FakeHolder`), started by ``spawn_holder`` with new inodes for
  the kinds they unshare, the rest inherited from their parent's;
- nsfs fds (``open_namespace``): ``/dev/null`` fds mapped to the inode they stand for,
  which a holder started with them joins;
- faults to inject: a refused sysctl write, a failed holder start or namespace move.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from containerfs.engine.catalog import INFO_FILES, Role
from containerfs.kernel import netns as knetns
from containerfs.kernel import nslist, procs
from containerfs.kernel.cgroups import PINS, STANDARD_KINDS, TASKS, CgroupBackend, Hierarchy
from containerfs.kernel.holder import Holder
from containerfs.kernel.system import Kernel
from containerfs.nskinds import KINDS

#: Where the fake cgroup2 hierarchy claims to be mounted (never looked at).
CG_MOUNT = Path("/fake/cgroup2")
BASE = "/containerfs"

#: The sysctls a new namespace instance starts with. Knobs not listed have no
#: file in a fake namespace: the service then makes no view for them.
DEFAULT_SYSCTLS: dict[str, str] = {
    "kernel.shmmni": "4096\n",
    "kernel.msgmni": "32000\n",
    "kernel.hostname": "fake\n",
    "kernel.domainname": "(none)\n",
}

ROOT_INODE = 4026531830  # the daemon's own namespaces: ROOT_INODE + index in KINDS
HOLDER_PID = 50000  # holders get pids from here up; the tests' processes from 1000


@dataclass
class FakeProcess:
    inodes: dict[str, int]  # namespace kind -> inode
    uid: int = 0
    threads: int = 1
    comm: str = "sh"
    ppid: int = 1


class FakeCgroups(CgroupBackend):
    """One cgroup2 hierarchy in memory; the real class's pure path logic
    (``placement``, ``pins_placement``, ``cgroup_path``, ``files``...) runs as is."""

    CONTROLLERS = frozenset({"pids", "memory"})

    def __init__(self) -> None:
        hierarchy = Hierarchy(CG_MOUNT, 2, self.CONTROLLERS, BASE)
        super().__init__([hierarchy], page_size=4096)
        self.h = hierarchy
        self.dirs: set[tuple[str, ...]] = {(), (TASKS,), (PINS,)}  # below the base
        self.at: dict[int, Path] = {}  # pid -> its cgroup2 directory
        self.values: dict[tuple[tuple[str, ...], str], str] = {}  # (dir, file) -> text
        self.created: list[tuple[tuple[str, ...], frozenset[str]]] = []
        self.removed: list[tuple[str, ...]] = []
        self.trimmed: list[tuple[tuple[str, ...], frozenset[str]]] = []
        self.procs_read: list[tuple[str, ...]] = []
        self.moves: list[tuple[int, list[Path]]] = []

    # -- what the host has ---------------------------------------------------------

    def kinds(self) -> dict[str, str | None]:
        out: dict[str, str | None] = dict.fromkeys(STANDARD_KINDS, "not-found")
        return out | dict.fromkeys(self.CONTROLLERS, None)

    def setup(self) -> None:
        pass

    # -- directories -----------------------------------------------------------------

    def create(self, path: tuple[str, ...], owned: frozenset[str]) -> None:
        if not path or path[:-1] not in self.dirs:
            raise FileNotFoundError(errno.ENOENT, f"no parent cgroup for {path}")
        self.dirs |= {path, (*path, TASKS)}
        for name in ("pids.max", "memory.max"):
            if name.split(".")[0] in owned:
                self.values[(path, name)] = "max\n"
        self.values[(path, "pids.current")] = "0\n"
        self.created.append((path, owned))

    def remove(self, path: tuple[str, ...]) -> None:
        if not path:
            raise ValueError("the root container cannot be removed")
        if self.populated(path):
            raise OSError(errno.EBUSY, f"container {'/'.join(path)} has processes")
        if any(d[len(path)] != TASKS for d in self._below(path)):
            raise OSError(errno.EBUSY, f"container {'/'.join(path)} has children")
        self.dirs -= {path, (*path, TASKS)}
        self.values = {k: v for k, v in self.values.items() if k[0] != path}
        self.removed.append(path)
        self.direct.discard(path)

    def make_direct(self, path: tuple[str, ...]) -> None:
        leaf = self.h.dir((*path, TASKS))
        for pid, d in self.at.items():
            if d == leaf:
                self.at[pid] = self.h.dir(path)
        self.dirs.discard((*path, TASKS))
        self.direct.add(path)

    def _below(self, path: tuple[str, ...]) -> list[tuple[str, ...]]:
        return [d for d in self.dirs if len(d) > len(path) and d[: len(path)] == path]

    def trim(self, path: tuple[str, ...], freed: frozenset[str]) -> None:
        self.trimmed.append((path, freed))

    def events_file(self, path: tuple[str, ...]) -> Path:
        return self.h.dir(path) / "cgroup.events"

    # -- processes -------------------------------------------------------------------

    def place(self, pid: int, path: tuple[str, ...], leaf: str | None = TASKS) -> None:
        """Put a (fake) process in container ``path``'s leaf (test setup)."""
        self.at[pid] = self.h.dir((*path, leaf) if leaf else path)

    def exit(self, pid: int) -> None:
        self.at.pop(pid, None)

    def rel(self, pid: int) -> tuple[str, ...] | None:
        """Where ``pid`` is, below the base (test assertions)."""
        d = self.at.get(pid)
        return None if d is None else d.relative_to(self.h.dir()).parts

    def procs(self, path: tuple[str, ...]) -> list[int]:
        self.procs_read.append(path)
        if path not in self.dirs:
            raise FileNotFoundError(errno.ENOENT, f"no cgroup {path}")
        dirs = {self.h.dir(self.task_dir(path))} | ({self.h.dir()} if not path else set())
        return sorted(pid for pid, d in self.at.items() if d in dirs)

    def populated(self, path: tuple[str, ...]) -> bool:
        if path not in self.dirs:
            raise FileNotFoundError(errno.ENOENT, f"no cgroup {path}")
        top = self.h.dir(path)
        return any(d.is_relative_to(top) for d in self.at.values())

    def holds(self, pid: int, path: tuple[str, ...]) -> bool:
        return pid in self.procs(path)

    def inside(self, pid: int, path: tuple[str, ...]) -> bool:
        return self.at.get(pid) in (self.h.dir(path), self.h.dir((*path, TASKS)))

    def where(self, pid: int) -> dict[Hierarchy, Path]:
        if pid not in self.at:
            raise ProcessLookupError(errno.ESRCH, f"no process {pid}")
        return {self.h: self.at[pid]}

    def move(self, pid: int, dirs: list[Path]) -> None:
        if pid not in self.at:
            raise ProcessLookupError(errno.ESRCH, f"no process {pid}")
        for d in dirs:
            if not self.h.contains(d):
                raise ValueError(f"{d} is not inside the daemon's cgroups")
            if d.relative_to(self.h.dir()).parts not in self.dirs:
                raise FileNotFoundError(errno.ENOENT, f"{d}: no such cgroup", str(d))
        for d in dirs:
            self.at[pid] = d
        self.moves.append((pid, dirs))

    def put_back(self, pid: int, before: dict[Hierarchy, Path]) -> None:
        if pid in self.at and self.h in before:
            self.at[pid] = before[self.h]

    def frozen(self, before: Mapping[Hierarchy, Path], dirs: list[Path]) -> str | None:
        return None

    def kill(self, path: tuple[str, ...], *, timeout: float = 5.0, kill_file: bool = True) -> int:
        top = self.h.dir(path)
        inside = [pid for pid, d in self.at.items() if d.is_relative_to(top)]
        for pid in inside:
            del self.at[pid]
        return len(inside)

    # -- control files ---------------------------------------------------------------

    def read(self, path: tuple[str, ...], name: str) -> str:
        if name == "pids.current":
            top = self.h.dir(path)
            return f"{sum(1 for d in self.at.values() if d.is_relative_to(top))}\n"
        try:
            return self.values[(path, name)]
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, f"no control file {name} here") from None

    def read_usage(self, files: tuple[tuple[str, str], ...]) -> dict[str, float]:
        """The real ``usage_files`` paths, answered from memory (no CPU time here)."""
        out: dict[str, float] = {}
        for key, file in files:
            d, name = os.path.split(file)
            rel = Path(d).relative_to(self.h.dir()).parts
            if name == "cgroup.procs":
                out[key] = out.get(key, 0) + sum(1 for at in self.at.values() if at == Path(d))
            elif name != "cpu.stat":
                try:
                    word = self.read(rel, name).strip()
                except FileNotFoundError:
                    continue
                out[key] = float("inf") if word == "max" else float(word)
        return out

    def write(self, path: tuple[str, ...], name: str, value: str) -> None:
        if (path, name) not in self.values:
            raise FileNotFoundError(errno.ENOENT, f"no control file {name} here")
        word = value.strip()
        if word != "max" and not word.isdigit():
            raise ValueError(f"{name}: expected a number or max")
        self.values[(path, name)] = word + "\n"


class FakeMountTables(procs.MountTables):
    """No mount namespace holds an nsfs mount unless a test puts it in ``mounts``."""

    def __init__(self) -> None:
        super().__init__()  # two dicts; fds only once a real table is read
        self.wanted: dict[object, int] = {}
        self.mounts: dict[object, list[tuple[str, int, str]]] = {}

    def nsfs_mounts(self, wanted: dict[object, int]) -> dict[object, list[tuple[str, int, str]]]:
        self.wanted = dict(wanted)
        return {k: v for k, v in self.mounts.items() if k in wanted}


class FakeHolder(Holder):
    """A namespace holder that is only a pid and its inodes: no process, no fds."""

    def __init__(self, pid: int, inodes: Mapping[str, int], kernel: FakeKernel) -> None:
        super().__init__(pid, -1, inodes)  # no pidfd and no channel: nothing to close
        self.kernel = kernel
        self.closed = False
        self.exited = False

    @property
    def has_channel(self) -> bool:
        return not self.closed

    def alive(self) -> bool:
        return not self.exited

    def gone(self) -> bool:
        return self.exited

    def kill(self, timeout: float = 10.0) -> None:
        if self.closed:
            raise ValueError("holder pidfd is closed")
        self.killed = True
        self.die()

    def die(self) -> None:
        """The holder exits (killed, or on its own: a test's doing)."""
        self.exited = True
        self.kernel.processes.pop(self.pid, None)
        self.kernel.cgroups.exit(self.pid)

    def close(self) -> None:
        self.closed = True


@dataclass
class Spawned:
    """One ``spawn_holder`` call, as the fake kernel saw it."""

    holder: FakeHolder
    unshare: frozenset[str]
    joined: frozenset[str]
    parent: Holder | None


@dataclass
class Faults:
    """Failures the tests ask for."""

    spawn: BaseException | None = None  # spawn_holder raises it
    move_into: BaseException | None = None  # move_into raises it
    after_seized: Callable[[], None] | None = None  # move_into runs it once seized
    #: sysctl name -> values the kernel refuses, after storing them (as kernel.sem
    #: stores its fields before refusing SEMMNI)
    sysctl: dict[str, set[str]] = field(default_factory=dict)


class FakeKernel(Kernel):
    """Every ``Kernel`` method the service calls, answered from memory (module docstring)."""

    cgroups: FakeCgroups

    def __init__(self, mountpoint: str = "/fake/mnt") -> None:
        super().__init__(FakeCgroups(), "/fake/containerfs-pin", mountpoint)
        self.root_inodes = {k: ROOT_INODE + i for i, k in enumerate(KINDS)}
        self.processes: dict[int, FakeProcess] = {}
        self.sysctls: dict[int, dict[str, str]] = {}  # namespace inode -> name -> text
        self.spawned: list[Spawned] = []
        self.strays_killed: list[int] = []  # kill_stray_holder calls (recovery)
        self.moved_into: list[tuple[int, dict[str, int]]] = []
        self.faults = Faults()
        self._inodes = itertools.count(ROOT_INODE + 1000)
        self._holder_pids = itertools.count(HOLDER_PID)
        self.ns_fds: dict[int, int] = {}  # fd from open_namespace -> namespace inode
        self.ns_parents: dict[int, int] = {}  # pid/user namespace inode -> its parent's
        self.netns: dict[str, int | None] = {}  # /run/netns: name -> bound inode (None: a file)
        self.netns_taken: set[str] = set()  # prefixes another daemon holds
        self.nsfs_files: dict[str, int] = {}  # a bound nsfs file's path (as mounted) -> inode

    # -- test setup and inspection ---------------------------------------------------

    def start(
        self,
        pid: int,
        *,
        uid: int = 0,
        threads: int = 1,
        inodes: Mapping[str, int] | None = None,
        cgroup: tuple[str, ...] = (),
        comm: str = "sh",
    ) -> int:
        """A process of the host: in the daemon's namespaces unless told, in the
        leaf of container cgroup ``cgroup``."""
        self.processes[pid] = FakeProcess(dict(inodes or self.root_inodes), uid, threads, comm=comm)
        self.cgroups.place(pid, cgroup)
        return pid

    def exit(self, pid: int) -> None:
        self.processes.pop(pid, None)
        self.cgroups.exit(pid)

    def sysctl(self, holder: Holder | None, kind: str, name: str) -> str:
        """What the kernel holds for sysctl ``name`` of ``holder``'s ``kind`` namespace."""
        return self._sysctls(holder, kind)[name]

    def _sysctls(self, holder: Holder | None, kind: str) -> dict[str, str]:
        inode = self.root_inodes[kind] if holder is None else holder.inodes[kind]
        return self.sysctls.setdefault(inode, dict(DEFAULT_SYSCTLS))

    def _process(self, pid: int) -> FakeProcess:
        try:
            return self.processes[pid]
        except KeyError:
            raise ProcessLookupError(errno.ESRCH, f"no process {pid}") from None

    # -- what the host has -----------------------------------------------------------

    def namespace_availability(self) -> dict[str, str | None]:
        return dict.fromkeys(KINDS, None)

    def own_namespace(self, kind: str) -> str:
        return str(self.root_inodes[kind])

    def pid_max_per_namespace(self) -> bool:
        return False

    # -- holders ---------------------------------------------------------------------

    def spawn_holder(
        self,
        parent: Holder | None,
        unshare: frozenset[str],
        join_fds: Mapping[str, int],
        cgroup_root: list[Path] | None,
    ) -> Holder:
        if self.faults.spawn is not None:
            raise self.faults.spawn
        pid = next(self._holder_pids)
        inodes = dict(parent.inodes if parent is not None else self.root_inodes)
        for kind in unshare:
            inodes[kind] = next(self._inodes)
        for kind, fd in join_fds.items():
            inodes[kind] = self.ns_fds[fd]
        self.processes[pid] = FakeProcess(dict(inodes))
        if cgroup_root is not None:  # checked as the real kernel opens them
            for d in cgroup_root:
                if d.relative_to(self.cgroups.h.dir()).parts not in self.cgroups.dirs:
                    raise FileNotFoundError(errno.ENOENT, f"{d}: no such cgroup", str(d))
        self.cgroups.place(pid, (PINS,), leaf=None)  # where the real holder ends up
        holder = FakeHolder(pid, inodes, self)
        self.spawned.append(Spawned(holder, unshare, frozenset(join_fds), parent))
        return holder

    def attach_holder(self, pid: int, inodes: Mapping[str, int]) -> Holder:
        """A holder of an earlier daemon: a known process holding ``inodes``."""
        proc = self.processes.get(pid)
        if proc is None or any(proc.inodes.get(k) != v for k, v in inodes.items()):
            raise OSError(errno.ESRCH, f"no holder {pid} of those namespaces")
        return FakeHolder(pid, dict(proc.inodes), self)

    def kill_stray_holder(self, pid: int) -> bool:
        self.strays_killed.append(pid)
        return self.processes.pop(pid, None) is not None

    # -- sysctls, ID maps, time offsets, monitoring files ----------------------------

    async def read_sysctl(self, holder: Holder | None, kind: str, name: str) -> str:
        values = self._sysctls(holder, kind)
        if name not in values:
            raise FileNotFoundError(errno.ENOENT, f"no sysctl {name} here")
        return values[name]

    async def read_sysctls(
        self, holder: Holder, wanted: Sequence[tuple[str, str]]
    ) -> list[str | None]:
        out: list[str | None] = []
        for kind, name in wanted:
            try:
                out.append(await self.read_sysctl(holder, kind, name))
            except FileNotFoundError:
                out.append(None)
        return out

    async def write_sysctl(self, holder: Holder, kind: str, name: str, value: str) -> None:
        values = self._sysctls(holder, kind)
        if name not in values:
            raise FileNotFoundError(errno.ENOENT, f"no sysctl {name} here")
        values[name] = value.strip() + "\n"
        if value.strip() in self.faults.sysctl.get(name, ()):
            raise OSError(errno.EINVAL, f"{name}: the kernel refuses {value.strip()}")

    def read_id_map(self, holder: Holder | None, which: str) -> str:
        return "         0          0 4294967295\n"

    def write_id_map(self, holder: Holder, which: str, text: str) -> None:
        raise OSError(errno.EPERM, "the fake kernel keeps no ID maps")

    def inside_root(self, holder: Holder) -> tuple[int | None, int | None]:
        return 0, 0

    def time_offsets(self, holder: Holder | None) -> str:
        return "monotonic 0 0\nboottime 0 0\n"

    def set_time_offsets(self, holder: Holder, monotonic: int, boottime: int) -> None:
        raise OSError(errno.EACCES, "the fake kernel keeps no time offsets")

    def info_files(self) -> Collection[str]:
        return [e.key for e in INFO_FILES if e.role == Role.INFO]

    async def render_info(
        self, key: str, holder: Holder | None, internal: Callable[[], Collection[int]]
    ) -> str:
        return ""

    def scan_namespaces(self, as_user: tuple[int, int] | None) -> list[nslist.NsEntry]:
        return []

    # -- the internal views' bind mounts (the tests run with no mount) ----------------

    def sysctl_path(self, name: str) -> str:
        return "/proc/sys/" + name.replace(".", "/")

    async def detach_stale(self, holder: Holder, targets: frozenset[str]) -> None:
        pass

    def open_sysctl_target(self, holder: Holder, name: str) -> int:
        raise OSError(errno.EOPNOTSUPP, "the fake kernel binds nothing")

    async def attach_onto(self, holder: Holder, binds: list[tuple[int, int]]) -> None:
        pass

    def enter_final_mount_ns(self, holder: Holder) -> str:
        return str(holder.inodes["mnt"])

    # -- processes -------------------------------------------------------------------

    def translate_pid(self, pid: int, opener_pid: int) -> int:
        self._process(pid)
        return pid  # every process is in the daemon's pid namespace here

    def hold(self, pid: int) -> int:
        self._process(pid)
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)  # the service closes it

    def check_held(self, pidfd: int, pid: int) -> None:
        self._process(pid)

    def thread_group(self, tid: int) -> int:
        return tid

    def process_inodes(self, pid: int) -> dict[str, int]:
        return dict(self._process(pid).inodes)

    def creds(self, pid: int) -> procs.Creds:
        p = self._process(pid)
        return procs.Creds((p.uid,) * 4, (p.uid,) * 4, 0, p.threads, 0)

    def process_stat(self, pid: int) -> tuple[str, int, int]:
        p = self._process(pid)
        return p.comm, p.ppid, 1000 + pid

    def start_time(self, pid: int) -> int:
        return self.process_stat(pid)[2]

    def open_namespace(self, path: str, inode: int) -> int:
        parts = path.split("/")  # /proc/PID/ns/KIND, or /proc/PID/root + an nsfs_files path
        if len(parts) > 4 and parts[3] == "root":
            point = "/" + "/".join(parts[4:])
            if self.nsfs_files.get(point) != inode:
                raise FileNotFoundError(errno.ENOENT, f"no nsfs file {path} here")
            self._process(int(parts[2]))
            fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            self.ns_fds[fd] = inode
            return fd
        if len(parts) != 5 or parts[:2] != ["", "proc"] or parts[3] != "ns":
            raise FileNotFoundError(errno.ENOENT, f"no nsfs file {path} here")
        if self._process(int(parts[2])).inodes[parts[4]] != inode:
            raise ProcessLookupError(errno.ESRCH, f"{path} is no longer namespace {inode}")
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)  # the service closes it
        self.ns_fds[fd] = inode
        return fd

    def namespace_ancestors(self, fd: int) -> list[int]:
        """The fake's namespaces have no parents but those ``ns_parents`` names."""
        out, ino = [], self.ns_fds[fd]
        while ino in self.ns_parents:
            ino = self.ns_parents[ino]
            out.append(ino)
        return out

    def mount_tables(self) -> procs.MountTables:
        return FakeMountTables()

    # -- ip netns names: /run/netns in memory ---------------------------------------

    def netns_bind(self, pid: int, inode: int, name: str) -> bool:
        if self._process(pid).inodes["net"] != inode:
            raise ProcessLookupError(errno.ESRCH, f"{pid} is no longer in net:[{inode}]")
        there = self.netns.get(name)
        if there == inode:
            return False
        if there is not None:
            raise FileExistsError(errno.EEXIST, f"/run/netns/{name} is bound to net:[{there}]")
        self.netns[name] = inode
        return True

    def netns_unbind(self, name: str, inode: int | None) -> bool:
        if name not in self.netns or (inode is not None and self.netns[name] not in (inode, None)):
            return False
        del self.netns[name]
        return True

    def netns_names(self) -> list[str]:
        return list(self.netns)

    def netns_bound(self, name: str) -> int | None:
        return self.netns.get(name)

    def claim_netns_prefix(self, prefix: str) -> knetns.Held | None:
        if prefix in self.netns_taken:
            return None
        return knetns.Held(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))

    def ptrace_refusal(self, caller: int, target: int) -> str | None:
        writer, p = self._process(caller), self._process(target)
        if writer.uid not in (0, p.uid):
            return f"uid {writer.uid} may not trace a process of uid {p.uid}"
        return None

    def move_into(
        self,
        pid: int,
        targets: Mapping[str, int],
        *,
        sources: Mapping[str, str | int],
        pidfd: int,
        on_seized: Callable[[], None] | None = None,
        on_failed: Callable[[], None] | None = None,
    ) -> None:
        p = self._process(pid)
        if on_seized is not None:
            on_seized()
        if self.faults.after_seized is not None:
            self.faults.after_seized()
        if self.faults.move_into is not None:
            if on_failed is not None:
                on_failed()
            raise self.faults.move_into
        p.inodes.update(targets)
        self.moved_into.append((pid, dict(targets)))
