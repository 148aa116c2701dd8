"""The service driven as the FUSE adapter drives it, against a kernel in memory.

A real ``Daemon`` (engine, runtime, every part, a state dir) over
``fakekernel.FakeKernel``: what each request asks of the kernel, and what it
leaves there when the request is refused, is read back from the fake. No root
needed; the integration tier checks the same against the real kernel.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Iterator
from pathlib import Path

import pytest
import trio

from containerfs import statefile
from containerfs.engine.tree import Container
from containerfs.fuse.errors import to_errno
from containerfs.kernel.cgroups import PINS, TASKS
from containerfs.kernel.system import Kernel
from containerfs.service.daemon import Daemon
from tests.unit.fakekernel import FakeHolder, FakeKernel

#: The root's subtree: every container made below it owns these.
SUBTREE = "+uts +ipc +mnt +cgroup +pids +memory"


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel()


@pytest.fixture
def daemon(kernel: FakeKernel, tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon.build(kernel, kernel.mountpoint, tmp_path, SUBTREE)
    d.store.save()  # as start-up does
    yield d
    d.teardown()


async def write(d: Daemon, c: Container, name: str, text: str, pid: int = 0, uid: int = 0) -> None:
    """A write as the adapter makes it: the file's spec from the engine, then the service."""
    await d.write(c, d.engine.file(c, name), text.encode(), pid, uid)


async def read(d: Daemon, c: Container, name: str) -> str:
    return (await d.read(c, d.engine.file(c, name), 0)).decode()


async def refused(errno_: int, request: Awaitable[object]) -> None:
    """Await ``request``; it must fail with what the adapter turns into ``errno_``."""
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the errno is the check
        await request
    assert to_errno(caught.value) == errno_, caught.value


def holder_of(d: Daemon, c: Container) -> FakeHolder:
    holder = d.rt.holders[c.uid]
    assert isinstance(holder, FakeHolder)
    return holder


def saved(state_dir: Path) -> dict[tuple[str, ...], dict[str, object]]:
    """The containers the state dir records (snapshot and journal), by path."""
    state = statefile.load(state_dir)
    assert state is not None
    return {tuple(r["path"]): r for r in state["containers"]}


# -- mkdir -----------------------------------------------------------------------------


async def test_mkdir_makes_the_cgroups_and_a_holder_that_unshares_the_owned_kinds(
    daemon: Daemon, kernel: FakeKernel, tmp_path: Path
) -> None:
    root = daemon.engine.root
    c = await daemon.mkdir(root, "c")
    assert root.children["c"] is c
    assert c.owned == {"uts", "ipc", "mnt", "cgroup", "pids", "memory"}
    assert kernel.cgroups.created == [(("c",), frozenset({"pids", "memory"}))]
    [spawned] = kernel.spawned
    assert spawned.unshare == {"uts", "ipc", "mnt", "cgroup"}
    assert spawned.parent is None  # the root's namespaces are the daemon's own
    holder = spawned.holder
    assert daemon.rt.holders[c.uid] is holder
    assert {k: c.ids[k] for k in ("uts", "ipc", "cgroup")} == {
        k: str(holder.inodes[k]) for k in ("uts", "ipc", "cgroup")
    }
    # It unshared its cgroup namespace in c's cgroup, then left for the holders' own:
    # a holder is no task of c.
    assert kernel.cgroups.rel(holder.pid) == (PINS,)
    assert kernel.cgroups.procs(("c",)) == []
    # A view starts at the new namespace's own value.
    assert await read(daemon, c, "ipc.shm_mni.internal") == "4096\n"
    record = saved(tmp_path)[("c",)]
    assert record["holder"] == holder.pid
    assert record["ids"] == c.ids


async def test_a_child_of_a_container_gets_a_holder_in_its_parents_namespaces(
    daemon: Daemon, kernel: FakeKernel
) -> None:
    c = await daemon.mkdir(daemon.engine.root, "c")
    await write(daemon, c, "container.subtree", "+uts")
    g = await daemon.mkdir(c, "g")
    spawned = kernel.spawned[-1]
    assert spawned.unshare == {"uts"}
    assert spawned.parent is holder_of(daemon, c)
    assert spawned.holder.inodes["ipc"] == holder_of(daemon, c).inodes["ipc"]
    assert g.instance_id("ipc") == c.ids["ipc"]


