"""``container.claim``: a container takes over namespaces a process made itself, as an
OCI runtime's init has them between ``runc create`` and ``runc start``.

No runc here: the test does what runc does to the kernel. It makes the container
with ``mkdir`` under a parent that owns only controllers, starts ``unshare --fork
--pid --mount --uts --ipc --net sleep`` and writes the sleeping process's pid into
the container's cgroup directories (``cgroup.procs``, as runc does with
``linux.cgroupsPath``), then claims it. What the container owns, what the kernel
enforces inside and what is left after ``rmdir`` are read from ``/proc`` and
cgroupfs.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cgtree import cgroup_dirs

from .conftest import Mounted, live_pins, netns_prefix, wait_for
from .test_core import gone, ns_inode

pytestmark = pytest.mark.root

#: The namespace kinds ``unshare`` makes below.
MADE = ("ipc", "uts", "net", "pid", "mnt")
NS_KINDS = ("ipc", "uts", "net", "pid", "mnt", "user", "cgroup", "time")


def oci_parent(m: Mounted) -> None:
    """``oci/``: a container whose children own every controller and no namespace,
    as the OCI front end's parent is."""
    root = m.read("container.subtree").split()
    controllers = [k for k in root if k not in NS_KINDS]
    m.sh("echo '-ipc -uts -net -pid -mnt -cgroup -time' > container.subtree && mkdir oci")
    m.sh(f"echo '{' '.join('+' + k for k in controllers)}' > oci/container.subtree")


def cgroup_dirs_of(m: Mounted, container: str) -> list[Path]:
    """The container's directories in every hierarchy (those that exist)."""
    return [d / container for d in m.subtree.dirs if (d / container).is_dir()]


