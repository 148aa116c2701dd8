"""pyfuse3 Operations: a thin adapter from FUSE requests to the daemon's service.

This module only translates: inodes to (container, file), requests to
service calls, results to attributes. What a request *means* is decided by
the engine and carried out by the service (``containerfs.service``).

Control files are generated when opened (a snapshot, as cgroupfs's seq files
are). Each ``write()`` is applied on its own, as cgroupfs applies each write
system call. The kernel cuts a write larger than FUSE's ``max_write`` (1 MiB)
into several requests; the service refuses any request longer than a page
(``E2BIG``, ``service.files.WRITE_MAX``), so the first piece of such a write fails and
the kernel sends no other.

Most files are served with ``direct_io``: every read asks the daemon, and their
size shows as 0. Files whose value changes only through the daemon (limits,
policies, views bound into their container; the service says which) are served
from the kernel's page cache instead: their size is the length of their
content, and an ``open`` keeps the cached pages when the content is still the
same. The content is taken as still the same while nothing was changed through
the daemon and for at most ``CACHE_TTL`` seconds; after that an open renders
the file again and compares. A change through the daemon drops the file's
pages and attributes at once, so ``echo 5 > pids.max; cat pids.max`` always
shows 5, also on a descriptor held open. An open then costs one FUSE round
trip, with no read and no flush.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import stat
import time
from dataclasses import dataclass
from typing import Protocol

import pyfuse3

from ..engine.catalog import Mode, Role
from ..engine.metrics import RequestStats
from ..engine.tree import Container, Engine, FileSpec
from .errors import fuse_errors

log = logging.getLogger("containerfs.fuse")

ENTRY_TIMEOUT = 1.0
ATTR_TIMEOUT = 1.0
CACHE_TTL = 1.0  # seconds a cached file's content is trusted without rendering it again


class Service(Protocol):
    @property
    def engine(self) -> Engine: ...

    async def mkdir(self, parent: Container, name: str, owner: tuple[int, int]) -> Container: ...

    async def rmdir(self, c: Container) -> None: ...

    async def read(
        self, c: Container, spec: FileSpec, reader_pid: int, reader: tuple[int, int] = (0, 0)
    ) -> bytes: ...

    async def write(
        self, c: Container, spec: FileSpec, data: bytes, writer_pid: int, writer_uid: int
    ) -> None: ...

    async def rename(self, c: Container, new_parent: Container, new_name: str) -> None: ...

    def cacheable(self, c: Container, spec: FileSpec) -> bool: ...

    async def chown(self, c: Container, uid: int | None, gid: int | None) -> None: ...


@dataclass
class _Node:
    container: Container
    file: str | None  # None: the container's directory
    ctime_ns: int


@dataclass(slots=True)
class _Handle:
    node: _Node
    spec: FileSpec
    opener_pid: int
    content: bytes | None
    opener_uid: int = 0  # the opener's fsuid: who a ``tasks`` write moves processes for
    opener_gid: int = 0  # and fsgid: with the uid, whom ``namespaces`` is shown to
    seq: int = 0  # the container's events sequence when ``content`` was made
    served: bool = False  # a read happened: the next one at offset 0 renders anew
    touch: bool = False  # the toucher's write-only handle (see fuse/loopback.py)
    cached: bool = False  # served from the page cache: reads get the inode's content
    ino: int = 0


@dataclass
class _Cached:
    """The content of a page-cached file, as the kernel holds it."""

    content: bytes
    generation: int  # ``Operations._generation`` when it was rendered
    made: float  # time.monotonic() when it was rendered
    mtime_ns: int  # the file's mtime: changes when, and only when, the content does
    # The handle every read-only open of this content shares (``_open_cached``):
    # a cached handle holds nothing of its opener that a later request uses.
    handle: _Handle | None = None


# What poll() answers, as kernfs does for cgroup.events: always readable, and
# POLLPRI|POLLERR once the file changed since the handle last read it.
_READABLE = select.POLLIN | select.POLLRDNORM
_CHANGED = select.POLLPRI | select.POLLERR


def _file_mode(spec: FileSpec) -> int:
    """A file's permission bits: 0644 writable, 0444 read-only, 0200 write-only."""
    if not spec.writable:
        return 0o444
    return 0o200 if spec.entry.mode is Mode.WRITE_ONLY else 0o644


