"""The least a pyfuse3 filesystem can cost here: one file, answered from memory.

Run by ``bench.control`` as ``python -m bench.floorfs MOUNTPOINT``; it prints
``ready`` once mounted and serves until SIGTERM.
The file ``value`` holds a short number: ``open`` returns at once with
``keep_cache`` (as containerfs does for a value that only it changes), a read
is answered from the page cache, a write replaces the value and drops the
pages. The file ``dynamic`` holds the same value opened with ``direct_io``
(size 0, every read asks the daemon), as containerfs serves ``tasks`` or a
counter. Entry and attribute timeouts are containerfs's (1 s).
``bench/floorfs.c`` is the same filesystem on libfuse's own loop in C.

Why it exists: every containerfs control file pays the round trips of pyfuse3's
request loop (``open`` and the ``release`` that ``close`` sends). Timing this
filesystem in the same run as containerfs shows how much of a figure is that
loop, which no change to containerfs can remove, and how much is containerfs.
"""

from __future__ import annotations

import errno
import functools
import signal
import stat
import sys

import pyfuse3
import trio

from containerfs.defaults import DEFAULT_BUSY_POLL_US

ENTRY_TIMEOUT = ATTR_TIMEOUT = 1.0
NAME = b"value"
FILE_INODE = pyfuse3.ROOT_INODE + 1
DYNAMIC_NAME = b"dynamic"
DYNAMIC_INODE = pyfuse3.ROOT_INODE + 2


class Floor(pyfuse3.Operations):
    def __init__(self) -> None:
        super().__init__()
        self.value = b"4096\n"

    def _attr(self, inode: int) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode
        attr.entry_timeout = ENTRY_TIMEOUT
        attr.attr_timeout = ATTR_TIMEOUT
        if inode == pyfuse3.ROOT_INODE:
            attr.st_mode = stat.S_IFDIR | 0o755
            attr.st_nlink = 2
        else:
            attr.st_mode = stat.S_IFREG | 0o644
            attr.st_nlink = 1
            attr.st_size = len(self.value) if inode == FILE_INODE else 0
        return attr

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if inode not in (pyfuse3.ROOT_INODE, FILE_INODE, DYNAMIC_INODE):
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(inode)

    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        if parent_inode != pyfuse3.ROOT_INODE or name not in (NAME, DYNAMIC_NAME):
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(FILE_INODE if name == NAME else DYNAMIC_INODE)

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if inode == pyfuse3.ROOT_INODE:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if inode == DYNAMIC_INODE:
            return pyfuse3.FileInfo(fh=inode, direct_io=True)
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return self.value[off : off + size]

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        self.value = buf
        if fh == FILE_INODE:
            pyfuse3.invalidate_inode(FILE_INODE, attr_only=True)
        return len(buf)

    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        return self._attr(inode)  # O_TRUNC of an echo: the write replaces the value

    async def release(self, fh: int) -> None:
        pass


async def _serve(mountpoint: str) -> None:
    async with trio.open_nursery() as nursery:
        # containerfs's default busy polling, where this pyfuse3 has it (README
        # "The request loop"), so that the floor runs the same loop.
        if getattr(pyfuse3, "BUSY_POLLS", False):
            nursery.start_soon(functools.partial(pyfuse3.main, busy_poll_us=DEFAULT_BUSY_POLL_US))
        else:
            nursery.start_soon(pyfuse3.main)
        print("ready", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()


def main() -> None:
    mountpoint = sys.argv[1]
    # containerfs's own mount options (daemon.main)
    options = {"fsname=cfs-bench-floor", "default_permissions", "allow_other"}
    pyfuse3.init(Floor(), mountpoint, options)
    try:
        trio.run(_serve, mountpoint)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    main()
