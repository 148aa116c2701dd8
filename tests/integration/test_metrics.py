"""The root's ``metrics`` file and ``--metrics-listen``, read as Prometheus reads them.

What was written through containerfs (``pids.max``, ``memory.max``, a knob's
external view) must come back as the matching metric; what the kernel counts
(processes, pids) must be the kernel's count; the text must pass Debian's
``promtool check metrics``; and a real Prometheus server scraping the HTTP
endpoint must hold the value written to ``pids.max``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from containerfs.engine.metrics import FIGURES_FRESH

from .conftest import CONTAINERFS, TIME_SCALE, Mounted, mounted, wait_for

pytestmark = pytest.mark.root

PROMETHEUS_DIR = Path(sys.executable).parent.parent / "prometheus" / "usr" / "bin"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample, parsed by prometheus_client (the reference parser)."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    found = [
        v for (n, ls), v in samples(text).items() if n == name and set(labels.items()) <= set(ls)
    ]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tool(name: str) -> str:
    path = PROMETHEUS_DIR / name
    if not path.exists():
        pytest.skip(f"{name} not unpacked at {path} (make test runs tools/fetch-prometheus)")
    return str(path)


def test_metrics_show_what_was_written_and_what_the_kernel_counts(cfs: Mounted) -> None:
    cfs.sh("mkdir c && echo 7 > c/pids.max && echo 64M > c/memory.max && echo 5 > c/ipc.shm_mni")
    sleeper = cfs.spawn("c", "sleep", "600")
    wait_for(lambda: cfs.read("c/tasks").split() != [], 10, "the sleep in c")
    text = cfs.read("metrics")
    assert value(text, "containerfs_pids_limit", container="/c") == 7
    assert value(text, "containerfs_memory_limit_bytes", container="/c") == 64 << 20
    assert value(text, "containerfs_processes", container="/c") == 1
    # the kernel's own count, as cgroupfs has it
    assert value(text, "containerfs_pids_current", container="/c") == int(
        cfs.read("c/pids.current")
    )
    assert value(text, "containerfs_populated", container="/c") == 1
    assert value(text, "containerfs_containers") == 1
    # the knob's three views: the parent's limit, the container's own, the enforced one
    assert value(text, "containerfs_ipc_shm_mni", container="/c", view="external") == 5
    assert value(text, "containerfs_ipc_shm_mni", container="/c", view="internal") == 4096
    assert value(text, "containerfs_ipc_shm_mni", container="/c", view="effective") == 5
    # a knob of several numbers has one sample per field
    assert value(text, "containerfs_ipc_sem", container="/c", view="external", field="semmni") == (
        math.inf
    )
    # `id` is the container's cgroup, as the process's /proc/PID/cgroup shows it
    pid = int(cfs.read("c/tasks").split()[0])
    v2 = next(
        line[3:]
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        if line.startswith("0::")
    )
    ids = {ls for (n, ls), _v in samples(text).items() if n == "containerfs_pids_limit"}
    assert ("id", v2.removesuffix("/.tasks")) in next(ls for ls in ids if ("container", "/c") in ls)
    # the root's namespaces file's counts, and the daemon's own requests
    assert value(text, "containerfs_namespaces", kind="net") >= 2
    # another user gets no host-wide namespace counts (its `namespaces` shows only
    # what its own lsns would), the rest alike
    os.chmod(cfs.mnt.parent, 0o755)  # made 0700: the user must reach the mount
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    theirs = subprocess.run(
        [*nobody, "cat", str(cfs.mnt / "metrics")], capture_output=True, text=True, check=True
    ).stdout
    assert "containerfs_namespaces" not in theirs
    assert value(theirs, "containerfs_pids_limit", container="/c") == 7
    assert value(text, "containerfs_requests_total", operation="mkdir") >= 1
    # opens, also those the page cache's fast path answers, and their releases
    opens = value(text, "containerfs_requests_total", operation="open")
    for _ in range(5):
        cfs.read("c/pids.max")
    text = cfs.read("metrics")
    assert value(text, "containerfs_requests_total", operation="open") >= opens + 6
    assert value(text, "containerfs_requests_total", operation="release") >= opens
    assert value(text, "containerfs_request_duration_seconds_count", operation="mkdir") >= 1
    sleeper.kill()
    sleeper.wait()
    wait_for(lambda: cfs.read("c/tasks") == "", 10, "c empty")
    # the figures may have been read ahead of this scrape, at most a second before
    wait_for(
        lambda: value(cfs.read("metrics"), "containerfs_processes", container="/c") == 0,
        FIGURES_FRESH + 2,
        "the exit in metrics",
    )


def test_a_limit_changed_shows_at_the_next_read(cfs: Mounted) -> None:
    cfs.sh("mkdir c && echo 7 > c/pids.max")
    assert value(cfs.read("metrics"), "containerfs_pids_limit", container="/c") == 7
    cfs.sh("echo max > c/pids.max")
    assert value(cfs.read("metrics"), "containerfs_pids_limit", container="/c") == math.inf
    cfs.sh("rmdir c")
    text = cfs.read("metrics")
    assert not [k for k in samples(text) if ("container", "/c") in k[1]]
    assert value(text, "containerfs_containers") == 0


def test_a_steady_scraper_gets_figures_at_most_a_second_old(cfs: Mounted) -> None:
    """Figures read ahead of a scraper at a steady pace are never older than
    FIGURES_FRESH: a process that left outside containerfs's sight is gone from
    every scrape begun that long after; a limit written through containerfs is
    in the very next scrape, read ahead or not."""
    cfs.sh("mkdir c")
    sleeper = cfs.spawn("c", "sleep", "600")
    wait_for(lambda: cfs.read("c/tasks").split() != [], 10, "the sleep in c")
    pace = 0.1
    for _ in range(10):  # a steady pace: the daemon reads ahead of it
        assert value(cfs.read("metrics"), "containerfs_processes", container="/c") == 1
        time.sleep(pace)
    sleeper.kill()
    sleeper.wait()
    # `containerfs exec` forks: the sleep leaves with its parent (PDEATHSIG), a little later
    wait_for(lambda: cfs.read("c/tasks") == "", 10, "c empty")
    gone = time.monotonic()  # the kernel's count is 0 from here
    seen = []
    deadline = gone + FIGURES_FRESH + 10 * TIME_SCALE
    while (began := time.monotonic()) < gone + FIGURES_FRESH + 1.0 or (
        began < deadline and not [a for a, _t in seen if a >= FIGURES_FRESH]
    ):
        seen.append((began - gone, cfs.read("metrics")))
        time.sleep(pace)
    late = [
        (round(after, 2), value(text, "containerfs_processes", container="/c"))
        for after, text in seen
        if after >= FIGURES_FRESH
    ]
    assert late and all(n == 0 for _after, n in late), late
    (cfs.mnt / "c" / "pids.max").write_text("9\n")
    assert value(cfs.read("metrics"), "containerfs_pids_limit", container="/c") == 9


def test_a_process_moved_by_tasks_is_counted_once_at_the_next_scrape(cfs: Mounted) -> None:
    """A `tasks` write changes the figures of the container the process leaves too:
    a scrape right after it, figures read ahead or not, counts the process in its
    new container only."""
    # a and its child b share the root's namespaces: a running process may move
    cfs.sh("echo '-ipc -uts -net -pid -mnt -cgroup -time' > container.subtree && mkdir a a/b")
    cfs.spawn("a", "sleep", "600")
    wait_for(lambda: cfs.read("a/tasks").split() != [], 10, "the sleep in a")
    pid = int(cfs.read("a/tasks").split()[0])
    for _ in range(12):  # a steady pace: the daemon reads ahead of it
        text = cfs.read("metrics")
        assert value(text, "containerfs_processes", container="/a") == 1
        time.sleep(0.1)
    (cfs.mnt / "a" / "b" / "tasks").write_text(f"{pid}\n")
    text = cfs.read("metrics")
    assert value(text, "containerfs_processes", container="/a") == 0
    assert value(text, "containerfs_processes", container="/a/b") == 1


def test_a_scrape_after_a_pause_reads_the_figures_itself(cfs: Mounted) -> None:
    """Figures read ahead are not served once older than FIGURES_FRESH: a scraper
    that paused longer gets the kernel's count as of its scrape."""
    cfs.sh("mkdir c")
    sleeper = cfs.spawn("c", "sleep", "600")
    wait_for(lambda: cfs.read("c/tasks").split() != [], 10, "the sleep in c")
    for _ in range(3):  # a pace to read ahead of; the next read is due soon after
        assert value(cfs.read("metrics"), "containerfs_processes", container="/c") == 1
        time.sleep(0.05)
    time.sleep(FIGURES_FRESH)  # the read ahead done (due half a window on), the sleep in c
    sleeper.kill()
    sleeper.wait()
    time.sleep(FIGURES_FRESH + 0.5)
    assert value(cfs.read("metrics"), "containerfs_processes", container="/c") == 0


