"""The container tree: a pure state machine with no I/O.

The daemon asks the engine what a request means (which kinds a new container
owns, whether a process may enter, what a write says), carries out the kernel
work itself, then commits the outcome here. Every refusal is a
``ContainerError`` raised *before* anything changes, so bad input never
leaves half-applied state.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from ..nskinds import SINGLE_THREADED_ONLY
from .catalog import (
    CONTAINER_FILES,
    INFO_FILES,
    NAMESPACE_FILES,
    Cache,
    Entry,
    Mode,
    Owner,
    Role,
    Where,
    controller_entries,
    view_entries,
)
from .errors import (
    Busy,
    Exists,
    InvalidInput,
    NameTooLong,
    NotFound,
    NotPermitted,
    ReadOnly,
    TryAgain,
    Unsupported,
)
from .kinds import (
    NAMESPACE_NAMES,
    KindClass,
    Origin,
    Release,
    SubsystemKind,
)
from .views import Knob, KnobState, Value, format_external, knob_table, parse_external

MAX_NAME = 255

ROOT_IDS: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class FileSpec:
    """A file of one container: its catalogue line, and whether it is writable there."""

    entry: Entry
    writable: bool

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def role(self) -> Role:
        return self.entry.role

    @property
    def kind(self) -> str | None:
        return self.entry.kind

    @property
    def view(self) -> str | None:
        return self.entry.view


#: The limits a container gets when it is delegated (``Engine.chown`` to a user other
#: than root) while they are still ``max``. Depth: the kernel nests user and pid
#: namespaces 32 deep at most, so no deeper container can own them anyway.
#: Descendants: each container may cost a holder process and its namespaces'
#: kernel memory; 256 is room for a container runtime's work, not for exhausting
#: the host. Its administrator may raise either (or write ``max``).
DELEGATED_MAX_DEPTH = 32
DELEGATED_MAX_DESCENDANTS = 256

_ids = itertools.count(1)


@dataclass(eq=False)
class Container:
    name: str
    parent: Container | None
    owned: frozenset[str]
    subtree: frozenset[str] = frozenset()
    release: Release = Release.IGNORE
    # Instance IDs of owned kinds: namespace inode (decimal) or cgroup path.
    ids: dict[str, str] = field(default_factory=dict)
    children: dict[str, Container] = field(default_factory=dict)
    uid: int = field(default_factory=lambda: next(_ids))
    removed: bool = False
    # Namespace knobs of the kinds it owns: knob file (e.g. "ipc.shm_mni") -> views.
    views: dict[str, KnobState] = field(default_factory=dict)
    # Lifecycle (engine/lifecycle.py): how it was made, and its release state.
    origin: Origin = Origin.MKDIR
    populated: bool = False  # the kernel last said: tasks in it or below
    occupied: bool = False  # has had tasks (or children) since it was last released
    held: bool = False  # a clone's namespace is kept alive by a bind mount
    released: int = 0  # times it emptied and its release policy ran
    # Its cgroup directory's name: the container's name unless it was renamed
    # (cgroup v2 cannot rename a cgroup, so the directory keeps its first name).
    cgname: str = ""
    # Ownership, (uid, gid), as cgroup v2 delegation has it (README "Ownership and
    # delegation"): ``owner_ids`` has the directory, ``tasks`` and ``container.subtree``
    # (``chown`` of the directory delegates them); ``admin_ids`` has its other files
    # (limits: the parent's administrator's, or its maker's). Root: (0, 0).
    owner_ids: tuple[int, int] = ROOT_IDS
    admin_ids: tuple[int, int] = ROOT_IDS
    # Levels below the root (the root: 0).
    depth: int = 0
    # Its limits, ``container.max.depth`` and ``container.max.descendants``: None is max.
    max_depth: int | None = None
    max_descendants: int | None = None
    # Only a container that ``counts`` (one that has had a limit, and the root) keeps
    # ``descendants``, the containers below it including those being made; each
    # container knows the nearest one above it that counts. So a mkdir looks at
    # the few ancestors that limit it, not at every one (a chain of thousands of
    # containers made each mkdir cost its depth).
    counts: bool = False
    descendants: int = 0
    counted_by: Container | None = None  # the nearest ancestor that ``counts``

    def __post_init__(self) -> None:
        if self.parent is not None:
            self.depth = self.parent.depth + 1
            self.counted_by = self.parent if self.parent.counts else self.parent.counted_by

    # For a container owning a user namespace: the host uid and gid its root (0
    # inside) maps to, None each until a map gives one. Root inside writes the
    # internal views bound over /proc/sys, so those files are theirs (see
    # ``Engine.file_owner``). Learnt from the kernel, not saved.
    inside_root: tuple[int | None, int | None] = (None, None)

    @property
    def path(self) -> tuple[str, ...]:
        parts: list[str] = []
        node: Container | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return tuple(reversed(parts))

    @property
    def cgpath(self) -> tuple[str, ...]:
        """Its cgroup directories below the base (see ``cgname``)."""
        parts: list[str] = []
        node: Container | None = self
        while node is not None and node.parent is not None:
            parts.append(node.cgname or node.name)
            node = node.parent
        return tuple(reversed(parts))

    @property
    def is_root(self) -> bool:
        return self.parent is None

    def owner(self, kind: str) -> Container:
        """The container whose instance of ``kind`` this one uses (itself if it owns it)."""
        node: Container = self
        while kind not in node.owned:
            assert node.parent is not None, "the root owns every kind"
            node = node.parent
        return node

    def instance_id(self, kind: str) -> str:
        return self.owner(kind).ids.get(kind, "-")

    def walk(self) -> Iterator[Container]:
        """This container and its descendants, parents before children (depth first,
        children in their order). With a stack, not recursion: a tree may be deeper
        than Python's recursion limit (a recursive walk failed at about 1,000 levels,
        and with it every request and save that walked the tree)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children.values()))


