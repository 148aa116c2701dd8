"""runc's command line, parsed as runc parses it (Go's ``flag`` package under
urfave/cli v1), so that podman, conmon and containerd can call us with exactly what
they give runc.

Go's rules: ``-name`` and ``--name`` are the same flag; a value follows as
``--name=value`` or as the next word (even one starting with ``-``); a boolean flag
takes no next word (``--force=false`` to say no); ``--`` ends the flags. Global flags
stop at the command's name. Within a command, urfave/cli lets known flags come after
the positional arguments too (``delete ID --force``), up to a ``--``.

Pure: no I/O, unit-tested in ``tests/unit/test_oci.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class UsageError(Exception):
    """A command line runc would refuse; the message is runc's where it has one."""


@dataclass(frozen=True)
class Flag:
    """One flag: its names without dashes (the first is its key) and whether it
    takes a value."""

    names: tuple[str, ...]
    value: bool = False

    @property
    def key(self) -> str:
        return self.names[0]


#: runc 1.1's global flags, and the front end's own two (``--mount``, ``--parent``).
GLOBAL_FLAGS: tuple[Flag, ...] = (
    Flag(("debug",)),
    Flag(("log",), True),
    Flag(("log-format",), True),
    Flag(("root",), True),
    Flag(("criu",), True),
    Flag(("systemd-cgroup",)),
    Flag(("rootless",), True),
    Flag(("help", "h")),
    Flag(("version", "v")),
    Flag(("mount",), True),
    Flag(("parent",), True),
)

#: The flags of the commands the front end does itself (the others go to runc as
#: they are).
COMMAND_FLAGS: dict[str, tuple[Flag, ...]] = {
    "create": (
        Flag(("bundle", "b"), True),
        Flag(("console-socket",), True),
        Flag(("pid-file",), True),
        Flag(("no-pivot",)),
        Flag(("no-new-keyring",)),
        Flag(("preserve-fds",), True),
        Flag(("help", "h")),
    ),
    "delete": (Flag(("force", "f")), Flag(("help", "h"))),
    "state": (Flag(("help", "h")),),
    "features": (Flag(("help", "h")),),
}

Values = dict[str, "str | bool"]


@dataclass
class Parsed:
    """A command line: the global flags, the command, its flags and arguments."""

    globals: Values = field(default_factory=dict)
    command: str = ""
    rest: list[str] = field(default_factory=list)  # everything after the command


def _lookup(flags: Sequence[Flag], name: str) -> Flag | None:
    for f in flags:
        if name in f.names:
            return f
    return None


def _split(word: str) -> tuple[str, str | None] | None:
    """``--name=value`` -> (name, value); ``-name`` -> (name, None); None for a
    word that is no flag (``-`` alone, or no dash)."""
    if len(word) < 2 or word[0] != "-":
        return None
    body = word[2:] if word.startswith("--") else word[1:]
    if not body or body[0] in "-=":
        raise UsageError(f"bad flag syntax: {word}")
    name, eq, value = body.partition("=")
    return name, (value if eq else None)


def _bool(name: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f'invalid boolean value "{value}" for -{name}: parse error')


def parse_flags(
    argv: Sequence[str], flags: Sequence[Flag], interspersed: bool
) -> tuple[Values, list[str]]:
    """(flag values by key, positional words). With ``interspersed`` known flags may
    follow positional words (urfave/cli's reordering); else the first positional
    word ends the flags (Go's ``flag``, as for the global ones)."""
    values: Values = {}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if word == "--":
            positional.extend(argv[i:])
            break
        split = _split(word)
        if split is None:
            positional.append(word)
            if not interspersed:
                positional.extend(argv[i:])
                break
            continue
        name, value = split
        flag = _lookup(flags, name)
        if flag is None:
            raise UsageError(f"flag provided but not defined: -{name}")
        if not flag.value:
            values[flag.key] = _bool(name, value) if value is not None else True
            continue
        if value is None:
            if i >= len(argv):
                raise UsageError(f"flag needs an argument: -{name}")
            value = argv[i]
            i += 1
        values[flag.key] = value
    return values, positional


def parse(argv: Sequence[str]) -> Parsed:
    """The global flags and the command; the command's own words stay in ``rest``."""
    values, positional = parse_flags(argv, GLOBAL_FLAGS, interspersed=False)
    if not positional:
        return Parsed(values, "", [])
    return Parsed(values, positional[0], positional[1:])


def parse_command(command: str, rest: Sequence[str]) -> tuple[Values, list[str]]:
    """The flags and positional words of one of the front end's own commands."""
    return parse_flags(rest, COMMAND_FLAGS[command], interspersed=True)


def global_words(values: Values) -> list[str]:
    """The global flags runc itself is to get: all of them but the front end's own
    and ``--systemd-cgroup`` (the cgroup is containerfs's, given by path)."""
    out: list[str] = []
    for flag in GLOBAL_FLAGS:
        if flag.key in ("mount", "parent", "systemd-cgroup", "help", "version"):
            continue
        value = values.get(flag.key)
        if value is None or value is False:
            continue
        out.append(f"--{flag.key}" if value is True else f"--{flag.key}={value}")
    return out


def container_id(command: str, positional: Sequence[str]) -> str:
    """The one ``ID`` argument, with runc's message when it is missing or doubled."""
    if len(positional) != 1:
        if not positional:
            raise UsageError(f'"{command}" requires exactly 1 argument(s)')
        raise UsageError(f'"{command}" requires exactly 1 argument(s)')
    return positional[0]
