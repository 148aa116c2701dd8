"""The OCI front end (``containerfs oci`` / ``containerfs-runc``) with the real runc,
then under podman (Debian's, unpacked by ``tools/fetch-podman``, not installed).

runc 1.1 takes one ``linux.cgroupsPath`` for every hierarchy, so these daemons start
in cgroups at ONE path in every hierarchy (``same_path_mount``): on a hybrid host
where the test's own cgroups differ between hierarchies (this VM: memory at
``/process_api/ID``, the rest at ``/``), that is the deepest of them plus a new
directory, with the missing levels made in the other hierarchies (ours, removed
after). What each test checks is read from ``/proc``, cgroupfs and the kernel's
refusals inside the container.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cgtree import OwnSubtree, _delegate, _delegated, _teardown, cgroup_dirs

from .conftest import (
    TIME_SCALE,
    Mounted,
    _skip_reason,
    mounted,
    wait_for,
)
from .test_core import gone, ns_inode

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
FRONT = [sys.executable, "-m", "containerfs", "oci"]
RUNC = shutil.which("runc") or "/usr/sbin/runc"
BUSYBOX = shutil.which("busybox")
#: Where runc 1.1 mounts the name=systemd hierarchy it also writes to.
SYSTEMD_V1 = Path("/sys/fs/cgroup/systemd")


def _skip() -> str | None:
    reason = _skip_reason()
    if reason:
        return reason
    if not os.access(RUNC, os.X_OK):
        return "runc missing (Debian package runc)"
    if BUSYBOX is None:
        return "busybox missing (Debian package busybox-static)"
    return None


# -- a daemon in cgroups at one path ---------------------------------------------------


@contextlib.contextmanager
def same_path_subtree(tag: str) -> Iterator[OwnSubtree]:
    """A fresh cgroup at ONE path in every hierarchy (and in name=systemd, where
    runc makes directories too), below the test's own cgroup in each; every level
    made here is removed after, with whatever runs inside."""
    dirs = cgroup_dirs()
    for m in dirs:  # a delegated cgroup2 cgroup hands its controllers down, as own_subtree's
        if m.version == 2 and _delegated():
            _delegate(m)
    base = max((m.cgroup for m in dirs), key=len).rstrip("/")
    for m in dirs:
        here = m.cgroup.rstrip("/")
        if base != here and not base.startswith(here + "/"):
            pytest.skip(f"the test's cgroups are not nested ({m.cgroup} vs {base})")
    name = f"cfs-oci-{tag[:20]}-{secrets.token_hex(4)}"
    rel = [p for p in f"{base}/{name}".split("/") if p]
    mounts = [m.mount for m in dirs] + ([SYSTEMD_V1] if SYSTEMD_V1.is_dir() else [])
    made: list[Path] = []  # every level made here, top first per hierarchy
    subtree = OwnSubtree(name, [], [], [], [])
    try:
        for i, mount in enumerate(mounts):
            d = mount
            for part in rel:
                d = d / part
                for _ in range(50):  # another test may remove a shared level meanwhile
                    try:
                        d.mkdir()
                        made.append(d)
                        break
                    except FileExistsError:
                        break
                    except FileNotFoundError:
                        time.sleep(0.01)
            if i < len(dirs):
                m = dirs[i]
                if "cpuset" in m.controllers:
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        top = m.mount.joinpath(*[p for p in m.cgroup.split("/") if p])
                        value = (top / f).read_text()
                        for level in [x for x in made if x.is_relative_to(top)]:
                            (level / f).write_text(value)
                subtree.dirs.append(d)
                subtree.procs_files.append(d / "cgroup.procs")
                subtree.versions.append(m.version)
                subtree.controllers.append(m.controllers)
        yield subtree
    finally:
        leaves = [d for d in made if d.name == name]
        _teardown(leaves, subtree.started)
        for d in reversed(made):  # the shared levels above, if nothing else uses them
            if d.name != name:
                with contextlib.suppress(OSError):
                    d.rmdir()


@contextlib.contextmanager
def same_path_mount(name: str) -> Iterator[Mounted]:
    """The ``cfs`` fixture's daemon, started in cgroups at one path (runc's need)."""
    reason = _skip()
    if reason:
        pytest.skip(reason)
    with mounted(name, subtree_of=same_path_subtree) as m:
        yield m


# -- runc through the front end ------------------------------------------------------


def make_rootfs(rootfs: Path) -> None:
    """busybox-static and its applets, and util-linux's ``ipcmk`` (busybox has none)
    with the libraries ``ldd`` names: the whole image."""
    (rootfs / "bin").mkdir(parents=True)
    assert BUSYBOX is not None
    shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in ("sh", "hostname", "sleep", "cat", "echo", "ps", "true"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    for d in ("proc", "sys", "dev", "etc", "tmp"):
        (rootfs / d).mkdir()
    ipcmk = shutil.which("ipcmk")
    if ipcmk is not None:
        shutil.copy(ipcmk, rootfs / "bin" / "ipcmk")
        libs = subprocess.run(["ldd", ipcmk], capture_output=True, text=True).stdout
        for word in libs.split():
            if word.startswith("/") and os.path.exists(word):
                dest = rootfs / word.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(word, dest)


def make_bundle(where: Path, args: list[str], **linux: Any) -> Path:
    """A bundle as ``runc spec`` writes it, with ``args`` and no terminal."""
    bundle = where / "bundle"
    make_rootfs(bundle / "rootfs")
    subprocess.run([RUNC, "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    config["hostname"] = "oci-test"
    config["linux"].update(linux)
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


class Front:
    """The front end as runc's callers run it, with its own state dir and log."""

    def __init__(self, m: Mounted, tmp: Path) -> None:
        self.m = m
        self.root = tmp / "runc-root"
        self.log = tmp / "oci-log"
        self.out = tmp / "out"

    def words(self, *argv: str) -> list[str]:
        return [
            *FRONT,
            "--mount",
            str(self.m.mnt),
            "--root",
            str(self.root),
            "--log-format=json",
            "--log",
            str(self.log),
            *argv,
        ]

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """A command whose output is read (not create: its stdio is the container's)."""
        return subprocess.run(
            self.words(*argv), capture_output=True, text=True, timeout=60 * TIME_SCALE
        )

    def create(self, bundle: Path, cid: str) -> tuple[int, str]:
        """``create``, the container's output going to a file as conmon's pipe would
        (a pipe would stay open as long as the container: its stdio is ours)."""
        err = Path(str(self.out) + ".err")
        with open(self.out, "ab") as out, open(err, "wb") as errors:
            done = subprocess.run(
                self.words("create", "--bundle", str(bundle), "--pid-file", f"{self.out}.pid", cid),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=errors,
                timeout=60 * TIME_SCALE,
            )
        return done.returncode, err.read_text()

    def pid(self) -> int:
        return int(Path(str(self.out) + ".pid").read_text())


