"""What every part of the service shares: the engine, the kernel, the holders, the lock.

One :class:`Runtime` per daemon, built once (``Runtime.build``) from what the
kernel says the host has. The parts (``containers``, ``files``, ``tasks``,
``releases``, ``persistence``) each hold it and nothing of each other's but
what they call; discovery and recovery take it too. It owns no behaviour
beyond lookups that every part needs.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ..engine.catalog import INFO_FILES, IPC_KNOBS, NET_KNOBS, PID_KNOBS, Role
from ..engine.errors import ContainerError
from ..engine.kinds import NAMESPACE_NAMES, all_kinds
from ..engine.metrics import RequestStats
from ..engine.tree import Container, Engine
from ..kernel.holder import Holder
from ..kernel.system import Kernel

if TYPE_CHECKING:
    from ..fuse.loopback import Loopback
    from ..fuse.ops import Operations
    from ..kernel.watch import Watcher

log = logging.getLogger("containerfs")


def default_root_subtree(available: dict[str, str | None]) -> frozenset[str]:
    """Every usable kind except ``user``: a user namespace without an ID map runs
    everything as ``nobody``, which surprises more than it protects."""
    return frozenset(k for k, why in available.items() if why is None and k != "user")


def build_engine(kernel: Kernel, root_subtree: str | None) -> Engine:
    """The engine for what this host has: its namespace kinds, its controllers and
    their files, and the daemon's own instances as the root container's."""
    cgroups = kernel.cgroups
    controller_avail = cgroups.kinds()
    available = kernel.namespace_availability() | controller_avail
    kinds = all_kinds(list(controller_avail))
    controller_files = {kind: cgroups.files(kind) for kind in controller_avail}
    root_ids = {k: kernel.own_namespace(k) for k in NAMESPACE_NAMES if not available[k]}
    for kind in controller_avail:
        if controller_avail[kind] is None:
            root_ids[kind] = cgroups.cgroup_path((), kind)
    view_knobs = IPC_KNOBS + NET_KNOBS
    if kernel.pid_max_per_namespace():
        view_knobs += PID_KNOBS
    leaf = cgroups.service_leaf
    engine = Engine(
        kinds,
        available,
        controller_files,
        root_ids,
        view_knobs=view_knobs,
        reserved_cgnames=frozenset({leaf}) if leaf else frozenset(),
    )
    # Every monitoring file has its renderer: a name spelt twice fails here, not on a read.
    missing = {e.key for e in INFO_FILES if e.role == Role.INFO} - set(kernel.info_files())
    if missing:
        raise AssertionError(f"no kernel renderer for {', '.join(sorted(missing))}")
    if root_subtree is None:
        engine.reset_subtree(engine.root, default_root_subtree(engine.available))
    elif root_subtree.strip():
        engine.set_subtree(engine.root, root_subtree)
    return engine


class Runtime:
    """The state of one daemon that its parts share (see the module's docstring)."""

    def __init__(self, kernel: Kernel, engine: Engine, mountpoint: str, state_dir: Path) -> None:
        self.kernel = kernel
        self.cgroups = kernel.cgroups
        self.engine = engine
        self.mountpoint = mountpoint
        self.state_dir = state_dir
        self.holders: dict[int, Holder] = {}  # container uid -> holder
        self.ready: dict[int, trio.Event] = {}  # container uid -> set once bind mounts are in
        self.nursery: trio.Nursery | None = None  # for background work; set by serve()
        self.lock = trio.Lock()
        self.release_agent = ""  # the program `notify` runs (root file release_agent)
        self.netns_prefix = ""  # of the containers' ip netns names; empty: none (netnames.py)
        self.moving: dict[int, dict[str, object]] = {}  # pid -> a namespace move under way
        # container uid -> `tasks` moves under way into it or below (``tasks.Entry``),
        # and how many have started (a read of `populated` across one is stale)
        self.entering: dict[int, int] = {}
        self.entries: dict[int, int] = {}
        self.watcher: Watcher[Container] | None = None  # cgroup.events of every container
        self.ops: Operations | None = None  # to tell the kernel about our own changes
        self.loopback: Loopback | None = None  # our own requests to our mount
        self.requests = RequestStats()  # fed by the FUSE adapter, shown in metrics

    def holder_for(self, c: Container) -> Holder | None:
        """The holder of the namespaces ``c`` lives in: its own, or its nearest ancestor's."""
        node: Container | None = c
        while node is not None:
            holder = self.holders.get(node.uid)
            if holder is not None:
                return holder
            node = node.parent
        return None

    def holder(self, c: Container) -> Holder:
        """The holder of a container that owns namespaces (not the root)."""
        holder = self.holders.get(c.uid)
        if holder is None:
            raise OSError(errno.ESRCH, f"{where(c)}: its namespaces are gone")
        return holder

    def internal_pids(self) -> dict[int, str]:
        """Processes of the daemon's own that are never tasks."""
        out = {
            h.pid: f"the namespace holder of {where(c)}"
            for c in self.engine.root.walk()
            if (h := self.holders.get(c.uid)) is not None
        }
        out[os.getpid()] = "the containerfs daemon"
        if self.loopback is not None:
            out[self.loopback.pid] = "the containerfs daemon's loopback helper"
        return out

    def placement(self, c: Container) -> list[Path]:
        """The cgroup directories a task of ``c`` goes to, one per hierarchy."""
        return self.cgroups.placement(c.cgpath, lambda kind: c.owner(kind).cgpath)

    def nudge(self) -> None:
        """One request to our own mount (see ``Loopback.nudge``)."""
        if self.loopback is not None:
            self.loopback.nudge(self.mountpoint)


def where(c: Container, name: str = "") -> str:
    """How the log names a container (or one of its files)."""
    return "/".join((*c.path, name) if name else c.path) or "/"


def log_after_reply(msg: str, *args: object) -> None:
    """Log an applied write once the request is answered: its reply need not wait
    for the log line (Python's logging and the write to stderr cost a write to a
    control file about a fifth of its time). The line comes at the loop's next
    turn, in order with the others; a refusal is still logged before its errno
    goes back (``refusals_logged``)."""
    trio.lowlevel.current_trio_token().run_sync_soon(lambda: log.info(msg, *args))


@contextlib.contextmanager
def refusals_logged(what: str) -> Iterator[None]:
    """Say in the log why a request was refused (bad input gets a reason, not just errno)."""
    try:
        yield
    except (ContainerError, OSError, ValueError) as exc:
        log.warning("%s: refused: %s", what, exc)
        raise