async def test_a_mkdir_whose_holder_fails_leaves_no_cgroup_and_no_container(
    daemon: Daemon, kernel: FakeKernel, tmp_path: Path
) -> None:
    kernel.faults.spawn = OSError(errno.EAGAIN, "no holder today")
    await refused(errno.EAGAIN, daemon.mkdir(daemon.engine.root, "c"))
    assert kernel.cgroups.removed == [("c",)]
    assert ("c",) not in kernel.cgroups.dirs
    assert "c" not in daemon.engine.root.children
    assert ("c",) not in saved(tmp_path)


async def test_a_holder_is_charged_to_its_ancestors_pids_max(
    daemon: Daemon, kernel: FakeKernel
) -> None:
    c = await daemon.mkdir(daemon.engine.root, "c")
    await write(daemon, c, "container.subtree", "+uts")
    await write(daemon, c, "pids.max", "1")  # c's own holder fills it already
    await refused(errno.EAGAIN, daemon.mkdir(c, "g"))
    assert len(kernel.spawned) == 1
    assert "g" not in c.children
    await write(daemon, c, "pids.max", "2")
    await daemon.mkdir(c, "g")
    assert len(kernel.spawned) == 2


# -- the views of a namespace knob --------------------------------------------------


async def test_lowering_the_external_view_lowers_the_kernels_value(
    daemon: Daemon, kernel: FakeKernel
) -> None:
    c = await daemon.mkdir(daemon.engine.root, "c")
    holder = holder_of(daemon, c)
    await write(daemon, c, "ipc.shm_mni", "100")
    assert kernel.sysctl(holder, "ipc", "kernel.shmmni") == "100\n"
    assert await read(daemon, c, "ipc.shm_mni") == "100\n"
    assert await read(daemon, c, "ipc.shm_mni.internal") == "4096\n"
    assert await read(daemon, c, "ipc.shm_mni.effective") == "100\n"
    # The daemon's own namespace is not touched.
    assert kernel.sysctl(None, "ipc", "kernel.shmmni") == "4096\n"
    # Lifted again: the container's own value is back in force.
    await write(daemon, c, "ipc.shm_mni", "max")
    assert kernel.sysctl(holder, "ipc", "kernel.shmmni") == "4096\n"


@pytest.mark.parametrize("value", ["0", "abc", "1 2", str(1 << 16)])
async def test_a_bad_view_value_changes_nothing(
    daemon: Daemon, kernel: FakeKernel, value: str
) -> None:
    c = await daemon.mkdir(daemon.engine.root, "c")
    await refused(errno.EINVAL, write(daemon, c, "ipc.shm_mni", value))
    assert kernel.sysctl(holder_of(daemon, c), "ipc", "kernel.shmmni") == "4096\n"
    assert await read(daemon, c, "ipc.shm_mni") == "max\n"
    assert await read(daemon, c, "ipc.shm_mni.effective") == "4096\n"


async def test_a_view_write_the_kernel_refuses_puts_the_effective_value_back(
    daemon: Daemon, kernel: FakeKernel
) -> None:
    """The kernel may store part of a value it refuses (kernel.sem): the fake
    stores all of it, and the old effective value must be written back."""
    c = await daemon.mkdir(daemon.engine.root, "c")
    holder = holder_of(daemon, c)
    await write(daemon, c, "ipc.shm_mni", "100")
    kernel.faults.sysctl["kernel.shmmni"] = {"50"}
    await refused(errno.EINVAL, write(daemon, c, "ipc.shm_mni", "50"))
    assert kernel.sysctl(holder, "ipc", "kernel.shmmni") == "100\n"
    assert await read(daemon, c, "ipc.shm_mni") == "100\n"


# -- tasks --------------------------------------------------------------------------


async def test_a_task_moves_into_the_cgroups_and_namespaces(
    daemon: Daemon, kernel: FakeKernel
) -> None:
    """What the refusals below are refusals of."""
    c = await daemon.mkdir(daemon.engine.root, "c")
    kernel.start(1000)
    kernel.start(999)  # the writer, a root shell
    await write(daemon, c, "tasks", "1000", pid=999)
    assert kernel.cgroups.rel(1000) == ("c", TASKS)
    holder = holder_of(daemon, c)
    moved = {k: holder.inodes[k] for k in ("mnt", "cgroup", "ipc", "uts")}
    assert kernel.moved_into == [(1000, moved)]
    assert await read(daemon, c, "tasks") == "1000\n"


