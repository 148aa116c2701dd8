"""Release: acting on containers as the kernel reports them emptying.

The kernel says when a container's cgroup empties (``cgroup.events``, watched
by ``kernel/watch.py``); the engine decides what that means for its release
policy (``lifecycle.take_release``); this part carries it out: tell watchers
of ``container.events``, run the release agent (``agent.py``), or remove the
container, and then look at its parent.
"""

from __future__ import annotations

import logging
import os

import trio

from ..agent import AgentRunner
from ..engine import lifecycle
from ..engine.kinds import Release
from ..engine.tree import Container
from .containers import Containers
from .persistence import Persistence
from .runtime import Runtime, where

log = logging.getLogger("containerfs")


class Releases:
    """Release watching, policies and the release agent."""

    def __init__(self, rt: Runtime, store: Persistence, containers: Containers) -> None:
        self.rt = rt
        self.store = store
        self.containers = containers
        self.agents = AgentRunner(lambda: rt.release_agent)  # runs it, a few at a time

    async def watch_releases(self) -> None:
        """Act on containers as the kernel reports them emptying (or filling)."""
        assert self.rt.watcher is not None
        while True:
            for c in await self.rt.watcher.changed():
                if not c.removed:
                    # A task too short-lived to be seen here was still counted:
                    # `tasks` writes arm the release themselves (``tasks.Entry``).
                    await self.refresh_populated(c)

    def occupy(self, c: Container) -> None:
        """Arm ``c``'s release (it has or had a task); saved, so a restart catches up."""
        if lifecycle.occupy(c):
            self.store.save(c)

    def events_changed(self, c: Container) -> None:
        """Tell watchers of ``container.events`` (poll and inotify) that it changed."""
        rt = self.rt
        if rt.ops is not None:
            rt.ops.events_changed(c)
        if rt.loopback is not None:
            rt.loopback.touch(os.path.join(rt.mountpoint, *c.path, "container.events"))

    async def refresh_populated(self, c: Container) -> None:
        """Ask the kernel whether ``c`` has tasks, and act on a change."""
        rt = self.rt
        if rt.entering.get(c.uid):
            return  # a `tasks` move into it is under way; its end looks again (``Entry``)
        entries = rt.entries.get(c.uid, 0)
        try:
            populated = await trio.to_thread.run_sync(rt.cgroups.populated, c.cgpath)
        except OSError as exc:
            if not c.removed:  # else: removed meanwhile by us, which is no news
                log.warning("%s: cannot read its cgroup.events: %s", where(c), exc)
            return
        if rt.entries.get(c.uid, 0) != entries:
            return  # a move started while we read, and may be undone: its end looks again
        if populated:
            self.occupy(c)
        if populated != c.populated:
            lifecycle.observe_populated(c, populated)
            self.events_changed(c)
        await self.check_release(c)

    async def check_release(self, c: Container) -> None:
        """Carry out ``c``'s release policy if it has just emptied; then its parent's.

        A loop up the tree, not recursion: a chain of ``delete`` containers may be
        deeper than Python's recursion limit.
        """
        node: Container | None = c
        while node is not None:
            c, node = node, None
            if self.rt.entering.get(c.uid):
                return  # as in refresh_populated: decided once the move ends
            action = lifecycle.take_release(c)
            if action is None:
                return
            log.info("%s released (%s)", where(c), action)
            self.events_changed(c)
            if action == Release.NOTIFY:
                self._notify_agent("/" + "/".join(c.path))
            elif action == Release.DELETE:
                parent = c.parent
                if await self._remove_released(c) and parent is not None:
                    node = parent  # its last child gone: it may be released too
            # Only what changed: writing the whole tree here made each rmdir in a
            # chain of a thousand containers (its parent released) take 90 ms.
            if c.removed:
                self.store.save_removed(c.path)
            else:
                self.store.save(c)

    async def after_entry(self, chain: list[Container]) -> None:
        """Once a `tasks` move ended: what the kernel says now, nearest first."""
        for node in chain:
            if not node.removed:
                await self.refresh_populated(node)

    async def _remove_released(self, c: Container) -> bool:
        """Remove a released container, unless a task or child came in meanwhile."""
        rt = self.rt
        async with rt.lock:
            if c.removed:
                return False
            tasks = await self.containers.tasks_of(c)
            if tasks or c.children:
                log.info("%s: not deleted, it is in use again", where(c))
                return False
            parent, name = c.parent, c.name
            try:
                await trio.to_thread.run_sync(self.containers.destroy, c)
            except OSError as exc:
                log.warning("%s: release could not delete it: %s", where(c), exc)
                return False
            self.containers.forget(c)
            assert parent is not None
            if rt.ops is not None:
                rt.ops.removed(c, parent, name)
            log.info("%s deleted on release", "/".join((*parent.path, name)))
            return True

    def _notify_agent(self, at: str) -> None:
        """Queue the release agent for ``at`` (``agent.py``: a few run at once)."""
        if not self.rt.release_agent:
            log.info("%s: release notification (no release_agent set)", at)
            return
        if self.rt.nursery is not None:
            self.agents.notify(self.rt.nursery, at)
