"""Faults around the daemon: its state dir, /dev/fuse, its mountpoint, its cgroups.

Each must give a clear message and corrupt nothing: what the kernel holds,
what the tree shows and what the state dir records still agree afterwards.
(SIGKILL under load is ``test_stress.py``; a process exiting or its pid reused
during a ``tasks`` write is ``test_inject.py``.)
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from tests.cgtree import own_subtree

from .conftest import CONTAINERFS, Mounted, _mounted, _skip_reason, start_daemon, wait_for

pytestmark = pytest.mark.root


def tree(cfs: Mounted) -> set[str]:
    return {str(p.relative_to(cfs.mnt)) for p in cfs.mnt.rglob("*") if p.is_dir()}


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem is full."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def test_a_full_or_read_only_state_dir_is_logged_and_caught_up_later(cfs: Mounted) -> None:
    # The state dir on a small tmpfs of its own (what was saved so far copied in).
    assert cfs.stop() == 0
    saved = {p.name: p.read_bytes() for p in cfs.state.iterdir() if p.is_file()}
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "cfs-state", cfs.state], check=True)
    try:
        for name, data in saved.items():
            (cfs.state / name).write_bytes(data)
        cfs.start()
        cfs.sh("mkdir a")
        fill(cfs.state / "filler")
        # The kernel objects are made before the save: the request still succeeds.
        cfs.sh("mkdir b && echo hb > b/uts.hostname && mkdir b/c")
        # Until the journal's last page is full too: then the save fails, logged.
        for _ in range(100):
            if "No space left on device" in cfs.log.read_text():
                break
            cfs.sh("mkdir t && rmdir t")
        assert "cannot save the state to" in cfs.log.read_text()
        (cfs.state / "filler").unlink()
        cfs.sh("mkdir d")  # the next save is a whole one: b and b/c are in it
        assert cfs.daemon.poll() is None
        assert cfs.stop() == 0  # the stop saves the whole tree
        cfs.start()
        assert tree(cfs) == {"a", "b", "b/c", "d"}
        assert cfs.read("b/uts.hostname") == "hb\n"
        assert "Traceback" not in cfs.log.read_text()
    finally:
        if cfs.daemon.poll() is None:
            cfs.stop()
        subprocess.run(["umount", "-l", cfs.state], check=False)


def test_a_read_only_state_dir_is_a_clear_error_at_start(cfs: Mounted) -> None:
    cfs.sh("mkdir a")
    assert cfs.stop() == 0
    subprocess.run(["mount", "--bind", "-o", "ro", cfs.state, cfs.state], check=True)
    try:
        daemon = start_daemon(cfs.subtree, cfs.mnt, cfs.state, cfs.log)
        assert daemon.wait(timeout=30) != 0
        assert not _mounted(cfs.mnt)
        last = cfs.log.read_text().splitlines()[-1]
        assert last.startswith("containerfs: ") and "Read-only file system" in last, last
        assert "Traceback" not in cfs.log.read_text()
    finally:
        subprocess.run(["umount", cfs.state], check=True)
    cfs.start()  # writable again: the tree is still there
    assert tree(cfs) == {"a"}


def test_a_busy_mountpoint_is_detached_at_stop_and_mounted_again(cfs: Mounted) -> None:
    cfs.sh("mkdir a && echo 40 > a/pids.max")
    held = open(cfs.mnt / "a" / "pids.max")  # noqa: SIM115 - held across the stop
    inside = subprocess.Popen(["sleep", "300"], cwd=cfs.mnt / "a")
    try:
        assert cfs.stop() == 0
        assert not _mounted(cfs.mnt)  # lazily detached, though busy
        with pytest.raises(OSError) as exc:
            held.read()
        assert exc.value.errno == errno.ENOTCONN
        cfs.start()  # a new mount on the same place, the old one still held
        assert cfs.read("a/pids.max") == "40\n"
    finally:
        held.close()
        inside.kill()
        inside.wait()


def test_no_dev_fuse_is_a_clear_error_and_makes_nothing() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tmp = Path(tempfile.mkdtemp(prefix="cfs-test-"))
    mnt, state = tmp / "mnt", tmp / "state"
    mnt.mkdir()
    try:
        with own_subtree("nofuse") as subtree:
            # In a mount namespace of its own, /dev without fuse.
            script = 'mount -t tmpfs cfs-nodev /dev && exec "$@"'
            result = subprocess.run(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"]
                + [*CONTAINERFS, "mount", str(mnt), "--state-dir", str(state)],
                preexec_fn=subtree.join,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert result.returncode != 0
            assert "/dev/fuse is missing" in result.stderr, result.stderr
            made = [p for d in subtree.dirs for p in d.iterdir() if p.is_dir()]
            assert made == []  # no cgroup made
        assert not state.exists()
        assert not _mounted(mnt)
    finally:
        mnt.rmdir()
        tmp.rmdir()


def remove_cgroups(cfs: Mounted, name: str) -> None:
    """rmdir a container's cgroups directly in cgroupfs, as another manager might
    (empty: the kernel lets it)."""
    for d in cfs.subtree.dirs:
        for leaf in (d / name / ".tasks", d / name):
            if leaf.is_dir():
                leaf.rmdir()


def test_a_cgroup_removed_behind_the_daemons_back(cfs: Mounted) -> None:
    base = cfs.subtree.v2_dir
    if base is None:
        pytest.skip("no cgroup2 hierarchy here")
    cfs.sh("mkdir a b")
    holder = int(cfs.read("a/container.init"))
    remove_cgroups(cfs, "a")
    # Files of the lost cgroup give an error, not a made-up value; the rest works.
    result = cfs.sh("cat a/pids.current", check=False)
    assert result.returncode != 0 and result.stderr.strip(), result
    result = cfs.exec("a", "true", check=False)
    assert result.returncode != 0 and "cannot add process" in result.stderr, result
    assert cfs.read("b/pids.current") == "0\n"
    assert cfs.daemon.poll() is None
    # rmdir frees what is left (its holder, its v1 cgroups).
    cfs.sh("rmdir a")
    wait_for(lambda: not os.path.exists(f"/proc/{holder}"), what="the holder to go")
    for d, version in zip(cfs.subtree.dirs, cfs.subtree.versions, strict=True):
        if version == 1:
            assert not (d / "a").exists(), d
    assert tree(cfs) == {"b"}
    # A restart with the cgroup gone behind its back drops the container, logged.
    cfs.sh("mkdir c")
    remove_cgroups(cfs, "c")
    assert cfs.stop(signal.SIGKILL) == -signal.SIGKILL
    cfs.start()
    assert tree(cfs) == {"b"}
    assert "dropping c: its cgroup is gone" in cfs.log.read_text()
    assert "Traceback" not in cfs.log.read_text()


def test_a_process_exiting_during_its_tasks_write_moves_nothing_else(cfs: Mounted) -> None:
    # Killed at random moments around the write: the write succeeds (it moved
    # in time) or fails with ESRCH; never is another process moved in its place.
    cfs.sh("echo '-pid -time -user -net -cgroup' > container.subtree && mkdir a")
    tasks = cfs.mnt / "a" / "tasks"
    outcomes = set()
    for _ in range(40):
        victim = subprocess.Popen(["sleep", "60"])
        killer = threading.Timer(random.uniform(0, 0.01), victim.kill)
        killer.start()
        try:
            with open(tasks, "w") as f:
                f.write(f"{victim.pid}\n")
            outcomes.add("moved")
        except OSError as exc:
            assert exc.errno == errno.ESRCH, exc
            outcomes.add("ESRCH")
        killer.join()
        victim.wait()
    assert cfs.read("a/tasks") == ""  # every victim is gone; nothing else came in
    assert cfs.daemon.poll() is None
    assert "Traceback" not in cfs.log.read_text()
    print("outcomes:", sorted(outcomes))
