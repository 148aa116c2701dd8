"""The daemon under systemd's eyes, without systemd: ``Type=notify`` as the service
manager sees it through ``$NOTIFY_SOCKET`` (a datagram socket of the test's own).
The unit itself, with systemd as pid 1, is checked by ``make test-systemd``
(tools/v2vm/systemd-lane)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import TIME_SCALE, Mounted


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    try:
        yield sock, path
    finally:
        sock.close()


def _next(sock: socket.socket, timeout: float = 20) -> dict[str, str]:
    sock.settimeout(timeout * TIME_SCALE)
    text = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in text.splitlines())


def _until(sock: socket.socket, key: str, value: str, timeout: float = 20) -> list[dict[str, str]]:
    """Messages up to and including the one where ``key`` is ``value``."""
    seen = []
    deadline = time.monotonic() + timeout * TIME_SCALE
    while time.monotonic() < deadline:
        seen.append(_next(sock, deadline - time.monotonic()))
        if seen[-1].get(key) == value:
            return seen
    raise AssertionError(f"no {key}={value} in {seen}")


def test_ready_status_and_stopping_reach_the_notify_socket(
    cfs: Mounted, notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = notify_socket
    cfs.sh("mkdir a b")
    assert cfs.stop() == 0
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    cfs.start()
    ready = _next(sock)
    assert ready == {"READY": "1", "STATUS": "2 containers"}
    # Ready means usable: the mount answers at once, taken-over containers included.
    assert os.path.isdir(cfs.mnt / "a") and cfs.read("a/container.subtree")
    cfs.sh("mkdir c; mkdir c/d; rmdir a")  # a burst: one datagram for where it ends
    assert _until(sock, "STATUS", "3 containers") == [{"STATUS": "3 containers"}]
    # Nothing the daemon started (holders, the loopback helper) got the socket's name.
    top = cfs.subtree.v2_dir
    assert top is not None
    started = {int(p) for f in top.rglob("cgroup.procs") for p in f.read_text().split()}
    started.discard(cfs.daemon.pid)
    assert len(started) >= 2  # c's and d's holders at least
    leaked = [p for p in started if b"NOTIFY_SOCKET=" in Path(f"/proc/{p}/environ").read_bytes()]
    assert leaked == []
    assert cfs.stop() == 0
    stopping = _until(sock, "STOPPING", "1")
    assert stopping[-1]["STATUS"] == "unmounting, 3 containers"
