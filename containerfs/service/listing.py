"""The root's ``namespaces`` file: every namespace on the host, with its container.

A walk of every process is the costliest read containerfs has: readers at once
share walks (``SharedRuns``), and no reader gets one that began before it
opened the file.
"""

from __future__ import annotations

import functools
import logging

import trio

from ..engine import lifecycle
from ..kernel import nslist
from ..shared import SharedRuns
from .runtime import Runtime

log = logging.getLogger("containerfs")


class Listing:
    """Renders ``namespaces`` for a reader."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.scans: SharedRuns[tuple[int, int] | None, list[nslist.NsEntry]]
        self.scans = SharedRuns(self._scan)

    async def render(self, reader: tuple[int, int]) -> str:
        """As ``reader`` (fsuid, fsgid) may see it: root every namespace; another
        user those its own ``lsns`` shows (the walk runs as that user:
        ``nslist.scan``'s ``as_user``), counting only processes it may see."""
        entries = await self.scans.get(None if reader[0] == 0 else reader)
        index = lifecycle.namespace_index(self.rt.engine.root)

        def path_of(kind: str, inode: int) -> str | None:
            c = index.get((kind, str(inode)))
            return None if c is None else "/" + "/".join(c.path)

        return nslist.format_table(entries, path_of)

    async def _scan(self, as_user: tuple[int, int] | None) -> list[nslist.NsEntry]:
        who = "root" if as_user is None else f"uid {as_user[0]}"
        log.debug("namespaces: walk as %s (%d so far)", who, self.scans.runs)
        scan = functools.partial(self.rt.kernel.scan_namespaces, as_user)
        return await trio.to_thread.run_sync(scan)