def cgroup_dirs_of(m: Mounted, container: str) -> list[Path]:
    """The container's cgroup directories that exist, in every hierarchy and in
    name=systemd (where runc makes one too)."""
    rel = Path(m.subtree.dirs[0]).relative_to(_mount_of(m.subtree.dirs[0]))
    mounts = [_mount_of(d) for d in m.subtree.dirs] + [SYSTEMD_V1]
    return [p for p in (mp / rel / container for mp in mounts) if p.is_dir()]


def _mount_of(d: Path) -> Path:
    for p in [d, *d.parents]:
        if p.parent == Path("/sys/fs/cgroup"):
            return p
    raise AssertionError(f"{d} is not below /sys/fs/cgroup")


@pytest.fixture
def oci(request: pytest.FixtureRequest) -> Iterator[tuple[Mounted, Front, Path]]:
    with same_path_mount(request.node.name) as m:
        tmp = Path(tempfile.mkdtemp(prefix="cfs-oci-b-"))
        front = Front(m, tmp)
        try:
            yield m, front, tmp
        finally:
            # whatever a failed test left: runc's containers, by the front end's delete
            if front.root.is_dir():
                for cid in os.listdir(front.root):
                    front.run("delete", "--force", cid)
            shutil.rmtree(tmp, ignore_errors=True)


def test_create_start_state_kill_delete_through_the_front_end(
    oci: tuple[Mounted, Front, Path],
) -> None:
    m, front, tmp = oci
    bundle = make_bundle(tmp, ["sh", "-c", "hostname; sleep 1000"], sysctl={"kernel.shmmni": "64"})
    status, err = front.create(bundle, "web")
    assert status == 0, err + m.log_tail()
    pid = front.pid()
    # the container is oci/web, owning runc's namespaces and cgroups at one path
    assert m.read("oci/web/container.origin").strip() == "oci"
    listed = {
        line.split()[0]: line.split()[1:]
        for line in m.read("oci/web/container.subsystems").splitlines()
    }
    for kind in ("ipc", "uts", "net", "pid", "mnt"):
        assert listed[kind] == ["own", str(ns_inode(pid, kind))], kind
    assert listed["user"][0] == "shared"
    cgpath = m.read("oci/web/container.cgroup").strip()
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hid, _, path = line.split(":", 2)
        assert path == cgpath, line  # every hierarchy, name=systemd and 0:: included
    # the knob sysctl became the internal view; runc's copy of the config lacks it
    assert m.read("oci/web/ipc.shm_mni.internal").strip() == "64"
    state = json.loads(front.run("state", "web").stdout)
    assert state["status"] == "created" and state["pid"] == pid
    assert state["bundle"] == str(bundle)
    private = json.loads(Path(f"{front.root}.containerfs/web/config.json").read_text())
    assert "kernel.shmmni" not in private["linux"].get("sysctl", {})

    assert front.run("start", "web").returncode == 0
    wait_for(lambda: "oci-test" in front.out.read_text(), 10, "the container's hostname")
    assert json.loads(front.run("state", "web").stdout)["status"] == "running"
    inside = front.run("exec", "web", "cat", "/proc/sys/kernel/shmmni")
    assert inside.stdout.strip() == "64", inside.stderr
    assert str(pid) in m.read("oci/web/tasks").split()
    ps = json.loads(front.run("ps", "--format", "json", "web").stdout)
    assert pid in ps

    assert front.run("kill", "web", "KILL").returncode == 0
    wait_for(
        lambda: json.loads(front.run("state", "web").stdout)["status"] == "stopped", 10, "stop"
    )
    assert front.run("delete", "web").returncode == 0
    assert not (m.mnt / "oci" / "web").exists()
    assert cgroup_dirs_of(m, "oci/web") == []
    assert gone(pid)
    assert not (front.root / "web").exists()
    assert not Path(f"{front.root}.containerfs/web").exists()
    assert front.run("state", "web").returncode == 1
    assert front.run("delete", "--force", "web").returncode == 0  # containerd's second delete


def test_a_config_sysctl_is_the_internal_view_and_a_parent_limit_holds(
    oci: tuple[Mounted, Front, Path],
) -> None:
    """``linux.sysctl``'s ``kernel.shmmni`` is the container's own value; a parent's
    limit written between create and start holds for the process runc starts."""
    m, front, tmp = oci
    script = "cat /proc/sys/kernel/shmmni; for i in 1 2 3; do ipcmk -M 1024 2>&1; done; echo end"
    bundle = make_bundle(tmp, ["sh", "-c", script], sysctl={"kernel.shmmni": "3"})
    assert front.create(bundle, "ipc")[0] == 0
    assert m.read("oci/ipc/ipc.shm_mni.internal").strip() == "3"
    (m.mnt / "oci" / "ipc" / "ipc.shm_mni").write_text("2\n")
    assert m.read("oci/ipc/ipc.shm_mni.effective").strip() == "2"
    assert front.run("start", "ipc").returncode == 0
    wait_for(lambda: "end" in front.out.read_text(), 10, "the container's script")
    out = front.out.read_text().splitlines()
    assert out[0] == "3"  # what the container set for itself
    assert sum("Shared memory id" in line for line in out) == 2, out  # the parent's 2
    assert any("No space left on device" in line for line in out), out
    assert front.run("delete", "--force", "ipc").returncode == 0
    assert not (m.mnt / "oci" / "ipc").exists()


