"""``containerfs tree`` and ``containerfs top`` as people at a terminal use them.

``top`` runs on a real terminal: tmux runs it, the test types keys with
``send-keys`` and reads the screen with ``capture-pane``. Both read only the
mounted files, so they are run as an ordinary user too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import containerfs

from .conftest import CONTAINERFS, TIME_SCALE, Mounted, wait_for

pytestmark = pytest.mark.root

NOBODY = 65534
DEBIAN_PYTHON = "/usr/bin/python3"


#: The checkout holding this containerfs, for an ordinary user's interpreter.
SOURCE = str(Path(containerfs.__file__).parent.parent)


def cli(m: Mounted, *argv: str, user: bool = False) -> subprocess.CompletedProcess[str]:
    """``containerfs ARGV``; with ``user``, as nobody from the start (setpriv), with
    Debian's python3 (the suite's interpreter lives in root's home): tree and top
    need nothing but the standard library and containerfs itself."""
    command = CONTAINERFS
    if user:
        if shutil.which("setpriv") is None or not Path(DEBIAN_PYTHON).exists():
            pytest.skip(f"needs setpriv (util-linux) and {DEBIAN_PYTHON}")
        command = [
            "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "env", f"PYTHONPATH={SOURCE}", DEBIAN_PYTHON, "-m", "containerfs",
        ]  # fmt: skip
    return subprocess.run(
        [*command, *argv], capture_output=True, text=True, timeout=30 * TIME_SCALE, cwd="/"
    )


def test_tree_draws_owners_tasks_and_policies(cfs: Mounted) -> None:
    cfs.sh(
        "mkdir web web/db build && echo '+ipc +pids' > web/container.subtree"
        " && mkdir web/cache && echo delete > build/container.release"
    )
    cfs.spawn("web/db", "sleep", "600")
    cfs.spawn("web/db", "sleep", "600")
    wait_for(lambda: len(cfs.read("web/db/tasks").split()) == 2, 10, "two sleeps in web/db")
    out = cli(cfs, "tree", str(cfs.mnt))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(str(cfs.mnt))
    assert lines[1].startswith("├─build  [0 tasks, release delete]  owns: ")
    assert lines[2].startswith("└─web  [0 tasks, release ignore]  owns: ")
    assert lines[3] == "  ├─cache  [0 tasks, release ignore]  owns: ipc pids"
    assert lines[4] == "  └─db  [2 tasks, release ignore]  owns: -"
    assert len(lines) == 5
    # below a container, and as JSON for scripts
    data = json.loads(cli(cfs, "tree", "--json", str(cfs.mnt / "web")).stdout)
    assert [(n["path"], n["depth"], n["tasks"]) for n in data] == [
        ("/web", 0, 0), ("/web/cache", 1, 0), ("/web/db", 1, 2)
    ]  # fmt: skip
    assert data[1]["owns"] == ["ipc", "pids"] and "uts" in data[1]["shares"]
    # an ordinary user sees the same tree (the test's directory is made 0700)
    os.chmod(cfs.mnt.parent, 0o755)
    as_user = cli(cfs, "tree", str(cfs.mnt), user=True)
    assert as_user.stdout == out.stdout, as_user.stderr


def test_tree_refuses_a_path_outside_containerfs(cfs: Mounted) -> None:
    out = cli(cfs, "tree", "/tmp")
    assert out.returncode != 0 and "not inside a mounted containerfs" in out.stderr


@pytest.fixture
def tmux() -> Iterator[str]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (Debian package tmux; make test installs it)")
    name = f"cfs-top-{uuid.uuid4().hex[:8]}"
    socket = f"/tmp/{name}.sock"
    yield socket
    subprocess.run(["tmux", "-S", socket, "kill-server"], capture_output=True)
    if os.path.exists(socket):
        os.unlink(socket)


def _screen(socket: str) -> str:
    return subprocess.run(
        ["tmux", "-S", socket, "capture-pane", "-p", "-t", "top"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _rows(screen: str) -> list[str]:
    """The container paths in the order the screen shows them."""
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Container"))
    return [line.split()[0] for line in lines[start + 1 :] if line.strip()]


def test_top_sorts_by_each_column_and_quits_on_q(cfs: Mounted, tmux: str) -> None:
    cfs.sh("mkdir busy idle && echo 100 > idle/pids.max")
    # one task spinning in busy, three sleeping in idle
    cfs.spawn("busy", "sh", "-c", "while :; do :; done")
    for n in range(1, 4):  # one at a time (top's sorting is the subject here, not exec)
        sleeper = cfs.spawn("idle", "sleep", "600")

        def placed(n: int = n, p: subprocess.Popen[bytes] = sleeper) -> bool:
            if p.poll() is not None:  # exec failed: say why
                assert p.stderr is not None
                raise AssertionError(f"exec exited {p.returncode}: {p.stderr.read()!r}")
            return len(cfs.read("idle/tasks").split()) == n

        wait_for(placed, 10, f"sleep {n} in idle")
    argv = " ".join([*CONTAINERFS, "top", "--delay", "0.5", str(cfs.mnt)])
    subprocess.run(
        ["tmux", "-S", tmux, "new-session", "-d", "-s", "top", "-x", "120", "-y", "20",
         f"{argv}; echo top-exited-$?; sleep 600"],
        check=True,
    )  # fmt: skip

    def shown(pred: object, what: str) -> str:
        last = [""]

        def check() -> bool:
            last[0] = _screen(tmux)
            try:
                return bool(pred(last[0]))  # type: ignore[operator]
            except (StopIteration, ValueError):  # not drawn yet
                return False

        try:
            wait_for(check, 20, what)
        except AssertionError:
            raise AssertionError(f"{what}; the screen:\n{last[0]}") from None
        return last[0]

    def first(a: str, b: str) -> object:
        """The screen lists container ``a`` above ``b`` (the root's figures include
        its children's, so it is left out)."""
        return lambda s: (r := _rows(s)).index(a) < r.index(b)

    # by CPU at start: the spinning container above the sleeping one, once a
    # second sample gives a CPU %
    shown(lambda s: "order cpu" in s and first("/busy", "/idle")(s), "busy above idle by CPU")
    for key, order in (("t", "tasks"), ("n", "pids")):  # three tasks and pids against one
        subprocess.run(["tmux", "-S", tmux, "send-keys", "-t", "top", key], check=True)
        screen = shown(
            lambda s, o=order: f"order {o}" in s and first("/idle", "/busy")(s),  # type: ignore[misc]
            f"idle above busy by {order}",
        )
    idle = next(line for line in screen.splitlines() if line.startswith("/idle "))
    assert idle.split()[1] == "3" and idle.split()[4] == "3"
    subprocess.run(["tmux", "-S", tmux, "send-keys", "-t", "top", "p"], check=True)
    shown(lambda s: _rows(s) == ["/", "/busy", "/idle"], "by path")
    subprocess.run(["tmux", "-S", tmux, "send-keys", "-t", "top", "q"], check=True)
    screen = shown(lambda s: "top-exited-" in s, "top to quit")
    assert "top-exited-0" in screen
    assert "Traceback" not in screen


def test_top_batch_prints_tables(cfs: Mounted) -> None:
    cfs.sh("mkdir a && echo 5 > a/pids.max")
    os.chmod(cfs.mnt.parent, 0o755)  # made 0700: the user must reach the mount
    start = time.monotonic()
    out = cli(cfs, "top", "--batch", "-n", "2", "-d", "0.2", str(cfs.mnt), user=True)
    assert out.returncode == 0, out.stderr
    tables = [t for t in out.stdout.split("\n\n") if t.strip()]
    assert len(tables) == 2 and time.monotonic() - start >= 0.2
    header, *rows = tables[1].splitlines()
    assert header.split() == ["Container", "Tasks", "%CPU", "Memory", "Pids"]
    a = next(r.split() for r in rows if r.startswith("/a "))
    assert a[1] == "0" and a[4] == "0"  # no tasks, pids.current 0
