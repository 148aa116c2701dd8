"""``containerfs tree``: the container tree, as ``systemd-cgls`` draws cgroups.

A client like ``cat``: it reads only the mounted files (``container.subsystems``,
``tasks``, ``container.release`` of each directory), so it works for any user
who may read the tree, and never talks to the daemon otherwise. The walk is a
stack, not recursion: a tree may be deeper than Python's recursion limit.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Files of a container directory that say what ``tree`` shows.
_SUBSYSTEMS, _TASKS, _RELEASE = "container.subsystems", "tasks", "container.release"


def containerfs_mounts(mounts: str = "/proc/self/mounts") -> list[str]:
    """Mount points of every mounted containerfs, in mount order."""
    out = []
    try:
        data = Path(mounts).read_bytes()
    except OSError:
        return []
    for line in data.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == b"fuse.containerfs":
            # the kernel writes space, tab, newline and backslash as octal escapes
            raw = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[1])
            out.append(os.fsdecode(raw))
    return out


def find_top(path: str | None) -> tuple[Path, Path]:
    """(mount point, container directory) for ``path`` (default: the first mount)."""
    mounts = [Path(m) for m in containerfs_mounts()]
    if path is None:
        if not mounts:
            raise SystemExit("containerfs: no containerfs is mounted (give a PATH)")
        return mounts[0], mounts[0]
    here = Path(os.path.abspath(path))
    for m in sorted(mounts, key=lambda p: len(p.parts), reverse=True):
        if here == m or m in here.parents:
            if not (here / _SUBSYSTEMS).exists():
                raise SystemExit(f"containerfs: {path}: not a container directory")
            return m, here
    raise SystemExit(f"containerfs: {path}: not inside a mounted containerfs")


@dataclass
class Node:
    """One container as ``tree`` shows it (and ``--json`` prints it)."""

    path: str  # "/" for the root, "/a/b" below it
    name: str
    depth: int  # levels below the PATH given
    owns: list[str] = field(default_factory=list)
    shares: list[str] = field(default_factory=list)
    tasks: int | None = None  # None: could not be read
    release: str | None = None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # removed meanwhile, or not ours to read
        return None


def node(mount: Path, d: Path, depth: int) -> Node:
    rel = d.relative_to(mount)
    path = "/" + "/".join(rel.parts)
    n = Node(path=path, name=d.name if rel.parts else str(mount), depth=depth)
    text = _read(d / _SUBSYSTEMS)
    for line in (text or "").splitlines():
        words = line.split()
        if len(words) >= 2:
            (n.owns if words[1] == "own" else n.shares).append(words[0])
    tasks = _read(d / _TASKS)
    n.tasks = None if tasks is None else len(tasks.split())
    release = _read(d / _RELEASE)
    n.release = None if release is None else release.strip()
    return n


def walk(mount: Path, top: Path) -> Iterator[Node]:
    """``top`` and every container below it, parents first, children by name."""
    stack = [(top, 0)]
    while stack:
        d, depth = stack.pop()
        yield node(mount, d, depth)
        try:
            children = sorted(e.name for e in os.scandir(d) if e.is_dir(follow_symlinks=False))
        except OSError:
            continue
        stack.extend((d / name, depth + 1) for name in reversed(children))


def _describe(n: Node) -> str:
    tasks = "?" if n.tasks is None else str(n.tasks)
    word = "task" if n.tasks == 1 else "tasks"
    owns = " ".join(n.owns) if n.owns else "-"
    return f"{n.name}  [{tasks} {word}, release {n.release or '?'}]  owns: {owns}"


def render(nodes: list[Node]) -> str:
    """The tree with ``├─``/``└─`` branches, as ``systemd-cgls`` draws one."""
    lines: list[str] = []
    # For each node: whether it is the last child of its parent, seen from the end.
    last: list[bool] = [True] * len(nodes)
    seen_at_depth: dict[int, bool] = {}
    for i in range(len(nodes) - 1, -1, -1):
        depth = nodes[i].depth
        last[i] = not seen_at_depth.get(depth, False)
        seen_at_depth[depth] = True
        for deeper in [k for k in seen_at_depth if k > depth]:
            del seen_at_depth[deeper]
    open_branches: list[bool] = []  # per level above: does a later sibling follow?
    for n, is_last in zip(nodes, last, strict=True):
        if n.depth == 0:
            lines.append(_describe(n))
            continue
        del open_branches[n.depth - 1 :]
        prefix = "".join("│ " if more else "  " for more in open_branches)
        lines.append(f"{prefix}{'└─' if is_last else '├─'}{_describe(n)}")
        open_branches.append(not is_last)
    return "".join(line + "\n" for line in lines)


def run(path: str | None, as_json: bool) -> int:
    mount, top = find_top(path)
    nodes = list(walk(mount, top))
    if as_json:
        # one object a line: readable, and still one JSON document
        sys.stdout.write("[\n" + ",\n".join(json.dumps(asdict(n)) for n in nodes) + "\n]\n")
    else:
        sys.stdout.write(render(nodes))
    return 0
