"""Internal and external views of namespace knobs, in the engine alone."""

from __future__ import annotations

import errno

import pytest

from containerfs.engine.catalog import IPC_KNOBS, NET_KNOBS, Role
from containerfs.engine.errors import ContainerError, InvalidInput, Unsupported
from containerfs.engine.kinds import NAMESPACE_NAMES, all_kinds
from containerfs.engine.tree import Container, Engine
from containerfs.engine.views import KnobState, ValueType, knob_table
from containerfs.kernel.idmaps import host_id_of_root


def make_engine() -> Engine:
    available: dict[str, str | None] = dict.fromkeys(NAMESPACE_NAMES)
    root_ids = {k: "1" for k in NAMESPACE_NAMES}
    return Engine(
        all_kinds([]),
        available,
        {},
        root_ids,
        frozenset({"ipc", "net", "mnt"}),
        view_knobs=IPC_KNOBS + NET_KNOBS,
    )


def child(e: Engine, name: str = "c") -> Container:
    c = e.commit_mkdir(e.plan_mkdir(e.root, name), {})
    e.init_views(c, {"ipc.shm_mni": (4096,), "ipc.sem": (32000, 1024000000, 500, 32000)})
    return c


def test_effective_is_the_tighter_view() -> None:
    t = ValueType()
    assert KnobState((100,), (4,)).effective(t) == (4,)
    assert KnobState((2,), (4,)).effective(t) == (2,)
    assert KnobState((2,), None).effective(t) == (2,)
    sem = ValueType(arity=4)
    assert KnobState((10, 20, 30, 40), (40, 10, 30, 50)).effective(sem) == (10, 10, 30, 40)
    ports = ValueType(arity=2, lo=1, hi=65535, is_range=True)
    assert ports.tighter((30000, 60000), (40000, 40100)) == (40000, 40100)
    assert ports.tighter((1000, 2000), (40000, 40100)) == (40000, 40100)  # disjoint: parent wins


def test_files_and_modes() -> None:
    e = make_engine()
    c = child(e)
    files = e.files(c)
    assert files["ipc.shm_mni"].role is Role.VIEW and files["ipc.shm_mni"].writable
    assert files["ipc.shm_mni.internal"].writable
    assert not files["ipc.shm_mni.effective"].writable
    assert not e.files(e.root)["ipc.shm_mni"].writable  # the host's own
    inner = e.commit_mkdir(e.plan_mkdir(c, "inner"), {})
    assert not e.files(inner)["ipc.shm_mni"].writable  # shared with c


def test_write_plans_then_commits() -> None:
    e = make_engine()
    c = child(e)
    knob, state = e.plan_view_write(c, "ipc.shm_mni", "4\n")
    assert state == KnobState((4096,), (4,)) and state.effective(knob.type) == (4,)
    assert e.render_view(c, knob, "external") == "max\n"
    e.commit_view(c, knob, state)
    assert e.render_view(c, knob, "external") == "4\n"
    assert e.render_view(c, knob, "effective") == "4\n"
    _, state = e.plan_view_write(c, "ipc.shm_mni", "max")
    assert state.external is None


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("ipc.shm_mni", "-1"),
        ("ipc.shm_mni", "0"),
        ("ipc.shm_mni", "40000"),
        ("ipc.shm_mni", "1 2"),
        ("ipc.sem", "1 2 3"),
        ("ipc.shm_mni.internal", "max"),
        ("net.ip_local_port_range", "500 400"),
    ],
)
def test_bad_writes(name: str, text: str) -> None:
    e = make_engine()
    c = child(e)
    e.init_views(c, {"net.ip_local_port_range": (32768, 60999)})
    with pytest.raises(ContainerError) as exc:
        e.plan_view_write(c, name, text)
    assert exc.value.errno == errno.EINVAL


def test_effective_view_is_read_only() -> None:
    e = make_engine()
    c = child(e)
    with pytest.raises(ContainerError) as exc:
        e.plan_view_write(c, "ipc.shm_mni.effective", "4")
    assert exc.value.errno == errno.EACCES


def test_a_limit_needs_the_containers_own_mount_namespace() -> None:
    e = make_engine()
    e.set_subtree(e.root, "-mnt")
    c = child(e)
    with pytest.raises(Unsupported) as exc:
        e.plan_view_write(c, "ipc.shm_mni", "4")
    assert exc.value.errno == errno.EOPNOTSUPP
    knob, state = e.plan_view_write(c, "ipc.shm_mni", "max")  # no limit: fine
    assert state.external is None
    _, state = e.plan_view_write(c, "ipc.shm_mni.internal", "7")  # its own value: fine
    assert state.internal == (7,)


def test_internal_views_belong_to_root_inside() -> None:
    e = make_engine()
    e.set_subtree(e.root, "+user")
    c = child(e)
    spec = e.file(c, "ipc.shm_mni.internal")
    assert e.file_owner(c, spec) == (0, 0)  # no map yet
    e.set_inside_root(c, 100000, 100000)
    assert e.file_owner(c, spec) == (100000, 100000)
    assert e.file_owner(c, e.file(c, "ipc.shm_mni")) == (0, 0)  # the parent's limit


def test_observe_takes_a_change_made_inside_as_the_internal_view() -> None:
    e = make_engine()
    c = child(e)
    knob, state = e.plan_view_write(c, "ipc.shm_mni", "4")
    e.commit_view(c, knob, state)
    assert e.observe(c, knob, (4,)) is None  # the kernel holds the effective value # type: ignore[arg-type]
    assert e.observe(c, knob, (100,)) == (4,)  # raised inside: put the limit back # type: ignore[arg-type]
    assert e.render_view(c, knob, "internal") == "100\n"
    assert e.observe(c, knob, (2,)) is None  # lowered inside: fine as it is # type: ignore[arg-type]
    assert e.render_view(c, knob, "effective") == "2\n"


def test_sem_refuses_semmni_past_ipcmni() -> None:
    """The kernel stores all four fields before it checks SEMMNI and restores only
    SEMMNI on ERANGE: the engine must refuse such a value before the kernel sees it."""
    knob, _ = knob_table(IPC_KNOBS)["ipc.sem"]
    assert knob.type.parse("32000 1024000000 500 32768", "ipc.sem") == (
        32000,
        1024000000,
        500,
        32768,
    )
    with pytest.raises(InvalidInput):
        knob.type.parse("32000 1024000000 500 32769", "ipc.sem")
    with pytest.raises(InvalidInput):
        knob.type.parse("1 2 3 " + "9" * 100, "ipc.sem")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("0 100000 65536\n", 100000),
        ("0 0 4294967295\n", 0),
        ("1000 5000 10\n0 7000 1\n", 7000),
        ("1 100001 65535\n", None),  # 0 itself not mapped
        ("garbage\n", None),
    ],
)
def test_host_id_of_root_inside(text: str, expected: int | None) -> None:
    assert host_id_of_root(text) == expected
