"""The service the FUSE adapter calls (``fuse.ops.Service``), built from its parts.

Each request is decided by the engine first (so bad input changes nothing),
then carried out on the kernel through the backends, then committed to the
engine. This class only builds the parts and hands each request to the one
whose job it is.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..engine.tree import ROOT_IDS, Container, Engine, FileSpec
from ..kernel.system import Kernel
from .containers import Containers
from .files import Files
from .persistence import Persistence
from .releases import Releases
from .runtime import Runtime, build_engine
from .tasks import Tasks

log = logging.getLogger("containerfs")


class Daemon:
    """One daemon's service: its runtime and the parts that act on it."""

    def __init__(self, kernel: Kernel, engine: Engine, mountpoint: str, state_dir: Path) -> None:
        self.rt = rt = Runtime(kernel, engine, mountpoint, state_dir)
        self.store = Persistence(rt)
        self.containers = Containers(rt, self.store)
        self.releases = Releases(rt, self.store, self.containers)
        self.tasks = Tasks(rt, self.store, self.releases)
        self.files = Files(rt, self.store, self.containers, self.releases, self.tasks)

    @classmethod
    def build(
        cls, kernel: Kernel, mountpoint: str, state_dir: Path, root_subtree: str | None = None
    ) -> Daemon:
        """A daemon for what ``kernel`` says the host has (``runtime.build_engine``)."""
        return cls(kernel, build_engine(kernel, root_subtree), mountpoint, state_dir)

    @property
    def engine(self) -> Engine:
        return self.rt.engine

    async def mkdir(
        self, parent: Container, name: str, owner: tuple[int, int] = ROOT_IDS
    ) -> Container:
        return await self.containers.mkdir(parent, name, owner)

    async def rmdir(self, c: Container) -> None:
        await self.containers.rmdir(c)
        if c.parent is not None:  # its last child gone: the parent may be released
            await self.releases.check_release(c.parent)

    async def read(
        self, c: Container, spec: FileSpec, reader_pid: int, reader: tuple[int, int] = (0, 0)
    ) -> bytes:
        text = await self.files.read(c, spec, reader)
        return text if isinstance(text, bytes) else text.encode()

    async def write(
        self, c: Container, spec: FileSpec, data: bytes, writer_pid: int, writer_uid: int
    ) -> None:
        await self.files.write(c, spec, data, writer_pid, writer_uid)

    async def rename(self, c: Container, new_parent: Container, new_name: str) -> None:
        await self.containers.rename(c, new_parent, new_name)

    async def chown(self, c: Container, uid: int | None, gid: int | None) -> None:
        await self.containers.chown(c, uid, gid)

    def cacheable(self, c: Container, spec: FileSpec) -> bool:
        """Whether the kernel may serve the file from its page cache: the
        catalogue's word (``Engine.page_cached``)."""
        return self.rt.engine.page_cached(c, spec)

    def teardown(self) -> None:
        """Keep every container: drop our references to the holders and save the tree.

        Containers, their namespaces and cgroups outlive the daemon; a new
        ``containerfs mount`` with the same state dir takes them over.
        """
        self.releases.agents.close()
        self.files.metrics.close()
        self.containers.names.close()
        for holder in self.rt.holders.values():
            holder.close()
        self.store.close()
        n = sum(1 for c in self.rt.engine.root.walk()) - 1
        if n:
            log.info("%d container(s) kept for the next start", n)