def _common_ancestor(a: Container, b: Container) -> Container:
    """The deepest container that is ``a`` or an ancestor of it, and of ``b`` too."""
    above_a: set[int] = set()
    node: Container | None = a
    while node is not None:
        above_a.add(node.uid)
        node = node.parent
    node = b
    while node is not None and node.uid not in above_a:
        node = node.parent
    assert node is not None, "every container is below the root"
    return node


@dataclass(frozen=True)
class MkdirPlan:
    parent: Container
    name: str
    owned: frozenset[str]
    cgname: str = ""  # its cgroup directory's name (``cgpath``)
    owner_ids: tuple[int, int] = ROOT_IDS  # its maker's (``Container.owner_ids``)

    @property
    def cgpath(self) -> tuple[str, ...]:
        return (*self.parent.cgpath, self.cgname or self.name)


#: cgroupfs's own files in a cgroup directory: ``PREFIX.NAME`` (a controller's name,
#: ``cgroup``, or ``irq`` for pressure) and v1's three plain names. A container's
#: cgroup directory must not take such a name: cgroupfs refuses it where the file
#: exists (EEXIST), and where the container has no directory of its own (a shared
#: v1 controller) the file is taken for its directory, so rmdir fails for ever.
_CGROUP_FILE_PREFIXES = frozenset(
    {"cgroup", "irq", "cpu", "cpuacct", "cpuset", "memory", "io", "blkio", "pids", "devices",
     "freezer", "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc", "debug"}
)  # fmt: skip
_CGROUP_PLAIN_FILES = frozenset({"tasks", "notify_on_release", "release_agent"})


def is_cgroup_file_name(name: str) -> bool:
    """Whether cgroupfs may have a file NAME in a cgroup directory (none has a ``~``)."""
    prefix, dot, _ = name.partition(".")
    if "~" in name:
        return False
    return name in _CGROUP_PLAIN_FILES or (bool(dot) and prefix in _CGROUP_FILE_PREFIXES)


def validate_name(name: str) -> None:
    if len(name.encode()) > MAX_NAME:
        raise NameTooLong(f"name longer than {MAX_NAME} bytes")
    if not name or name in (".", ".."):
        raise InvalidInput("empty name")
    if name.startswith("."):
        raise InvalidInput(f"{name!r}: names starting with '.' are reserved")
    # Whitespace too: every file of containerfs is whitespace-separated columns.
    if "/" in name or any(c.isspace() or not c.isprintable() for c in name):
        raise InvalidInput(f"{name!r}: '/', spaces and control characters are not allowed")