def children(pid: int) -> list[int]:
    out: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        out += [int(p) for p in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return out


class Unshared:
    """``unshare --fork ... sleep``: ``pid`` is the sleeping process (the init of its
    new pid namespace), in the daemon's pid namespace."""

    def __init__(self, *flags: str) -> None:
        self.outer = subprocess.Popen(
            ["unshare", "--fork", *flags, "sleep", "1000"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        found: list[int] = []

        def started() -> bool:
            found[:] = children(self.outer.pid)
            return bool(found) and "sleep" in Path(f"/proc/{found[0]}/comm").read_text()

        wait_for(started, 10, "the unshared sleep")
        self.pid = found[0]

    def place(self, dirs: list[Path]) -> None:
        """Put the process into ``dirs`` as runc puts its init at ``linux.cgroupsPath``."""
        for d in dirs:
            (d / "cgroup.procs").write_text(str(self.pid))

    def stop(self) -> None:
        if self.outer.poll() is None:
            self.outer.kill()
        self.outer.wait(10)
        with_pidfd_kill(self.pid)


def with_pidfd_kill(pid: int) -> None:
    """SIGKILL our sleep if it still lives (through a pidfd: never another process)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.fixture
def oci(cfs: Mounted) -> Iterator[tuple[Mounted, Unshared]]:
    """``oci/web`` made, and a process in namespaces of its own placed in its cgroups."""
    oci_parent(cfs)
    cfs.sh("mkdir oci/web")
    p = Unshared("--pid", "--mount", "--uts", "--ipc", "--net")
    try:
        p.place(cgroup_dirs_of(cfs, "oci/web"))
        yield cfs, p
    finally:
        p.stop()


def subsystems(m: Mounted, container: str) -> dict[str, tuple[str, str]]:
    lines = m.read(f"{container}/container.subsystems").splitlines()
    return {k: (state, ident) for k, state, ident in (line.split() for line in lines)}


def claim(m: Mounted, container: str, text: str) -> None:
    """One write(2) of ``text``, as ``echo`` makes it."""
    fd = os.open(m.mnt / container / "container.claim", os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def test_a_claim_owns_the_processs_namespaces(oci: tuple[Mounted, Unshared]) -> None:
    m, p = oci
    before = subsystems(m, "oci/web")
    assert all(before[k][0] == "shared" for k in MADE)
    claim(m, "oci/web", f"{p.pid}\n")
    now = subsystems(m, "oci/web")
    for kind in NS_KINDS:
        if kind in MADE:
            assert now[kind] == ("own", str(ns_inode(p.pid, kind))), kind
        elif kind in now:
            assert now[kind] == before[kind], kind  # the parent's, as before
    assert m.read("oci/web/container.origin") == "oci\n"
    # Its tasks are the process, in its cgroup directory itself, as runc put it.
    assert m.read("oci/web/tasks").split() == [str(p.pid)]
    assert not (m.subtree.v2_dir / "oci/web/.tasks").exists()  # type: ignore[operator]
    # A holder keeps the namespaces; it is no task, and it is in them.
    holder = int(m.read("oci/web/container.init"))
    assert holder != p.pid and holder in live_pins(str(m.mnt))
    assert all(ns_inode(holder, k) == ns_inode(p.pid, k) for k in MADE)
    # Its network namespace has its ip netns name now, as any container owning one.
    name = f"{netns_prefix(m.state)}:oci:web"
    assert os.stat(f"/run/netns/{name}").st_ino == ns_inode(p.pid, "net")
    # The namespace files are the container's to write now.
    m.sh("echo web-1 > oci/web/uts.hostname")
    out = subprocess.run(
        ["nsenter", "-t", str(p.pid), "-u", "hostname"], capture_output=True, text=True
    )
    assert out.stdout.strip() == "web-1"


def test_a_view_written_is_enforced_inside_with_no_read_in_between(
    oci: tuple[Mounted, Unshared],
) -> None:
    m, p = oci
    claim(m, "oci/web", str(p.pid))
    m.sh("echo 4 > oci/web/ipc.shm_mni")
    # Inside: the container sets its own value (100, its internal view) and makes
    # segments; nothing reads through containerfs meanwhile, yet the kernel stops
    # at the parent's 4.
    shm_limit_holds(p, "100", "4")
    assert m.read("oci/web/ipc.shm_mni.internal") == "100\n"
    assert m.read("oci/web/ipc.shm_mni.effective") == "4\n"


def test_kill_and_rmdir_leave_no_cgroup_and_no_holder(oci: tuple[Mounted, Unshared]) -> None:
    m, p = oci
    claim(m, "oci/web", str(p.pid))
    holder = int(m.read("oci/web/container.init"))
    dirs = cgroup_dirs_of(m, "oci/web")
    assert dirs
    m.sh("echo 1 > oci/web/container.kill && rmdir oci/web")
    wait_for(lambda: gone(p.pid) and gone(holder), 10, "the init and the holder to end")
    assert not any(d.exists() for d in dirs)
    assert not (m.mnt / "oci/web").exists()


def test_rmdir_after_the_runtime_removed_the_cgroups(oci: tuple[Mounted, Unshared]) -> None:
    """``runc delete`` removes the directories at ``linux.cgroupsPath`` itself; the
    container's ``rmdir`` then frees the rest and succeeds."""
    m, p = oci
    claim(m, "oci/web", str(p.pid))
    holder = int(m.read("oci/web/container.init"))
    m.sh("echo 1 > oci/web/container.kill")
    wait_for(lambda: gone(holder), 10, "the holder to end with the init")
    dirs = cgroup_dirs_of(m, "oci/web")
    for d in dirs:  # what runc's delete does
        d.rmdir()
    m.sh("rmdir oci/web")
    assert not (m.mnt / "oci/web").exists()
    assert "oci" in os.listdir(m.mnt) and "web" not in os.listdir(m.mnt / "oci")
    assert "removed by its runtime" in m.log.read_text()  # expected: no warning
    assert "WARNING" not in m.log.read_text()


def unchanged(m: Mounted, before: dict[str, tuple[str, str]]) -> None:
    assert subsystems(m, "oci/web") == before
    assert m.read("oci/web/container.origin") == "mkdir\n"
    assert m.read("oci/web/container.init") == "0\n"
    assert (m.subtree.v2_dir / "oci/web/.tasks").is_dir()  # type: ignore[operator]


def test_refused_claims_change_nothing(oci: tuple[Mounted, Unshared]) -> None:
    m, p = oci
    before = subsystems(m, "oci/web")
    pins = live_pins(str(m.mnt))
    for text, code in (("abc", errno.EINVAL), (" \n", errno.EINVAL), (f"{p.pid} 1", errno.EINVAL)):
        with pytest.raises(OSError) as exc:
            claim(m, "oci/web", text)
        assert exc.value.errno == code, text
    with pytest.raises(OSError) as exc:  # pid 1 is never a task
        claim(m, "oci/web", "1")
    assert exc.value.errno == errno.EINVAL
    outside = Unshared("--ipc")  # in namespaces of its own, but not in the container
    try:
        with pytest.raises(OSError) as exc:
            claim(m, "oci/web", str(outside.pid))
        assert exc.value.errno == errno.ESRCH
    finally:
        outside.stop()
    with pytest.raises(OSError) as exc:  # no such process
        claim(m, "oci/web", "4194304")
    assert exc.value.errno == errno.ESRCH
    # Not root: the kernel refuses the open (root's file, mode 0200).
    assert oct((m.mnt / "oci/web/container.claim").stat().st_mode & 0o777) == "0o200"
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        out = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c",
             f"echo {p.pid} > {m.mnt}/oci/web/container.claim"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert out.returncode != 0 and "Permission denied" in out.stderr
    unchanged(m, before)
    assert live_pins(str(m.mnt)) == pins


def test_a_claimed_container_cannot_be_claimed_again(oci: tuple[Mounted, Unshared]) -> None:
    m, p = oci
    claim(m, "oci/web", str(p.pid))
    before = subsystems(m, "oci/web")
    with pytest.raises(OSError) as exc:
        claim(m, "oci/web", str(p.pid))
    assert exc.value.errno == errno.EBUSY
    assert subsystems(m, "oci/web") == before


def test_namespaces_of_another_container_are_refused(cfs: Mounted) -> None:
    """A process that joined another container's namespace does not make this
    container their owner."""
    oci_parent(cfs)
    cfs.sh("mkdir oci/web oci/db && echo +ipc > container.subtree && mkdir other")
    other = cfs.read("other/container.init").strip()
    p = subprocess.Popen(
        ["nsenter", "-t", other, "-i", "sleep", "1000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: ns_inode(p.pid, "ipc") == ns_inode(int(other), "ipc"), 10, "nsenter")
        for d in cgroup_dirs_of(cfs, "oci/web"):
            (d / "cgroup.procs").write_text(str(p.pid))
        before = subsystems(cfs, "oci/web")
        with pytest.raises(OSError) as exc:
            claim(cfs, "oci/web", str(p.pid))
        assert exc.value.errno == errno.EINVAL
        unchanged(cfs, before)
    finally:
        p.kill()
        p.wait(10)


def test_container_cgroup_is_the_one_path_or_refused(cfs: Mounted) -> None:
    """runc takes one ``linux.cgroupsPath`` for every hierarchy: the daemon's cgroups
    must be at one path in all of them, else the file says ``-`` (and the log why)."""
    cfs.sh("mkdir web")
    paths = {h.cgroup for h in cgroup_dirs()}  # the test's own cgroups, one per hierarchy
    if len(paths) == 1:
        base = "/".join(p for p in (*paths, cfs.subtree.name) if p.strip("/"))
        assert cfs.read("web/container.cgroup") == f"/{base.strip('/')}/web\n"
    else:
        assert cfs.read("web/container.cgroup") == "-\n"
        assert cfs.read("container.cgroup") == "-\n"
        wait_for(lambda: "not at one path" in cfs.log.read_text(), 5, "the reason logged")
        assert cfs.log.read_text().count("not at one path") == 1  # once, not per read


def test_tasks_of_a_claimed_container_are_its_directorys(oci: tuple[Mounted, Unshared]) -> None:
    """``tasks`` writes and ``exec`` put processes where runc put the init: the
    container's directory, which ``tasks`` lists."""
    m, p = oci
    claim(m, "oci/web", str(p.pid))
    out = m.exec("oci/web", "sh", "-c", "cat /proc/self/cgroup; hostname")
    v2 = [line for line in out.stdout.splitlines() if line.startswith("0::")]
    assert v2 and v2[0].endswith("/oci/web"), out.stdout
    # the exec'd process is gone; the init stays the only task
    assert m.read("oci/web/tasks").split() == [str(p.pid)]


def shm_limit_holds(p: Unshared, expect_internal: str, expect_segments: str) -> None:
    """Inside (nsenter into the process's namespaces, no containerfs read between):
    the container's own shmmni reads back, and the kernel stops at the limit."""
    script = (
        "ipcrm -a 2>/dev/null; echo 100 > /proc/sys/kernel/shmmni; cat /proc/sys/kernel/shmmni;"
        " for i in 1 2 3 4 5 6; do ipcmk -M 1024 >/dev/null 2>&1; done;"
        " ipcs -m | grep -c '^0x'"
    )
    out = subprocess.run(
        ["nsenter", "-t", str(p.pid), "-a", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.stdout.split() == [expect_internal, expect_segments], out.stderr


@pytest.mark.parametrize("how", ["stop", "crash"])
def test_a_claimed_container_survives_a_restart(oci: tuple[Mounted, Unshared], how: str) -> None:
    m, p = oci
    claim(m, "oci/web", str(p.pid))
    m.sh("echo 4 > oci/web/ipc.shm_mni")
    before = subsystems(m, "oci/web")
    holder = m.read("oci/web/container.init")
    m.stop(signal.SIGTERM if how == "stop" else signal.SIGKILL)
    m.start()
    assert subsystems(m, "oci/web") == before
    assert m.read("oci/web/container.origin") == "oci\n"
    assert m.read("oci/web/container.init") == holder
    assert m.read("oci/web/tasks").split() == [str(p.pid)]  # in its directory, still
    shm_limit_holds(p, "100", "4")  # the views are bound again
    m.sh("echo 1 > oci/web/container.kill && rmdir oci/web")
    assert not any(d.exists() for d in cgroup_dirs_of(m, "oci/web"))


def test_an_exited_init_leaves_the_container_until_rmdir(oci: tuple[Mounted, Unshared]) -> None:
    """The OCI lifecycle: a container whose process exited is ``stopped``, not gone;
    its runtime's ``delete`` removes it. Its holder's end is expected, no error."""
    m, p = oci
    claim(m, "oci/web", str(p.pid))
    holder = int(m.read("oci/web/container.init"))
    os.kill(p.pid, signal.SIGKILL)
    wait_for(lambda: gone(holder), 10, "the holder to end with the pid namespace")
    wait_for(lambda: "its init exited" in m.log.read_text(), 5, "discovery to see it")
    time.sleep(0.5)  # a release, had there been one, came in milliseconds
    assert (m.mnt / "oci/web").is_dir()
    assert m.read("oci/web/container.events").splitlines() == ["populated 0", "released 0"]
    assert "died" not in m.log.read_text()
    m.stop()
    m.start()  # taken over though its holder is gone
    assert m.read("oci/web/container.origin") == "oci\n"
    m.sh("rmdir oci/web")
    assert not any(d.exists() for d in cgroup_dirs_of(m, "oci/web"))


def test_a_user_namespace_is_claimed_and_joined_last(cfs: Mounted) -> None:
    """runc with a user namespace: its init's namespaces are owned by that user
    namespace; the holder joins it after every other, and the views hold."""
    oci_parent(cfs)
    cfs.sh("mkdir oci/web")
    p = Unshared("--user", "--map-root-user", "--pid", "--mount", "--uts", "--ipc", "--net")
    try:
        p.place(cgroup_dirs_of(cfs, "oci/web"))
        claim(cfs, "oci/web", str(p.pid))
        now = subsystems(cfs, "oci/web")
        for kind in (*MADE, "user"):
            assert now[kind] == ("own", str(ns_inode(p.pid, kind))), kind
        cfs.sh("echo 4 > oci/web/ipc.shm_mni")
        shm_limit_holds(p, "100", "4")
    finally:
        p.stop()


def test_namespaces_made_inside_a_claimed_container_are_a_clone_below_it(
    oci: tuple[Mounted, Unshared],
) -> None:
    m, p = oci
    claim(m, "oci/web", str(p.pid))
    inner = subprocess.Popen(
        ["nsenter", "-t", str(p.pid), "-a", "unshare", "--uts", "sleep", "1000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: bool(children(inner.pid)), 10, "the inner unshare")
        # nsenter's child is not in the container's cgroup: put it where runc's
        # exec puts a process (the container's directory).
        sleeper = children(inner.pid)[0]
        for d in cgroup_dirs_of(m, "oci/web"):
            (d / "cgroup.procs").write_text(str(sleeper))
        web = m.mnt / "oci/web"
        wait_for(lambda: any((web / n).is_dir() for n in os.listdir(web)), 10, "a clone")
        kids = [n for n in os.listdir(m.mnt / "oci/web") if (m.mnt / "oci/web" / n).is_dir()]
        assert len(kids) == 1, (kids, m.log_tail())
        (kid,) = kids
        assert m.read(f"oci/web/{kid}/container.origin") == "clone\n"
        assert subsystems(m, f"oci/web/{kid}")["uts"] == ("own", str(ns_inode(sleeper, "uts")))
        wait_for(
            lambda: m.read(f"oci/web/{kid}/tasks").split() == [str(sleeper)],
            10,
            "the task moved into the clone (after it is made)",
        )
        assert m.read("oci/web/tasks").split() == [str(p.pid)]
    finally:
        inner.kill()
        inner.wait(10)


def test_metrics_count_the_processes_in_the_directory(oci: tuple[Mounted, Unshared]) -> None:
    m, p = oci
    claim(m, "oci/web", str(p.pid))
    lines = [ln for ln in m.read("metrics").splitlines() if ln.startswith("containerfs_processes")]
    assert any('container="/oci/web"' in ln and ln.endswith(" 1") for ln in lines), lines
