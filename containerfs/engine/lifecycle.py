"""Container lifecycle decisions: release, clone discovery, rename, saved state.

Pure functions over the tree (no I/O), fed what the daemon observed:

- **Release.** A container is *released* when it empties: it has had tasks or
  children since it was last released (``occupied``), and now has no task in
  it or below (``populated`` false, from the kernel's ``cgroup.events``), no
  child container, and no bind mount keeping its namespaces (``held``). Its
  policy then says what the daemon does: nothing, run the release agent, or
  remove it. This is cgroup v1's ``notify_on_release`` rule, which also fires
  when the last child goes.
- **Clone discovery.** A task of container C whose namespaces differ from
  C's belongs to a child: an existing child whose namespaces it has, else a
  new one made for it (origin ``clone``). Namespaces the tree already knows
  elsewhere are not new: a process that joined another container's namespace
  is not turned into a container.
- **Claims.** An OCI runtime (runc) makes a container's namespaces itself;
  ``container.claim`` names its init, and the container comes to own each of
  that process's namespaces that differs from its parent's (origin ``oci``).
  Only a container that owns no namespace yet may be claimed, and only
  namespaces no other container has, nested below its parent's where the kind
  nests (pid, user). An OCI container is never released by a policy: its
  runtime's ``delete`` removes it.
- **Saved state.** The tree as plain data for ``state.json``, and back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .errors import Busy, Exists, InvalidInput, NotPermitted
from .kinds import NAMESPACE_NAMES, Origin, Release
from .tree import (
    ROOT_IDS,
    Container,
    Engine,
    MkdirPlan,
    add_descendant,
    parse_limit,
    start_counting,
    validate_name,
)
from .views import KnobState

#: Default cap on containers made by clone discovery (all parents together).
MAX_CLONES = 1024


# -- release -------------------------------------------------------------------


def observe_populated(c: Container, populated: bool) -> None:
    """Record what the kernel says; having tasks makes a container occupied."""
    c.populated = populated
    if populated:
        c.occupied = True


def occupy(c: Container) -> bool:
    """Arm ``c``'s release (it has or had a task); whether that is news to record."""
    if c.occupied or c.is_root:
        return False
    c.occupied = True
    return True


def set_held(c: Container, held: bool) -> bool:
    """Whether a clone's namespaces are kept alive by something other than its
    tasks (a bind mount of an nsfs file); whether that changed."""
    changed, c.held = c.held != held, held
    return changed


def set_instance(c: Container, kind: str, instance: str) -> bool:
    """Record the instance ``c`` owns of ``kind`` once it changed (a holder that
    entered its deferred mount namespace); whether it did."""
    if c.ids.get(kind) == instance or c.removed:
        return False
    c.ids[kind] = instance
    return True


def freed_by_removal(gone: Container) -> list[tuple[Container, frozenset[str]]]:
    """For each ancestor of ``gone``, nearest first: the kinds owned in ``gone``'s
    subtree that no other container below that ancestor owns, i.e. the
    controllers its ``cgroup.subtree_control`` can disable once ``gone`` is removed.

    Only ancestors that free something are listed: the first that frees nothing
    ends the list (every one above it has the same owners below it, and more).
    Each look stops at the first owners found for every kind, so removing one
    of a thousand siblings that own the same kinds looks at one of them, not
    at all of them (this ran on every rmdir, and walked the whole tree).
    """
    out = []
    left = frozenset[str]().union(*(d.owned for d in gone.walk()))
    below, node = gone, gone.parent
    while node is not None and left:
        if below is not gone:
            left -= below.owned
        for d in _others_below(node, below):
            if not left:
                break
            left -= d.owned
        if left:
            out.append((node, left))
        below, node = node, node.parent
    return out


def _others_below(node: Container, skip: Container) -> Iterator[Container]:
    """Every container below ``node`` but ``skip`` and its subtree."""
    for child in node.children.values():
        if child is not skip:
            yield from child.walk()


