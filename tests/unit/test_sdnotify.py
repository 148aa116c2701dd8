"""systemd's notify socket and journal stream, spoken without libsystemd
(``containerfs/kernel/sdnotify.py``), and the daemon's log format under the journal."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerfs.cli import JournalFormatter
from containerfs.kernel.cghierarchy import daemon_base
from containerfs.kernel.sdnotify import Notifier, priority, socket_address, stderr_is_journal
from containerfs.service import startup


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound in tmp, as systemd's notify socket is."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield sock, path
    finally:
        sock.close()


def test_socket_addresses() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abstract/name") == "\0abstract/name"
    for unusable in ("", "@", "relative", "vsock:2:1234"):
        assert socket_address(unusable) is None


def test_ready_status_stopping_each_one_datagram(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    env = {"NOTIFY_SOCKET": path, "OTHER": "kept"}
    n = Notifier(env)
    try:
        assert env == {"OTHER": "kept"}  # nothing the daemon starts may speak for it
        assert n.ready("0 containers")
        assert sock.recv(4096) == b"READY=1\nSTATUS=0 containers\n"
        assert n.status("3 containers")
        assert sock.recv(4096) == b"STATUS=3 containers\n"
        assert n.stopping()
        assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping\n"
    finally:
        n.close()


def test_abstract_socket() -> None:
    name = f"containerfs-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        try:
            assert n.ready("1 container")
            assert sock.recv(4096) == b"READY=1\nSTATUS=1 container\n"
        finally:
            n.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    n = Notifier({})
    assert not n.enabled
    assert not n.ready("0 containers")
    assert n._sock is None  # not even a socket made


def test_a_failed_send_is_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    try:
        with caplog.at_level(logging.WARNING):
            assert not n.ready("0 containers")
            assert not n.stopping()
        assert [r.getMessage() for r in caplog.records] == [
            f"cannot notify systemd at {tmp_path / 'gone'}: No such file or directory"
        ]
    finally:
        n.close()


def test_priorities_follow_syslog() -> None:
    assert [priority(lv) for lv in (50, 40, 30, 20, 10)] == [2, 3, 4, 6, 7]


def test_journal_formatter_prefixes_every_line() -> None:
    record = logging.LogRecord("containerfs", logging.WARNING, "", 0, "a\nb", None, None)
    assert JournalFormatter().format(record) == "<4>WARNING a\n<4>b"


def test_stderr_is_journal_compares_the_stream_itself(tmp_path: Path) -> None:
    with open(tmp_path / "stream", "w") as f, open(tmp_path / "other", "w") as g:
        st = os.fstat(f.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stderr_is_journal(env, f.fileno())
        assert not stderr_is_journal(env, g.fileno())  # inherited variable, other stream
        assert not stderr_is_journal({}, f.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": "x:y"}, f.fileno())


@pytest.mark.parametrize("journal", [True, False])
def test_daemon_log_lines_carry_levels_only_for_the_journal(tmp_path: Path, journal: bool) -> None:
    """As the daemon sets up its log (``cli.setup_logging``), in a process of its own."""
    out = tmp_path / "stderr"
    code = (
        "import logging; from containerfs.cli import setup_logging; "
        "setup_logging(logging.INFO); log = logging.getLogger('containerfs'); "
        "log.warning('pids.max: refused'); log.info('mounted')"
    )
    with open(out, "w") as err:
        st = os.fstat(err.fileno())
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        if journal:
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        subprocess.run([sys.executable, "-c", code], stderr=err, env=env, check=True)
    if journal:
        assert out.read_text() == "<4>WARNING pids.max: refused\n<6>INFO mounted\n"
    else:
        assert out.read_text() == (
            "containerfs: WARNING pids.max: refused\ncontainerfs: INFO mounted\n"
        )


def test_daemon_base_under_systemd() -> None:
    leaf = "supervisor"  # what dist/systemd/containerfs.service names
    # systemd >= 254 with DelegateSubgroup=supervisor: the unit's cgroup is the base
    assert daemon_base("/system.slice/containerfs.service/supervisor", leaf) == (
        "/system.slice/containerfs.service"
    )
    # the same cgroup when the unit did not name the leaf: the base itself (another
    # unit's DelegateSubgroup= leaf is never taken over)
    assert daemon_base("/system.slice/ci.service/supervisor") == (
        "/system.slice/ci.service/supervisor"
    )
    # systemd 252: started in the unit's cgroup itself; a restart in .tasks
    assert daemon_base("/system.slice/containerfs.service", leaf) == (
        "/system.slice/containerfs.service"
    )
    assert daemon_base("/system.slice/containerfs.service/.tasks") == (
        "/system.slice/containerfs.service"
    )
    assert daemon_base("/.tasks") == "/"
    # a cgroup that happens to be called supervisor, not a unit's leaf: the base itself
    assert daemon_base("/user.slice/supervisor", leaf) == "/user.slice/supervisor"


def test_the_unit_names_its_leaf_to_the_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    unit = Path(__file__).parents[2] / "dist/systemd/containerfs.service"
    lines = unit.read_text().splitlines()
    assert "DelegateSubgroup=supervisor" in lines
    assert "Environment=CONTAINERFS_SERVICE_LEAF=supervisor" in lines
    monkeypatch.setenv("CONTAINERFS_SERVICE_LEAF", "supervisor")
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    assert startup.service_leaf() is None  # not started by systemd
    monkeypatch.setenv("CONTAINERFS_SERVICE_LEAF", "supervisor")
    monkeypatch.setenv("INVOCATION_ID", "0123")
    assert startup.service_leaf() == "supervisor"
    assert "CONTAINERFS_SERVICE_LEAF" not in os.environ  # not handed on to containers