async def test_a_user_cannot_move_a_process_it_does_not_own(
    daemon: Daemon, kernel: FakeKernel
) -> None:
    p = await daemon.mkdir(daemon.engine.root, "p")
    await daemon.chown(p, 1000, 1000)
    a = await daemon.mkdir(p, "a", (1000, 1000))
    b = await daemon.mkdir(p, "b", (1000, 1000))
    inodes = holder_of(daemon, p).inodes
    kernel.start(1001, uid=1000)  # the writer
    kernel.start(2000, uid=2000, inodes=inodes, cgroup=a.cgpath)
    kernel.start(2001, uid=1000, inodes=inodes, cgroup=a.cgpath)
    await refused(errno.EPERM, write(daemon, b, "tasks", "2000", pid=1001, uid=1000))
    assert kernel.cgroups.rel(2000) == ("p", "a", TASKS)
    await write(daemon, b, "tasks", "2001", pid=1001, uid=1000)  # its own: moves
    assert kernel.cgroups.rel(2001) == ("p", "b", TASKS)


async def test_a_holder_of_the_daemon_is_no_task(daemon: Daemon, kernel: FakeKernel) -> None:
    c = await daemon.mkdir(daemon.engine.root, "c")
    d = await daemon.mkdir(daemon.engine.root, "d")
    pid = holder_of(daemon, c).pid
    kernel.start(999)
    for into in (d, daemon.engine.root, c):
        await refused(errno.EINVAL, write(daemon, into, "tasks", str(pid), pid=999))
        assert kernel.cgroups.rel(pid) == (PINS,)
    assert kernel.moved_into == []


async def test_a_running_process_cannot_be_moved_into_a_pid_namespace(
    daemon: Daemon, kernel: FakeKernel
) -> None:
    await write(daemon, daemon.engine.root, "container.subtree", "+pid")
    c = await daemon.mkdir(daemon.engine.root, "c")
    assert "pid" in kernel.spawned[-1].unshare
    kernel.start(1000)
    kernel.start(999)
    await refused(errno.EINVAL, write(daemon, c, "tasks", "1000", pid=999))
    assert kernel.cgroups.rel(1000) == (TASKS,)
    assert kernel.process_inodes(1000) == kernel.root_inodes
    assert kernel.moved_into == []


async def test_a_failed_namespace_move_puts_the_cgroups_back(
    daemon: Daemon, kernel: FakeKernel, tmp_path: Path
) -> None:
    c = await daemon.mkdir(daemon.engine.root, "c")
    kernel.start(1000)
    kernel.start(999)
    kernel.faults.move_into = OSError(errno.EPERM, "not today")
    await refused(errno.EPERM, write(daemon, c, "tasks", "1000", pid=999))
    assert kernel.cgroups.rel(1000) == (TASKS,)
    assert kernel.process_inodes(1000) == kernel.root_inodes
    state = statefile.load(tmp_path)
    assert state is not None and state["moving"] == []  # the move is not left to undo


async def test_a_process_that_writes_its_own_pid_moves_once_the_write_is_answered(
    daemon: Daemon, kernel: FakeKernel, tmp_path: Path
) -> None:
    """``echo $$ > tasks``: the writer is blocked in its write, so its namespace move
    finishes in a task of its own, after the answer."""
    c = await daemon.mkdir(daemon.engine.root, "c")
    kernel.start(1000)
    async with trio.open_nursery() as nursery:
        daemon.rt.nursery = nursery
        await write(daemon, c, "tasks", "1000", pid=1000)
    daemon.rt.nursery = None
    assert kernel.cgroups.rel(1000) == ("c", TASKS)
    assert [pid for pid, _ in kernel.moved_into] == [1000]
    state = statefile.load(tmp_path)
    assert state is not None and state["moving"] == []


