"""Low-level cgroupfs access: reading and writing one cgroup file, walking and making dirs.

A cgroup filesystem is not an ordinary one: a file acts on each ``write``
call, a missing file must not be created, a directory is "empty" with its
control files in it, and a tree of containers may be deeper than Python's
recursion limit.  These helpers are the only code of the cgroup backend that
opens, writes, makes or removes anything under a cgroup mount.

The other cgroup modules call them through the module (``cgfs.write(...)``),
so that the unit tests can put a fake cgroupfs in their place
(``monkeypatch.setattr(cgfs, "write", ...)``, likewise ``make_dir`` and
``remove_dir``, whose kernel behaviour a plain directory tree lacks).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def read(path: Path) -> str:
    """Read a whole cgroup file with raw syscalls (half the cost of ``Path.read_text``)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def write(path: Path, text: str) -> None:
    """Write a cgroup file in one ``write(2)`` without ``O_CREAT``/``O_TRUNC``.

    cgroup files act on each write call, so the value must arrive whole; and
    opening a missing file must fail with ENOENT rather than try to create it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        # A zero-length write may never reach the kernel's handler; a lone
        # newline does, and every cgroup parser strips it.
        os.write(fd, text.encode() or b"\n")
    finally:
        os.close(fd)


def procs_of(path: Path) -> list[int]:
    """Processes directly in cgroup directory `path`."""
    return [int(line) for line in read(path / "cgroup.procs").split()]


def procs_below(d: Path) -> list[int]:
    """Processes of cgroup2 directory `d` and every directory below it."""
    out: list[int] = []
    for top, _parts in dirs_below(d):
        try:
            out += procs_of(top)
        except FileNotFoundError:
            continue  # removed meanwhile
    return out


def dirs_below(top: Path, *, hidden: bool = True) -> Iterator[tuple[Path, tuple[str, ...]]]:
    """`top` and every directory below it, parents first, with their names below
    `top`; without `hidden`, none whose name starts with ``.`` (nor below it).

    With a stack, not recursion: Python 3.11's ``os.walk`` recurses, and a tree
    of containers may be deeper than the recursion limit (a restart then died).
    A directory that cannot be read (removed meanwhile) is skipped.
    """
    stack: list[tuple[Path, tuple[str, ...]]] = [(top, ())]
    while stack:
        d, parts = stack.pop()
        yield d, parts
        try:
            names = subdirs(d)
        except OSError:
            continue
        stack.extend((d / n, (*parts, n)) for n in names if hidden or not n.startswith("."))


def subdirs(path: Path) -> list[str]:
    """Names of the directories in `path` (child cgroups). From the directory's
    entry types alone: a stat of each of a v1 cgroup's dozens of files was most
    of what checking a container's emptiness cost."""
    with os.scandir(path) as entries:
        return [e.name for e in entries if e.is_dir(follow_symlinks=False)]


def make_dir(path: Path) -> None:
    """mkdir(2); a seam for unit tests, whose fake tree must fill new directories itself."""
    path.mkdir()


def remove_dir(path: Path) -> None:
    """rmdir(2); a seam for unit tests (a cgroup directory is 'empty' with files in it)."""
    path.rmdir()


def mkdir(path: Path, created: list[Path]) -> bool:
    """mkdir that tolerates an existing directory (restarts, pass-throughs).

    A directory made is appended to `created` (for a rollback); True if made.
    """
    try:
        make_dir(path)
    except FileExistsError:
        if not path.is_dir():
            # A container named like a control file (``tasks`` on v1).
            raise
        return False
    created.append(path)
    return True
