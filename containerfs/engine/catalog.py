"""The file catalogue: every file a container directory can show, as data.

One line per file (or per knob with views, which makes three files) says what
the file is: its name, the subsystem kind it belongs to, who may write it and
who owns it, whether the kernel may serve it from its page cache, how a write
is parsed and what the kernel is asked for (``Entry.role``, the handler the
daemon dispatches on, and ``Entry.key``, the sysctl or renderer it names).
``Engine.files`` lays the catalogue out for a container; the daemon keeps one
table from ``Role`` to its kernel work and decides nothing by a file's name.
Pure: no I/O (docs/design.md, "The file catalogue").

Controller files are the one part not listed here: which exist depends on the
cgroup version the host mounts, so the cgroup backend lists them
(``CgroupBackend.files``) and ``controller_entries`` turns that into lines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum

from .errors import InvalidInput
from .views import Knob, ValueType


class Role(StrEnum):
    """What the daemon does to read or write a file: its handler."""

    TASKS = "tasks"
    SUBSYSTEMS = "subsystems"  # root only: the kinds and their properties
    CONTAINER_SUBSYSTEMS = "container.subsystems"
    SUBTREE = "container.subtree"
    RELEASE = "container.release"
    EVENTS = "container.events"
    INIT = "container.init"
    ORIGIN = "container.origin"
    RELEASE_AGENT = "release_agent"  # root only: the program `notify` runs
    NAMESPACES = "namespaces"  # root only: every namespace on the host
    METRICS = "metrics"  # root only: the tree in Prometheus's text format
    KILL = "container.kill"  # not in the root: write 1 to end every task inside
    CLAIM = "container.claim"  # not in the root: root writes a PID whose namespaces it owns
    CGROUP_PATH = "container.cgroup"  # the one cgroup path of it in every hierarchy
    MAX_DEPTH = "container.max.depth"  # as cgroup.max.depth: levels allowed below
    MAX_DESCENDANTS = "container.max.descendants"  # as cgroup.max.descendants
    SYSCTL = "sysctl"  # a namespace's sysctl ``Entry.key``, no views
    ID_MAP = "id_map"  # a user namespace's ID map, ``Entry.key`` "uid" or "gid"
    TIME_OFFSETS = "time_offsets"  # a time namespace's clock offsets
    CGROUP = "cgroup"  # a controller's file, read and written by the cgroup backend
    VIEW = "view"  # one view of a namespace knob with internal and external views
    INFO = "info"  # read-only monitoring: the kernel renderer named ``Entry.key``
    CGROUPNS_ROOT = "cgroupns_root"  # the cgroups a cgroup namespace shows as /


class Mode(Enum):
    """Who may write a file."""

    READ_ONLY = "read-only"
    WRITABLE = "writable"  # in every container that shows it
    WRITE_ONLY = "write-only"  # writable, and nothing to read (mode 0200)
    OWNED = "owned"  # where the container owns the file's kind (never in the root)


class Where(Enum):
    """Which containers show a file (besides the availability of its kind)."""

    ALL = "all"
    ROOT = "root"  # the root only
    BELOW_ROOT = "below-root"  # every container but the root


class Cache(Enum):
    """Whether the kernel may serve a file from its page cache (fuse/ops.py)."""

    NEVER = "never"  # counters, task lists, events: each read asks again
    ALWAYS = "always"  # changes only through containerfs: policies and limits
    ENFORCED = "enforced"  # a view, where its owner's views are bound over /proc/sys


class Owner(Enum):
    """Whose (uid, gid) a file shows (README "Ownership and delegation")."""

    ADMIN = "admin"  # the container's administrator's (its limits)
    DIRECTORY = "directory"  # follows the directory, as cgroup v2 delegation has it
    ROOT = "root"  # root's always (the ID maps grant host IDs)
    INSIDE_ROOT = "inside-root"  # when writable: root of the container's user namespace


#: A write's parser: (text, file name) -> what the kernel is handed; InvalidInput if bad.
Parser = Callable[[str, str], str]


@dataclass(frozen=True)
class Entry:
    """One line of the catalogue."""

    name: str
    role: Role
    kind: str | None = None  # the subsystem kind; the file is shown only where it is usable
    mode: Mode = Mode.READ_ONLY
    where: Where = Where.ALL
    cache: Cache = Cache.NEVER
    owner: Owner = Owner.ADMIN
    key: str = ""  # SYSCTL: the sysctl; ID_MAP: "uid" or "gid"; INFO: the renderer's name
    parse: Parser | None = None  # SYSCTL and ID_MAP writes
    knob: Knob | None = None  # VIEW: the knob and which view, "external",
    view: str | None = None  # "internal" or "effective"


# -- parsers of the namespace files -----------------------------------------------


def parse_hostname(text: str, what: str = "hostname") -> str:
    """A UTS name as sethostname(2) takes it: at most 64 bytes, printable, no spaces."""
    value = text.rstrip("\n")
    raw = value.encode(errors="replace")
    if len(raw) > 64:
        raise InvalidInput(f"{what} longer than 64 bytes")
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidInput(f"{what} must be non-empty, printable and without spaces")
    return value


MAX_ID_MAP_LINES = 340  # the kernel's limit on ranges per map


def parse_id_map(text: str, what: str) -> str:
    """``INSIDE OUTSIDE COUNT`` lines, as /proc/PID/uid_map takes them (normalised)."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or len(lines) > MAX_ID_MAP_LINES:
        raise InvalidInput(f"{what}: expected 1 to {MAX_ID_MAP_LINES} lines")
    for words in lines:
        if len(words) != 3 or not all(w.isdigit() and int(w) < 2**32 for w in words):
            raise InvalidInput(f"{what}: expected 'INSIDE OUTSIDE COUNT', got {' '.join(words)!r}")
        if int(words[2]) == 0:
            raise InvalidInput(f"{what}: a range of 0 IDs")
    return "".join(" ".join(words) + "\n" for words in lines)