def check_not_internal(pid: int, internal: Mapping[int, str]) -> None:
    """Refuse the daemon's own processes (its holders, itself) in a ``tasks`` write,
    and pid 1, the init of the daemon's pid namespace.

    They are infrastructure, not tasks: a holder moved into a container would make it
    populated forever, and the daemon moved into one would make it unremovable. Init
    put in a container's cgroups would take the host's services with it.
    """
    if pid == 1:
        raise InvalidInput("1 is the init of the daemon's pid namespace, not a task")
    what = internal.get(pid)
    if what is not None:
        raise InvalidInput(f"{pid} is {what}, not a task")


def parse_pid(text: str) -> int:
    """One PID per write, as cgroupfs takes it."""
    words = text.split()
    if len(words) != 1 or not words[0].isdigit():
        raise InvalidInput(f"expected one PID, got {text.strip()[:40]!r}")
    pid = int(words[0])
    if pid <= 0 or pid > 2**22:
        raise InvalidInput(f"{pid}: not a valid PID")
    return pid


def parse_kill(text: str) -> None:
    """``container.kill`` takes ``1``, as cgroup.kill does."""
    if text.strip() != "1":
        raise InvalidInput(f"expected 1, got {text.strip()[:40]!r}")


def parse_release(text: str) -> Release:
    word = text.strip()
    try:
        return Release(word)
    except ValueError:
        raise InvalidInput(f"release must be ignore, notify or delete, not {word[:40]!r}") from None


_CLOCKS = ("monotonic", "boottime")


def parse_time_offsets(text: str, current: Mapping[str, int]) -> dict[str, int]:
    """``CLOCK SECONDS [NANOSECONDS]`` lines; clocks not named keep ``current`` (ns)."""
    out = dict(current)
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines:
        raise InvalidInput("time.offsets: expected 'monotonic|boottime SECONDS [NANOSECONDS]'")
    for words in lines:
        ok = len(words) in (2, 3) and words[0] in _CLOCKS
        nums = words[1:]
        if ok:
            ok = nums[0].lstrip("-").isdigit() and (len(nums) == 1 or nums[1].isdigit())
        if not ok:
            raise InvalidInput(f"time.offsets: bad line {' '.join(words)[:60]!r}")
        nanos = int(nums[1]) if len(nums) == 2 else 0
        if nanos >= 10**9:
            raise InvalidInput("time.offsets: nanoseconds must be below 1000000000")
        out[words[0]] = int(nums[0]) * 10**9 + nanos
    return out


def counting(parent: Container) -> list[Container]:
    """The containers that count a child of ``parent``: it, if it counts, and each
    one that counts above it (``Container.counts``)."""
    out = []
    node = parent if parent.counts else parent.counted_by
    while node is not None:
        out.append(node)
        node = node.counted_by
    return out


def start_counting(c: Container) -> None:
    """Make ``c`` count its descendants (it gets a limit): one walk of its subtree,
    once. The containers below whose nearest counting ancestor it now is learn it."""
    if c.counts:
        return
    c.counts = True
    c.descendants = sum(1 for _ in c.walk()) - 1
    stack = list(c.children.values())
    while stack:
        node = stack.pop()
        node.counted_by = c
        if not node.counts:  # below one that counts, they know a nearer one
            stack.extend(node.children.values())


def check_limits(parent: Container) -> None:
    """Refuse (EAGAIN, as cgroup v2's mkdir) a new child of ``parent`` that would take
    any ancestor past its ``container.max.depth`` or ``container.max.descendants``.
    Only containers with a limit count (``start_counting``): one look at each."""
    for node in counting(parent):
        below = parent.depth + 1 - node.depth  # the new container's level below node
        if node.max_depth is not None and below > node.max_depth:
            where = "/".join(node.path) or "/"
            raise TryAgain(f"{where}: container.max.depth is {node.max_depth}")
        if node.max_descendants is not None and node.descendants >= node.max_descendants:
            where = "/".join(node.path) or "/"
            raise TryAgain(f"{where}: container.max.descendants is {node.max_descendants}")


def add_descendant(child: Container) -> None:
    """Count a container just put into the tree in each ancestor that counts."""
    assert child.parent is not None
    for node in counting(child.parent):
        node.descendants += 1


def parse_limit(text: str, what: str) -> int | None:
    """A ``container.max.*`` value, as cgroup.max.depth takes it: ``max`` (None) or a count."""
    word = text.strip()
    if word == "max":
        return None
    if not word.isdigit() or int(word) > 2**31 - 1:
        raise InvalidInput(f"{what}: expected max or a number from 0 to {2**31 - 1}")
    return int(word)