def take_release(c: Container) -> Release | None:
    """The policy to carry out if ``c`` has just emptied, else None.

    Counts the release and clears ``occupied``, so one emptying acts once; the
    next task (or child) arms it again.
    """
    if c.is_root or c.removed or not c.occupied or c.origin == Origin.OCI:
        return None  # an OCI container waits for its runtime's delete
    if c.populated or c.children or c.held:
        return None
    c.occupied = False
    c.released += 1
    return c.release


# -- clone discovery -----------------------------------------------------------


def namespace_index(root: Container) -> dict[tuple[str, str], Container]:
    """(kind, inode) -> the container that owns that namespace instance."""
    out: dict[tuple[str, str], Container] = {}
    for c in root.walk():
        for kind in NAMESPACE_NAMES:
            if kind in c.owned and kind in c.ids:
                out[(kind, c.ids[kind])] = c
    return out


def differing(c: Container, inodes: Mapping[str, int]) -> dict[str, str]:
    """Namespace kinds where a process of ``c`` is elsewhere: kind -> its inode."""
    out = {}
    for kind, ino in inodes.items():
        mine = c.instance_id(kind)
        if mine != "-" and str(ino) != mine:
            out[kind] = str(ino)
    return out


def child_for(c: Container, diff: Mapping[str, str]) -> Container | None:
    """The child of ``c`` whose own namespaces the process is in (the most specific)."""
    best: Container | None = None
    best_n = 0
    for child in c.children.values():
        own = [k for k in child.owned if k in NAMESPACE_NAMES]
        if own and len(own) > best_n and all(diff.get(k) == child.ids.get(k) for k in own):
            best, best_n = child, len(own)
    return best


def unknown_kinds(
    diff: Mapping[str, str], index: Mapping[tuple[str, str], Container]
) -> dict[str, str]:
    """The part of ``diff`` that no container owns: namespaces made inside, not joined."""
    return {k: ino for k, ino in diff.items() if (k, ino) not in index}


_UNSAFE = re.compile(r"[^\w.+@:=-]")


def clone_name(parent: Container, comm: str, pid: int | None) -> str:
    """``<comm>-<pid>``, unique among the parent's children.

    A reused PID could repeat an existing name (the trap of the kernel's old
    ``ns`` cgroup): a ``.2``, ``.3``... suffix keeps names unique. ``comm`` is
    made safe for a file name (no spaces, slashes or control characters).
    """
    stem = _UNSAFE.sub("_", comm).lstrip(".")[:64] or "ns"
    base = f"{stem}-{pid}" if pid is not None else stem
    name, n = base, 1
    while name in parent.children:
        n += 1
        name = f"{base}.{n}"
    return name


def plan_clone(
    engine: Engine,
    parent: Container,
    comm: str,
    pid: int | None,
    kinds: Iterable[str],
    *,
    max_clones: int = MAX_CLONES,
) -> MkdirPlan:
    """A child of ``parent`` owning the namespace ``kinds`` a process made itself.

    Refused past ``max_clones`` clone-made containers in all (unbounded
    creation was the other trap of the old ``ns`` cgroup).
    """
    clones = sum(1 for c in engine.root.walk() if c.origin == Origin.CLONE)
    if clones >= max_clones:
        raise Busy(f"{max_clones} containers made by clone/unshare already; not adding more")
    name = clone_name(parent, comm, pid)
    # Made by a process of the parent's subtree: whoever manages that subtree has it.
    plan = engine.plan_mkdir(parent, name, parent.owner_ids)
    return MkdirPlan(plan.parent, plan.name, frozenset(kinds), plan.cgname, plan.owner_ids)


# -- claims (OCI) --------------------------------------------------------------

#: Namespace kinds whose instances form a tree (``NS_GET_PARENT`` answers).
NESTING_KINDS = frozenset({"pid", "user"})


def _where(c: Container) -> str:
    return "/".join(c.path) or "/"