def parse_count(text: str, what: str) -> int:
    """A non-negative int as the kernel's integer sysctls take it."""
    word = text.strip()
    if not word.isdigit() or int(word) > 2**31 - 1:
        raise InvalidInput(f"{what}: expected a number from 0 to {2**31 - 1}, got {word[:40]!r}")
    return int(word)


def _count(text: str, what: str) -> str:
    return str(parse_count(text, what))


# -- the catalogue --------------------------------------------------------------

_W, _OWN = Mode.WRITABLE, Mode.OWNED

#: Files of the container itself, in listing order.
CONTAINER_FILES: tuple[Entry, ...] = (
    Entry("subsystems", Role.SUBSYSTEMS, where=Where.ROOT, cache=Cache.ALWAYS),
    Entry("release_agent", Role.RELEASE_AGENT, mode=_W, where=Where.ROOT, cache=Cache.ALWAYS),
    Entry("namespaces", Role.NAMESPACES, where=Where.ROOT),
    Entry("metrics", Role.METRICS, where=Where.ROOT),
    Entry("tasks", Role.TASKS, mode=_W, owner=Owner.DIRECTORY),
    Entry("container.subsystems", Role.CONTAINER_SUBSYSTEMS, cache=Cache.ALWAYS),
    Entry("container.subtree", Role.SUBTREE, mode=_W, cache=Cache.ALWAYS, owner=Owner.DIRECTORY),
    Entry("container.release", Role.RELEASE, mode=_W, cache=Cache.ALWAYS),
    Entry("container.events", Role.EVENTS),
    Entry("container.init", Role.INIT),
    Entry("container.origin", Role.ORIGIN, cache=Cache.ALWAYS),
    Entry("container.max.depth", Role.MAX_DEPTH, mode=_W, cache=Cache.ALWAYS),
    Entry("container.max.descendants", Role.MAX_DESCENDANTS, mode=_W, cache=Cache.ALWAYS),
    Entry("container.kill", Role.KILL, mode=_W, where=Where.BELOW_ROOT),
    Entry(
        "container.claim", Role.CLAIM, mode=Mode.WRITE_ONLY, where=Where.BELOW_ROOT,
        owner=Owner.ROOT,
    ),
    Entry("container.cgroup", Role.CGROUP_PATH, cache=Cache.ALWAYS),
)  # fmt: skip

# The user namespace's limits on namespaces made inside it.
USER_NS_LIMITS: tuple[str, ...] = tuple(
    f"max_{k}_namespaces" for k in ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
)


def _sysctl(name: str, key: str, parse: Parser) -> Entry:
    return Entry(name, Role.SYSCTL, name.split(".")[0], _OWN, key=key, parse=parse)


def _id_map(name: str, key: str) -> Entry:
    # Root's always: a map grants host IDs (the kernel asks CAP_SETUID for any map
    # beyond one's own ID), and the daemon writes it as root.
    return Entry(name, Role.ID_MAP, "user", _OWN, owner=Owner.ROOT, key=key, parse=parse_id_map)


#: Control files of namespace kinds without views.
NAMESPACE_FILES: tuple[Entry, ...] = (
    _sysctl("uts.hostname", "kernel.hostname", parse_hostname),
    _sysctl("uts.domainname", "kernel.domainname", parse_hostname),
    _id_map("user.uid_map", "uid"),
    _id_map("user.gid_map", "gid"),
    *(_sysctl(f"user.{name}", f"user.{name}", _count) for name in USER_NS_LIMITS),
    Entry("time.offsets", Role.TIME_OFFSETS, "time", _OWN),
)  # fmt: skip