async def test_a_deferred_move_that_fails_puts_the_cgroups_back_and_says_so(
    daemon: Daemon, kernel: FakeKernel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The write was answered already; the process must not run on in cgroups whose
    namespaces it never joined."""
    c = await daemon.mkdir(daemon.engine.root, "c")
    kernel.start(1000)
    kernel.faults.move_into = OSError(errno.EPERM, "not today")
    answered = trio.Event()
    kernel.faults.after_seized = lambda: trio.from_thread.run(answered.wait)
    async with trio.open_nursery() as nursery:
        daemon.rt.nursery = nursery
        await write(daemon, c, "tasks", "1000", pid=1000)  # answered: the move goes on
        answered.set()
    daemon.rt.nursery = None
    assert kernel.cgroups.rel(1000) == (TASKS,)
    assert "moving 1000 into namespaces failed after the write" in caplog.text
    state = statefile.load(tmp_path)
    assert state is not None and state["moving"] == []


# -- release ------------------------------------------------------------------------


async def test_a_delete_container_is_removed_once_its_last_task_is_gone(
    daemon: Daemon, kernel: FakeKernel, tmp_path: Path
) -> None:
    root = daemon.engine.root
    c = await daemon.mkdir(root, "c")
    holder = holder_of(daemon, c)
    await write(daemon, c, "container.release", "delete")
    kernel.start(1000)
    kernel.start(999)
    await write(daemon, c, "tasks", "1000", pid=999)
    await daemon.releases.refresh_populated(c)
    assert not c.removed  # it has a task
    kernel.exit(1000)
    await daemon.releases.refresh_populated(c)
    assert c.removed and "c" not in root.children
    assert kernel.cgroups.removed == [("c",)] and ("c",) not in kernel.cgroups.dirs
    assert holder.killed and holder.closed
    assert c.uid not in daemon.rt.holders
    assert ("c",) not in saved(tmp_path)


async def test_an_emptied_container_that_never_had_a_task_stays(
    daemon: Daemon, kernel: FakeKernel
) -> None:
    c = await daemon.mkdir(daemon.engine.root, "c")
    await write(daemon, c, "container.release", "delete")
    await daemon.releases.refresh_populated(c)
    assert not c.removed and not holder_of(daemon, c).killed


async def test_a_notify_container_queues_the_release_agent(
    daemon: Daemon, kernel: FakeKernel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = tmp_path / "agent"
    agent.write_text("#!/bin/sh\n")
    agent.chmod(0o755)
    root = daemon.engine.root
    await write(daemon, root, "release_agent", str(agent))
    queued: list[str] = []
    monkeypatch.setattr(daemon.releases.agents, "notify", lambda nursery, at: queued.append(at))
    c = await daemon.mkdir(root, "c")
    await write(daemon, c, "container.release", "notify")
    kernel.start(1000)
    kernel.start(999)
    async with trio.open_nursery() as nursery:
        daemon.rt.nursery = nursery
        await write(daemon, c, "tasks", "1000", pid=999)
        kernel.exit(1000)
        await daemon.releases.refresh_populated(c)
        nursery.cancel_scope.cancel()
    daemon.rt.nursery = None
    assert queued == ["/c"]
    assert not c.removed and c.released == 1
    assert await read(daemon, c, "container.events") == "populated 0\nreleased 1\n"


# -- rmdir and rename --------------------------------------------------------------


async def test_rmdir_of_a_container_with_a_task_is_refused_and_removes_nothing(
    daemon: Daemon, kernel: FakeKernel
) -> None:
    root = daemon.engine.root
    c = await daemon.mkdir(root, "c")
    holder = holder_of(daemon, c)
    kernel.start(1000, inodes=holder.inodes, cgroup=c.cgpath)
    await refused(errno.EBUSY, daemon.rmdir(c))
    assert root.children["c"] is c and not c.removed
    assert ("c",) in kernel.cgroups.dirs and kernel.cgroups.removed == []
    assert not holder.killed and daemon.rt.holders[c.uid] is holder
    kernel.exit(1000)
    await daemon.rmdir(c)
    assert "c" not in root.children
    assert kernel.cgroups.removed == [("c",)]
    assert holder.killed and holder.closed
    # Nothing below the root owns pids or memory now: the root hands them down no more.
    [(at, freed)] = kernel.cgroups.trimmed
    assert at == () and {"pids", "memory"} <= freed


async def test_a_renamed_container_keeps_its_cgroup(
    daemon: Daemon, kernel: FakeKernel, tmp_path: Path
) -> None:
    root = daemon.engine.root
    c = await daemon.mkdir(root, "c")
    await daemon.rename(c, root, "d")
    assert root.children["d"] is c and "c" not in root.children
    assert c.cgpath == ("c",)
    assert kernel.cgroups.created == [(("c",), frozenset({"pids", "memory"}))]
    kernel.start(1000)
    kernel.start(999)
    await write(daemon, c, "tasks", "1000", pid=999)
    assert kernel.cgroups.rel(1000) == ("c", TASKS)
    records = saved(tmp_path)
    assert ("c",) not in records and records[("d",)]["cgname"] == "c"


# -- metrics -------------------------------------------------------------------------


async def test_metrics_show_the_limits_written_and_the_processes_placed(
    daemon: Daemon, kernel: FakeKernel
) -> None:
    root = daemon.engine.root
    c = await daemon.mkdir(root, "c")
    await write(daemon, c, "pids.max", "7")
    await write(daemon, c, "ipc.shm_mni", "5")
    kernel.cgroups.place(4321, ("c",))
    text = await read(daemon, root, "metrics")
    c_id = f'container="/c",id="{kernel.cgroups.cgroup_of(("c",))}"'
    assert f"containerfs_pids_limit{{{c_id}}} 7\n" in text
    assert f"containerfs_memory_limit_bytes{{{c_id}}} +Inf\n" in text
    assert f"containerfs_processes{{{c_id}}} 1\n" in text
    assert f"containerfs_pids_current{{{c_id}}} 1\n" in text
    assert 'containerfs_ipc_shm_mni{container="/c",view="effective"} 5\n' in text
    assert "containerfs_containers 1\n" in text
    # a view written again shows at the next read (the knob lines are not kept stale)
    await write(daemon, c, "ipc.shm_mni", "6")
    text = await read(daemon, root, "metrics")
    assert 'containerfs_ipc_shm_mni{container="/c",view="effective"} 6\n' in text
    kernel.cgroups.exit(4321)
    await daemon.rmdir(c)
    text = await read(daemon, root, "metrics")
    assert 'container="/c"' not in text and "containerfs_containers 0\n" in text


def test_the_fake_kernel_answers_every_kernel_call() -> None:
    """A ``Kernel`` method the fake does not override would reach the real kernel
    from the unit tier (and fail without root, or touch the host with it)."""
    calls = {name for name in vars(Kernel) if not name.startswith("_")}
    assert calls - set(vars(FakeKernel)) == set()


# -- container.claim (OCI) -------------------------------------------------------------


async def oci_web(daemon: Daemon) -> Container:
    """``oci/web``, owning controllers only (as the OCI front end makes it)."""
    root = daemon.engine.root
    await write(daemon, root, "container.subtree", "-uts -ipc -mnt -cgroup")
    oci = await daemon.mkdir(root, "oci")
    await write(daemon, oci, "container.subtree", "+pids +memory")
    return await daemon.mkdir(oci, "web")


async def test_a_claim_makes_a_holder_join_the_processs_namespaces(
    daemon: Daemon, kernel: FakeKernel
) -> None:
    web = await oci_web(daemon)
    assert not kernel.spawned  # owning controllers only, no holder
    inodes = kernel.root_inodes | {"uts": 71, "mnt": 72, "pid": 73}
    kernel.ns_parents[73] = kernel.root_inodes["pid"]
    kernel.start(500, inodes=inodes)
    kernel.cgroups.place(500, web.cgpath, leaf=None)  # where runc puts its init
    kernel.start(999)  # the writer
    await write(daemon, web, "container.claim", "500\n", pid=999)
    [spawned] = kernel.spawned
    assert not spawned.unshare and spawned.parent is None
    holder = holder_of(daemon, web)
    assert {k: holder.inodes[k] for k in ("uts", "mnt", "pid")} == {"uts": 71, "mnt": 72, "pid": 73}
    assert await read(daemon, web, "container.origin") == "oci\n"
    assert await read(daemon, web, "tasks") == "500\n"  # in its directory: no .tasks
    assert (*web.cgpath, TASKS) not in kernel.cgroups.dirs
    assert saved(daemon.rt.state_dir)[("oci", "web")]["origin"] == "oci"
    kernel.exit(500)
    await daemon.rmdir(web)
    assert web.cgpath not in kernel.cgroups.direct


async def test_a_refused_claim_changes_nothing(daemon: Daemon, kernel: FakeKernel) -> None:
    web = await oci_web(daemon)
    kernel.start(500, inodes=kernel.root_inodes | {"uts": 71})
    kernel.cgroups.place(500, web.cgpath, leaf=None)
    kernel.start(600, inodes=kernel.root_inodes | {"uts": 81})  # not in the container
    kernel.start(999)
    kernel.start(1, inodes=kernel.root_inodes | {"uts": 91}, cgroup=web.cgpath)  # init
    before = await read(daemon, web, "container.subsystems")
    cases = [
        (errno.EPERM, "500", 1000),  # not root
        (errno.EINVAL, "five hundred", 0),
        (errno.EINVAL, "1", 0),  # pid 1
        (errno.ESRCH, "600", 0),  # outside the container's cgroup
        (errno.ESRCH, "4000", 0),  # no such process
    ]
    for code, text, uid in cases:
        await refused(code, write(daemon, web, "container.claim", text, pid=999, uid=uid))
    assert kernel.spawned == []
    assert await read(daemon, web, "container.subsystems") == before
    assert web.origin.value == "mkdir" and (*web.cgpath, TASKS) in kernel.cgroups.dirs
