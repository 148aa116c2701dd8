"""Clone discovery acts only on what is still true under the daemon's lock.

Its look at the kernel runs without the lock, so it can catch a ``tasks``
move half done: the process already in its new cgroup, not yet in its new
namespaces. Moving it on that stale sight would put its cgroup back where it
came from once the move finished (the stress test caught exactly that).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from containerfs import discovery
from containerfs.discovery import Discovery
from containerfs.engine.kinds import Origin
from containerfs.engine.tree import Container
from containerfs.kernel.cgroups import TASKS
from containerfs.service.daemon import Daemon
from tests.unit.fakekernel import FakeHolder, FakeKernel, FakeMountTables

PID = 4242


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Daemon, FakeKernel, Container]]:
    """A daemon over the fake kernel, with child ``a`` owning uts, ipc and pids."""
    kernel = FakeKernel()
    d = Daemon.build(kernel, kernel.mountpoint, tmp_path, "+uts +ipc +pids")
    a = await d.mkdir(d.engine.root, "a")
    kernel.cgroups.moves.clear()  # its holder's placement
    yield d, kernel, a
    d.teardown()


def discovery_of(d: Daemon) -> Discovery:
    return Discovery(d.rt, d.containers, d.releases)


def start(kernel: FakeKernel, a: Container, in_a: bool) -> None:
    """PID, a task of the root, in ``a``'s uts and ipc namespaces or not."""
    inodes = dict(kernel.root_inodes)
    if in_a:
        inodes |= {k: int(a.ids[k]) for k in ("uts", "ipc")}
    kernel.start(PID, inodes=inodes)


async def test_a_task_still_in_a_childs_namespaces_moves_into_it(
    world: tuple[Daemon, FakeKernel, Container],
) -> None:
    d, kernel, a = world
    start(kernel, a, in_a=True)
    await discovery_of(d)._move(PID, d.engine.root, a)
    assert kernel.cgroups.moves == [(PID, d.rt.placement(a))]
    assert kernel.cgroups.rel(PID) == ("a", TASKS)


async def test_a_move_that_finished_meanwhile_is_not_undone(
    world: tuple[Daemon, FakeKernel, Container],
) -> None:
    # Seen in a's namespaces, but by now back in the root's (its move ended).
    d, kernel, a = world
    start(kernel, a, in_a=False)
    await discovery_of(d)._move(PID, d.engine.root, a)
    assert kernel.cgroups.moves == []


async def test_a_task_that_left_the_container_or_is_being_moved_stays(
    world: tuple[Daemon, FakeKernel, Container],
) -> None:
    d, kernel, a = world
    start(kernel, a, in_a=True)
    d.rt.moving[PID] = {"pid": PID}  # a deferred move under way
    await discovery_of(d)._move(PID, d.engine.root, a)
    d.rt.moving.clear()
    kernel.cgroups.place(PID, ("b",))  # no longer in the root's cgroup
    await discovery_of(d)._move(PID, d.engine.root, a)
    assert kernel.cgroups.moves == []


async def test_a_look_reads_no_tasks_of_containers_known_empty(
    world: tuple[Daemon, FakeKernel, Container],
) -> None:
    """Only their tasks are skipped: an nsfs mount in their mount namespace outlives
    every task, so the mount table is still looked at."""
    d, kernel, a = world
    root = d.engine.root
    start(kernel, a, in_a=True)
    kernel.cgroups.place(PID + 1, a.cgpath)
    read = kernel.cgroups.procs_read
    read.clear()
    snapshot: discovery.Snapshot = [(root, (), dict(root.ids), None), (a, ("a",), dict(a.ids), 77)]
    tables = FakeMountTables()
    look = discovery._look(snapshot, kernel, frozenset(), tables, [], frozenset({a}))
    assert read == [()]
    assert tables.wanted == {a: 77}
    assert list(look.tasks) == [root]  # PID is in a's uts and ipc, seen from the root
    read.clear()
    discovery._look(snapshot, kernel, frozenset(), tables, [], frozenset())
    assert read == [(), ("a",)]


async def test_a_holder_the_daemon_killed_is_not_reported_as_died(
    world: tuple[Daemon, FakeKernel, Container], caplog: pytest.LogCaptureFixture
) -> None:
    """rmdir kills the holder on a worker thread and forgets the container only
    once back on the event loop: a look finishing in between saw the holder gone
    while still listed (mass rmdir logged "namespace holder ... died")."""
    d, _kernel, a = world
    b = await d.mkdir(d.engine.root, "b")
    mine, other = d.rt.holders[a.uid], d.rt.holders[b.uid]
    assert isinstance(mine, FakeHolder) and isinstance(other, FakeHolder)
    mine.kill()  # what destroy does; forget has not run yet
    other.die()  # b's holder dies on its own
    look = discovery.Look({}, {}, [a, b])
    with caplog.at_level(logging.ERROR, logger="containerfs"):
        await discovery_of(d)._lost_holders(look)
    died = [r.getMessage() for r in caplog.records]
    assert died == [f"b: its namespace holder {other.pid} died"]


async def test_a_task_that_unshared_a_namespace_becomes_a_clone_container(
    world: tuple[Daemon, FakeKernel, Container],
) -> None:
    """A look finds a task of ``a`` in a uts namespace no container has: a child of
    ``a`` is made for it, whose holder joins that namespace, and the task moves in."""
    d, kernel, a = world
    inodes = dict(kernel.process_inodes(d.rt.holders[a.uid].pid))
    inodes["uts"] = 7777  # what `unshare -u` made
    kernel.start(PID, inodes=inodes, cgroup=a.cgpath, comm="unshare")
    await discovery_of(d).once()
    clone = a.children[f"unshare-{PID}"]
    assert clone.origin == Origin.CLONE and "uts" in clone.owned
    assert clone.ids["uts"] == "7777"
    spawned = kernel.spawned[-1]
    assert spawned.joined == {"uts"} and "uts" not in spawned.unshare
    assert spawned.holder.inodes["uts"] == 7777
    assert kernel.cgroups.rel(PID) == ("a", f"unshare-{PID}", TASKS)
    assert clone.populated