def _info(name: str) -> Entry:
    """A monitoring file whose kernel renderer has its name (``nsinfo.RENDERERS``)."""
    return Entry(name, Role.INFO, name.split(".")[0], key=name)


#: Read-only monitoring files of namespace kinds.
INFO_FILES: tuple[Entry, ...] = (
    _info("ipc.usage"),
    _info("net.interfaces"),
    _info("net.routes"),
    _info("mnt.mounts"),
    _info("pid.count"),
    Entry("cgroupns.root", Role.CGROUPNS_ROOT, "cgroup"),
)

# Knobs with an internal and an external view (engine/views.py): each is one line
# and makes three files, ``KIND.NAME``, ``.internal`` and ``.effective``.
_INT = ValueType(lo=0, hi=2**31 - 1)
_SEM_HIS = (2**31 - 1, 2**31 - 1, 2**31 - 1, 1 << 15)
_ULONG = ValueType(lo=0, hi=2**64 - 1)  # shmmax and shmall default to nearly 2^64
_BOOL = ValueType(lo=0, hi=1)  # the tighter is the smaller: the parent's 0 forbids

IPC_KNOBS: tuple[Knob, ...] = (
    Knob("ipc", "shm_mni", "kernel.shmmni", ValueType(lo=1, hi=1 << 15)),
    Knob("ipc", "shm_max", "kernel.shmmax", _ULONG),
    Knob("ipc", "shm_all", "kernel.shmall", _ULONG),
    Knob("ipc", "msg_mni", "kernel.msgmni", ValueType(lo=0, hi=1 << 15)),
    Knob("ipc", "msg_max", "kernel.msgmax", _INT),
    Knob("ipc", "msg_mnb", "kernel.msgmnb", _INT),
    # semmsl semmns semopm semmni. SEMMNI is capped by IPCMNI (32768), which the
    # kernel checks after storing all four fields, restoring only SEMMNI on ERANGE.
    Knob("ipc", "sem", "kernel.sem", ValueType(arity=4, lo=0, hi=2**31 - 1, his=_SEM_HIS)),
    Knob("ipc", "mq_queues_max", "fs.mqueue.queues_max", _INT),
    Knob("ipc", "mq_msg_max", "fs.mqueue.msg_max", ValueType(lo=1, hi=65536)),
    Knob("ipc", "mq_msgsize_max", "fs.mqueue.msgsize_max", ValueType(lo=128, hi=16 << 20)),
)

NET_KNOBS: tuple[Knob, ...] = (
    Knob("net", "somaxconn", "net.core.somaxconn", _INT),
    Knob(
        "net",
        "ip_local_port_range",
        "net.ipv4.ip_local_port_range",
        ValueType(arity=2, lo=1, hi=65535, is_range=True),
    ),
    Knob("net", "ip_forward", "net.ipv4.ip_forward", _BOOL),
)

# Per pid namespace on Linux 6.14 and later; the kernel's floor is RESERVED_PIDS + 1.
PID_KNOBS: tuple[Knob, ...] = (Knob("pid", "max", "kernel.pid_max", ValueType(lo=301, hi=4194304)),)


def view_entries(knob: Knob) -> tuple[Entry, Entry, Entry]:
    """A knob's three files: the parent's limit, the container's own value (bound
    over /proc/sys inside, where root of its user namespace writes it) and the
    value the kernel enforces."""
    ext, internal, eff = knob.files
    kind, cache = knob.kind, Cache.ENFORCED
    return (
        Entry(ext, Role.VIEW, kind, _OWN, cache=cache, knob=knob, view="external"),
        Entry(internal, Role.VIEW, kind, _OWN, cache=cache, owner=Owner.INSIDE_ROOT, knob=knob,
              view="internal"),
        Entry(eff, Role.VIEW, kind, cache=cache, knob=knob, view="effective"),
    )  # fmt: skip


def controller_entries(kind: str, files: Mapping[str, bool]) -> tuple[Entry, ...]:
    """A controller's files (name -> writable, as the cgroup backend serves them
    here): the writable ones hold settings, changed only by writing them, so they
    may be page-cached; the rest are readings."""
    return tuple(
        Entry(name, Role.CGROUP, kind, _OWN if w else Mode.READ_ONLY,
              cache=Cache.ALWAYS if w else Cache.NEVER)
        for name, w in files.items()
    )  # fmt: skip
