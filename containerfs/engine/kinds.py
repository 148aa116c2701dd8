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
    """How a container came to be: ``mkdir`` in containerfs, or a process inside that
    made new namespaces itself (``clone``/``unshare``/``ip netns add``)."""

    MKDIR = "mkdir"
    CLONE = "clone"


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


# `enter`: a running process can be made to call setns() itself (kernel/inject.py)
# for kinds whose setns takes effect at once, thread by thread. pid and time
# setns only change what the process's *children* get; a user namespace
# cannot be joined by a multithreaded process and changes its credentials
# under its feet. mnt is `migrate` for single-threaded processes only: the
# kernel refuses setns(CLONE_NEWNS) to a thread that shares its filesystem
# context (cwd, root) with other threads.
NAMESPACE_KINDS: tuple[SubsystemKind, ...] = (
    _ns("ipc", Enter.MIGRATE, "System V IPC objects and POSIX message queues"),
    _ns("uts", Enter.MIGRATE, "hostname and NIS domain name"),
    _ns("net", Enter.MIGRATE, "network devices, addresses, routes, sockets"),
    _ns("pid", Enter.SPAWN, "process IDs; the container's first process is its init"),
    _ns("mnt", Enter.MIGRATE, "mount table (running processes: single-threaded only)"),
    _ns("user", Enter.SPAWN, "user and group IDs, capabilities"),
    _ns("cgroup", Enter.MIGRATE, "the root of the cgroup tree as seen from inside"),
    _ns("time", Enter.SPAWN, "CLOCK_MONOTONIC and CLOCK_BOOTTIME offsets"),
)

#: Namespace kinds a running process enters only when it has a single thread.
SINGLE_THREADED_ONLY: frozenset[str] = frozenset({"mnt"})

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