class Operations(pyfuse3.Operations):
    """Inode bookkeeping plus one short method per FUSE request."""

    enable_writeback_cache = False

    def __init__(self, service: Service, requests: RequestStats | None = None) -> None:
        super().__init__()
        self.service = service
        self.requests = requests  # counted and timed by ``fuse_errors`` (metrics)
        self._nodes: dict[int, _Node] = {}
        # container uid -> file (None: its directory) -> inode; per container, so
        # that forgetting one costs its own files, not every inode there is
        self._inodes: dict[int, dict[str | None, int]] = {}
        self._next_inode = pyfuse3.ROOT_INODE + 1
        self._handles: dict[int, _Handle] = {}
        self._next_fh = 1
        self._events_seq: dict[int, int] = {}  # container uid -> changes of its events file
        self._aliases: dict[str, int] = {}  # hidden root names -> file inodes (bind_source)
        self._polls: dict[int, pyfuse3.PollHandle] = {}  # fh -> waiting poll
        self.toucher_pid: int | None = None  # see fuse/loopback.py
        self._cache: dict[int, _Cached] = {}  # inode -> content of a page-cached file
        self._mtimes: dict[int, int] = {}  # inode -> the last mtime it showed (_new_mtime)
        self._generation = 0  # changes made through the daemon (see ``changed``)
        # inode -> (engine.version, spec, page-cached?), see _file_of
        self._files_known: dict[int, tuple[int, FileSpec, bool]] = {}
        root = service.engine.root
        self._nodes[pyfuse3.ROOT_INODE] = _Node(root, None, time.time_ns())
        self._inodes[root.uid] = {None: pyfuse3.ROOT_INODE}

    # -- bookkeeping ---------------------------------------------------------

    def _inode(self, c: Container, file: str | None) -> int:
        files = self._inodes.setdefault(c.uid, {})
        ino = files.get(file)
        if ino is None:
            ino = self._next_inode
            self._next_inode += 1
            files[file] = ino
            self._nodes[ino] = _Node(c, file, time.time_ns())
        return ino

    def bind_source(self, c: Container, file: str) -> str:
        """A hidden name in the root directory for a file of ``c`` (not listed): the
        daemon binds the file from there. A lookup in ``c``'s own directory could
        wait for a ``mkdir`` of a child of ``c`` that holds that directory locked
        in the kernel, and such a ``mkdir`` waits for ``c``'s views to be bound."""
        name = f".bind.{c.uid}.{file}"
        self._aliases[name] = self._inode(c, file)
        return name

    def drop_bind_source(self, name: str) -> None:
        self._aliases.pop(name, None)

    def _node(self, inode: int) -> _Node:
        node = self._nodes.get(inode)
        if node is None or node.container.removed:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _known(self, uid: int, file: str | None) -> int | None:
        """The inode already given to a container's file (None: its directory), if any."""
        files = self._inodes.get(uid)
        return files.get(file) if files is not None else None

    def _file_of(self, inode: int, node: _Node) -> tuple[FileSpec, bool]:
        """A file's spec and whether it is page-cached, kept until the tree changes:
        an ``open`` of a limit is mostly pyfuse3's round trip, and under a profiler
        working these out again was a quarter of the handler's own time."""
        version = self.service.engine.version
        known = self._files_known.get(inode)
        if known is not None and known[0] == version:
            return known[1], known[2]
        assert node.file is not None
        spec = self.service.engine.file(node.container, node.file)
        cacheable = self.service.cacheable(node.container, spec)
        self._files_known[inode] = (version, spec, cacheable)
        return spec, cacheable

    def _dir(self, inode: int) -> Container:
        node = self._node(inode)
        if node.file is not None:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return node.container

    def forget_container(self, c: Container) -> None:
        """Drop the inodes of a removed container so the maps do not grow without bound."""
        for ino in self._inodes.pop(c.uid, {}).values():
            self._nodes.pop(ino, None)
            self._cache.pop(ino, None)
            self._mtimes.pop(ino, None)
            self._files_known.pop(ino, None)
        self._events_seq.pop(c.uid, None)

    # -- the page cache of files whose value changes only through the daemon ------

    def changed(self) -> None:
        """Something changed through the daemon: no cached content is trusted any
        more without rendering it again (a value can show in other files, e.g. a
        parent's limit in its children's views)."""
        self._generation += 1

    async def _content(self, node: _Node, spec: FileSpec, ino: int, pid: int) -> tuple[bytes, bool]:
        """A page-cached file's content, and whether the kernel's pages still hold it.

        When the content is new or differs, the kernel's attributes are dropped
        first so its next read learns the new size (an attribute-only
        invalidation never waits on a request, so it is safe from a handler).
        """
        content, same = await self._fresh(node, spec, ino, pid)
        if not same:
            # OSError: the kernel does not know the inode yet, nothing to drop.
            with contextlib.suppress(OSError):
                pyfuse3.invalidate_inode(ino, attr_only=True)
        return content, same

    async def _fresh(self, node: _Node, spec: FileSpec, ino: int, pid: int) -> tuple[bytes, bool]:
        """The cached content if it is still trusted, else rendered anew; and whether
        it is what the cache held."""
        entry = self._cache.get(ino)
        now = time.monotonic()
        fresh = entry is not None and entry.generation == self._generation
        if entry is not None and fresh and now - entry.made < CACHE_TTL:
            return entry.content, True
        content = await self.service.read(node.container, spec, pid)
        same = entry is not None and entry.content == content
        mtime = entry.mtime_ns if entry is not None and same else self._new_mtime(ino)
        self._cache[ino] = _Cached(content, self._generation, now, mtime)
        return content, same

    def _new_mtime(self, ino: int) -> int:
        """An mtime later than any the file showed: the kernel compares it with the
        one it holds and, when it differs, drops the file's pages itself (libfuse's
        default ``auto_inval_data``), also under a descriptor held open."""
        mtime = max(time.time_ns(), self._mtimes.get(ino, 0) + 1)
        self._mtimes[ino] = mtime
        return mtime

    def _drop_cached(self, ino: int) -> None:
        """A change through the daemon to a page-cached file: drop the kernel's
        attributes of it now (attribute-only, which never waits on a request, so
        it is safe from a handler and needs no thread). The next open finds no
        content and drops the pages (``keep_cache`` off); a reader holding the
        file open asks for attributes at its next read, gets the new content's
        mtime (``_new_mtime``), and the kernel drops the stale pages itself."""
        entry = self._cache.pop(ino, None)
        if entry is None:
            return
        self._mtimes[ino] = max(self._mtimes.get(ino, 0), entry.mtime_ns)
        with contextlib.suppress(OSError):
            pyfuse3.invalidate_inode(ino, attr_only=True)

    # -- changes made by the daemon itself (not through a request) ---------------

    def removed(self, c: Container, parent: Container, name: str) -> None:
        """A container the daemon removed on its own (release ``delete``): make the
        kernel drop its cached entry, then forget its inodes."""
        self.changed()
        parent_ino = self._known(parent.uid, None)
        if parent_ino is not None:
            # Not ``deleted=``: the kernel refuses that (ENOTEMPTY) for a directory
            # whose files it still has cached; dropping the entry is enough.
            pyfuse3.invalidate_entry_async(parent_ino, os.fsencode(name), ignore_enoent=True)
        self.forget_container(c)

    def renamed(self, parent: Container, old_name: str) -> None:
        """A container was renamed on the daemon's side: drop the old cached name."""
        self.changed()
        parent_ino = self._known(parent.uid, None)
        if parent_ino is not None:
            pyfuse3.invalidate_entry_async(parent_ino, os.fsencode(old_name), ignore_enoent=True)

    def events_changed(self, c: Container) -> None:
        """``container.events`` of ``c`` changed: wake poll() waiters on it."""
        self._events_seq[c.uid] = self._events_seq.get(c.uid, 0) + 1
        for fh, handle in list(self._handles.items()):
            if handle.node.container is c and handle.spec.role == Role.EVENTS:
                ph = self._polls.pop(fh, None)
                if ph is not None:
                    ph.notify()

    def _attr(self, inode: int, node: _Node) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode
        cached = self._cache.get(inode)
        attr.st_size = len(cached.content) if cached is not None else 0
        attr.st_blksize = 4096
        attr.st_blocks = 0
        # Owners and modes are what the kernel checks access against
        # (``default_permissions``): README "Ownership and delegation".
        if node.file is None:
            attr.st_mode = stat.S_IFDIR | 0o755
            attr.st_nlink = 2 + len(node.container.children)
            attr.st_uid, attr.st_gid = node.container.owner_ids
        else:
            spec = self.service.engine.file(node.container, node.file)
            attr.st_mode = stat.S_IFREG | _file_mode(spec)
            attr.st_nlink = 1
            attr.st_uid, attr.st_gid = self.service.engine.file_owner(node.container, spec)
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = node.ctime_ns
        if cached is not None:
            attr.st_mtime_ns = cached.mtime_ns
        attr.entry_timeout = ENTRY_TIMEOUT
        attr.attr_timeout = ATTR_TIMEOUT
        return attr

    def _entries(self, c: Container) -> list[tuple[str, int]]:
        out = [(name, self._inode(child, None)) for name, child in sorted(c.children.items())]
        out += [(name, self._inode(c, name)) for name in self.service.engine.files(c)]
        return out

    # -- FUSE requests ---------------------------------------------------------

    @fuse_errors
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        c = self._dir(parent_inode)
        text = os.fsdecode(name)
        alias = self._aliases.get(text) if parent_inode == pyfuse3.ROOT_INODE else None
        if alias is not None:
            return self._attr(alias, self._node(alias))
        if text == ".":
            return self._attr(parent_inode, self._node(parent_inode))
        if text == "..":
            up = c.parent or c
            ino = self._inode(up, None)
            return self._attr(ino, self._node(ino))
        child = c.children.get(text)
        if child is not None:
            ino = self._inode(child, None)
        else:
            self.service.engine.file(c, text)  # NotFound -> ENOENT
            ino = self._inode(c, text)
        return self._attr(ino, self._node(ino))

    @fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self._node(inode)
        if node.file is not None:
            # A page-cached file's size must be its length, or reads stop short;
            # and content older than CACHE_TTL is rendered again, so a reader
            # holding the file open (the kernel asks once its attributes expire)
            # sees a change behind the daemon's back by its new mtime.
            spec, cacheable = self._file_of(inode, node)
            if cacheable:
                await self._fresh(node, spec, inode, ctx.pid)
        return self._attr(inode, node)

    @fuse_errors
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        node = self._node(inode)
        if fields.update_size:
            # `echo X > file` truncates first; control files have no length to cut.
            if node.file is None:
                raise pyfuse3.FUSEError(errno.EISDIR)
            if not self.service.engine.file(node.container, node.file).writable and not (
                ctx.pid == self.toucher_pid and ctx.pid is not None
            ):
                raise pyfuse3.FUSEError(errno.EACCES)
        elif fields.update_uid or fields.update_gid:
            await self._chown(inode, node, attr, fields, ctx)
        elif fields.update_mode:
            raise pyfuse3.FUSEError(errno.EPERM)  # modes say what a file is: fixed
        return self._attr(inode, node)

    async def _chown(
        self,
        inode: int,
        node: _Node,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        """``chown`` of a container directory by root delegates it; nothing else may
        change an owner (EPERM)."""
        if ctx.uid != 0 or node.file is not None or fields.update_mode:
            raise pyfuse3.FUSEError(errno.EPERM)
        c = node.container
        uid = attr.st_uid if fields.update_uid else None
        gid = attr.st_gid if fields.update_gid else None
        await self.service.chown(c, uid, gid)
        self.changed()
        # The kernel checks access against the attributes it caches: drop those of
        # the files that changed hands (attribute-only: safe from a handler).
        for name in (None, "tasks", "container.subtree"):
            ino = self._known(c.uid, name)
            if ino is not None and ino != inode:
                with contextlib.suppress(OSError):
                    pyfuse3.invalidate_inode(ino, attr_only=True)

    @fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        self._dir(inode)
        return inode

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        entries = self._entries(self._dir(fh))
        for index in range(start_id, len(entries)):
            name, ino = entries[index]
            if not pyfuse3.readdir_reply(
                token, os.fsencode(name), self._attr(ino, self._nodes[ino]), index + 1
            ):
                break

    @fuse_errors
    async def releasedir(self, fh: int) -> None:
        return None

    @fuse_errors
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._dir(parent_inode)
        child = await self.service.mkdir(parent, os.fsdecode(name), (ctx.uid, ctx.gid))
        self.changed()
        ino = self._inode(child, None)
        return self._attr(ino, self._nodes[ino])

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self._dir(parent_inode)
        text = os.fsdecode(name)
        child = parent.children.get(text)
        if child is None:
            if text in self.service.engine.files(parent):
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            raise pyfuse3.FUSEError(errno.ENOENT)
        await self.service.rmdir(child)
        self.changed()
        self.forget_container(child)

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        """``_open_cached`` when it can answer, else ``_open``.

        Not wrapped in ``fuse_errors`` itself: the fast path is dictionary look-ups
        (guarded all the same), and the slow one is wrapped; a ``cat`` of a limit
        is mostly this request and its ``release``, so a coroutine less counts."""
        start = time.perf_counter()
        try:
            fast = self._open_cached(inode, flags)
        except Exception:  # a bug: let the full path decide, with its error mapping
            log.exception("open: fast path")
            fast = None
        if fast is not None:
            if self.requests is not None:  # counted as ``fuse_errors`` counts the rest
                self.requests.observe("open", time.perf_counter() - start, False)
            return fast
        return await self._open(inode, flags, ctx)

    def _open_cached(self, inode: int, flags: int) -> pyfuse3.FileInfo | None:
        """A read-only open of a page-cached file whose content is still trusted
        (``_fresh`` would return it unchanged): what ``_open`` answers then, without
        its awaits. The handle is the one the content's first open made; None
        when any of that does not hold."""
        if flags & os.O_ACCMODE != os.O_RDONLY:
            return None
        entry = self._cache.get(inode)
        if entry is None or entry.handle is None or entry.generation != self._generation:
            return None
        if time.monotonic() - entry.made >= CACHE_TTL or entry.handle.node.container.removed:
            return None
        known = self._files_known.get(inode)
        if known is None or known[0] != self.service.engine.version or not known[2]:
            return None
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = entry.handle
        return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    @fuse_errors
    async def _open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self._node(inode)
        if node.file is None:
            raise pyfuse3.FUSEError(errno.EISDIR)
        spec, cacheable = self._file_of(inode, node)
        mode = flags & os.O_ACCMODE
        touch = mode == os.O_WRONLY and spec.role == Role.EVENTS and ctx.pid == self.toucher_pid
        if mode != os.O_RDONLY and not spec.writable and not touch:
            raise pyfuse3.FUSEError(errno.EACCES)
        seq = self._events_seq.get(node.container.uid, 0)
        content = None
        cached = keep = False
        if mode == os.O_RDONLY and cacheable:
            content, keep = await self._content(node, spec, inode, ctx.pid)
            cached = True
        elif mode != os.O_WRONLY:
            content = await self.service.read(node.container, spec, ctx.pid, (ctx.uid, ctx.gid))
        fh = self._next_fh
        self._next_fh += 1
        handle = self._handles[fh] = _Handle(
            node,
            spec,
            ctx.pid,
            content,
            opener_uid=ctx.uid,
            opener_gid=ctx.gid,
            seq=seq,
            touch=touch,
            cached=cached,
            ino=inode,
        )
        if cached:
            entry = self._cache.get(inode)
            if entry is not None and entry.content is content:
                entry.handle = handle  # for _open_cached
        return pyfuse3.FileInfo(fh=fh, direct_io=not cached, keep_cache=keep)

    @fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self._handles[fh]
        if handle.content is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        if handle.cached:
            # The kernel fills the inode's pages: give it the newest content.
            entry = self._cache.get(handle.ino)
            content = entry.content if entry is not None else handle.content
            return content[off : off + size]
        if off == 0 and handle.served:
            # Reading again from the start (lseek 0, as poll() users of
            # cgroup.events do) renders the file anew, like a seq_file.
            node = handle.node
            if node.container.removed:
                raise pyfuse3.FUSEError(errno.ENODEV)
            handle.seq = self._events_seq.get(node.container.uid, 0)
            handle.content = await self.service.read(
                node.container,
                handle.spec,
                handle.opener_pid,
                (handle.opener_uid, handle.opener_gid),
            )
        handle.served = True
        return handle.content[off : off + size]

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._handles[fh]
        if handle.touch:
            return len(buf)  # the write is the inotify event; nothing to do
        if handle.node.container.removed:
            raise pyfuse3.FUSEError(errno.ENODEV)
        try:
            await self.service.write(
                handle.node.container, handle.spec, buf, handle.opener_pid, handle.opener_uid
            )
        finally:
            self.changed()  # also after a refusal: part of a write may have been applied
            if handle.spec.role == Role.ID_MAP:  # owners of internal views may change
                self._drop_internal_view_attrs(handle.node.container)
            elif handle.spec.role == Role.CLAIM:  # files of the kinds it owns now: writable
                self._drop_file_attrs(handle.node.container)
        ino = self._known(handle.node.container.uid, handle.node.file)
        if ino is not None:
            self._drop_cached(ino)
        return len(buf)

    def _drop_file_attrs(self, c: Container) -> None:
        """A claim made ``c`` own namespaces: its files of those kinds are writable
        now (mode 0644, not 0444); drop the kernel's cached attributes, which it
        checks access against (attribute-only: safe from a handler)."""
        for name, ino in self._inodes.get(c.uid, {}).items():
            if name is not None:
                with contextlib.suppress(OSError):
                    pyfuse3.invalidate_inode(ino, attr_only=True)

    def _drop_internal_view_attrs(self, c: Container) -> None:
        """An ID map was written: internal views of ``c`` and below may have a new owner
        (``Engine.file_owner``); drop the kernel's cached attributes, which it checks
        access against (attribute-only: safe from a handler)."""
        for node in c.walk():
            for name, ino in self._inodes.get(node.uid, {}).items():
                if name is not None and name.endswith(".internal"):
                    with contextlib.suppress(OSError):
                        pyfuse3.invalidate_inode(ino, attr_only=True)

    @fuse_errors
    async def poll(
        self,
        inode: int,
        fh: int,
        poll_handle: pyfuse3.PollHandle | None,
        ctx: pyfuse3.RequestContext,
    ) -> int:
        handle = self._handles.get(fh)
        if handle is None or handle.spec.role != Role.EVENTS:
            return _READABLE
        if self._events_seq.get(handle.node.container.uid, 0) != handle.seq:
            return _READABLE | _CHANGED
        if poll_handle is not None:
            self._polls[fh] = poll_handle
        return _READABLE

    async def release(self, fh: int) -> None:
        # Two pops that cannot raise: no ``fuse_errors`` coroutine around them (every
        # close sends a release); counted as ``fuse_errors`` counts the rest.
        start = time.perf_counter()
        self._handles.pop(fh, None)
        self._polls.pop(fh, None)
        if self.requests is not None:
            self.requests.observe("release", time.perf_counter() - start, False)

    @fuse_errors
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        parent = self._dir(parent_inode_old)
        new_parent = self._dir(parent_inode_new)
        child = parent.children.get(os.fsdecode(name_old))
        if child is None:
            if os.fsdecode(name_old) in self.service.engine.files(parent):
                raise pyfuse3.FUSEError(errno.EPERM)  # control files stay where they are
            raise pyfuse3.FUSEError(errno.ENOENT)
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        await self.service.rename(child, new_parent, os.fsdecode(name_new))
        self.changed()

    @fuse_errors
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        raise pyfuse3.FUSEError(errno.EPERM)

    @fuse_errors
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EPERM)

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        raise pyfuse3.FUSEError(errno.EPERM)

    # Links are files the tree never holds: refused as creating a file is (not
    # pyfuse3's default ENOSYS, which reads as "not supported here yet").
    @fuse_errors
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EPERM)

    @fuse_errors
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EPERM)

    @fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 4096
        data.f_namemax = 255
        return data
