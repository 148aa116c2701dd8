"""The exposition text (engine/metrics.py), checked by prometheus_client's parser,
and the pure parts of ``containerfs tree`` and ``top``."""

from __future__ import annotations

import math
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from containerfs.engine.catalog import IPC_KNOBS, NET_KNOBS
from containerfs.engine.metrics import (
    FIGURES_FRESH,
    READ_AHEAD_MAX,
    ContainerFacts,
    Family,
    Reading,
    RequestStats,
    container_families,
    containers_family,
    knob_families,
    namespace_family,
    parse,
    read_ahead_at,
    render,
)
from containerfs.engine.views import KnobState
from containerfs.top import Row, ordered, table, with_cpu
from containerfs.treeview import Node, containerfs_mounts
from containerfs.treeview import render as render_tree

SHM_MNI = next(k for k in IPC_KNOBS if k.file == "ipc.shm_mni")
SEM = next(k for k in IPC_KNOBS if k.file == "ipc.sem")
PORTS = next(k for k in NET_KNOBS if k.file == "net.ip_local_port_range")


def parsed(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_labels_with_quotes_backslashes_and_newlines_survive_the_reference_parser() -> None:
    fam = Family("containerfs_x", "gauge", "a help with \\ and\na newline")
    odd = 'we"ird\\name\nnext'
    fam.add((("container", odd),), 3)
    out = parsed(render([fam]))
    assert out == {("containerfs_x", frozenset({("container", odd)})): 3.0}
    assert parse(render([fam])) == [("containerfs_x", {"container": odd}, 3.0)]


def test_values_are_written_as_prometheus_writes_them() -> None:
    fam = Family("containerfs_x", "gauge", "h")
    for v in (7, 2**40, 0.25, math.inf):
        fam.add((("v", str(v)),), v)
    text = render([fam])
    assert 'containerfs_x{v="7"} 7\n' in text
    assert f'containerfs_x{{v="{2**40}"}} {2**40}\n' in text
    assert 'containerfs_x{v="0.25"} 0.25\n' in text
    assert 'containerfs_x{v="inf"} +Inf\n' in text
    assert [v for _n, _l, v in parse(text)] == [7, 2**40, 0.25, math.inf]


def test_a_container_and_its_knobs() -> None:
    facts = [
        ContainerFacts("/", "/base", True, 0),
        ContainerFacts(
            "/web",
            "/base/web",
            False,
            2,
            uid=7,
            views={
                "ipc.shm_mni": KnobState(internal=(4096,), external=(5,)),
                "ipc.sem": KnobState(internal=(32000, 1024000000, 500, 32000)),
                "net.ip_local_port_range": KnobState(
                    internal=(32768, 60999), external=(1024, 2048)
                ),
                "ipc.gone": KnobState(internal=(1,)),  # saved where more knobs were served
            },
        ),
    ]
    knobs = {k.file: k for k in (SHM_MNI, SEM, PORTS)}
    readings = {
        "/": Reading(cpu_seconds=10.5, processes=3),
        "/web": Reading(pids=1, pids_limit=math.inf, memory_bytes=4096, processes=0),
    }
    text = render(
        [
            containers_family(1),
            *container_families(facts, readings),
            *knob_families(facts, knobs.get),
        ]
    )
    out = parsed(text)
    web = {("container", "/web"), ("id", "/base/web")}

    def get(name: str, *extra: tuple[str, str]) -> float:
        return out[(name, frozenset(web | set(extra)))]

    def knob(name: str, *extra: tuple[str, str]) -> float:  # a namespace's: no cgroup id
        return out[(name, frozenset({("container", "/web"), *extra}))]

    assert get("containerfs_pids_limit") == math.inf
    assert get("containerfs_memory_usage_bytes") == 4096
    assert get("containerfs_populated") == 0
    assert get("containerfs_released_total") == 2
    assert knob("containerfs_ipc_shm_mni", ("view", "external")) == 5
    assert knob("containerfs_ipc_shm_mni", ("view", "internal")) == 4096
    assert knob("containerfs_ipc_shm_mni", ("view", "effective")) == 5
    assert knob("containerfs_ipc_sem", ("view", "external"), ("field", "semmni")) == math.inf
    assert knob("containerfs_ipc_sem", ("view", "effective"), ("field", "semopm")) == 500
    assert knob("containerfs_net_ip_local_port_range", ("view", "effective"), ("field", "low")) == (
        1024  # disjoint ranges: the parent's holds
    )
    assert knob(
        "containerfs_net_ip_local_port_range", ("view", "effective"), ("field", "high")
    ) == (2048)
    # no reading, no sample: the root shares no controller, /web owns no cpu here
    assert ("containerfs_pids_limit", frozenset({("container", "/"), ("id", "/base")})) not in out
    root = frozenset({("container", "/"), ("id", "/base")})
    assert out[("containerfs_cpu_usage_seconds_total", root)] == 10.5
    assert out[("containerfs_containers", frozenset())] == 1
    # every family declares its type once, counters end in _total
    types = [line.split()[2:] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len({name for name, _t in types}) == len(types)
    assert all(name.endswith("_total") for name, t in types if t == "counter")


def test_request_latencies_are_a_cumulative_histogram() -> None:
    stats = RequestStats()
    for seconds in (0.000005, 0.00003, 0.00003, 0.2, 30.0):
        stats.observe("open", seconds, failed=False)
    stats.observe("lookup", 0.00001, failed=True)
    out = parsed(render(stats.families()))
    op = frozenset({("operation", "open")})

    def bucket(le: str) -> float:
        return out[("containerfs_request_duration_seconds_bucket", op | {("le", le)})]

    assert bucket("1e-05") == 1 and bucket("5e-05") == 3 and bucket("0.25") == 4
    assert bucket("+Inf") == 5
    assert out[("containerfs_request_duration_seconds_count", op)] == 5
    assert math.isclose(out[("containerfs_request_duration_seconds_sum", op)], 30.200065)
    assert out[("containerfs_requests_total", op)] == 5
    assert out[("containerfs_request_errors_total", op)] == 0
    assert out[("containerfs_request_errors_total", frozenset({("operation", "lookup")}))] == 1


def test_a_steady_scraper_is_read_ahead_of_once_a_scrape() -> None:
    # Prometheus every 15 s: the figures are read half a window before the next scrape,
    # which then finds them younger than FIGURES_FRESH
    due = read_ahead_at((100.0, 115.0), read_at=115.0)
    assert due == 130.0 - FIGURES_FRESH / 2
    assert due is not None and 130.0 - due < FIGURES_FRESH
    # top every second: half an interval ahead, so each refresh gets figures one
    # interval after the last (its CPU % stays even)
    assert read_ahead_at((10.0, 11.0), read_at=10.6) == 11.5
    # reads in a tight loop: at most one read ahead per half window, however fast
    assert read_ahead_at((20.000, 20.010), read_at=20.0) == 20.0 + FIGURES_FRESH / 2
    # nothing to go by: a first scrape, a long pause, a clock that went nowhere
    assert read_ahead_at((-math.inf, 5.0), read_at=5.0) is None
    assert read_ahead_at((0.0, READ_AHEAD_MAX + 1), read_at=1.0) is None
    assert read_ahead_at((5.0, 5.0), read_at=5.0) is None


def test_namespace_counts() -> None:
    out = parsed(render([namespace_family({"net": 4, "ipc": 2})]))
    assert out[("containerfs_namespaces", frozenset({("kind", "net")}))] == 4


def test_top_cpu_and_orders() -> None:
    before = {"/a": Row("/a", cpu_seconds=1.0), "/b": Row("/b", cpu_seconds=5.0)}
    now = {
        "/a": Row("/a", tasks=1, cpu_seconds=1.5, memory=10),
        "/b": Row("/b", tasks=4, cpu_seconds=5.1, memory=None),
    }
    with_cpu(now, before, 2.0)
    assert now["/a"].cpu == 25.0 and math.isclose(now["/b"].cpu or 0, 5.0)
    assert [r.path for r in ordered(now, "cpu")] == ["/a", "/b"]
    assert [r.path for r in ordered(now, "tasks")] == ["/b", "/a"]
    assert [r.path for r in ordered(now, "memory")] == ["/a", "/b"]  # unknown last
    lines = table(ordered(now, "path"), 60)
    assert lines[0].split() == ["Container", "Tasks", "%CPU", "Memory", "Pids"]
    assert lines[1].split() == ["/a", "1", "25.0", "10B", "-"]


def test_tree_branches() -> None:
    nodes = [
        Node("/", "/mnt", 0, tasks=1, release="ignore"),
        Node("/a", "a", 1, owns=["ipc"], tasks=0, release="ignore"),
        Node("/a/x", "x", 2, tasks=2, release="delete"),
        Node("/a/x/y", "y", 3, tasks=0, release="ignore"),
        Node("/a/z", "z", 2, tasks=0, release="ignore"),
        Node("/b", "b", 1, tasks=None, release=None),
    ]
    assert render_tree(nodes).splitlines() == [
        "/mnt  [1 task, release ignore]  owns: -",
        "├─a  [0 tasks, release ignore]  owns: ipc",
        "│ ├─x  [2 tasks, release delete]  owns: -",
        "│ │ └─y  [0 tasks, release ignore]  owns: -",
        "│ └─z  [0 tasks, release ignore]  owns: -",
        "└─b  [? tasks, release ?]  owns: -",
    ]


def test_mount_points_are_read_as_the_kernel_escapes_them(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_bytes(
        b"cfs /run/my\\040mnt\\303\\251 fuse.containerfs rw 0 0\n"
        b"proc /proc proc rw 0 0\n"
        b"cfs /run/containerfs fuse.containerfs rw 0 0\n"
    )
    assert containerfs_mounts(str(mounts)) == ["/run/my mnt\u00e9", "/run/containerfs"]