def _is_above(a: Container, c: Container) -> bool:
    """Whether ``a`` is an ancestor of ``c``."""
    node = c.parent
    while node is not None:
        if node is a:
            return True
        node = node.parent
    return False


def check_claim_writer(uid: int) -> None:
    """Only root may claim: the claim hands a container namespaces any process made."""
    if uid != 0:
        raise NotPermitted(f"uid {uid}: only root may write container.claim")


def plan_claim(
    engine: Engine,
    c: Container,
    inodes: Mapping[str, int],
    ancestors: Mapping[str, Sequence[int]],
) -> dict[str, str]:
    """The namespaces ``c`` would own after a claim of a process in them: kind ->
    inode, each of the process's namespaces that differs from ``c``'s now.

    ``inodes``: the process's namespaces (``/proc/PID/ns``); ``ancestors``: for the
    kinds that nest, the inodes above the process's instance, nearest first (as
    far as the daemon may look). Refused (nothing changes): the root; a container
    that owns namespaces already, was claimed or found, or has children (EBUSY);
    a namespace another container has (EINVAL: a process that joined another
    container's namespaces is not that container's owner); a pid or user
    namespace not below ``c``'s (EINVAL: the kernel's hierarchy would not
    match the tree's).
    """
    where = _where(c)
    if c.is_root:
        raise NotPermitted("the root container cannot be claimed")
    if c.origin != Origin.MKDIR:
        raise Busy(f"{where}: container.origin is {c.origin}; only a mkdir one can be claimed")
    owned = sorted(k for k in c.owned if k in NAMESPACE_NAMES)
    if owned:
        raise Busy(f"{where}: owns namespaces already ({' '.join(owned)})")
    if c.children:
        raise Busy(f"{where}: has child containers")
    index = namespace_index(engine.root)
    out: dict[str, str] = {}
    for kind in NAMESPACE_NAMES:
        if engine.available.get(kind) is not None or kind not in inodes:
            continue
        mine, ino = c.instance_id(kind), str(inodes[kind])
        if ino == mine:
            continue  # shared with the parent, as now
        other = index.get((kind, ino))
        if other is not None and _is_above(other, c):
            # The runtime ran in an ancestor's namespaces, which c does not share.
            raise InvalidInput(
                f"{where}: the process is in {_where(other)}'s {kind} namespace, but the"
                f" container shares {_where(c.owner(kind))}'s: an OCI container's parent"
                " must own no namespace kind"
            )
        if other is not None:
            raise InvalidInput(
                f"{where}: the process's {kind} namespace is {_where(other)}'s, not one of its own"
            )
        if kind in NESTING_KINDS and mine not in {str(a) for a in ancestors.get(kind, ())}:
            raise InvalidInput(
                f"{where}: the process's {kind} namespace {ino} is not below the container's"
                f" {mine} ({_where(c.owner(kind))}'s)"
            )
        out[kind] = ino
    return out


def commit_claim(engine: Engine, c: Container, ids: Mapping[str, str]) -> None:
    """``c`` owns namespaces ``ids`` (kind -> inode) now, held by its new holder;
    it is an OCI container from now on (its files of those kinds become writable)."""
    c.owned = c.owned | frozenset(ids)
    c.ids.update(ids)
    c.origin = Origin.OCI
    c.occupied = True  # its runtime's init is inside
    engine.layout_changed(c)


# -- rename --------------------------------------------------------------------


def check_rename(engine: Engine, c: Container, new_parent: Container, new_name: str) -> None:
    """``mv`` of a container: within its parent only, to a free valid name."""
    if c.is_root:
        raise NotPermitted("the root container cannot be renamed")
    if new_parent is not c.parent:
        raise InvalidInput("a container can only be renamed within its parent")
    validate_name(new_name)
    if new_name in new_parent.children or new_name in engine.files(new_parent):
        raise Exists(new_name)


