"""Ownership and delegation in the engine: who owns which file, who may move what."""

from __future__ import annotations

import errno
import json

import pytest

from containerfs.engine import lifecycle
from containerfs.engine.errors import ContainerError
from containerfs.engine.kinds import Origin
from containerfs.engine.tree import Container, Engine

from .test_engine import make_engine

ALICE = (1000, 1000)
BOB = (1001, 1001)


def mkdir(e: Engine, parent: Container, name: str, owner: tuple[int, int] = (0, 0)) -> Container:
    return e.commit_mkdir(e.plan_mkdir(parent, name, owner), {})


def owners(e: Engine, c: Container) -> dict[str, tuple[int, int]]:
    return {name: e.file_owner(c, spec) for name, spec in e.files(c).items()}


def test_everything_is_roots_until_delegated() -> None:
    e = make_engine(frozenset({"user", "pids"}))
    web = mkdir(e, e.root, "web")
    assert web.owner_ids == web.admin_ids == (0, 0)
    assert set(owners(e, web).values()) == {(0, 0)}
    assert set(owners(e, e.root).values()) == {(0, 0)}


def test_chown_delegates_the_directory_tasks_and_subtree_only() -> None:
    e = make_engine(frozenset({"user", "pids"}))
    a = mkdir(e, e.root, "a")
    e.chown(a, ALICE[0], None)
    assert a.owner_ids == (ALICE[0], 0)
    e.chown(a, None, ALICE[1])
    got = owners(e, a)
    assert got["tasks"] == got["container.subtree"] == ALICE
    assert {v for k, v in got.items() if k not in ("tasks", "container.subtree")} == {(0, 0)}
    # the root is the host's; IDs must be IDs
    for uid in (-1, 2**32 - 1):
        with pytest.raises(ContainerError):
            e.chown(a, uid, None)
    with pytest.raises(ContainerError) as exc:
        e.chown(e.root, ALICE[0], None)
    assert exc.value.errno == errno.EPERM


def test_a_container_is_wholly_its_makers_but_the_id_maps() -> None:
    e = make_engine(frozenset({"user", "pids"}))
    b = mkdir(e, e.root, "b", ALICE)
    got = owners(e, b)
    assert got.pop("user.uid_map") == got.pop("user.gid_map") == (0, 0)
    assert got.pop("container.claim") == (0, 0)  # root's: it hands out namespaces
    assert set(got.values()) == {ALICE}
    # a clone found below is the subtree manager's too
    plan = lifecycle.plan_clone(e, b, "unshare", 42, ["net"])
    clone = e.commit_mkdir(plan, {}, Origin.CLONE)
    assert clone.owner_ids == clone.admin_ids == ALICE


def test_moves_stay_within_one_delegated_subtree() -> None:
    e = make_engine(frozenset())
    a = mkdir(e, e.root, "a")
    y = mkdir(e, e.root, "y")
    e.chown(a, *ALICE)
    e.chown(y, *ALICE)
    b = mkdir(e, a, "b", ALICE)
    c = mkdir(e, a, "c", ALICE)
    r = mkdir(e, a, "r")  # root's, inside the delegation
    uid = ALICE[0]
    for source, dest in [(a, b), (b, c), (c, a), (r, b)]:
        e.check_move(uid, (uid, uid), source, dest)
    refused = [
        ((uid, uid), None, a),  # from outside containerfs
        ((uid, uid), e.root, a),  # from the root container
        ((uid, uid), b, y),  # to another delegation
        ((uid, uid), b, r),  # into a container whose tasks are root's
        ((uid, uid), b, e.root),
        ((BOB[0], BOB[0]), b, c),  # someone else's process
        ((uid, 0), b, c),  # real uid alone
        ((0, uid), b, c),  # effective uid alone
    ]
    for target, source, dest in refused:
        with pytest.raises(ContainerError) as exc:
            e.check_move(uid, target, source, dest)
        assert exc.value.errno == errno.EPERM, (target, source, dest)
    # root moves anything
    e.check_move(0, BOB, None, r)


def test_by_cgpath_follows_renamed_containers() -> None:
    e = make_engine(frozenset())
    a = mkdir(e, e.root, "a")
    b = mkdir(e, a, "b")
    b.cgname = "b"
    lifecycle.commit_rename(e, b, "renamed")
    assert e.by_cgpath(()) is e.root
    assert e.by_cgpath(("a", "b")) is b
    assert e.by_cgpath(("a", "renamed")) is None
    assert e.by_cgpath(("nope",)) is None


def test_owners_are_saved_and_restored() -> None:
    e = make_engine(frozenset({"pids"}))
    a = mkdir(e, e.root, "a")
    e.chown(a, *ALICE)
    mkdir(e, a, "b", ALICE)
    records = json.loads(json.dumps([lifecycle.record(c, None) for c in e.root.walk()]))
    e2 = make_engine(frozenset({"pids"}))
    for rec in records:
        lifecycle.restore(e2, rec)
    a2 = e2.lookup(("a",))
    b2 = e2.lookup(("a", "b"))
    assert (a2.owner_ids, a2.admin_ids) == (ALICE, (0, 0))
    assert b2.owner_ids == b2.admin_ids == ALICE
    # a record from before ownership was saved: root's
    old = {k: v for k, v in records[1].items() if k not in ("owner", "admin")}
    e3 = make_engine(frozenset({"pids"}))
    lifecycle.restore(e3, records[0])
    assert lifecycle.restore(e3, old).owner_ids == (0, 0)
    # the root stays root's whatever its record says
    e4 = make_engine(frozenset({"pids"}))
    assert lifecycle.restore(e4, records[0] | {"owner": list(ALICE)}).owner_ids == (0, 0)
    with pytest.raises(ContainerError):
        lifecycle.restore(make_engine(), records[1] | {"path": ["x"], "owner": [-1, 0]})
