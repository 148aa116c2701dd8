"""``containerfs exec`` is done by its C program (``containerfs-exec``), not by Python.

The kernel's truth: ``/proc/PID/exe`` of the process that waits for the command
(the command's parent, seen from the host) and of the ``containerfs`` command
itself.  The behaviour of ``exec`` is proven by the other tests, which run through
the same program (test_core.py, test_exec_user.py, test_enter.py).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from containerfs.defaults import find_program

from .conftest import BIN, CONTAINERFS, Mounted, wait_for

pytestmark = pytest.mark.root

PROGRAM = find_program("containerfs-exec")


def _placed_command(m: Mounted, container: str, proc: subprocess.Popen[bytes]) -> int:
    """The pid (host's view) of the ``sleep`` that ``proc`` (an exec) started."""
    wait_for(lambda: m.read(f"{container}/tasks") != "", what="the command to be placed")
    pid = int(m.read(f"{container}/tasks").split()[0])
    wait_for(lambda: Path(f"/proc/{pid}/comm").read_text() == "sleep\n", what="sleep to run")
    assert proc.poll() is None
    return pid


def _parent(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("PPid:")))


def _exec_sleep(m: Mounted, command: list[str], *opts: str) -> tuple[int, int]:
    """``COMMAND exec [OPTS] box -- sleep 300``: (the client's pid, the command's pid)."""
    proc = subprocess.Popen(
        [*command, "exec", *opts, str(m.mnt / "box"), "--", "sleep", "300"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    m.started.append(proc)
    return proc.pid, _placed_command(m, "box", proc)


@pytest.mark.skipif(PROGRAM is None, reason="containerfs-exec not built (make)")
def test_python_m_containerfs_exec_hands_over_to_the_c_program(cfs: Mounted) -> None:
    cfs.sh("mkdir box")
    client, command = _exec_sleep(cfs, CONTAINERFS)
    # The same process, replaced by the program before it forked: no Python waits.
    assert _parent(command) == client
    assert os.readlink(f"/proc/{client}/exe") == os.path.realpath(str(PROGRAM))
    assert Path(f"/proc/{client}/comm").read_text() == "containerfs-exe\n"


def test_the_containerfs_command_starts_no_python_for_exec(cfs: Mounted) -> None:
    front = BIN / "containerfs"
    if front.read_bytes()[:4] != b"\x7fELF":
        pytest.skip("the venv's containerfs is pip's entry script (make installs the C one)")
    cfs.sh("mkdir box")
    client, command = _exec_sleep(cfs, [str(front)])
    assert _parent(command) == client
    assert os.readlink(f"/proc/{client}/exe") == str(front.resolve())
    # Other commands it hands to the venv's Python.
    out = subprocess.run([front, "--help"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("usage: containerfs ")


def test_a_command_line_handed_back_to_python_runs_the_same(cfs: Mounted) -> None:
    # argparse takes unambiguous abbreviations, the C program does not: it hands the
    # line to Python, which runs the command itself, without the hand-back marker.
    cfs.sh("mkdir box")
    r = cfs.run(
        [*CONTAINERFS, "exec", "--preserve", str(cfs.mnt / "box"), "--", "env"], "exec --preserve"
    )
    assert "PATH=" in r.stdout and "CONTAINERFS_EXEC_IN_PYTHON" not in r.stdout
    client, command = _exec_sleep(cfs, CONTAINERFS, "--preserve")
    assert _parent(command) == client
    assert "python" in os.path.basename(os.readlink(f"/proc/{client}/exe"))


def test_the_containerfs_command_runs_the_daemon_as_make_run_does() -> None:
    """``make run`` is ``.venv/bin/containerfs mount``: the C front hands ``mount`` to
    the venv's Python, which must give the same daemon (a mount that makes real
    namespaces), keeping its pid (SIGTERM from systemd or ^C reaches the daemon)."""
    from .conftest import _skip_reason, mounted

    front = BIN / "containerfs"
    if front.read_bytes()[:4] != b"\x7fELF":
        pytest.skip("the venv's containerfs is pip's entry script (make installs the C one)")
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    with mounted("make_run", command=[str(front)]) as m:
        exe = os.readlink(f"/proc/{m.daemon.pid}/exe")
        assert "python" in os.path.basename(exe)  # the front exec'd Python in its place
        m.sh("mkdir box")
        holder = int(m.read("box/container.init"))
        assert os.readlink(f"/proc/{holder}/ns/uts") != os.readlink("/proc/self/ns/uts")
