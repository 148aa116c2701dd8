"""The file catalogue (engine/catalog.py): one line per file, and what follows from it."""

from __future__ import annotations

import errno

import pytest

from containerfs.engine.catalog import (
    CONTAINER_FILES,
    INFO_FILES,
    IPC_KNOBS,
    NAMESPACE_FILES,
    NET_KNOBS,
    PID_KNOBS,
    Cache,
    Role,
    view_entries,
)
from containerfs.engine.errors import ContainerError
from containerfs.engine.kinds import NAMESPACE_NAMES, all_kinds
from containerfs.engine.tree import Engine
from containerfs.engine.views import KnobState
from containerfs.kernel import nsinfo


def make_engine() -> Engine:
    available: dict[str, str | None] = dict.fromkeys(NAMESPACE_NAMES)
    return Engine(
        all_kinds(["pids"]),
        available | {"pids": None},
        {"pids": {"pids.max": True, "pids.current": False}},
        {k: "1" for k in NAMESPACE_NAMES} | {"pids": "/base"},
        frozenset({"net", "mnt", "pids"}),
        view_knobs=IPC_KNOBS + NET_KNOBS,
    )


def test_every_file_name_is_declared_once() -> None:
    views = [e.name for k in IPC_KNOBS + NET_KNOBS + PID_KNOBS for e in view_entries(k)]
    names = [e.name for e in CONTAINER_FILES + NAMESPACE_FILES + INFO_FILES] + views
    assert len(names) == len(set(names))


def test_every_monitoring_line_names_a_kernel_renderer() -> None:
    # The daemon refuses to start otherwise; this says which line is wrong.
    keys = {e.key for e in INFO_FILES if e.role == Role.INFO}
    assert keys <= nsinfo.RENDERERS.keys(), keys - nsinfo.RENDERERS.keys()
    assert "net.routes" in keys


def test_files_modes_and_caching_follow_the_catalogue() -> None:
    e = make_engine()
    c = e.commit_mkdir(e.plan_mkdir(e.root, "c"), {})
    files = e.files(c)
    assert list(e.files(e.root))[:3] == ["subsystems", "release_agent", "namespaces"]
    assert "subsystems" not in files and files["container.kill"].writable
    assert files["uts.hostname"].role is Role.SYSCTL and not files["uts.hostname"].writable
    assert files["pids.max"].writable and not files["pids.current"].writable
    assert e.page_cached(c, files["pids.max"]) and not e.page_cached(c, files["pids.current"])
    assert files["net.routes"].role is Role.INFO and not files["net.routes"].writable
    assert not e.page_cached(c, files["net.routes"])
    assert e.file_owner(c, files["user.uid_map"]) == (0, 0)
    # A knob line makes three files; the views of an enforced container are cached.
    ext, internal, eff = (files[f"net.ip_forward{s}"] for s in ("", ".internal", ".effective"))
    assert ext.writable and internal.writable and not eff.writable
    assert ext.entry.cache is Cache.ENFORCED and e.page_cached(c, eff)


@pytest.mark.parametrize(
    ("external", "internal", "effective"),
    [("0", "1", "0"), ("1", "1", "1"), ("max", "1", "1"), ("1", "0", "0"), ("max", "0", "0")],
)
def test_ip_forward_parent_zero_forbids_forwarding(
    external: str, internal: str, effective: str
) -> None:
    e = make_engine()
    c = e.commit_mkdir(e.plan_mkdir(e.root, "c"), {})
    e.init_views(c, {"net.ip_forward": (int(internal),)})
    knob, state = e.plan_view_write(c, "net.ip_forward", external)
    e.commit_view(c, knob, state)
    assert e.render_view(c, knob, "effective") == f"{effective}\n"
    assert c.views["net.ip_forward"] == KnobState((int(internal),), state.external)


@pytest.mark.parametrize("bad", ["2", "-1", "yes", "0 1"])
def test_ip_forward_takes_0_or_1(bad: str) -> None:
    e = make_engine()
    c = e.commit_mkdir(e.plan_mkdir(e.root, "c"), {})
    e.init_views(c, {"net.ip_forward": (0,)})
    for name in ("net.ip_forward", "net.ip_forward.internal"):
        with pytest.raises(ContainerError) as exc:
            e.plan_view_write(c, name, bad)
        assert exc.value.errno == errno.EINVAL
