"""Deep and large trees, and the limits a parent sets on its subtree (issue 14), without root."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import pytest

from containerfs import statefile
from containerfs.engine import lifecycle
from containerfs.engine.catalog import Role
from containerfs.engine.errors import ContainerError
from containerfs.engine.kinds import Origin
from containerfs.engine.tree import (
    DELEGATED_MAX_DEPTH,
    DELEGATED_MAX_DESCENDANTS,
    Container,
    Engine,
    format_limit,
    parse_limit,
)
from containerfs.statefile import StateFile

from .test_engine import make_engine

#: Deeper than Python's default recursion limit (1,000), with room to spare.
DEEP = 5000


def mkdir(e: Engine, parent: Container, name: str, owner: tuple[int, int] = (0, 0)) -> Container:
    return e.commit_mkdir(e.plan_mkdir(parent, name, owner), {})


def chain(e: Engine, depth: int) -> list[Container]:
    """``c/c/c/...`` ``depth`` deep; the containers, top first."""
    out, node = [], e.root
    for _ in range(depth):
        node = mkdir(e, node, "c")
        out.append(node)
    return out


def refused(exc: pytest.ExceptionInfo[ContainerError]) -> int:
    return exc.value.errno


def test_a_chain_deeper_than_the_recursion_limit_works_everywhere(tmp_path: Path) -> None:
    assert sys.getrecursionlimit() < DEEP
    e = make_engine(frozenset())
    nodes = chain(e, DEEP)
    deepest = nodes[-1]
    assert deepest.depth == DEEP and len(deepest.path) == DEEP
    assert e.root.descendants == DEEP and deepest.descendants == 0
    walked = list(e.root.walk())
    assert walked == [e.root, *nodes]  # parents first
    assert list(nodes[10].walk()) == nodes[10:]
    assert lifecycle.freed_by_removal(deepest) == []  # owns nothing
    assert lifecycle.namespace_index(e.root)  # the root's namespaces only
    assert e.lookup(deepest.path) is deepest
    # Saved and loaded again (statefile: snapshot, a journal with puts and drops).
    sf = StateFile(tmp_path)
    records = [lifecycle.record(c, None) for c in walked]
    sf.snapshot({"version": 2, "containers": json.loads(json.dumps(records))})
    sf.append([{"drop": list(nodes[-3].path)}, {"put": lifecycle.record(nodes[-3], None)}])
    sf.close()
    state = statefile.load(tmp_path)
    assert state is not None and len(state["containers"]) == DEEP - 1
    again = make_engine(frozenset())
    for rec in state["containers"]:
        lifecycle.restore(again, rec)
    assert again.root.descendants == DEEP - 2
    assert sum(1 for _ in again.root.walk()) == DEEP - 1
    # And taken down from the bottom.
    for c in reversed(nodes):
        e.check_rmdir(c, 0)
        e.commit_rmdir(c)
    assert e.root.descendants == 0 and not e.root.children


def test_depth_limit_counts_levels_below_each_ancestor() -> None:
    e = make_engine(frozenset())
    a = mkdir(e, e.root, "a")
    Engine.set_limit(a, Role.MAX_DEPTH, "2\n")
    b = mkdir(e, a, "b")
    c = mkdir(e, b, "c")  # two levels below a
    with pytest.raises(ContainerError) as exc:
        e.plan_mkdir(c, "d")
    assert refused(exc) == errno.EAGAIN
    Engine.set_limit(b, Role.MAX_DEPTH, "0")
    with pytest.raises(ContainerError) as exc:
        e.plan_mkdir(b, "x")  # b allows no child at all now
    assert refused(exc) == errno.EAGAIN
    Engine.set_limit(b, Role.MAX_DEPTH, "max")
    Engine.set_limit(a, Role.MAX_DEPTH, "max")
    mkdir(e, c, "d")


def test_descendant_limit_counts_the_subtree_and_mkdirs_under_way() -> None:
    e = make_engine(frozenset())
    a = mkdir(e, e.root, "a")
    b = mkdir(e, a, "b")
    Engine.set_limit(a, Role.MAX_DESCENDANTS, "3")
    plan = e.plan_mkdir(b, "x")  # under way: counted already
    mkdir(e, a, "y")
    with pytest.raises(ContainerError) as exc:
        e.plan_mkdir(e.root.children["a"], "z")
    assert refused(exc) == errno.EAGAIN
    e.abort_mkdir(plan)
    e.abort_mkdir(plan)  # twice, as the daemon may: counted back once
    assert a.descendants == 2
    x = e.commit_mkdir(e.plan_mkdir(b, "x"), {})
    with pytest.raises(ContainerError):
        e.plan_mkdir(x, "deeper")
    e.commit_rmdir(x)  # a removal frees its place
    mkdir(e, a, "z")
    assert a.descendants == 3 and e.root.descendants == 4
    mkdir(e, e.root, "elsewhere")  # other subtrees are not limited by a's


def test_clone_discovery_respects_the_limits() -> None:
    e = make_engine(frozenset())
    a = mkdir(e, e.root, "a")
    Engine.set_limit(a, Role.MAX_DESCENDANTS, "0")
    with pytest.raises(ContainerError) as exc:
        lifecycle.plan_clone(e, a, "unshare", 42, ["net"])
    assert refused(exc) == errno.EAGAIN


@pytest.mark.parametrize("text", ["", "-1", "1.5", "max max", "MAX", "2147483648", "0x10", "1 2"])
def test_bad_limits_are_refused_and_change_nothing(text: str) -> None:
    e = make_engine(frozenset())
    a = mkdir(e, e.root, "a")
    Engine.set_limit(a, Role.MAX_DESCENDANTS, "7")
    with pytest.raises(ContainerError) as exc:
        Engine.set_limit(a, Role.MAX_DESCENDANTS, text)
    assert refused(exc) == errno.EINVAL
    assert a.max_descendants == 7


def test_limit_values_read_back_as_written() -> None:
    assert parse_limit("max\n", "x") is None and format_limit(None) == "max\n"
    assert parse_limit(" 0 ", "x") == 0 and format_limit(0) == "0\n"
    assert parse_limit("2147483647", "x") == 2**31 - 1


def test_limit_files_belong_to_the_parents_administrator() -> None:
    e = make_engine(frozenset())
    a = mkdir(e, e.root, "a")
    e.chown(a, 1000, 1000)
    for name in ("container.max.depth", "container.max.descendants"):
        spec = e.file(a, name)
        assert spec.writable
        assert e.file_owner(a, spec) == (0, 0)  # not the delegated user's
        assert e.file_owner(e.root, e.file(e.root, name)) == (0, 0)
    mine = mkdir(e, a, "mine", (1000, 1000))  # the user's own: its limits are the user's
    assert e.file_owner(mine, e.file(mine, "container.max.depth")) == (1000, 1000)


def test_delegation_gives_safe_defaults_but_keeps_set_values() -> None:
    e = make_engine(frozenset())
    a = mkdir(e, e.root, "a")
    b = mkdir(e, e.root, "b")
    Engine.set_limit(b, Role.MAX_DEPTH, "3")
    for c in (a, b):
        e.chown(c, 1000, None)
    assert (a.max_depth, a.max_descendants) == (DELEGATED_MAX_DEPTH, DELEGATED_MAX_DESCENDANTS)
    assert (b.max_depth, b.max_descendants) == (3, DELEGATED_MAX_DESCENDANTS)
    Engine.set_limit(a, Role.MAX_DEPTH, "max")  # root lifts it: later chowns keep that...
    e.chown(a, None, 1000)
    e.chown(a, 0, None)
    assert a.max_depth is None
    root_made = mkdir(e, e.root, "r")
    e.chown(root_made, 0, 0)  # ...and giving it to root sets nothing
    assert root_made.max_depth is None and root_made.max_descendants is None
    # A user cannot get past the defaults by nesting.
    node = a
    for i in range(DELEGATED_MAX_DESCENDANTS):
        node = mkdir(e, a if i % 2 else node, f"n{i}", (1000, 1000))
    with pytest.raises(ContainerError) as exc:
        e.plan_mkdir(node, "one-more", (1000, 1000))
    assert refused(exc) == errno.EAGAIN


def test_limits_are_saved_and_restored() -> None:
    e = make_engine(frozenset())
    a = mkdir(e, e.root, "a")
    Engine.set_limit(a, Role.MAX_DEPTH, "4")
    Engine.set_limit(e.root, Role.MAX_DESCENDANTS, "100")
    mkdir(e, a, "b")
    records = json.loads(json.dumps([lifecycle.record(c, None) for c in e.root.walk()]))
    again = make_engine(frozenset())
    for rec in records:
        lifecycle.restore(again, rec)
    a2 = again.lookup(("a",))
    assert (a2.max_depth, a2.max_descendants) == (4, None)
    assert again.root.max_descendants == 100
    assert (again.root.descendants, a2.descendants) == (2, 1)
    # A record from before limits: max.
    old = {k: v for k, v in records[1].items() if not k.startswith("max_")}
    older = make_engine(frozenset())
    assert lifecycle.restore(older, old).max_depth is None
    with pytest.raises(ContainerError):
        lifecycle.restore(make_engine(frozenset()), {**records[1], "max_depth": -1})


def test_a_clone_is_counted_like_any_container() -> None:
    e = make_engine(frozenset())
    plan = lifecycle.plan_clone(e, e.root, "unshare", 7, ["net"])
    clone = e.commit_mkdir(plan, {"net": "1"}, Origin.CLONE)
    assert e.root.descendants == 1 and clone.depth == 1