def test_delete_force_of_a_running_container_leaves_nothing(
    oci: tuple[Mounted, Front, Path],
) -> None:
    m, front, tmp = oci
    bundle = make_bundle(tmp, ["sleep", "1000"])
    assert front.create(bundle, "db")[0] == 0
    pid = front.pid()
    assert front.run("start", "db").returncode == 0
    refused = front.run("delete", "db")
    assert refused.returncode == 1 and "not stopped" in refused.stderr
    assert (m.mnt / "oci" / "db").is_dir()
    assert front.run("delete", "--force", "db").returncode == 0
    assert gone(pid)
    assert not (m.mnt / "oci" / "db").exists()
    assert cgroup_dirs_of(m, "oci/db") == []
    assert not (front.root / "db").exists()


def test_a_failed_create_leaves_nothing_and_says_why_once(
    oci: tuple[Mounted, Front, Path],
) -> None:
    m, front, tmp = oci
    bundle = make_bundle(tmp, ["sleep", "1000"])
    config = json.loads((bundle / "config.json").read_text())
    config["mounts"].append(
        {"destination": "/x", "type": "bind", "source": "missing", "options": ["bind"]}
    )
    (bundle / "config.json").write_text(json.dumps(config))
    status, err = front.create(bundle, "bad")
    assert status == 1
    (line,) = front.log.read_text().splitlines()  # one JSON object, as podman reads it
    assert json.loads(line)["level"] == "error" and "missing" in json.loads(line)["msg"]
    assert "missing" in err
    assert not (m.mnt / "oci" / "bad").exists()
    assert cgroup_dirs_of(m, "oci/bad") == []
    assert not (front.root / "bad").exists()
    assert not Path(f"{front.root}.containerfs/bad").exists()


def test_a_refused_claim_undoes_runcs_container_too(oci: tuple[Mounted, Front, Path]) -> None:
    """A bundle joining another OCI container's ipc namespace: runc makes it, the
    daemon refuses the claim (the namespace is another container's), and the front
    end removes runc's container, the directory and the private copy again."""
    m, front, tmp = oci
    bundle = make_bundle(tmp, ["sleep", "1000"])
    assert front.create(bundle, "first")[0] == 0
    first = front.pid()
    config = json.loads((bundle / "config.json").read_text())
    config["linux"]["namespaces"] = [
        ns if ns["type"] != "ipc" else {"type": "ipc", "path": f"/proc/{first}/ns/ipc"}
        for ns in config["linux"]["namespaces"]
    ]
    (bundle / "config.json").write_text(json.dumps(config))
    front.log.unlink(missing_ok=True)
    status, err = front.create(bundle, "second")
    assert status == 1, err
    (line,) = front.log.read_text().splitlines()
    assert "claim" in json.loads(line)["msg"] and "claim" in err
    second = front.pid()
    wait_for(lambda: gone(second), 10, "runc's init of the refused container")
    assert not (m.mnt / "oci" / "second").exists()
    assert cgroup_dirs_of(m, "oci/second") == []
    assert not (front.root / "second").exists()
    assert not Path(f"{front.root}.containerfs/second").exists()
    assert m.read("oci/first/container.origin").strip() == "oci"  # untouched
    assert not gone(first)