def _open_into(pid: int, name: str) -> list[str]:
    """What process `pid` holds open in a directory called `name` (any hierarchy)."""
    held = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("/sys/fs/cgroup/") and f"/{name}/" in target:
            held.append(target)
    return held


def test_the_figure_files_of_a_removed_container_are_let_go(cfs: Mounted) -> None:
    """The daemon keeps each container's figure files open between scrapes; those of
    a container removed are closed by the next scrape, not held (kernel memory)
    until the daemon idles."""
    cfs.sh("mkdir gone-soon && echo 7 > gone-soon/pids.max")
    cfs.read("metrics")
    assert _open_into(cfs.daemon.pid, "gone-soon"), "the figures are read from kept files"
    cfs.sh("rmdir gone-soon")
    cfs.read("metrics")
    assert _open_into(cfs.daemon.pid, "gone-soon") == []


def test_promtool_finds_nothing_to_say(cfs: Mounted) -> None:
    promtool = tool("promtool")
    cfs.sh('mkdir a a/b "we\\"ird" && echo 5 > a/pids.max && echo 3 > a/ipc.msg_mni')
    text = cfs.read("metrics")
    assert value(text, "containerfs_populated", container='/we"ird') == 0
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked


@pytest.fixture
def listening() -> Iterator[tuple[Mounted, int]]:
    # A port found free may be taken by another test before the daemon binds it.
    for attempt in range(3):
        port = free_port()
        try:
            with mounted("metrics-listen", "--metrics-listen", f"127.0.0.1:{port}") as m:
                wait_for(lambda p=port: _answers(p), 10, "the metrics endpoint")
                yield m, port
                return
        except AssertionError as exc:
            if "Address already in use" not in str(exc) or attempt == 2:
                raise


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_endpoint_serves_the_file(listening: tuple[Mounted, int]) -> None:
    m, port = listening
    m.sh("mkdir c && echo 9 > c/pids.max")
    status, headers, body = _get(port, "/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert value(body.decode(), "containerfs_pids_limit", container="/c") == 9
    assert _get(port, "/metrics", "HEAD")[:1] == (200,)
    assert _get(port, "/nothing")[0] == 404
    assert _get(port, "/metrics", "POST")[0] == 405
    # garbage gets a 400, a broken body ends its connection, and the daemon keeps serving
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x00\x01 nonsense\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n")
        s.recv(100)
    assert _get(port, "/metrics")[0] == 200
    assert (m.mnt / "metrics").exists() and os.path.ismount(m.mnt)
    # two requests on one connection (Prometheus keeps its connections)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"HTTP/1.1 200") < 2 and time.monotonic() < deadline:
            data += s.recv(65536)
        assert data.count(b"HTTP/1.1 200") == 2


def test_a_bad_or_busy_address_stops_the_start(tmp_path: Path) -> None:
    bad = subprocess.run(
        [*CONTAINERFS, "mount", str(tmp_path / "m"), "--metrics-listen", "9464"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "ADDR:PORT" in bad.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        refused = pytest.raises(AssertionError, match="Address already in use")
        with refused, mounted("metrics-busy", "--metrics-listen", f"127.0.0.1:{port}"):
            pass


def test_a_real_prometheus_scrapes_the_limit(listening: tuple[Mounted, int]) -> None:
    prometheus = tool("prometheus")
    m, port = listening
    m.sh("mkdir web && echo 42 > web/pids.max")
    web_port = free_port()
    with tempfile.TemporaryDirectory(prefix="cfs-prom-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: containerfs\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        )
        server = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp}/data",
                f"--web.listen-address=127.0.0.1:{web_port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            query = urllib.parse.quote('containerfs_pids_limit{container="/web"}')
            url = f"http://127.0.0.1:{web_port}/api/v1/query?query={query}"
            found: list[object] = []

            def scraped() -> bool:
                try:
                    with urllib.request.urlopen(url, timeout=2) as resp:
                        result = json.load(resp)["data"]["result"]
                except (OSError, ValueError, KeyError):
                    return False
                found[:] = result
                return bool(result)

            wait_for(scraped, 60, "Prometheus to scrape containerfs")
            (series,) = found
            assert isinstance(series, dict)
            assert series["value"][1] == "42"
            assert series["metric"]["job"] == "containerfs"
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30 * TIME_SCALE)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
            assert server.stderr is not None
            server.stderr.close()
