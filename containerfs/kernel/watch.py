"""Watching cgroup ``cgroup.events`` files with inotify, for release handling.

cgroup v2 has no delete-on-empty: the kernel signals ``IN_MODIFY`` on a
cgroup's ``cgroup.events`` when its ``populated`` changes, and userspace acts.
One inotify fd serves every container; :meth:`Watcher.changed` returns the keys
whose files changed, as soon as the kernel says so (no polling).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections.abc import Hashable
from pathlib import Path
from typing import Generic, TypeVar

from containerfs.kernel import sys as ksys

K = TypeVar("K", bound=Hashable)

log = logging.getLogger(__name__)

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)


def parse_events(buf: bytes) -> list[tuple[int, int]]:
    """(watch descriptor, mask) of every event in one ``read()`` of an inotify fd."""
    out = []
    off = 0
    while off + _EVENT.size <= len(buf):
        wd, mask, _cookie, length = _EVENT.unpack_from(buf, off)
        out.append((wd, mask))
        off += _EVENT.size + length
    return out


class Watcher(Generic[K]):
    """``IN_MODIFY`` watches on files, each under a key chosen by the caller."""

    def __init__(self) -> None:
        self.fd = ksys.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        self._keys: dict[int, K] = {}
        self._wds: dict[K, int] = {}

    def add(self, key: K, path: Path) -> None:
        """Watch ``path`` under ``key`` (replacing the key's previous watch)."""
        self.remove(key)
        wd = ksys.inotify_add_watch(self.fd, str(path), ksys.IN_MODIFY)
        self._keys[wd] = key
        self._wds[key] = wd

    def remove(self, key: K) -> None:
        wd = self._wds.pop(key, None)
        if wd is None:
            return
        self._keys.pop(wd, None)
        with contextlib.suppress(OSError):  # EINVAL: the file (cgroup) is gone already
            ksys.inotify_rm_watch(self.fd, wd)

    def __contains__(self, key: object) -> bool:
        return key in self._wds

    def drain(self) -> set[K]:
        """Keys with pending events (non-blocking)."""
        keys: set[K] = set()
        while True:
            try:
                buf = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return keys
            keys |= self.keys_of(parse_events(buf))

    def keys_of(self, events: list[tuple[int, int]]) -> set[K]:
        """The keys that (wd, mask) events name, forgetting watches the kernel dropped.

        When the kernel's queue overflowed (``fs.inotify.max_queued_events``,
        16384 here, were waiting), events were lost and any file may have
        changed: every key is returned, so that each is looked at again rather
        than one left with a stale state for good.
        """
        keys: set[K] = set()
        for wd, mask in events:
            if mask & ksys.IN_Q_OVERFLOW:
                log.warning("inotify queue overflowed: looking at every watched file again")
                keys.update(self._wds)
                continue
            key = self._keys.get(wd)
            if key is None:
                continue
            if mask & ksys.IN_IGNORED:  # the watched file went away
                self._keys.pop(wd, None)
                if self._wds.get(key) == wd:
                    del self._wds[key]
                continue
            keys.add(key)
        return keys

    async def changed(self) -> set[K]:
        """The next non-empty set of keys whose files changed, as soon as the kernel says.

        A plain coroutine, not an async generator: cancelled while its caller
        handles a set, a generator would be left suspended at ``yield`` and
        finalised by the garbage collector (a ResourceWarning at shutdown).
        """
        import trio

        while True:
            await trio.lowlevel.wait_readable(self.fd)
            keys = self.drain()
            if keys:
                return keys

    def close(self) -> None:
        if self.fd >= 0:
            try:
                import trio

                with contextlib.suppress(RuntimeError):  # not inside trio
                    trio.lowlevel.notify_closing(self.fd)
            finally:
                os.close(self.fd)
                self.fd = -1
                self._keys.clear()
                self._wds.clear()