def format_limit(value: int | None) -> str:
    """A ``container.max.*`` file's content: what ``parse_limit`` takes back."""
    return "max\n" if value is None else f"{value}\n"


class Engine:
    """The tree of containers and the rules that govern it."""

    def __init__(
        self,
        kinds: tuple[SubsystemKind, ...],
        available: Mapping[str, str | None],
        controller_files: Mapping[str, Mapping[str, bool]],
        root_ids: Mapping[str, str],
        root_subtree: frozenset[str] = frozenset(),
        view_knobs: Sequence[Knob] = (),
        reserved_cgnames: frozenset[str] = frozenset(),
    ) -> None:
        """``controller_files``: kind -> the controller's files here -> writable (the
        cgroup backend's ``files``); ``view_knobs``: the catalogue's knobs this
        kernel has; ``reserved_cgnames``: directory names a top-level container's
        cgroup may not take (systemd's start leaf: a container's cgroup there would
        take the next start's place). The rest of a container's files are the
        catalogue's."""
        self.reserved_cgnames = reserved_cgnames
        self.kinds: dict[str, SubsystemKind] = {k.name: k for k in kinds}
        # kind -> None when usable here, else the reason it is not
        self.available: dict[str, str | None] = {k: available.get(k, "unknown") for k in self.kinds}
        usable = frozenset(k for k, why in self.available.items() if why is None)
        self.root = Container("", None, owned=frozenset(self.kinds), ids=dict(root_ids))
        self.root.counts = True  # the whole tree's size, for nothing: no mkdir skips it
        self.root.subtree = self._check_kinds(root_subtree)
        self._usable = usable
        self._pending: set[tuple[int, str]] = set()
        self._pending_cg: set[tuple[int, str]] = set()
        # (parent uid, name) of a planned mkdir -> the containers that count it already
        self._reserved: dict[tuple[int, str], list[Container]] = {}
        self._files: dict[int, dict[str, FileSpec]] = {}  # container uid -> its files
        # Bumped whenever a container is added, removed or renamed, so that callers
        # can keep what they derive from the whole tree until it changes.
        self.version = 0
        # Bumped whenever a knob's recorded views change (``views_version``).
        self._views_changes = 0
        self.view_knobs = [k for k in view_knobs if self.available.get(k.kind) is None]
        self._view_files = knob_table(self.view_knobs)
        # The file catalogue (engine/catalog.py) laid out for this host, in listing order.
        self.catalogue: tuple[Entry, ...] = (
            *CONTAINER_FILES,
            *NAMESPACE_FILES,
            *(e for kind, fs in controller_files.items() for e in controller_entries(kind, fs)),
            *INFO_FILES,
            *(e for knob in self.view_knobs for e in view_entries(knob)),
        )

    # -- lookups -------------------------------------------------------------

    def lookup(self, path: tuple[str, ...]) -> Container:
        node = self.root
        for part in path:
            child = node.children.get(part)
            if child is None:
                raise NotFound("/".join(path))
            node = child
        return node

    def files(self, c: Container) -> dict[str, FileSpec]:
        """The files of a container directory, in listing order.

        Made once per container: they depend only on what it owns, which changes
        only by a claim (``layout_changed``) (every lookup and getattr asks; rebuilding the list
        each time made ``ls -R`` quadratic). Do not modify the returned dict.
        """
        cached = self._files.get(c.uid)
        if cached is None:
            cached = self._files[c.uid] = self._make_files(c)
        return cached

    def layout_changed(self, c: Container) -> None:
        """``c`` owns other kinds now (a claim): its files are laid out anew."""
        self._files.pop(c.uid, None)
        self.version += 1

    def _make_files(self, c: Container) -> dict[str, FileSpec]:
        out: dict[str, FileSpec] = {}
        for entry in self.catalogue:
            if entry.where is not Where.ALL and (entry.where is Where.ROOT) != c.is_root:
                continue
            if entry.kind is not None and self.available.get(entry.kind) is not None:
                continue
            out[entry.name] = FileSpec(entry, self._writable(c, entry))
        return out

    @staticmethod
    def _writable(c: Container, entry: Entry) -> bool:
        """A file of a kind is written where the container owns that kind. The root's
        objects belong to the host (the daemon's own namespaces and the cgroup it
        was started in): shown, never written."""
        if entry.mode is Mode.OWNED:
            return entry.kind in c.owned and not c.is_root
        return entry.mode in (Mode.WRITABLE, Mode.WRITE_ONLY)

    def page_cached(self, c: Container, spec: FileSpec) -> bool:
        """Whether the file's value changes only through containerfs, so that the
        kernel may serve it from its page cache (see ``fuse/ops.py``). A view
        qualifies only where its container's processes see it bound over
        /proc/sys (their mount namespace is the owner's): elsewhere they set
        the kernel value directly and each read must catch that. An OCI
        container's controller settings are not: its runtime writes them to
        cgroupfs itself (``runc update``, for ``podman update``), and a read right
        after must show them."""
        cache = spec.entry.cache
        if spec.entry.role is Role.CGROUP and c.origin is Origin.OCI:
            return False
        if cache is Cache.ENFORCED:
            assert spec.kind is not None
            return self.views_enforced(c.owner(spec.kind))
        return cache is Cache.ALWAYS

    def file(self, c: Container, name: str) -> FileSpec:
        spec = self.files(c).get(name)
        if spec is None:
            raise NotFound(name)
        return spec

    # -- mkdir / rmdir ---------------------------------------------------------

    def plan_mkdir(
        self, parent: Container, name: str, owner: tuple[int, int] = ROOT_IDS
    ) -> MkdirPlan:
        """``owner``: who makes it (uid, gid); a container is wholly its maker's."""
        if parent.removed:
            raise NotFound(f"{name}: the parent container was removed")
        validate_name(name)
        if name in parent.children or (parent.uid, name) in self._pending:
            raise Exists(name)
        if name in self.files(parent):
            raise Exists(f"{name}: a file of the container has that name")
        check_limits(parent)
        cgname = self._free_cgname(parent, name)
        reserved = counting(parent)  # counted until committed or aborted
        for node in reserved:
            node.descendants += 1
        self._reserved[(parent.uid, name)] = reserved
        self._pending.add((parent.uid, name))
        self._pending_cg.add((parent.uid, cgname))
        owned = frozenset(k for k in parent.subtree if k in self._usable)
        return MkdirPlan(parent, name, owned, cgname, owner)

    def _free_cgname(self, parent: Container, name: str) -> str:
        """``name``, or ``name~N`` when a renamed sibling still has a directory by that
        name, cgroupfs has a file by that name (``is_cgroup_file_name``) or, at the
        top, systemd uses it (``reserved_cgnames``)."""
        taken = {ch.cgname or ch.name for ch in parent.children.values()}
        taken |= {n for uid, n in self._pending_cg if uid == parent.uid}
        cgname, n = name, 1
        while (
            cgname in taken
            or is_cgroup_file_name(cgname)
            or (parent.is_root and cgname in self.reserved_cgnames)
        ):
            n += 1
            cgname = f"{name}~{n}"
        return cgname

    def abort_mkdir(self, plan: MkdirPlan) -> None:
        """Forget a plan (harmless when already forgotten: commit_mkdir does it too)."""
        for node in self._reserved.pop((plan.parent.uid, plan.name), ()):
            node.descendants -= 1
        self._pending.discard((plan.parent.uid, plan.name))
        self._pending_cg.discard((plan.parent.uid, plan.cgname))

    def commit_mkdir(
        self, plan: MkdirPlan, ids: Mapping[str, str], origin: Origin = Origin.MKDIR
    ) -> Container:
        """Add the container. One made by clone/unshare starts occupied (it has the
        tasks it was found with) and releases as namespaces do: ``delete``."""
        self.abort_mkdir(plan)
        child = Container(plan.name, plan.parent, owned=plan.owned, ids=dict(ids), origin=origin)
        child.cgname = plan.cgname if plan.cgname != plan.name else ""
        child.owner_ids = child.admin_ids = plan.owner_ids
        if origin == Origin.CLONE:
            child.release = Release.DELETE
            child.occupied = True
        plan.parent.children[plan.name] = child
        add_descendant(child)
        plan.parent.occupied = True
        self.version += 1
        return child

    def check_rmdir(self, c: Container, ntasks: int) -> None:
        if c.is_root:
            raise NotPermitted("the root container cannot be removed")
        if c.children:
            raise Busy(f"{'/'.join(c.path)}: has child containers")
        if ntasks:
            raise Busy(f"{'/'.join(c.path)}: has {ntasks} task(s)")

    def commit_rmdir(self, c: Container) -> None:
        assert c.parent is not None
        assert not c.children, "only a leaf is removed"
        del c.parent.children[c.name]
        for node in counting(c.parent):
            node.descendants -= 1
        c.removed = True
        self._files.pop(c.uid, None)
        self.version += 1

    # -- ownership and delegation (README "Ownership and delegation") -------------

    def file_owner(self, c: Container, spec: FileSpec) -> tuple[int, int]:
        """(uid, gid) a file of ``c`` shows, and the kernel checks writes against.

        As with cgroup v2 delegation: ``tasks`` and ``container.subtree`` follow
        the directory; the rest are the container's administrator's (the parent's
        side: its limits). The root's files and the ID maps (they grant host IDs)
        are root's always.
        """
        owner = spec.entry.owner
        if owner is Owner.DIRECTORY:
            return c.owner_ids
        if c.is_root or owner is Owner.ROOT:
            return ROOT_IDS
        if owner is Owner.INSIDE_ROOT and spec.writable:
            # Bound over /proc/sys inside, where root of the container's user
            # namespace writes it: as the kernel shows ipc and net sysctls, the
            # owner is that root's host ID (CAP_DAC_OVERRIDE inside does not reach
            # a file of an unmapped owner).
            uid, gid = c.owner("user").inside_root
            return (c.admin_ids[0] if uid is None else uid, c.admin_ids[1] if gid is None else gid)
        return c.admin_ids

    def set_inside_root(self, c: Container, uid: int | None, gid: int | None) -> None:
        """Record the host IDs root of ``c``'s own user namespace maps to."""
        c.inside_root = (uid, gid)

    @staticmethod
    def views_enforced(c: Container) -> bool:
        """Whether the kernel holds ``c``'s effective values against the container
        itself: its internal views are bound over /proc/sys in a mount namespace
        of its own (made by mkdir, or claimed from an OCI runtime, which made it
        for the container; a clone's is its maker's, nothing is bound)."""
        return "mnt" in c.owned and c.origin in (Origin.MKDIR, Origin.OCI) and not c.is_root

    def chown(self, c: Container, uid: int | None, gid: int | None) -> None:
        """Delegate (or take back) a container directory: its owner becomes ``uid``/``gid``
        (None: unchanged). Only the directory, ``tasks`` and ``container.subtree`` follow."""
        if c.is_root:
            raise NotPermitted("the root container is the host's: it cannot be delegated")
        for value in (uid, gid):
            if value is not None and not 0 <= value < 2**32 - 1:
                raise InvalidInput(f"{value}: not a valid ID")
        old_uid, old_gid = c.owner_ids
        c.owner_ids = (old_uid if uid is None else uid, old_gid if gid is None else gid)
        if old_uid == 0 and c.owner_ids[0] != 0:  # delegated now: no limit stays max
            if c.max_depth is None:
                c.max_depth = DELEGATED_MAX_DEPTH
            if c.max_descendants is None:
                c.max_descendants = DELEGATED_MAX_DESCENDANTS
            start_counting(c)

    @staticmethod
    def delegated(c: Container, uid: int) -> bool:
        """Whether ``c`` is inside a subtree whose directory ``uid`` owns (root: always)."""
        if uid == 0:
            return True
        node: Container | None = c
        while node is not None:
            if node.owner_ids[0] == uid:
                return True
            node = node.parent
        return False

    def check_move(
        self,
        writer_uid: int,
        target_uids: tuple[int, int],
        source: Container | None,
        dest: Container,
    ) -> None:
        """May the opener of ``dest``'s ``tasks`` (``writer_uid``) move a process whose
        real and effective uids are ``target_uids`` out of ``source`` (None: a cgroup
        outside containerfs) into ``dest``? Root may; anyone else only moves their own
        processes, into a container whose ``tasks`` they own, from a container in the
        same delegated subtree (the common ancestor of source and destination is in
        it: as cgroup v2 asks write access to the common ancestor's ``cgroup.procs``,
        so two separate delegations to one user stay apart)."""
        if writer_uid == 0:
            return
        if any(u != writer_uid for u in target_uids):
            raise NotPermitted(f"uid {writer_uid} may move only its own processes")
        if source is None:
            raise NotPermitted("the process is outside containerfs: only root may move it")
        if dest.owner_ids[0] != writer_uid:  # its tasks file is not the writer's (any more)
            raise NotPermitted(f"{'/'.join(dest.path) or '/'} is not delegated to {writer_uid}")
        if not self.delegated(_common_ancestor(source, dest), writer_uid):
            raise NotPermitted(
                f"{'/'.join(source.path) or '/'} and {'/'.join(dest.path) or '/'} are not"
                f" in one subtree delegated to uid {writer_uid}"
            )

    def by_cgpath(self, parts: Sequence[str]) -> Container | None:
        """The container whose cgroup directories are ``parts`` below the base."""
        node = self.root
        for part in parts:
            found = next(
                (ch for ch in node.children.values() if (ch.cgname or ch.name) == part), None
            )
            if found is None:
                return None
            node = found
        return node

    # -- writes ----------------------------------------------------------------

    def _check_kinds(self, kinds: frozenset[str]) -> frozenset[str]:
        for k in kinds:
            if k not in self.kinds:
                raise InvalidInput(f"{k}: no such subsystem kind")
            why = self.available[k]
            if why is not None:
                raise InvalidInput(f"{k}: not available here ({why})")
        return kinds

    def parse_subtree(self, c: Container, text: str) -> frozenset[str]:
        """``+net -pid`` as cgroup.subtree_control takes it: all tokens valid or nothing changes."""
        add: set[str] = set()
        remove: set[str] = set()
        words = text.split()
        if not words:
            raise InvalidInput("expected +KIND or -KIND words")
        for word in words:
            sign, kind = word[:1], word[1:]
            if sign not in "+-" or not kind:
                raise InvalidInput(f"{word[:40]!r}: expected +KIND or -KIND")
            self._check_kinds(frozenset([kind]))
            (add if sign == "+" else remove).add(kind)
        if add & remove:
            raise InvalidInput(f"both added and removed: {' '.join(sorted(add & remove))}")
        return (c.subtree | add) - remove

    def set_subtree(self, c: Container, text: str) -> None:
        c.subtree = self.parse_subtree(c, text)

    def reset_subtree(self, c: Container, kinds: frozenset[str]) -> None:
        """Replace ``c``'s subtree with exactly ``kinds`` (the root's default at start,
        or the command line's ``--subtree`` over a saved value)."""
        c.subtree = self._check_kinds(kinds)

    @staticmethod
    def set_limit(c: Container, role: Role, text: str) -> None:
        """Write ``container.max.depth`` or ``container.max.descendants``. A limit below
        what is there already is taken, as in cgroup v2: it refuses only new mkdirs."""
        value = parse_limit(text, role.value)
        if role == Role.MAX_DEPTH:
            c.max_depth = value
        elif role == Role.MAX_DESCENDANTS:
            c.max_descendants = value
        else:
            raise AssertionError(role)
        if value is not None:
            start_counting(c)

    def set_release(self, c: Container, text: str) -> None:
        release = parse_release(text)
        if c.origin == Origin.OCI:
            raise InvalidInput(
                f"{'/'.join(c.path)}: an OCI container is removed by its runtime's delete,"
                " not by a release policy"
            )
        c.release = release

    def check_knob_write(self, c: Container, name: str) -> FileSpec:
        spec = self.file(c, name)
        if not spec.writable:
            if spec.kind is not None and spec.kind not in c.owned:
                raise ReadOnly(f"{name}: {spec.kind} is shared with the parent container")
            raise ReadOnly(f"{name}: read-only")
        return spec

    def check_enter(
        self, c: Container, process_ns: Mapping[str, int], threads: int = 1
    ) -> list[str]:
        """Kinds where the process differs from the container; refuse if any cannot be entered.

        Returns the differing namespace kinds (all of them ``migrate``) so the caller can
        move the process into them; cgroup placement is always redone. ``threads``:
        the process's thread count (``mnt`` takes single-threaded processes only).
        """
        differ = [
            k
            for k in NAMESPACE_NAMES
            if k in process_ns
            and self.available.get(k) is None
            and c.instance_id(k) != "-"
            and str(process_ns[k]) != c.instance_id(k)
        ]
        refused = [k for k in differ if self.kinds[k].enter != "migrate"]
        if refused:
            raise InvalidInput(
                "cannot move a running process into "
                + ", ".join(f"{k} (enter={self.kinds[k].enter})" for k in refused)
                + "; start it inside with `containerfs exec`"
            )
        single = [k for k in differ if k in SINGLE_THREADED_ONLY]
        if single and threads > 1:
            raise InvalidInput(
                f"cannot move a process with {threads} threads into {', '.join(single)}"
                " (only single-threaded processes can change their mount namespace)"
            )
        return differ

    # -- namespace knobs with two views ------------------------------------------

    def knobs_of(self, kinds: frozenset[str]) -> list[Knob]:
        return [k for k in self.view_knobs if k.kind in kinds]

    def knob(self, name: str) -> tuple[Knob, str]:
        """The knob behind a view file, and which view it is."""
        found = self._view_files.get(name)
        if found is None:
            raise NotFound(name)
        return found

    def init_views(self, c: Container, kernel: Mapping[str, Value]) -> None:
        """A new instance starts with the kernel's values as its own, and no outside limit."""
        for knob in self.knobs_of(c.owned):
            if knob.file in kernel:
                c.views[knob.file] = KnobState(internal=kernel[knob.file])
        self._views_changes += 1

    def _state(self, c: Container, knob: Knob) -> KnobState:
        owner = c.owner(knob.kind)
        state = owner.views.get(knob.file)
        if state is None:
            raise NotFound(f"{knob.file}: no value recorded")
        return state

    def observe(self, c: Container, knob: Knob, kernel: Value) -> Value | None:
        """Reconcile with what the kernel holds; return a value to re-apply, if any.

        The kernel holding something other than the effective value means the
        container set it itself (it had no containerfs file over its /proc/sys):
        that becomes its internal view, and the effective value goes back.
        """
        owner = c.owner(knob.kind)
        state = owner.views.get(knob.file)
        if state is None:
            state = owner.views[knob.file] = KnobState(internal=kernel)
            self._views_changes += 1
        if kernel == state.effective(knob.type):
            return None
        state.internal = kernel
        self._views_changes += 1
        effective = state.effective(knob.type)
        return None if effective == kernel else effective

    def render_view(self, c: Container, knob: Knob, view: str) -> str:
        state = self._state(c, knob)
        if view == "external":
            return format_external(knob, state.external) + "\n"
        value = state.internal if view == "internal" else state.effective(knob.type)
        return knob.type.format(value) + "\n"

    def plan_view_write(self, c: Container, name: str, text: str) -> tuple[Knob, KnobState]:
        """The state a write would leave (not yet committed): apply its effective value first."""
        knob, view = self.knob(name)
        spec = self.file(c, name)
        if not spec.writable:
            if knob.kind not in c.owned:
                raise ReadOnly(f"{name}: {knob.kind} is shared with the parent container")
            raise ReadOnly(f"{name}: read-only")
        old = self._state(c, knob)
        if view == "external":
            limit = parse_external(knob, text)
            if limit is not None and not self.views_enforced(c):
                raise Unsupported(
                    f"{name}: a limit needs the container's own mount namespace (mnt), "
                    "where its internal view is bound over /proc/sys; without one it "
                    "writes the kernel's file directly and nothing would enforce it"
                )
            return knob, KnobState(old.internal, limit)
        return knob, KnobState(knob.type.parse(text, name), old.external)

    def commit_view(self, c: Container, knob: Knob, state: KnobState) -> None:
        c.owner(knob.kind).views[knob.file] = state
        self._views_changes += 1

    @property
    def views_version(self) -> tuple[int, int]:
        """Changes with the tree and with any knob's recorded views: what is derived
        from every container's views (``metrics``) is kept until it changes."""
        return (self.version, self._views_changes)

    # -- rendering -------------------------------------------------------------

    def render_subsystems(self) -> str:
        lines = []
        for k in self.kinds.values():
            why = self.available[k.name]
            avail = "yes" if why is None else f"no:{why}"
            lines.append(f"{k.name} {k.cls} {k.enter} {','.join(k.create)} {k.release} {avail}")
        return "\n".join(lines) + "\n"

    def render_container_subsystems(self, c: Container) -> str:
        lines = []
        for k in self.kinds.values():
            if self.available[k.name] is not None:
                continue
            state = "own" if k.name in c.owned else "shared"
            lines.append(f"{k.name} {state} {c.instance_id(k.name)}")
        return "\n".join(lines) + "\n"

    def render_subtree(self, c: Container) -> str:
        ordered = [k for k in self.kinds if k in c.subtree]
        return " ".join(ordered) + "\n"

    def owned_of_class(self, c: Container, cls: KindClass) -> frozenset[str]:
        return frozenset(k for k in c.owned if self.kinds[k].cls == cls)