def test_an_id_taken_in_the_tree_is_refused(oci: tuple[Mounted, Front, Path]) -> None:
    m, front, tmp = oci
    bundle = make_bundle(tmp, ["sleep", "1000"])
    assert front.create(bundle, "one")[0] == 0
    front2 = Front(m, tmp / "other")
    (tmp / "other").mkdir()
    status, err = front2.create(bundle, "one")
    assert status == 1 and "container with id exists: one" in err
    assert m.read("oci/one/container.origin").strip() == "oci"  # the first one untouched
    assert front.run("delete", "--force", "one").returncode == 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def test_kill_all_signals_every_process_not_only_the_init(
    oci: tuple[Mounted, Front, Path],
) -> None:
    """``kill --all`` reaches every process of the container's cgroup: the init's
    children and a process ``exec`` added. SIGTERM shows the difference: the init of
    a pid namespace without a handler for it ignores it, its children do not, so
    ``kill ID TERM`` (the init only) leaves the sleeps and ``kill --all`` ends them."""
    m, front, tmp = oci
    script = "sleep 1000 & sleep 1000 & echo started; while :; do sleep 1; done"
    bundle = make_bundle(tmp, ["sh", "-c", script])
    assert front.create(bundle, "all")[0] == 0
    init = front.pid()
    assert front.run("start", "all").returncode == 0
    wait_for(lambda: "started" in front.out.read_text(), 10, "the container's script")
    added = subprocess.run(  # not front.run: the sleep keeps its stdio, no pipes
        front.words("exec", "--detach", "all", "sleep", "1000"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60 * TIME_SCALE,
    )
    assert added.returncode == 0, front.log.read_text()

    def sleeps() -> list[int]:
        tasks = [int(p) for p in m.read("oci/all/tasks").split()]
        return [p for p in tasks if _cmdline(p) == "sleep 1000"]

    wait_for(lambda: len(sleeps()) == 3, 10, "two children and the exec'd sleep")
    children = sleeps()
    assert front.run("kill", "all", "TERM").returncode == 0  # the init only: ignored
    time.sleep(0.5 * TIME_SCALE)
    assert not any(gone(p) for p in [init, *children]), "TERM without --all reached a child"
    assert front.run("kill", "--all", "all", "TERM").returncode == 0
    wait_for(lambda: all(gone(p) for p in children), 10, "every sleep's end")
    assert not gone(init)  # protected from TERM, still the container's init
    assert json.loads(front.run("state", "all").stdout)["status"] == "running"
    # KILL --all: the init and whatever it forked meanwhile
    assert front.run("kill", "--all", "all", "KILL").returncode == 0
    wait_for(lambda: gone(init), 10, "the init's end")
    wait_for(lambda: m.read("oci/all/tasks").split() == [], 10, "an empty tasks file")
    assert front.run("delete", "all").returncode == 0
    assert not (m.mnt / "oci" / "all").exists()
    assert cgroup_dirs_of(m, "oci/all") == []


def test_update_resources_from_stdin_is_the_kernels_limit(
    oci: tuple[Mounted, Front, Path],
) -> None:
    """``update --resources -`` (containerd's form: the JSON on stdin, which the front
    end hands runc): ``pids.max`` shows the new limit at once, cgroupfs has it, and
    a fork past it fails inside."""
    m, front, tmp = oci
    bundle = make_bundle(tmp, ["sleep", "1000"])
    assert front.create(bundle, "upd")[0] == 0
    assert front.run("start", "upd").returncode == 0
    assert m.read("oci/upd/pids.max").strip() == "max"  # read before: no stale copy after
    done = subprocess.run(
        front.words("update", "--resources", "-", "upd"),
        input=json.dumps({"pids": {"limit": 4}}),
        capture_output=True,
        text=True,
        timeout=60 * TIME_SCALE,
    )
    assert done.returncode == 0, done.stderr
    assert m.read("oci/upd/pids.max").strip() == "4"
    assert (kernel_cgroup(m, "upd", "pids") / "pids.max").read_text().strip() == "4"
    # the sleeps keep no pipe of ours open
    forks = "for i in 1 2 3 4 5 6; do sleep 30 </dev/null >/dev/null 2>&1 & done; echo made"
    inside = front.run("exec", "upd", "sh", "-c", forks)
    assert "can't fork" in inside.stderr, inside.stdout + inside.stderr
    assert front.run("delete", "--force", "upd").returncode == 0
    assert cgroup_dirs_of(m, "oci/upd") == []


# -- podman -------------------------------------------------------------------------

#: Where ``tools/fetch-podman`` unpacks Debian's podman (``make test`` runs it).
PODMAN_DIR = Path(sys.executable).parent.parent / "podman"
IMAGE = "localhost/cfs-busybox:1"


class Podman:
    """Debian's podman from ``PODMAN_DIR``, with storage, configuration and state under
    one directory (nothing in /etc, /var or /run), as root. The runtime is the front
    end through a two-line wrapper named ``containerfs-runc`` that names the test's
    mount (podman takes a runtime as a path without arguments)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.libs = PODMAN_DIR / "usr" / "lib" / "x86_64-linux-gnu"
        (tmp / "tmp").mkdir()
        (tmp / "xdg").mkdir(mode=0o700)
        (tmp / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\nrunroot = "{tmp}/run"\ngraphroot = "{tmp}/root"\n'
        )
        (tmp / "registries.conf").write_text("unqualified-search-registries = []\n")
        self.conf = tmp / "containers.conf"
        self.configure(None)

    def configure(self, wrapper: Path | None) -> None:
        """containers.conf, with ``wrapper`` as the runtime (read at each call)."""
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LD_LIBRARY_PATH": str(self.libs),
            "CONTAINERS_CONF": str(self.conf),
            "CONTAINERS_STORAGE_CONF": str(self.tmp / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.tmp / "registries.conf"),
        }
        runtime = ""
        if wrapper is not None:
            runtime = (
                'runtime = "containerfs-runc"\n'
                'runtime_supports_json = ["containerfs-runc"]\n'
                f'[engine.runtimes]\ncontainerfs-runc = ["{wrapper}"]\n'
            )
        self.conf.write_text(
            "[containers]\n"
            # conmon stays in podman's own cgroup, never in a /libpod_parent of the host's
            'cgroups = "no-conmon"\n'
            'netns = "none"\n'
            # this VM's bounding set lacks CAP_SYS_RESOURCE: podman's nofile default fails
            'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
            'log_driver = "k8s-file"\n'
            f'seccomp_profile = "{PODMAN_DIR}/usr/share/containers/seccomp.json"\n'
            "[engine]\n"
            f"conmon_env_vars = {json.dumps([f'{k}={v}' for k, v in env.items()])}\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.tmp}/events.log"\n'
            f'conmon_path = ["{PODMAN_DIR}/usr/bin/conmon"]\n'
            f'tmp_dir = "{self.tmp}/tmp"\n' + runtime
        )
        self.env = {**os.environ, **env, "XDG_RUNTIME_DIR": str(self.tmp / "xdg")}

    def __call__(
        self, *argv: str, check: bool = True, timeout: float = 60, readonly_var_lib: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """podman ``argv``. With ``readonly_var_lib`` it runs in a mount namespace of
        its own where /var/lib is read-only: an image copy (``import``) keeps a blob
        cache in /var/lib/containers/cache for root whatever the storage's root,
        and falls back to one in memory when it cannot write there."""
        podman = [str(PODMAN_DIR / "usr" / "bin" / "podman"), *argv]
        if readonly_var_lib:
            script = (
                'mount --bind /var/lib /var/lib && mount -o remount,bind,ro /var/lib && exec "$@"'
            )
            podman = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "-",
                *podman,
            ]
        done = subprocess.run(
            podman,
            env=self.env,
            cwd=self.tmp,  # conmon writes a file "oom" to its working directory
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout * TIME_SCALE,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(argv)} exited {done.returncode}: {done.stderr}")
        return done


@pytest.fixture(scope="module")
def podman_storage() -> Iterator[Podman]:
    """One podman store for the module, with a busybox image made offline."""
    if not (PODMAN_DIR / "usr" / "bin" / "podman").exists():
        pytest.skip(f"podman not unpacked at {PODMAN_DIR} (make test runs tools/fetch-podman)")
    reason = _skip()
    if reason:
        pytest.skip(reason)
    tmp = Path(tempfile.mkdtemp(prefix="cfs-podman-"))
    try:
        pm = Podman(tmp)
        rootfs = tmp / "rootfs"
        make_rootfs(rootfs)
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tmp / "bb.tar"), "."], check=True)
        pm(
            "import",
            "--signature-policy",
            str(PODMAN_DIR / "etc" / "containers" / "policy.json"),
            str(tmp / "bb.tar"),
            IMAGE,
            readonly_var_lib=True,
        )
        yield pm
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-R", str(tmp / "root")], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def podman(
    podman_storage: Podman, request: pytest.FixtureRequest
) -> Iterator[tuple[Mounted, Podman]]:
    """A daemon at one path, and podman running its containers through the front end."""
    with same_path_mount(request.node.name) as m:
        wrapper_dir = Path(tempfile.mkdtemp(prefix="cfs-runc-"))
        wrapper = wrapper_dir / "containerfs-runc"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"exec {sys.executable} -m containerfs oci --mount {m.mnt} "
            f'--root {wrapper_dir}/state "$@"\n'
        )
        wrapper.chmod(0o755)
        podman_storage.configure(wrapper)
        try:
            yield m, podman_storage
        finally:
            podman_storage("rm", "--all", "--force", "--time", "0", check=False)
            shutil.rmtree(wrapper_dir, ignore_errors=True)


def oci_children(m: Mounted) -> list[str]:
    d = m.mnt / "oci"
    return sorted(e for e in os.listdir(d) if (d / e).is_dir()) if d.is_dir() else []


def left_behind(m: Mounted, cid: str, pid: int | None) -> list[str]:
    """What of a container is still there: its directory in the tree, its cgroups, its
    init, holders of this mount."""
    found = [f"tree: oci/{cid}"] if (m.mnt / "oci" / cid).exists() else []
    found += [f"cgroup: {d}" for d in cgroup_dirs_of(m, f"oci/{cid}")]
    if pid is not None and not gone(pid):
        found.append(f"process {pid}")
    from .conftest import live_pins

    found += [f"holder {p}" for p in live_pins(str(m.mnt))]
    return found


def test_podman_run_rm_prints_the_containers_hostname(podman: tuple[Mounted, Podman]) -> None:
    m, pm = podman
    done = pm("run", "--rm", "--hostname", "cfs-pod", IMAGE, "hostname")
    assert done.stdout.strip() == "cfs-pod", done.stderr
    wait_for(lambda: not oci_children(m), 10, "the container's removal from the tree")
    assert pm("ps", "-aq").stdout.strip() == ""


def test_podman_run_d_then_exec_top_stop_rm(podman: tuple[Mounted, Podman]) -> None:
    m, pm = podman
    cid = pm("run", "-d", "--name", "t1", IMAGE, "sleep", "1000").stdout.strip()
    assert oci_children(m) == [cid]
    assert m.read(f"oci/{cid}/container.origin").strip() == "oci"
    pid = int(pm("inspect", "--format", "{{.State.Pid}}", "t1").stdout)
    assert str(pid) in m.read(f"oci/{cid}/tasks").split()
    for kind in ("ipc", "uts", "pid", "mnt"):
        line = next(
            x
            for x in m.read(f"oci/{cid}/container.subsystems").splitlines()
            if x.startswith(kind + " ")
        )
        assert line.split()[1:] == ["own", str(ns_inode(pid, kind))], line
    assert (
        pm("exec", "t1", "hostname").stdout.strip()
        == pm("inspect", "--format", "{{.Config.Hostname}}", "t1").stdout.strip()
    )
    top = pm("top", "t1").stdout
    assert "sleep 1000" in top
    pm("stop", "--time", "1", "t1")
    wait_for(lambda: not (m.mnt / "oci" / cid).exists(), 15, "cleanup after stop")
    pm("rm", "t1")
    assert left_behind(m, cid, pid) == []


def test_podman_limits_and_sysctl_show_in_containerfs_and_hold(
    podman: tuple[Mounted, Podman],
) -> None:
    m, pm = podman
    cid = pm(
        "run", "-d", "--memory", "64m", "--pids-limit", "20", "--sysctl", "kernel.shmmni=64",
        IMAGE, "sleep", "1000",
    ).stdout.strip()  # fmt: skip
    assert m.read(f"oci/{cid}/memory.max").strip() == str(64 << 20)
    assert m.read(f"oci/{cid}/pids.max").strip() == "20"
    assert m.read(f"oci/{cid}/ipc.shm_mni.internal").strip() == "64"
    assert pm("exec", cid, "cat", "/proc/sys/kernel/shmmni").stdout.strip() == "64"
    # a limit written through containerfs while it runs holds too: the container
    # still reads its own value (64), the kernel enforces the parent's 2
    (m.mnt / "oci" / cid / "ipc.shm_mni").write_text("2\n")
    assert m.read(f"oci/{cid}/ipc.shm_mni.effective").strip() == "2"
    assert pm("exec", cid, "cat", "/proc/sys/kernel/shmmni").stdout.strip() == "64"
    made = pm("exec", cid, "sh", "-c", "for i in 1 2 3; do ipcmk -M 1024; done", check=False)
    assert made.stdout.count("Shared memory id") == 2, made.stdout + made.stderr
    assert "No space left on device" in made.stderr, made.stderr
    forks = "i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done; echo made"
    done = pm("exec", cid, "sh", "-c", forks, check=False)
    assert "can't fork" in done.stderr, done.stderr
    assert int(m.read(f"oci/{cid}/pids.current")) <= 20
    pm("rm", "--force", "--time", "0", cid)
    assert left_behind(m, cid, None) == []


def test_podman_kill_and_rm_force_leave_nothing(podman: tuple[Mounted, Podman]) -> None:
    m, pm = podman
    a = pm("run", "-d", IMAGE, "sleep", "1000").stdout.strip()
    b = pm("run", "-d", IMAGE, "sleep", "1000").stdout.strip()
    pid_a = int(pm("inspect", "--format", "{{.State.Pid}}", a).stdout)
    pid_b = int(pm("inspect", "--format", "{{.State.Pid}}", b).stdout)
    assert oci_children(m) == sorted([a, b])
    pm("kill", a)
    wait_for(lambda: not (m.mnt / "oci" / a).exists(), 15, "cleanup after kill")
    pm("rm", a)
    pm("rm", "--force", "--time", "0", b)
    assert left_behind(m, a, pid_a) == [] and left_behind(m, b, pid_b) == []
    assert oci_children(m) == []


# -- the kernel's truth about a podman container's limits ---------------------------


def kernel_cgroup(m: Mounted, cid: str, controller: str) -> Path:
    """The container's directory in cgroupfs for ``controller`` (v1, else cgroup2):
    what the tests read as the kernel's truth, next to the containerfs files."""
    rel = [p for p in m.read(f"oci/{cid}/container.cgroup").strip().split("/") if p]
    dirs = cgroup_dirs()
    mount = next((d.mount for d in dirs if controller in d.controllers), None)
    if mount is None:
        mount = next(d.mount for d in dirs if d.version == 2)
    return mount.joinpath(*rel)


def memory_limit_file(m: Mounted, cid: str) -> Path:
    """The kernel's memory limit of the container: v1 ``memory.limit_in_bytes``, else
    cgroup2's ``memory.max``."""
    d = kernel_cgroup(m, cid, "memory")
    v1 = d / "memory.limit_in_bytes"
    return v1 if v1.exists() else d / "memory.max"


def oom_kills(m: Mounted, cid: str) -> int:
    """The kernel's count of OOM kills in the container's memory cgroup
    (``oom_kill`` in v1's ``memory.oom_control``, v2's ``memory.events``)."""
    d = kernel_cgroup(m, cid, "memory")
    f = d / "memory.oom_control" if (d / "memory.oom_control").exists() else d / "memory.events"
    return int(dict(line.split() for line in f.read_text().splitlines()).get("oom_kill", 0))


#: Reads from /dev/zero into one buffer of BS bytes, touching all of it (busybox dd).
def fill(bs: str) -> list[str]:
    return ["busybox", "dd", "if=/dev/zero", "of=/dev/null", f"bs={bs}", "count=1"]


def test_podman_memory_limit_kills_past_it(podman: tuple[Mounted, Podman]) -> None:
    """``--memory 64m``: the kernel's limit in the container's memory cgroup; 32 MiB
    touched fits, 96 MiB is killed by the OOM killer (this host has no swap)."""
    m, pm = podman
    cid = pm("run", "-d", "--memory", "64m", IMAGE, "sleep", "1000").stdout.strip()
    assert m.read(f"oci/{cid}/memory.max").strip() == str(64 << 20)
    limit = memory_limit_file(m, cid)
    assert limit.read_text().strip() == str(64 << 20)
    small = pm("exec", cid, *fill("32M"), check=False)
    assert small.returncode == 0, small.stderr
    assert oom_kills(m, cid) == 0
    big = pm("exec", cid, *fill("96M"), check=False)
    assert big.returncode == 137, (big.returncode, big.stderr)  # 128 + SIGKILL
    assert oom_kills(m, cid) >= 1
    assert pm("exec", cid, "true", check=False).returncode == 0  # the init lives on
    pm("rm", "--force", "--time", "0", cid)
    assert left_behind(m, cid, None) == []


def test_podman_limits_written_through_containerfs_while_it_runs_hold(
    podman: tuple[Mounted, Podman],
) -> None:
    """A container started with neither a pids nor a memory limit: ``pids.max`` and
    ``memory.max`` written through containerfs while it runs are what the kernel
    enforces at the container's next fork and allocation (nothing reads or writes
    through containerfs in between)."""
    m, pm = podman
    cid = pm("run", "-d", "--pids-limit", "0", IMAGE, "sleep", "1000").stdout.strip()
    pids = kernel_cgroup(m, cid, "pids")
    assert (pids / "pids.max").read_text().strip() == "max"
    forks = (
        'p=; for i in $(busybox seq 12); do sleep 30 & p="$p $!"; done; echo made; kill $p; wait'
    )
    before = pm("exec", cid, "sh", "-c", forks, check=False)
    assert "made" in before.stdout and "can't fork" not in before.stderr, before.stderr
    big = pm("exec", cid, *fill("96M"), check=False)
    assert big.returncode == 0, big.stderr

    (m.mnt / "oci" / cid / "pids.max").write_text("8\n")
    done = pm("exec", cid, "sh", "-c", forks, check=False)
    assert "made" not in done.stdout and "can't fork" in done.stderr, done.stdout + done.stderr
    assert (pids / "pids.max").read_text().strip() == "8"
    events = dict(line.split() for line in (pids / "pids.events").read_text().splitlines())
    assert int(events["max"]) >= 1  # the kernel refused the forks
    assert int((pids / "pids.current").read_text()) <= 8

    before_kills = oom_kills(m, cid)
    (m.mnt / "oci" / cid / "memory.max").write_text("64M\n")
    big = pm("exec", cid, *fill("96M"), check=False)
    assert big.returncode == 137, (big.returncode, big.stderr)
    assert oom_kills(m, cid) > before_kills
    assert m.read(f"oci/{cid}/memory.max").strip() == str(64 << 20)
    pm("rm", "--force", "--time", "0", cid)
    assert left_behind(m, cid, None) == []


def test_podman_memory_raised_through_containerfs_lets_the_allocation_pass(
    podman: tuple[Mounted, Podman],
) -> None:
    """``--memory 64m``, then ``memory.max`` 256M written through containerfs while
    it runs: the 96 MiB ``dd`` the OOM killer ended before now passes. On v1 podman
    set the memory+swap limit to 128M, which the kernel keeps above the memory
    limit: the write raises it too."""
    m, pm = podman
    cid = pm("run", "-d", "--memory", "64m", IMAGE, "sleep", "1000").stdout.strip()
    assert pm("exec", cid, *fill("96M"), check=False).returncode == 137
    (m.mnt / "oci" / cid / "memory.max").write_text("256M\n")
    limit = memory_limit_file(m, cid)
    assert limit.read_text().strip() == str(256 << 20)
    assert m.read(f"oci/{cid}/memory.max").strip() == str(256 << 20)
    done = pm("exec", cid, *fill("96M"), check=False)
    assert done.returncode == 0, (done.returncode, done.stderr)
    pm("rm", "--force", "--time", "0", cid)
    assert left_behind(m, cid, None) == []


def _state(pid: int) -> str:
    """``State`` of /proc/PID/status: frozen tasks show as ``D`` (uninterruptible)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    raise AssertionError(f"no State in /proc/{pid}/status")


def test_podman_pause_freezes_every_process_and_unpause_runs_them(
    podman: tuple[Mounted, Podman],
) -> None:
    """``podman pause``/``unpause`` (the front end's ``pause``/``resume``, runc's
    freezer in containerfs's cgroup): every task of ``oci/ID`` frozen (``D`` in
    /proc, the freezer cgroup ``FROZEN``), a counter the container writes stands
    still; after ``unpause`` it counts again."""
    m, pm = podman
    script = "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done"
    cid = pm("run", "-d", IMAGE, "sh", "-c", script).stdout.strip()
    pid = int(pm("inspect", "--format", "{{.State.Pid}}", cid).stdout)
    counter = Path(f"/proc/{pid}/root/tmp/n")

    def count() -> int:
        try:
            return int(counter.read_text() or 0)
        except ValueError:  # read between the truncation and the write
            return 0

    wait_for(lambda: count() > 2, 10, "the container's counter")
    d = kernel_cgroup(m, cid, "freezer")  # v1's freezer, else the cgroup2 directory
    freezer, events = d / "freezer.state", d / "cgroup.events"
    pm("pause", cid)
    assert pm("inspect", "--format", "{{.State.Status}}", cid).stdout.strip() == "paused"
    tasks = [int(p) for p in m.read(f"oci/{cid}/tasks").split()]
    assert pid in tasks
    states = {p: _state(p) for p in tasks}
    if freezer.exists():
        assert freezer.read_text().strip() == "FROZEN"
        # frozen ones show D; a sleep that had exited waits unreaped (Z) by its frozen sh
        assert states[pid] == "D" and set(states.values()) <= {"D", "Z"}, states
    else:  # cgroup v2's cgroup.freeze: the kernel says frozen; its tasks sleep (S) in it
        assert "frozen 1" in events.read_text().splitlines()
    frozen_at = count()
    time.sleep(0.5)
    assert count() == frozen_at, "the counter moved while paused"
    pm("unpause", cid)
    if freezer.exists():
        assert freezer.read_text().strip() == "THAWED"
    else:
        assert "frozen 0" in events.read_text().splitlines()
    wait_for(lambda: count() > frozen_at + 2, 10, "the counter after unpause")
    assert _state(pid) != "D"
    pm("rm", "--force", "--time", "0", cid)
    assert left_behind(m, cid, pid) == []


def test_podman_update_memory_is_the_kernels_limit(podman: tuple[Mounted, Podman]) -> None:
    """``podman update --memory`` (the front end's ``update --resources``): the new
    limit in ``memory.max`` and in the kernel's cgroup, and enforced."""
    m, pm = podman
    cid = pm("run", "-d", "--memory", "256m", IMAGE, "sleep", "1000").stdout.strip()
    assert m.read(f"oci/{cid}/memory.max").strip() == str(256 << 20)
    assert pm("exec", cid, *fill("96M"), check=False).returncode == 0
    pm("update", "--memory", "64m", cid)
    limit = memory_limit_file(m, cid)
    assert limit.read_text().strip() == str(64 << 20)
    # runc wrote cgroupfs itself: an OCI container's limits are never served from
    # the page cache, so the read right after shows it (256m was read above)
    assert m.read(f"oci/{cid}/memory.max").strip() == str(64 << 20)
    big = pm("exec", cid, *fill("96M"), check=False)
    assert big.returncode == 137, (big.returncode, big.stderr)
    pm("rm", "--force", "--time", "0", cid)
    assert left_behind(m, cid, None) == []


def test_podman_run_t_and_exec_t_give_the_container_a_terminal(
    podman: tuple[Mounted, Podman],
) -> None:
    """``-t``: runc's console socket passed through the front end (``create`` and
    ``exec --console-socket``); the container's stdin and stdout are a terminal.
    podman runs under ``script`` for a terminal of its own; without ``-t`` the same
    command says it has none."""
    m, pm = podman
    if shutil.which("script") is None:
        pytest.skip("script missing (util-linux)")
    probe = "if test -t 0 && test -t 1; then echo has-tty; busybox tty; else echo no-tty; fi"

    def under_script(*argv: str) -> str:
        command = shlex.join([str(PODMAN_DIR / "usr" / "bin" / "podman"), *argv])
        done = subprocess.run(
            ["script", "-qec", command, "/dev/null"],
            env=pm.env,
            cwd=pm.tmp,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60 * TIME_SCALE,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    out = under_script("run", "--rm", "-t", IMAGE, "sh", "-c", probe)
    assert "has-tty" in out and "/dev/pts/" in out, out
    assert "no-tty" in under_script("run", "--rm", IMAGE, "sh", "-c", probe)
    cid = pm("run", "-d", IMAGE, "sleep", "1000").stdout.strip()
    out = under_script("exec", "-t", cid, "sh", "-c", probe)
    assert "has-tty" in out and "/dev/pts/" in out, out
    assert "no-tty" in under_script("exec", cid, "sh", "-c", probe)
    pm("rm", "--force", "--time", "0", cid)
    wait_for(lambda: not oci_children(m), 10, "the containers' removal from the tree")


# -- containerd ------------------------------------------------------------------------

#: Where ``tools/fetch-containerd`` unpacks Debian's containerd (``make test`` runs it).
CONTAINERD_DIR = Path(sys.executable).parent.parent / "containerd"
CTR_IMAGE = "localhost/cfs-busybox:1"


def oci_layout_tar(layer: bytes, out: Path, ref: str) -> None:
    """An OCI image layout tarball of one layer, made offline (``ctr images import``)."""
    import hashlib
    import io
    import tarfile

    def digest(b: bytes) -> str:
        return "sha256:" + hashlib.sha256(b).hexdigest()

    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest(manifest),
                    "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": ref},
                }
            ],
        }
    ).encode()
    with tarfile.open(out, "w") as t:
        for name, data in [
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", index),
            *[(f"blobs/sha256/{digest(b)[7:]}", b) for b in (layer, config, manifest)],
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


class Containerd:
    """Debian's containerd from ``CONTAINERD_DIR`` with root, state and socket under
    one directory and the CRI plugin off; ``ctr`` talks to it in a namespace of the
    test's own."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sock = tmp / "containerd.sock"
        (tmp / "config.toml").write_text(
            f'version = 2\nroot = "{tmp}/root"\nstate = "{tmp}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.sock}"\n'
            f'[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
            '[plugins."io.containerd.monitor.v1.cgroups"]\n  no_prometheus = true\n'
        )
        bin_dir = CONTAINERD_DIR / "usr" / "bin"
        self.env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        self.log = open(tmp / "containerd.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [str(bin_dir / "containerd"), "--config", str(tmp / "config.toml")],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        self.ns = f"cfs-{secrets.token_hex(3)}"
        wait_for(lambda: self.sock.exists() or self.proc.poll() is not None, 20, "containerd")

    def ctr(
        self, *argv: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [
                str(CONTAINERD_DIR / "usr" / "bin" / "ctr"),
                "-a",
                str(self.sock),
                "-n",
                self.ns,
                *argv,
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout * TIME_SCALE,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"ctr {' '.join(argv)} exited {done.returncode}: {done.stderr}")
        return done

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def containerd(request: pytest.FixtureRequest) -> Iterator[tuple[Mounted, Containerd, Path]]:
    if not (CONTAINERD_DIR / "usr" / "bin" / "containerd").exists():
        pytest.skip(
            f"containerd not unpacked at {CONTAINERD_DIR} (make test runs tools/fetch-containerd)"
        )
    # containerd 1.6 puts its shims' sockets in /run/containerd/s whatever its
    # state dir: removed after when it was not there before
    run_dir = Path("/run/containerd")
    had_run_dir = run_dir.exists()
    with same_path_mount(request.node.name) as m:
        tmp = Path(tempfile.mkdtemp(prefix="cfs-containerd-"))
        cd = Containerd(tmp)
        wrapper = tmp / "containerfs-runc"
        wrapper.write_text(
            f'#!/bin/sh\nexec {sys.executable} -m containerfs oci --mount {m.mnt} "$@"\n'
        )
        wrapper.chmod(0o755)
        try:
            rootfs = tmp / "rootfs"
            make_rootfs(rootfs)
            layer = tmp / "layer.tar"
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(layer), "."], check=True)
            oci_layout_tar(layer.read_bytes(), tmp / "image.tar", CTR_IMAGE)
            cd.ctr("images", "import", "--snapshotter", "native", str(tmp / "image.tar"))
            yield m, cd, wrapper
        finally:
            for line in cd.ctr("tasks", "ls", "-q", check=False).stdout.split():
                cd.ctr("tasks", "kill", "-s", "KILL", line, check=False)
                time.sleep(0.2)
                cd.ctr("tasks", "rm", "-f", line, check=False)
            for line in cd.ctr("containers", "ls", "-q", check=False).stdout.split():
                cd.ctr("containers", "rm", line, check=False)
            cd.stop()
            subprocess.run(["umount", "-R", str(tmp / "root")], capture_output=True, check=False)
            shutil.rmtree(tmp, ignore_errors=True)
            if not had_run_dir:
                for d in (run_dir / "s", run_dir / "fifo", run_dir):
                    with contextlib.suppress(OSError):
                        d.rmdir()


def test_ctr_run_detached_then_exec_kill_and_rm_leave_nothing(
    containerd: tuple[Mounted, Containerd, Path],
) -> None:
    m, cd, wrapper = containerd
    runc_root = cd.tmp / "runc"
    cd.ctr(
        "run", "-d", "--snapshotter", "native", "--runtime", "io.containerd.runc.v2",
        "--runc-binary", str(wrapper), "--runc-root", str(runc_root),
        "--fifo-dir", str(cd.tmp / "fifo"),
        CTR_IMAGE, "c1", "sleep", "1000",
    )  # fmt: skip
    assert oci_children(m) == ["c1"]
    assert m.read("oci/c1/container.origin").strip() == "oci"
    pid = int(
        next(x.split()[1] for x in cd.ctr("tasks", "ls").stdout.splitlines() if x.startswith("c1 "))
    )
    assert str(pid) in m.read("oci/c1/tasks").split()
    line = next(
        x for x in m.read("oci/c1/container.subsystems").splitlines() if x.startswith("pid ")
    )
    assert line.split()[1:] == ["own", str(ns_inode(pid, "pid"))]
    done = cd.ctr("tasks", "exec", "--exec-id", "e1", "c1", "cat", "/proc/self/cgroup")
    assert m.read("oci/c1/container.cgroup").strip() in done.stdout
    cd.ctr("tasks", "kill", "-s", "KILL", "c1")
    wait_for(lambda: gone(pid), 10, "the task's end")
    cd.ctr("tasks", "rm", "c1")
    cd.ctr("containers", "rm", "c1")
    assert left_behind(m, "c1", pid) == []
    assert oci_children(m) == []
