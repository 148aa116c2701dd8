"""Saving the tree: a journal of changes and whole snapshots (``statefile.py``).

Containers outlive the daemon; a new one with the same state dir takes them
over from what is saved here (``recovery.py``). A failure to save (state dir
unwritable or full) is logged, never raised: the kernel objects are already
made, and refusing the request now would leave them unrecorded anyway. The
next whole save catches up.
"""

from __future__ import annotations

import logging

from ..engine import lifecycle
from ..engine.tree import Container
from ..engine.views import KnobState
from ..statefile import StateFile
from .runtime import Runtime

log = logging.getLogger("containerfs")

STATE_VERSION = 2


class Persistence:
    """Writes the runtime's tree to its state dir."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.statefile = StateFile(rt.state_dir)

    def save(self, *changed: Container) -> None:
        """Record the tree, for inspection and restart.

        With ``changed``, only those containers are journalled (a change costs
        the same at any size of tree); without, or when the journal is as long
        as the tree, the whole tree is written.
        """
        rt = self.rt
        try:
            if (
                changed
                and not self.statefile.due()
                and self.statefile.append({"put": self._record(c)} for c in changed)
            ):
                return
            self.statefile.snapshot(
                {
                    "version": STATE_VERSION,
                    "mountpoint": rt.mountpoint,
                    "release_agent": rt.release_agent,
                    "netns_prefix": rt.netns_prefix,
                    "containers": [self._record(c) for c in rt.engine.root.walk()],
                    "moving": list(rt.moving.values()),
                }
            )
        except OSError as exc:
            log.error("cannot save the state to %s: %s", rt.state_dir, exc)

    def save_view(self, c: Container, file: str, state: KnobState) -> None:
        """Record one knob's views of ``c`` (a view write): one short journal line
        instead of the container's whole record, whose encoding was most of what
        a write to a view cost the daemon. Appended before the write is answered,
        so it survives a crash of the daemon right after."""
        if self.statefile.due():
            self.save(c)
            return
        self.journal({"view": [list(c.path), file, state.internal, state.external]})

    def save_removed(self, path: tuple[str, ...]) -> None:
        """Record that the container at ``path`` (and all below it) is gone."""
        self.journal({"drop": list(path)})

    def journal(self, entry: dict[str, object]) -> None:
        """Append one entry; a whole save when the journal cannot take it."""
        try:
            if self.statefile.append([entry]):
                return
        except OSError as exc:
            log.error("cannot save the state to %s: %s", self.rt.state_dir, exc)
        self.save()

    def moving(self, pid: int, move: dict[str, object]) -> None:
        """Record a namespace move before it starts (``recovery.finish_moves``)."""
        self.rt.moving[pid] = move
        self.journal({"moving": move})

    def moved(self, pid: int) -> None:
        if self.rt.moving.pop(pid, None) is not None:
            self.journal({"moved": pid})

    def close(self) -> None:
        self.save()
        self.statefile.close()

    def _record(self, c: Container) -> dict[str, object]:
        holder = self.rt.holders.get(c.uid)
        return lifecycle.record(c, holder.pid if holder is not None else None)