def commit_rename(engine: Engine, c: Container, new_name: str) -> None:
    """Only the name: cgroup v2 cannot rename a directory, so the cgroup keeps its
    first name (``Container.cgname``, empty while the two agree)."""
    assert c.parent is not None
    if not c.cgname:
        c.cgname = c.name
    if c.cgname == new_name:
        c.cgname = ""
    del c.parent.children[c.name]
    c.name = new_name
    c.parent.children[new_name] = c
    engine.version += 1


# -- saved state ---------------------------------------------------------------


def record(c: Container, holder_pid: int | None) -> dict[str, Any]:
    """One container as plain data (for ``state.json``)."""
    return {
        "path": list(c.path),
        "owned": sorted(c.owned),
        "subtree": sorted(c.subtree),
        "release": str(c.release),
        "origin": str(c.origin),
        "cgname": c.cgname,
        "ids": dict(c.ids),
        "holder": holder_pid,
        "occupied": c.occupied,
        "released": c.released,
        "owner": list(c.owner_ids),
        "admin": list(c.admin_ids),
        "max_depth": c.max_depth,
        "max_descendants": c.max_descendants,
        "views": {
            name: {"internal": state.internal, "external": state.external}
            for name, state in c.views.items()
        },
    }


def _value(v: Any) -> Any:
    """JSON turns tuples (``ipc.sem``, port ranges) into lists: back to tuples."""
    return tuple(v) if isinstance(v, list) else v


def _ids(v: Any) -> tuple[int, int]:
    """A saved (uid, gid); none saved (a state dir from before ownership): root's."""
    if v is None:
        return ROOT_IDS
    uid, gid = (int(x) for x in v)
    if not (0 <= uid < 2**32 - 1 and 0 <= gid < 2**32 - 1):
        raise InvalidInput(f"owner {uid}:{gid}: not valid IDs")
    return uid, gid


def _limit(v: Any, what: str) -> int | None:
    """A saved limit; none saved (a state dir from before limits): max."""
    return None if v is None else parse_limit(str(int(v)), what)


def restore(engine: Engine, rec: Mapping[str, Any]) -> Container:
    """Put a saved container back into the tree (parents come first in the file).

    Checks what it can without the kernel: the parent exists, the name is
    valid and free, the kinds are known. ``ValueError`` (or ``ContainerError``)
    for a record that does not fit.
    """
    path = tuple(rec["path"])
    if not path:
        c = engine.root
    else:
        parent = engine.lookup(path[:-1])
        name = path[-1]
        validate_name(name)
        if name in parent.children:
            raise Exists("/".join(path))
        owned = frozenset(rec["owned"])
        unknown = owned - set(engine.kinds)
        if unknown:
            raise InvalidInput(f"unknown kinds {sorted(unknown)}")
        c = Container(name, parent, owned=owned, ids={k: str(v) for k, v in rec["ids"].items()})
        parent.children[name] = c
        add_descendant(c)
        engine.version += 1
    c.subtree = frozenset(k for k in rec.get("subtree", ()) if k in engine.kinds)
    c.release = Release(rec.get("release", "ignore"))
    c.origin = Origin(rec.get("origin", "mkdir"))
    c.occupied = bool(rec.get("occupied", False))
    cgname = str(rec.get("cgname", ""))
    if cgname:
        validate_name(cgname.replace("~", "-"))
        c.cgname = cgname
    c.released = int(rec.get("released", 0))
    if not c.is_root:  # the root is root's, whatever a record says
        c.owner_ids = _ids(rec.get("owner"))
        c.admin_ids = _ids(rec.get("admin"))
    c.max_depth = _limit(rec.get("max_depth"), "max_depth")
    c.max_descendants = _limit(rec.get("max_descendants"), "max_descendants")
    if c.max_depth is not None or c.max_descendants is not None:
        start_counting(c)
    for name, v in rec.get("views", {}).items():
        c.views[name] = KnobState(_value(v["internal"]), _value(v["external"]))
    return c
