"""Clone discovery acts only on what is still true under the daemon's lock.

Its look at the kernel runs without the lock, so it can catch a ``tasks``
move half done: the process already in its new cgroup, not yet in its new
namespaces. Moving it on that stale sight would put its cgroup back where it
came from once the move finished (the stress test caught exactly that).
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest
import trio

from containerfs import discovery
from containerfs.discovery import Discovery
from containerfs.engine.tree import Container, Engine
from containerfs.kernel.holder import Holder
from tests.unit.test_engine import make_engine
from tests.unit.test_lifecycle import child

PID = 4242


class FakeCgroups:
    def __init__(self, procs: dict[tuple[str, ...], list[int]]) -> None:
        self._procs = procs
        self.moved: list[tuple[int, list[Path]]] = []

    def holds(self, pid: int, path: tuple[str, ...]) -> bool:
        return pid in self._procs.get(path, [])

    def move(self, pid: int, dirs: list[Path]) -> None:
        self.moved.append((pid, dirs))


class FakeDaemon:
    def __init__(self, engine: Engine, procs: dict[tuple[str, ...], list[int]]) -> None:
        self.engine = engine
        self.lock = trio.Lock()
        self.moving: dict[int, dict[str, object]] = {}
        self.cgroups = FakeCgroups(procs)

    def placement(self, c: Container) -> list[Path]:
        return [Path("/cg", *c.cgpath)]


def setup(
    monkeypatch: pytest.MonkeyPatch, inodes_of: dict[str, str]
) -> tuple[FakeDaemon, Container, Container]:
    e = make_engine()
    a = child(e, e.root, "a", {"uts": "100", "ipc": "101", "pids": "/b/a"})
    inodes = {k: int(e.root.ids[k]) for k in ("net", "pid", "mnt", "user", "cgroup", "time")}
    inodes |= {k: int(v) for k, v in inodes_of.items()}
    monkeypatch.setattr(discovery.procs, "process_inodes", lambda pid: dict(inodes))
    return FakeDaemon(e, {(): [PID]}), e.root, a


async def test_a_task_still_in_a_childs_namespaces_moves_into_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d, root, a = setup(monkeypatch, {"uts": "100", "ipc": "101"})
    await Discovery(d, None, None)._move(PID, root, a)  # type: ignore[arg-type]
    assert d.cgroups.moved == [(PID, [Path("/cg/a")])]


async def test_a_move_that_finished_meanwhile_is_not_undone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Seen in a's namespaces, but by now back in the root's (its move ended).
    root_ids = make_engine().root.ids
    d, root, a = setup(monkeypatch, {"uts": root_ids["uts"], "ipc": root_ids["ipc"]})
    await Discovery(d, None, None)._move(PID, root, a)  # type: ignore[arg-type]
    assert d.cgroups.moved == []


async def test_a_task_that_left_the_container_or_is_being_moved_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d, root, a = setup(monkeypatch, {"uts": "100", "ipc": "101"})
    d.moving[PID] = {"pid": PID}  # a deferred move under way
    await Discovery(d, None, None)._move(PID, root, a)  # type: ignore[arg-type]
    d.moving.clear()
    d.cgroups._procs = {("a",): [PID]}  # no longer in the root's cgroup
    await Discovery(d, None, None)._move(PID, root, a)  # type: ignore[arg-type]
    assert d.cgroups.moved == []


class FakeTables:
    def __init__(self) -> None:
        self.wanted: dict[object, int] = {}

    def nsfs_mounts(self, wanted: dict[object, int]) -> dict[object, list[tuple[str, int, str]]]:
        self.wanted = dict(wanted)
        return {}


def test_a_look_reads_no_tasks_of_containers_known_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only their tasks are skipped: an nsfs mount in their mount namespace outlives
    every task, so the mount table is still looked at."""
    _, root, a = setup(monkeypatch, {"uts": "100", "ipc": "101"})
    read: list[tuple[str, ...]] = []

    def cgroups_procs(path: tuple[str, ...]) -> list[int]:
        read.append(path)
        return [PID]

    snapshot: discovery.Snapshot = [(root, (), dict(root.ids), None), (a, ("a",), dict(a.ids), 77)]
    tables = FakeTables()
    look = discovery._look(
        snapshot,
        cgroups_procs,
        frozenset(),
        tables,  # type: ignore[arg-type]
        [],
        frozenset({a}),
    )
    assert read == [()]
    assert tables.wanted == {a: 77}
    assert list(look.tasks) == [root]  # PID is in a's uts and ipc, seen from the root
    read.clear()
    discovery._look(snapshot, cgroups_procs, frozenset(), tables, [], frozenset())  # type: ignore[arg-type]
    assert read == [(), ("a",)]


def _holder_of_a_child_process() -> tuple[Holder, subprocess.Popen[bytes]]:
    """A Holder over a process of our own (a pidfd needs no privilege for that)."""
    proc = subprocess.Popen(["sleep", "60"])
    return Holder(proc.pid, os.pidfd_open(proc.pid), {}), proc


async def test_a_holder_the_daemon_killed_is_not_reported_as_died(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """rmdir kills the holder on a worker thread and forgets the container only
    once back on the event loop: a look finishing in between saw the holder gone
    while still listed (mass rmdir logged "namespace holder ... died")."""
    d, _root, a = setup(monkeypatch, {})
    mine, other = _holder_of_a_child_process(), _holder_of_a_child_process()
    try:
        b = child(d.engine, d.engine.root, "b")
        d.holders = {a.uid: mine[0], b.uid: other[0]}  # type: ignore[attr-defined]
        mine[0].kill()  # what _destroy does; _forget has not run yet
        other[1].kill()  # b's holder dies on its own
        other[1].wait()
        look = discovery.Look({}, {}, [a, b])
        with caplog.at_level(logging.ERROR, logger="containerfs"):
            await Discovery(d, None, None)._lost_holders(look)  # type: ignore[arg-type]
        died = [r.getMessage() for r in caplog.records]
        assert died == [f"b: its namespace holder {other[1].pid} died"]
    finally:
        for holder, proc in (mine, other):
            holder.close()
            proc.kill()
            proc.wait()
