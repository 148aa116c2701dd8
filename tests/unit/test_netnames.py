"""``ip netns`` names: the naming rule, and the service keeping names and tree in step.

The naming (``engine/netnames.py``) is pure; the service (``service/netnames.py``)
runs here over the fake kernel, whose ``/run/netns`` is a dict of name ->
bound inode. The binds themselves are proven against the kernel in
``tests/integration/test_netns_names.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from containerfs import recovery
from containerfs.discovery import Discovery, daemons_name
from containerfs.engine.errors import InvalidInput
from containerfs.engine.kinds import Origin
from containerfs.engine.netnames import check_prefix, name_of, path_of, reserved
from containerfs.service.daemon import Daemon
from tests.unit.fakekernel import FakeKernel, FakeMountTables

# -- the naming ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        (("web",), "cfs:web"),
        (("web", "db"), "cfs:web:db"),
        (("a:b",), "cfs:a%3Ab"),
        (("a", "b"), "cfs:a:b"),  # differs from the one above: one-to-one
        (("100%",), "cfs:100%25"),
        (("%3A",), "cfs:%253A"),  # an escape spelt out is escaped itself
        (("ünï", "x"), "cfs:ünï:x"),
    ],
)
def test_a_path_and_its_name_go_both_ways(path: tuple[str, ...], name: str) -> None:
    assert name_of("cfs", path) == name
    assert path_of("cfs", name) == path


def test_names_not_made_by_the_prefix_are_not_read_as_paths() -> None:
    for name in ("cfs-2:web", "blue", "cfs", "cfs:", "cfs:a::b", "cfs:a%3a", "cfs:a%", "cfs:%41"):
        assert path_of("cfs", name) is None, name
    assert path_of("cfs-2", "cfs-2:web") == ("web",)


def test_a_name_longer_than_name_max_is_not_made() -> None:
    assert name_of("cfs", ("x" * 251,)) == "cfs:" + "x" * 251  # 255 bytes
    assert name_of("cfs", ("x" * 252,)) is None
    assert name_of("cfs", (":" * 84,)) is None  # escaping counts: 4 + 252 bytes


def test_prefixes_are_of_the_cfs_family() -> None:
    for good in ("cfs", "cfs-2", "cfs_test.1", "cfs" + "x" * 32, ""):
        assert check_prefix(good) == good
    for bad in ("web", "cfs:x", "cfs/x", "cfs x", "cfs" + "x" * 33, "CFS"):
        with pytest.raises(InvalidInput):
            check_prefix(bad)


def test_the_family_is_reserved_only_under_run_netns() -> None:
    assert reserved("cfs:web") and reserved("cfs-other:a:b")
    assert not reserved("cfs-abcd") and not reserved("blue") and not reserved("xcfs:a")
    assert daemons_name("/run/netns/cfs-9:web")
    assert not daemons_name("/run/netns/blue")
    assert not daemons_name("/tmp/cfs:web")


# -- the service over the fake kernel ----------------------------------------------


@pytest.fixture
async def named(tmp_path: Path) -> AsyncIterator[tuple[Daemon, FakeKernel]]:
    """A daemon with names of prefix ``cfs``; its children own net, uts and mnt."""
    kernel = FakeKernel()
    d = Daemon.build(kernel, kernel.mountpoint, tmp_path, "+net +uts +mnt")
    d.rt.netns_prefix = "cfs"
    d.containers.names.start(None)
    yield d, kernel
    d.teardown()


def net_of(d: Daemon, *path: str) -> int:
    c = d.engine.root
    for p in path:
        c = c.children[p]
    return int(c.ids["net"])


async def test_mkdir_rename_and_rmdir_carry_the_names(named: tuple[Daemon, FakeKernel]) -> None:
    d, kernel = named
    a = await d.mkdir(d.engine.root, "a")
    d.engine.set_subtree(a, "+net")
    b = await d.mkdir(a, "b:1")
    d.engine.set_subtree(a, "-net")
    await d.mkdir(a, "shares")  # owns no net namespace: no name
    assert kernel.netns == {"cfs:a": net_of(d, "a"), "cfs:a:b%3A1": net_of(d, "a", "b:1")}
    await d.rename(a, d.engine.root, "z")
    assert kernel.netns == {"cfs:z": net_of(d, "z"), "cfs:z:b%3A1": net_of(d, "z", "b:1")}
    await d.rmdir(b)
    assert kernel.netns == {"cfs:z": net_of(d, "z")}


async def test_a_name_bound_to_another_namespace_is_left_alone(
    named: tuple[Daemon, FakeKernel],
) -> None:
    d, kernel = named
    kernel.netns["cfs:a"] = 999  # someone else's
    a = await d.mkdir(d.engine.root, "a")
    assert kernel.netns == {"cfs:a": 999}  # no name, and the mkdir worked
    await d.rmdir(a)
    assert kernel.netns == {"cfs:a": 999}


async def test_a_start_removes_names_of_gone_containers_and_makes_missing_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = FakeKernel()
    monkeypatch.setattr(kernel.cgroups, "events_file", lambda path: tmp_path)  # "exists"
    d = Daemon.build(kernel, kernel.mountpoint, tmp_path, "+net +uts")
    d.rt.netns_prefix = "cfs"
    d.containers.names.start(None)
    for name in ("a", "b", "c", "dies"):
        await d.mkdir(d.engine.root, name)
    a, b = net_of(d, "a"), net_of(d, "b")
    dies = d.rt.holders[d.engine.root.children["dies"].uid].pid
    d.teardown()  # names stay, with the containers
    # While no daemon runs: a holder dies (its container is dropped at start), c's
    # name is deleted, a stray one made, b's rebound elsewhere, and names of
    # others that a restart must not touch.
    kernel.processes.pop(dies)
    assert "cfs:dies" in kernel.netns
    del kernel.netns["cfs:c"]
    kernel.netns |= {"cfs:gone": 5, "cfs:b": 6, "cfs:%zz": 7, "cfs-2:a": 8, "blue": 9}
    kernel.netns["cfs:leftover"] = None  # a file a cut-short bind left
    again = Daemon.build(kernel, kernel.mountpoint, tmp_path, "+net +uts")
    saved = recovery.load(tmp_path)
    assert saved is not None and saved["netns_prefix"] == "cfs"
    recovery.adopt(again.rt, saved)
    again.rt.netns_prefix = "cfs"
    again.containers.names.start(saved["netns_prefix"])
    try:
        assert kernel.netns == {
            "cfs:a": a,
            "cfs:b": b,
            "cfs:c": net_of(again, "c"),
            "cfs:%zz": 7,  # not a name the prefix makes
            "cfs-2:a": 8,
            "blue": 9,
        }
    finally:
        again.teardown()


async def test_a_changed_prefix_takes_the_old_names_away(tmp_path: Path) -> None:
    kernel = FakeKernel()
    d = Daemon.build(kernel, kernel.mountpoint, tmp_path, "+net")
    d.rt.netns_prefix = "cfs"
    d.containers.names.start(None)
    await d.mkdir(d.engine.root, "a")
    d.rt.netns_prefix = "cfs-new"
    d.containers.names.close()
    d.containers.names.start("cfs")
    try:
        assert kernel.netns == {"cfs-new:a": net_of(d, "a")}
    finally:
        d.teardown()


async def test_a_prefix_in_use_turns_names_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kernel = FakeKernel()
    kernel.netns_taken.add("cfs")
    kernel.netns["cfs:a"] = 77  # the other daemon's: kept
    d = Daemon.build(kernel, kernel.mountpoint, tmp_path, "+net")
    d.rt.netns_prefix = "cfs"
    d.containers.names.start(None)
    try:
        assert "prefix 'cfs' is in use by another containerfs daemon" in caplog.text
        assert d.rt.netns_prefix == ""
        await d.mkdir(d.engine.root, "b")
        assert kernel.netns == {"cfs:a": 77}
    finally:
        d.teardown()


# -- discovery's traps ---------------------------------------------------------------


async def test_daemons_names_in_a_mount_namespace_are_neither_clones_nor_holds(
    named: tuple[Daemon, FakeKernel],
) -> None:
    """A mount namespace copied from the host's holds copies of every daemon's names:
    another daemon's must not become clones, our own must not keep a clone held."""
    d, kernel = named
    box = await d.mkdir(d.engine.root, "box")
    disc = Discovery(d.rt, d.containers, d.releases)
    tables = disc._tables
    assert isinstance(tables, FakeMountTables)
    # A clone of ours: a task of box in a net namespace of its own.
    inodes = kernel.process_inodes(d.rt.holders[box.uid].pid) | {"net": 4100}
    kernel.start(4242, inodes=inodes, cgroup=("box",), comm="sleep")
    await disc.once()
    (clone,) = box.children.values()
    assert clone.origin == Origin.CLONE and kernel.netns[f"cfs:box:{clone.name}"] == 4100
    # box's mount namespace now shows its name, another daemon's (made on the host,
    # where daemons make names), a user's, and a tenant's bind under a name of the
    # daemons' form that no daemon made (not on the host): that one is no copy.
    kernel.netns["cfs-2:web"] = 4200
    kernel.nsfs_files |= {
        "/run/netns/cfs-2:web": 4200,
        "/run/netns/blue": 4300,
        "/run/netns/cfs-9:hidden": 4400,
    }
    tables.mounts[box] = [
        ("net", 4100, f"/run/netns/cfs:box:{clone.name}"),
        ("net", 4200, "/run/netns/cfs-2:web"),
        ("net", 4300, "/run/netns/blue"),
        ("net", 4400, "/run/netns/cfs-9:hidden"),
    ]
    d.rt.engine.version += 1  # the look's snapshot is taken anew
    await disc.once()
    assert sorted(box.children) == sorted([clone.name, "blue", "cfs-9:hidden"])
    assert not clone.held  # released once its task goes
    kernel.exit(4242)
    kernel.cgroups.exit(4242)
    await d.releases.refresh_populated(clone)
    assert clone.removed
    assert f"cfs:box:{clone.name}" not in kernel.netns


