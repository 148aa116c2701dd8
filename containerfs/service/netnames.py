"""``ip netns`` names for the containers that own their network namespace.

Each such container is bound at ``/run/netns/PREFIX:A:B`` for as long as it
exists (``engine/netnames.py`` has the naming, ``kernel/netns.py`` the
binds): made when the container is made or taken over at start, moved on
``mv``, removed with it (``rmdir``, release, a restart that drops it). A
name is only ever removed while it is bound to the namespace the daemon
knows for it, and the prefix is held by one daemon at a time
(``claim_netns_prefix``), so two daemons never touch each other's names.

What the daemon did not finish (a crash between a bind and the state's
save) is put right at the next start: every name of the prefix is checked
against the tree taken over (:meth:`NetNames.reconcile`).

The calls that block run on the caller's thread: :class:`Containers` calls
them on its worker threads, under the daemon's lock, which orders every
change of names.
"""

from __future__ import annotations

import logging

from ..engine import netnames
from ..engine.tree import Container
from ..kernel import netns
from .runtime import Runtime, where

log = logging.getLogger("containerfs")


class NetNames:
    """The names of one daemon's containers; ``prefix`` empty: none at all."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._claim: netns.Held | None = None
        self._told: set[tuple[str, ...]] = set()  # paths logged as too long for a name

    @property
    def prefix(self) -> str:
        """The prefix (``Runtime.netns_prefix``, saved with the state); empty: off."""
        return self.rt.netns_prefix

    @prefix.setter
    def prefix(self, value: str) -> None:
        self.rt.netns_prefix = value

    def name(self, c: Container) -> str | None:
        """``c``'s name, when it has one (it owns its network namespace)."""
        if not self.prefix or c.is_root or "net" not in c.owned or "net" not in c.ids:
            return None
        return netnames.name_of(self.prefix, c.path)

    # -- at start ------------------------------------------------------------------

    def start(self, saved_prefix: str | None) -> None:
        """Claim the prefix, clean up after the previous daemon, name every container
        (blocking: at start, before the mount). A prefix another daemon holds
        turns names off, with an error in the log: taking its names over would
        remove them."""
        if self.prefix:
            self._claim = self.rt.kernel.claim_netns_prefix(self.prefix)
            if self._claim is None:
                log.error(
                    "ip netns names off: the prefix %r is in use by another containerfs"
                    " daemon (start this one with another --netns-prefix)",
                    self.prefix,
                )
                self.prefix = ""
        if saved_prefix and saved_prefix != self.prefix:
            self._forget_prefix(saved_prefix)
        self.reconcile()

    def _forget_prefix(self, old: str) -> None:
        """Remove the names the previous daemon made under another prefix."""
        claim = self.rt.kernel.claim_netns_prefix(old)
        if claim is None:
            log.warning("ip netns names of prefix %r left alone: another daemon uses it", old)
            return
        try:
            for name in self.rt.kernel.netns_names():
                if netnames.path_of(old, name) is not None:
                    self._unbind(name, None, "a name of the previous prefix")
        finally:
            claim.close()

    def reconcile(self) -> None:
        """Make the names match the tree: remove every name of the prefix that no
        container of the tree has (with the namespace it is bound to), bind the
        ones that are missing."""
        if not self.prefix:
            return
        want: dict[str, Container] = {}
        for c in self.rt.engine.root.walk():
            name = self.name(c)
            if name is not None:
                want[name] = c
        for name in self.rt.kernel.netns_names():
            if netnames.path_of(self.prefix, name) is None:
                continue
            kept = want.get(name)
            if kept is not None and self.rt.kernel.netns_bound(name) == int(kept.ids["net"]):
                continue
            self._unbind(name, None, "left by an earlier daemon")
        for c in want.values():
            self.add(c)

    def close(self) -> None:
        """Let go of the prefix (the names stay, with the containers)."""
        if self._claim is not None:
            self._claim.close()
            self._claim = None

    # -- as containers change (blocking; under the daemon's lock) ----------------------

    def add(self, c: Container) -> None:
        """Bind ``c``'s name to its network namespace (from its holder, by inode)."""
        holder = self.rt.holders.get(c.uid)
        if self.prefix and not c.is_root and "net" in c.owned and holder is not None:
            self.add_path(c.path, holder.pid, int(c.ids["net"]))

    def add_path(self, path: tuple[str, ...], holder_pid: int, inode: int) -> None:
        """Bind the name of the container at ``path`` to network namespace ``inode``,
        taken from its holder ``holder_pid`` (checked by inode). A failure is
        logged: the container stays as it is, without a name."""
        if not self.prefix:
            return
        at = "/".join(path)
        name = netnames.name_of(self.prefix, path)
        if name is None:
            if path not in self._told:
                self._told.add(path)
                log.warning(
                    "%s: no ip netns name: it would be longer than %d bytes",
                    at,
                    netnames.MAX_NAME,
                )
            return
        try:
            if self.rt.kernel.netns_bind(holder_pid, inode, name):
                log.debug("%s: ip netns name %s", at, name)
        except FileExistsError as exc:
            log.error("%s: no ip netns name %s: taken (%s)", at, name, exc)
        except OSError as exc:
            log.error("%s: cannot make its ip netns name %s: %s", at, name, exc)

    def remove(self, c: Container) -> None:
        """Remove ``c``'s name (its kernel objects are going)."""
        name = self.name(c)
        if name is not None:
            self._unbind(name, int(c.ids["net"]), f"{where(c)} removed")

    def changed(self, c: Container, old_inode: int | None) -> None:
        """After ``c`` came to own another network namespace than ``old_inode`` (or
        one at all: None), as a claim of an OCI runtime's namespaces does: its name
        is bound to the one it has now."""
        name = self.name(c)
        if name is None:
            return
        if old_inode is not None and old_inode != int(c.ids["net"]):
            self._unbind(name, old_inode, f"{where(c)} took another network namespace")
        self.add(c)

    def renamed(self, moved: list[tuple[str | None, Container]]) -> None:
        """After a ``mv``: each container of the moved subtree that had name ``old``
        gets its new one first, then the old one goes (``ip netns`` never
        misses it in between)."""
        for old, c in moved:
            self.add(c)
            if old is not None and old != self.name(c):
                self._unbind(old, int(c.ids["net"]), f"{where(c)} renamed")

    def names_below(self, c: Container) -> list[tuple[str | None, Container]]:
        """Each container of ``c``'s subtree that owns its network namespace, with its
        name now (None: too long for one, which the new path may not be)."""
        if not self.prefix:
            return []
        return [(self.name(d), d) for d in c.walk() if "net" in d.owned and "net" in d.ids]

    def _unbind(self, name: str, ino: int | None, why: str) -> None:
        try:
            if self.rt.kernel.netns_unbind(name, ino):
                log.debug("ip netns name %s removed: %s", name, why)
        except OSError as exc:
            log.error("cannot remove the ip netns name %s (%s): %s", name, why, exc)
