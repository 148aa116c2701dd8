"""Lifecycle decisions on their own: release, clone discovery, rename, saved state."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from containerfs.engine import lifecycle
from containerfs.engine.catalog import IPC_KNOBS
from containerfs.engine.errors import ContainerError
from containerfs.engine.kinds import Origin, Release
from containerfs.engine.tree import Container, Engine
from containerfs.engine.views import KnobState
from containerfs.kernel.watch import Watcher, parse_events
from tests.unit.test_engine import make_engine


def child(e: Engine, parent: Container, name: str, ids: dict[str, str] | None = None) -> Container:
    plan = e.plan_mkdir(parent, name)
    return e.commit_mkdir(plan, ids or {"uts": f"9{len(name)}", "ipc": "8", "pids": "/b"})


# -- release ---------------------------------------------------------------------


def test_release_needs_a_task_first_then_acts_once() -> None:
    e = make_engine()
    c = child(e, e.root, "web")
    c.release = Release.DELETE
    assert lifecycle.take_release(c) is None  # never had a task
    lifecycle.observe_populated(c, True)
    assert lifecycle.take_release(c) is None  # still has it
    lifecycle.observe_populated(c, False)
    assert lifecycle.take_release(c) == Release.DELETE
    assert c.released == 1
    assert lifecycle.take_release(c) is None  # one emptying, one action
    lifecycle.observe_populated(c, True)
    lifecycle.observe_populated(c, False)
    assert lifecycle.take_release(c) == Release.DELETE
    assert c.released == 2


def test_release_waits_for_children_and_fires_when_the_last_goes() -> None:
    e = make_engine()
    parent = child(e, e.root, "a")
    parent.release = Release.NOTIFY
    kid = child(e, parent, "b")
    lifecycle.observe_populated(parent, True)
    lifecycle.observe_populated(kid, True)
    lifecycle.observe_populated(kid, False)
    lifecycle.observe_populated(parent, False)
    assert lifecycle.take_release(parent) is None  # a child is left
    assert lifecycle.take_release(kid) == Release.IGNORE
    e.commit_rmdir(kid)
    assert lifecycle.take_release(parent) == Release.NOTIFY


def test_a_held_clone_is_not_released_and_the_root_never_is() -> None:
    e = make_engine()
    plan = e.plan_mkdir(e.root, "netns-x")
    c = e.commit_mkdir(plan, {"net": "77"}, Origin.CLONE)
    assert c.release == Release.DELETE and c.occupied
    c.held = True
    assert lifecycle.take_release(c) is None
    c.held = False
    assert lifecycle.take_release(c) == Release.DELETE
    e.root.occupied = True
    assert lifecycle.take_release(e.root) is None


# -- clone discovery ---------------------------------------------------------------


def test_differing_and_child_for_pick_the_most_specific_child() -> None:
    e = make_engine()
    web = child(e, e.root, "web", {"uts": "100", "ipc": "101", "pids": "/b/web"})
    inodes = {k: int(e.root.ids[k]) for k in ("net", "pid", "mnt", "user", "cgroup", "time")}
    inodes |= {"uts": 100, "ipc": 101}
    assert lifecycle.differing(web, inodes) == {}
    inodes["net"] = 555
    diff = lifecycle.differing(web, inodes)
    assert diff == {"net": "555"}
    assert lifecycle.child_for(web, diff) is None
    plan = lifecycle.plan_clone(e, web, "sh", 1, ["net"])
    one = e.commit_mkdir(plan, {"net": "555"}, Origin.CLONE)
    assert lifecycle.child_for(web, diff) is one
    plan = lifecycle.plan_clone(e, web, "sh", 2, ["net", "uts"])
    two = e.commit_mkdir(plan, {"net": "555", "uts": "556"}, Origin.CLONE)
    assert lifecycle.child_for(web, {"net": "555", "uts": "556"}) is two
    assert lifecycle.child_for(web, {"net": "555"}) is one


def test_namespaces_known_elsewhere_are_not_new() -> None:
    e = make_engine()
    a = child(e, e.root, "a", {"uts": "100", "ipc": "101", "pids": "/b/a"})
    b = child(e, e.root, "b", {"uts": "200", "ipc": "201", "pids": "/b/b"})
    index = lifecycle.namespace_index(e.root)
    assert index[("uts", "200")] is b
    # a task of a that joined b's uts namespace: not a new container
    assert lifecycle.unknown_kinds({"uts": "200"}, index) == {}
    assert lifecycle.unknown_kinds({"uts": "999", "ipc": "101"}, index) == {"uts": "999"}
    assert a.name == "a"


def test_clone_names_stay_unique_on_pid_reuse_and_are_safe() -> None:
    e = make_engine()
    web = child(e, e.root, "web")
    assert lifecycle.clone_name(web, "bash", 42) == "bash-42"
    e.commit_mkdir(e.plan_mkdir(web, "bash-42"), {"net": "1"}, Origin.CLONE)
    assert lifecycle.clone_name(web, "bash", 42) == "bash-42.2"
    assert lifecycle.clone_name(web, "my prog/x", 7) == "my_prog_x-7"
    assert lifecycle.clone_name(web, ".hidden", 7) == "hidden-7"
    assert lifecycle.clone_name(web, "foo", None) == "foo"


def test_plan_clone_is_bounded() -> None:
    e = make_engine()
    plan = lifecycle.plan_clone(e, e.root, "sh", 1, ["net"], max_clones=1)
    assert plan.owned == {"net"}
    e.commit_mkdir(plan, {"net": "5"}, Origin.CLONE)
    with pytest.raises(ContainerError) as exc:
        lifecycle.plan_clone(e, e.root, "sh", 2, ["net"], max_clones=1)
    assert exc.value.errno == errno.EBUSY


# -- rename --------------------------------------------------------------------


def test_rename_within_the_parent_only() -> None:
    e = make_engine()
    a = child(e, e.root, "a")
    b = child(e, e.root, "b")
    kid = child(e, a, "kid")
    for parent, name, code in (
        (b, "kid", errno.EINVAL),  # another parent
        (a, "bad name", errno.EINVAL),
        (e.root, "b", errno.EEXIST),
        (e.root, "tasks", errno.EEXIST),
    ):
        target = kid if parent is b or parent is a else a
        with pytest.raises(ContainerError) as exc:
            lifecycle.check_rename(e, target, parent, name)
        assert exc.value.errno == code, (parent.name, name)
    lifecycle.check_rename(e, kid, a, "renamed")
    lifecycle.commit_rename(e, kid, "renamed")
    assert e.lookup(("a", "renamed")) is kid and "kid" not in a.children
    with pytest.raises(ContainerError):
        lifecycle.check_rename(e, e.root, e.root, "x")


def test_a_renamed_container_keeps_its_cgroup_name_and_a_new_one_gets_another() -> None:
    e = make_engine()
    a = child(e, e.root, "a")
    assert a.cgpath == ("a",)
    a.cgname = a.name  # what the daemon does before renaming
    lifecycle.commit_rename(e, a, "b")
    assert a.path == ("b",) and a.cgpath == ("a",)
    again = child(e, e.root, "a")
    assert again.cgpath == ("a~2",)
    kid = child(e, a, "k")
    assert kid.path == ("b", "k") and kid.cgpath == ("a", "k")


# -- saved state -------------------------------------------------------------------


def test_state_round_trips_through_json() -> None:
    e = make_engine()
    web = child(e, e.root, "web", {"uts": "100", "ipc": "101", "pids": "/b/web"})
    web.release = Release.NOTIFY
    web.subtree = frozenset({"uts"})
    web.released = 3
    web.occupied = True
    web.views["ipc.sem"] = KnobState((1, 2, 3, 4), (5, 6, 7, 8))
    web.views["ipc.shm_mni"] = KnobState((100,), None)
    clone = e.commit_mkdir(e.plan_mkdir(web, "sh-9"), {"net": "555"}, Origin.CLONE)
    records = json.loads(
        json.dumps([lifecycle.record(c, 1234) for c in e.root.walk()])
    )  # through JSON, as on disk
    e2 = make_engine()
    for rec in records:
        lifecycle.restore(e2, rec)
    web2 = e2.lookup(("web",))
    assert web2.release == Release.NOTIFY and web2.subtree == {"uts"}
    assert web2.released == 3 and web2.occupied
    assert web2.ids == web.ids and web2.owned == web.owned
    assert web2.views["ipc.sem"] == KnobState((1, 2, 3, 4), (5, 6, 7, 8))
    assert web2.views["ipc.shm_mni"].external is None
    clone2 = e2.lookup(("web", "sh-9"))
    assert clone2.origin == Origin.CLONE and clone2.release == clone.release
    assert IPC_KNOBS  # knobs exist for the views restored above


def test_restore_refuses_records_that_do_not_fit() -> None:
    e = make_engine()
    rec = lifecycle.record(child(e, e.root, "web"), None)
    e2 = make_engine()
    with pytest.raises(ContainerError):  # no parent
        lifecycle.restore(e2, rec | {"path": ["nope", "web"]})
    with pytest.raises(ContainerError):
        lifecycle.restore(e2, rec | {"owned": ["warp-drive"]})
    lifecycle.restore(e2, rec)
    with pytest.raises(ContainerError):  # twice
        lifecycle.restore(e2, rec)
    with pytest.raises(ValueError):
        lifecycle.restore(e2, rec | {"path": ["other"], "release": "forever"})


# -- parsing kernel text ----------------------------------------------------------


def test_parse_inotify_events() -> None:
    import struct

    buf = struct.pack("iIII", 1, 2, 0, 0) + struct.pack("iIII", 3, 0x8000, 0, 16) + b"\0" * 16
    buf += struct.pack("iIII", 4, 2, 0, 0)
    assert parse_events(buf) == [(1, 2), (3, 0x8000), (4, 2)]


async def test_watcher_changed_survives_a_cancelled_wait(tmp_path: Path) -> None:
    """The daemon cancels its wait at shutdown, possibly mid-way: the watcher keeps
    working and nothing is left for the garbage collector to finalise."""
    import trio

    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("")
    b.write_text("")
    w: Watcher[str] = Watcher()
    try:
        w.add("a", a)
        w.add("b", b)
        with trio.move_on_after(0.05) as scope:
            await w.changed()  # nothing written yet
        assert scope.cancelled_caught
        b.write_text("x")
        with trio.fail_after(5):
            assert await w.changed() == {"b"}
        w.remove("b")
        b.write_text("y")
        a.write_text("z")
        with trio.fail_after(5):
            assert await w.changed() == {"a"}
    finally:
        w.close()


def test_watcher_overflow_names_every_key_and_ignored_forgets_one(tmp_path: Path) -> None:
    from containerfs.kernel import sys as ksys

    w: Watcher[str] = Watcher()
    try:
        for name in ("a", "b"):
            (tmp_path / name).write_text("")
            w.add(name, tmp_path / name)
        wd_a = w._wds["a"]
        assert w.keys_of([(wd_a, ksys.IN_MODIFY), (999, ksys.IN_MODIFY)]) == {"a"}
        assert w.keys_of([(-1, ksys.IN_Q_OVERFLOW)]) == {"a", "b"}  # events were lost
        assert w.keys_of([(wd_a, ksys.IN_IGNORED)]) == set()  # its file went away
        assert "a" not in w and "b" in w
        assert w.keys_of([(-1, ksys.IN_Q_OVERFLOW)]) == {"b"}
    finally:
        w.close()


def test_freed_by_removal_lists_kinds_no_other_owner_below_keeps() -> None:
    e = make_engine()
    a = child(e, e.root, "a")
    x = child(e, e.root, "x")
    a.subtree = frozenset({"uts", "memory"})
    b = child(e, a, "b")
    assert b.owned == {"uts", "memory"} and x.owned == {"uts", "ipc", "pids"}
    got = [(n.name or "/", set(kinds)) for n, kinds in lifecycle.freed_by_removal(b)]
    # a keeps nothing of b's below it; above a, only memory had no other owner
    assert got == [("a", {"uts", "memory"}), ("/", {"memory"})]
    c = child(e, a, "c")  # a sibling owning the same kinds: nothing is freed anywhere
    assert lifecycle.freed_by_removal(b) == []
    assert lifecycle.freed_by_removal(c) == []
    assert lifecycle.freed_by_removal(x) == []  # a owns all that x owns


def test_freed_by_removal_agrees_with_its_definition_on_random_trees() -> None:
    """Against a walk of everything below each ancestor (what it spares doing)."""
    import random

    kinds = ("uts", "ipc", "pids", "memory", "net")
    for seed in range(40):
        rng = random.Random(seed)
        e = make_engine()
        nodes = [e.root]
        for i in range(rng.randrange(2, 25)):
            c = child(e, rng.choice(nodes), f"n{i}")
            c.owned = frozenset(k for k in kinds if rng.random() < 0.3)
            nodes.append(c)
        leaves = [c for c in nodes[1:] if not c.children]
        gone = rng.choice(leaves)
        expected = []
        node = gone.parent
        while node is not None:
            others = {k for d in node.walk() if d not in (node, gone) for k in d.owned}
            freed = gone.owned - others
            if not freed:
                break
            expected.append((node, freed))
            node = node.parent
        assert lifecycle.freed_by_removal(gone) == expected, seed