def test_the_mount_option_takes_a_prefix_of_the_family_or_none(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from containerfs.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["mount"]).netns_prefix == "cfs"
    assert parser.parse_args(["mount", "--netns-prefix", "cfs-b"]).netns_prefix == "cfs-b"
    assert parser.parse_args(["mount", "--netns-prefix", ""]).netns_prefix == ""
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["mount", "--netns-prefix", "web"])
    assert exit_.value.code == 2
    assert "a netns prefix is 'cfs'" in capsys.readouterr().err


async def test_a_container_that_takes_another_net_namespace_is_renamed_to_it(
    named: tuple[Daemon, FakeKernel],
) -> None:
    """What a claim of an OCI runtime's namespaces calls (``NetNames.changed``)."""
    d, kernel = named
    a = await d.mkdir(d.engine.root, "a")
    old = net_of(d, "a")
    holder = d.rt.holders[a.uid]
    kernel.processes[holder.pid].inodes["net"] = 4500  # the holder joined another
    a.ids["net"] = "4500"
    d.containers.names.changed(a, old)
    assert kernel.netns == {"cfs:a": 4500}


async def test_a_rename_to_a_shorter_path_names_what_was_too_long(
    named: tuple[Daemon, FakeKernel],
) -> None:
    d, kernel = named
    a = await d.mkdir(d.engine.root, "a" * 200)
    d.engine.set_subtree(a, "+net")
    await d.mkdir(a, "b" * 60)  # cfs: + 200 + : + 60 bytes: too long for a name
    assert set(kernel.netns) == {"cfs:" + "a" * 200}
    await d.rename(a, d.engine.root, "a")
    assert set(kernel.netns) == {"cfs:a", "cfs:a:" + "b" * 60}
