"""Subsystem kinds and the properties each declares.

The seed's single abstraction: every namespace kind and every cgroup
controller is a *subsystem kind*, parameterised by whether a running process
may enter it, how an instance can be created, and what should happen when an
instance empties. The kinds declare these in code; the root file
``subsystems`` shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..nskinds import KINDS, MOVABLE_KINDS


class KindClass(StrEnum):
    NAMESPACE = "namespace"
    CONTROLLER = "controller"


class Enter(StrEnum):
    MIGRATE = "migrate"  # a running process can be moved in
    SPAWN = "spawn"  # only new processes can start inside


class Release(StrEnum):
    IGNORE = "ignore"
    NOTIFY = "notify"
    DELETE = "delete"


class Origin(StrEnum):
    """How a container came to be: ``mkdir`` in containerfs, a process inside that
    made new namespaces itself (``clone``/``unshare``/``ip netns add``), or an OCI
    runtime's container claimed through ``container.claim`` (runc made its
    namespaces; the container owns them since)."""

    MKDIR = "mkdir"
    CLONE = "clone"
    OCI = "oci"


@dataclass(frozen=True)
class SubsystemKind:
    name: str
    cls: KindClass
    enter: Enter
    create: tuple[str, ...]
    release: Release
    summary: str


def _ns(name: str, enter: Enter, summary: str) -> SubsystemKind:
    # Namespaces vanish with their last user, so their natural release is
    # `delete`; containers made by mkdir still default to `ignore`.
    return SubsystemKind(
        name, KindClass.NAMESPACE, enter, ("mkdir", "clone"), Release.DELETE, summary
    )


def _enter(name: str) -> Enter:
    # Which kinds a running process may enter is declared once, in
    # containerfs/nskinds.py, for the kernel's move (kernel/inject.py) too.
    return Enter.MIGRATE if name in MOVABLE_KINDS else Enter.SPAWN


# `enter`: see containerfs/nskinds.py for why each kind is `migrate` or `spawn`.
# mnt is `migrate` for single-threaded processes only (SINGLE_THREADED_ONLY).
_SUMMARIES: dict[str, str] = {
    "ipc": "System V IPC objects and POSIX message queues",
    "uts": "hostname and NIS domain name",
    "net": "network devices, addresses, routes, sockets",
    "pid": "process IDs; the container's first process is its init",
    "mnt": "mount table (running processes: single-threaded only)",
    "user": "user and group IDs, capabilities",
    "cgroup": "the root of the cgroup tree as seen from inside",
    "time": "CLOCK_MONOTONIC and CLOCK_BOOTTIME offsets",
}
NAMESPACE_KINDS: tuple[SubsystemKind, ...] = tuple(
    _ns(name, _enter(name), _SUMMARIES[name]) for name in KINDS
)

NAMESPACE_NAMES: tuple[str, ...] = tuple(k.name for k in NAMESPACE_KINDS)


def controller_kind(name: str) -> SubsystemKind:
    """A cgroup controller: processes migrate freely, instances come from mkdir and persist."""
    return SubsystemKind(
        name,
        KindClass.CONTROLLER,
        Enter.MIGRATE,
        ("mkdir",),
        Release.IGNORE,
        f"cgroup controller {name}",
    )


def all_kinds(controllers: list[str]) -> tuple[SubsystemKind, ...]:
    """Namespace kinds first (fixed order), then controllers in the order given."""
    return NAMESPACE_KINDS + tuple(controller_kind(c) for c in controllers)
