"""The namespace kinds, and which of them a running process may enter: one declaration.

Both layers need these facts and neither may import the other (the engine is
pure state, the kernel does the syscalls): the engine shows them in
``subsystems`` and refuses a write that cannot work, the kernel joins the
namespaces.  Plain constants, no I/O, so both import them from here.
"""

from __future__ import annotations

#: nsfs names of the namespace kinds, in the order containerfs lists them
#: (lsns's TYPE names; ``/proc/PID/ns/KIND``).
KINDS: tuple[str, ...] = ("ipc", "uts", "net", "pid", "mnt", "user", "cgroup", "time")

#: Kinds a running process can be made to join (setns takes effect at once,
#: thread by thread), in the order a move joins them.  pid and time setns only
#: change what the process's *children* get; a user namespace cannot be
#: joined by a multithreaded process and changes its credentials under its feet.
MOVABLE_KINDS: tuple[str, ...] = ("mnt", "cgroup", "ipc", "uts", "net")

#: Kinds only a new process can start inside.
SPAWN_KINDS: frozenset[str] = frozenset(KINDS) - frozenset(MOVABLE_KINDS)

#: Movable kinds a running process enters only when it has a single thread:
#: the kernel refuses setns(CLONE_NEWNS) to a thread that shares its
#: filesystem context (cwd, root) with other threads.
SINGLE_THREADED_ONLY: frozenset[str] = frozenset({"mnt"})

__all__ = ["KINDS", "MOVABLE_KINDS", "SINGLE_THREADED_ONLY", "SPAWN_KINDS"]
