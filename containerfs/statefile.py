"""The state dir's files: a snapshot of the tree plus a journal of changes since.

Rewriting the whole tree after every change made each ``mkdir`` cost time in
proportion to the number of containers (1.5 MB of JSON at 1,000). Instead a
change appends one line per changed container to ``state.log``, and the full
tree goes to ``state.json`` only when the journal has grown as long as the
tree, so the cost of a change stays flat (amortised).

``state.json``: ``{"version", "mountpoint", "release_agent", "containers":
[record, ...], "log": ID}``, records parents first (``engine.lifecycle.record``).
``state.log``: a first line ``{"log": ID}``, then ``{"put": record}`` (a
container made or changed: replaces the record with the same path, or adds it),
``{"drop": path}`` (the container at ``path`` and everything below it are
gone) and ``{"view": [path, file, internal, external]}`` (one knob of the
container at ``path`` changed: its record's ``views[file]``; a view write
journals that line alone, not the whole record); ``{"moving": move}`` and
``{"moved": PID}`` bracket a ``tasks`` move that changes namespaces, so that a
daemon killed in between is undone at the next start
(``recovery.finish_moves``; the snapshot lists the open ones under ``"moving"``).
The journal counts only when its ID is the snapshot's: a crash between writing a
snapshot and starting its journal leaves an old journal that is
ignored. A crash in the middle of an append leaves a partial last line, which
is ignored too. No fsync: each step is atomic against a crash of the daemon,
and the default state dir is on tmpfs, which a power loss empties anyway.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SNAPSHOT = "state.json"
JOURNAL = "state.log"
#: A journal is never due for a snapshot below this many bytes (a small tree).
MIN_JOURNAL = 64 * 1024


class StateFile:
    """Writes the state dir: :meth:`snapshot` for the whole tree, :meth:`append`
    for changes. ``OSError`` from either is the caller's to report."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self._fd = -1  # the journal, open for appending; -1: a snapshot is due
        self.entries = 0  # lines in the journal since the snapshot
        self.logged = 0  # bytes in the journal since the snapshot
        self.size = 0  # bytes of the snapshot

    def due(self) -> bool:
        """Whether the journal has grown as long as the snapshot (bytes, not lines:
        a container deep in the tree has a long record, so counting lines made a
        chain of containers snapshot ever more often for its size)."""
        return self.logged >= max(self.size, MIN_JOURNAL)

    def snapshot(self, state: dict[str, Any]) -> None:
        """Write the whole tree and start an empty journal for it."""
        self.close()
        log_id = secrets.token_hex(8)
        tmp = self.dir / (SNAPSHOT + ".tmp")
        text = json.dumps({**state, "log": log_id}, separators=(",", ":")) + "\n"
        tmp.write_text(text)
        os.replace(tmp, self.dir / SNAPSHOT)
        tmp = self.dir / (JOURNAL + ".tmp")
        tmp.write_text(json.dumps({"log": log_id}) + "\n")
        os.replace(tmp, self.dir / JOURNAL)
        self._fd = os.open(self.dir / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self.entries = 0
        self.logged = 0
        self.size = len(text)

    def append(self, entries: Iterable[dict[str, Any]]) -> bool:
        """Add changes to the journal (one write); False when a snapshot is due
        instead (none yet, or an earlier append failed)."""
        if self._fd < 0:
            return False
        lines = [json.dumps(e, separators=(",", ":")) + "\n" for e in entries]
        data = "".join(lines).encode()
        try:
            written = os.write(self._fd, data)
        except OSError:
            self.close()  # the journal may end in a partial line: snapshot next
            raise
        if written != len(data):
            self.close()
            raise OSError(f"short write to {self.dir / JOURNAL}")
        self.entries += len(lines)
        self.logged += written
        return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def load(state_dir: Path) -> dict[str, Any] | None:
    """The saved state with its journal applied, or None when there is none.

    ``ValueError`` when ``state.json`` is damaged or not a containerfs state.
    """
    try:
        text = (state_dir / SNAPSHOT).read_text()
    except FileNotFoundError:
        return None
    state = json.loads(text)  # JSONDecodeError is a ValueError
    if not isinstance(state, dict) or not isinstance(state.get("containers"), list):
        raise ValueError("not a containerfs state")
    log_id = state.pop("log", None)
    moving = {m.get("pid"): m for m in state.get("moving", []) if isinstance(m, dict)}
    state["moving"] = list(moving.values())
    if log_id is None:
        return state  # written by an older daemon: no journal
    records = _Records()
    for r in state["containers"]:
        records.put(r)
    for entry in _journal(state_dir / JOURNAL, log_id):
        if isinstance(entry.get("put"), dict):
            records.put(entry["put"])
        elif isinstance(entry.get("drop"), list):
            records.drop(tuple(entry["drop"]))
        elif isinstance(entry.get("view"), list) and len(entry["view"]) == 4:
            records.set_view(*entry["view"])
        elif isinstance(entry.get("moving"), dict):
            moving[entry["moving"].get("pid")] = entry["moving"]
        elif "moved" in entry:
            moving.pop(entry["moved"], None)
    state["moving"] = list(moving.values())
    state["containers"] = records.in_order()
    return state


class _Node:
    __slots__ = ("kids", "rec")

    def __init__(self) -> None:
        self.kids: dict[str, _Node] = {}
        self.rec: dict[str, Any] | None = None


class _Records:
    """Saved records by path, as a tree of their paths' names: putting or dropping
    one costs its path's length, whatever the size of the tree (a ``drop`` compared
    its path with every record's, so loading cost the journal's drops times the
    tree's size times its depth)."""

    def __init__(self) -> None:
        self.root = _Node()

    def put(self, rec: dict[str, Any]) -> None:
        """Add ``rec``, or replace the one with the same path."""
        node = self.root
        for name in rec.get("path", ()):
            kid = node.kids.get(name)
            if kid is None:
                kid = node.kids[name] = _Node()
            node = kid
        node.rec = rec

    def set_view(self, path: Any, file: Any, internal: Any, external: Any) -> None:
        """Set one knob's views in the record at ``path`` (none there: nothing)."""
        node: _Node | None = self.root
        for name in path if isinstance(path, list) else ():
            node = node.kids.get(name) if node is not None else None
        rec = node.rec if node is not None and isinstance(path, list) else None
        if rec is not None and isinstance(file, str):
            rec.setdefault("views", {})[file] = {"internal": internal, "external": external}

    def drop(self, path: tuple[str, ...]) -> None:
        """Forget the record at ``path`` and every one below it."""
        if not path:  # the root: everything
            self.root = _Node()
            return
        node: _Node | None = self.root
        for name in path[:-1]:
            node = node.kids.get(name) if node is not None else None
        if node is not None:
            node.kids.pop(path[-1], None)

    def in_order(self) -> list[dict[str, Any]]:
        """Every record, parents first (as restoring needs), without recursion."""
        out = []
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node.rec is not None:
                out.append(node.rec)
            stack.extend(reversed(node.kids.values()))
        return out


def _journal(path: Path, log_id: str) -> list[dict[str, Any]]:
    """The journal's entries when it belongs to the snapshot ``log_id``, up to the
    first line that does not parse (a crash cut it short)."""
    with contextlib.suppress(FileNotFoundError):
        lines = path.read_bytes().split(b"\n")
        try:
            head = json.loads(lines[0])
        except ValueError:
            return []
        if not isinstance(head, dict) or head.get("log") != log_id:
            return []
        out = []
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except ValueError:
                break
            if isinstance(entry, dict):
                out.append(entry)
        return out
    return []
