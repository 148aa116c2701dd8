"""``ip netns`` names of containers: how a container's path becomes a name and back.

A container that owns its network namespace is shown to ``ip netns`` as
``PREFIX:A:B`` for the container ``/A/B``: the path's ``/`` written as ``:``,
and a ``:`` or ``%`` inside a component written ``%3A`` or ``%25``. So the
map is one-to-one (a name splits back at ``:`` into the same components), and
names of different mounts differ in their prefix, which ends at the first
``:``. Every prefix starts with ``cfs``: the names of every containerfs
daemon on the host fall in one family (``cfs...:...``) that each daemon
recognises without knowing the others' settings, so clone discovery never
takes another daemon's names (or copies of its own) for namespaces a
container's process bound itself.

Pure functions: no I/O (the binds are ``kernel/netns.py``'s).
"""

from __future__ import annotations

import re

from .errors import InvalidInput

#: What every prefix starts with (the default, ``defaults.DEFAULT_NETNS_PREFIX``, is it).
FAMILY = "cfs"

#: Longest name ``ip netns`` and the filesystem take (NAME_MAX).
MAX_NAME = 255

#: A prefix: ``cfs`` and up to 32 more letters, digits, ``_``, ``.`` or ``-``.
_PREFIX = re.compile(r"cfs[A-Za-z0-9_.-]{0,32}")
#: A name of the family: a prefix, then ``:`` (no ``ip netns add`` by a user
#: inside a container is taken for a clone when it looks like this).
_RESERVED = re.compile(r"cfs[A-Za-z0-9_.-]{0,32}:")


def check_prefix(prefix: str) -> str:
    """``prefix`` if it is one (``cfs`` and up to 32 of ``[A-Za-z0-9_.-]``);
    an empty one means no names at all."""
    if prefix and not _PREFIX.fullmatch(prefix):
        raise InvalidInput(
            f"{prefix!r}: a netns prefix is 'cfs' followed by at most 32 letters,"
            " digits, '_', '.' or '-'"
        )
    return prefix


def _escape(component: str) -> str:
    return component.replace("%", "%25").replace(":", "%3A")


def _unescape(part: str) -> str | None:
    out = []
    i = 0
    while i < len(part):
        if part[i] != "%":
            out.append(part[i])
            i += 1
            continue
        code = part[i + 1 : i + 3]
        if code == "25":
            out.append("%")
        elif code == "3A":
            out.append(":")
        else:
            return None  # not a name we make
        i += 3
    return "".join(out)


def name_of(prefix: str, path: tuple[str, ...]) -> str | None:
    """The name of the container at ``path`` (not the root: it is the host's
    namespace), or None when it would be longer than :data:`MAX_NAME` bytes."""
    assert path, "the root container has no name"
    name = prefix + ":" + ":".join(_escape(c) for c in path)
    return name if len(name.encode()) <= MAX_NAME else None


def path_of(prefix: str, name: str) -> tuple[str, ...] | None:
    """The container path ``name`` stands for under ``prefix``; None when it is not
    a name this prefix makes (another prefix's, a user's, a bad escape)."""
    head, sep, rest = name.partition(":")
    if head != prefix or not sep or not rest:
        return None
    parts = [_unescape(p) for p in rest.split(":")]
    if any(p is None or p == "" for p in parts):
        return None
    path = tuple(p for p in parts if p is not None)
    return path if name_of(prefix, path) == name else None


def reserved(name: str) -> bool:
    """Whether ``name`` (a file name in ``/run/netns``) is of the containerfs family:
    some daemon's name for a container, never one a container's process made."""
    return _RESERVED.match(name) is not None
