"""Installed as a user or a packager installs it, away from this checkout's venv.

``pip install <checkout>`` into a fresh virtualenv must give a daemon that finds its
C programs (setup.py builds them into the package), and ``make install`` /
``make uninstall`` must put files where packagers expect and take all of them away.
Both work on a clean copy of the checkout (its files as git sees them: no ``.venv``,
no ``build/``), so the build really compiles. pip fetches pyfuse3 and trio from
PyPI, or a mirror pip is configured for; its cache makes repeats fast.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import _skip_reason, mounted, wait_for

pytestmark = pytest.mark.root

CHECKOUT = Path(__file__).resolve().parents[2]

#: What ``make install`` puts below DESTDIR+PREFIX, the private venv aside, for each
#: file under dist/ it comes from.
DATA = {
    "dist/systemd/containerfs.service": "lib/systemd/system/containerfs.service",
    "dist/man/containerfs.8": "share/man/man8/containerfs.8",
    "dist/man/containerfs.7": "share/man/man7/containerfs.7",
    "dist/completion/containerfs.bash": "share/bash-completion/completions/containerfs",
    "dist/completion/_containerfs": "share/zsh/vendor-completions/_containerfs",
}


def _build_env() -> dict[str, str]:
    """The environment for pip and make: the suite's ``-X dev`` and warnings-as-errors
    are for the daemon, not for a build backend's deprecation notices."""
    env = dict(os.environ)
    for name in ("PYTHONDEVMODE", "PYTHONWARNINGS"):
        env.pop(name, None)
    env["PIP_ROOT_USER_ACTION"] = "ignore"
    return env


def _run(argv: list[str | Path], cwd: Path | None = None) -> None:
    result = subprocess.run(
        argv, cwd=cwd, env=_build_env(), capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{argv} exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )


def _export(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked and new, not ignored), copied."""
    listed = subprocess.run(
        ["git", "-C", CHECKOUT, "ls-files", "-z", "-co", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = CHECKOUT / name
        if src.is_file():  # not a file deleted but still tracked
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _tools_missing() -> str | None:
    for tool in ("git", "gcc", "make"):
        if shutil.which(tool) is None:
            return f"{tool} missing"
    if not (CHECKOUT / ".git").exists():
        return "not a git checkout"
    return None


def _ns(pid: int | str, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def test_pip_install_gives_a_daemon_that_makes_containers_and_execs(tmp_path: Path) -> None:
    """The issue's proof: plain ``pip install`` of the checkout into a fresh venv,
    that venv's ``containerfs mount``, a container owning uts and ipc, and that
    venv's ``containerfs exec`` in it (about 15 s with pip's cache; a minute more when
    pyfuse3 must be built from source)."""
    reason = _skip_reason() or _tools_missing()
    if reason:
        pytest.skip(reason)
    src = _export(tmp_path / "src")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", src])

    with mounted("pip-install", command=[str(venv / "bin" / "containerfs")]) as m:
        kinds = m.read("container.subtree").split()
        drop = " ".join(f"-{k}" for k in kinds if k not in ("uts", "ipc"))
        m.sh(f"echo '{drop}' > container.subtree && mkdir web")
        m.sh("echo cfs-installed > web/uts.hostname")
        holder = int(m.read("web/container.init"))
        # The holder is the wheel's own program, found in the package.
        pin = venv.glob("lib/python3.*/site-packages/containerfs/bin/containerfs-pin")
        assert os.readlink(f"/proc/{holder}/exe") in {str(p.resolve()) for p in pin}

        out = m.exec("web", "hostname").stdout.strip()
        assert out == "cfs-installed" != socket.gethostname()

        # A process exec'd in by that venv's command: the holder's uts and ipc
        # namespaces, not ours.
        client = m.spawn("web", "sleep", "30")
        sleep = os.path.realpath(shutil.which("sleep") or "sleep")

        def sleeping() -> bool:  # in tasks and past its execve
            tasks = m.read("web/tasks").split()
            return bool(tasks) and os.path.realpath(f"/proc/{tasks[0]}/exe") == sleep

        wait_for(sleeping, 10, "the exec'd sleep in web/tasks")
        inside = int(m.read("web/tasks").split()[0])
        for kind in ("uts", "ipc"):
            assert _ns(inside, kind) == _ns(holder, kind) != _ns("self", kind), kind
        assert _ns(inside, "net") == _ns("self", "net")  # net is not the container's own
        # pip's entry script handed `exec` to the package's C program (fastexec.py).
        exe = venv.glob("lib/python3.*/site-packages/containerfs/bin/containerfs-exec")
        assert os.readlink(f"/proc/{client.pid}/exe") in {str(p.resolve()) for p in exe}


def test_a_wheel_built_from_the_sdist_carries_both_programs(tmp_path: Path) -> None:
    """The sdist holds the C sources and builds them: the wheel made from it (as a
    user's pip does from PyPI) has the three programs, executable, in the package, and
    names a platform but no Python ABI (about 5 s)."""
    reason = _tools_missing()
    if reason:
        pytest.skip(reason)
    src = _export(tmp_path / "src")
    out = tmp_path / "out"
    build_sdist = "import sys; from setuptools import build_meta as b; b.build_sdist(sys.argv[1])"
    _run([sys.executable, "-c", build_sdist, out], cwd=src)
    (sdist,) = out.glob("containerfs-*.tar.gz")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, sdist])
    (wheel,) = out.glob("containerfs-*.whl")
    assert wheel.name.endswith("-py3-none-linux_" + os.uname().machine + ".whl"), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
    for name in ("containerfs-pin", "containerfs-nsscan", "containerfs-exec"):
        assert modes[f"containerfs/bin/{name}"] & 0o111, oct(modes[f"containerfs/bin/{name}"])


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


def test_make_install_with_destdir_and_uninstall_leave_nothing(tmp_path: Path) -> None:
    """``make install DESTDIR=... PREFIX=/usr`` stages the venv, the command and the
    dist/ files with final paths inside; ``make uninstall`` removes every file (about
    10 s). dist/ files this checkout lacks are stood in for, to check where they go."""
    reason = _tools_missing()
    if os.geteuid() != 0:
        reason = "needs root (the C programs and the staged files)"
    if reason:
        pytest.skip(reason)
    src = _export(tmp_path / "src")
    for name in DATA:
        if not (src / name).exists():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_text("ExecStart=@BINDIR@/containerfs mount\n")
    stage = tmp_path / "stage"
    # A trailing slash, as packagers' DESTDIR often has: venv writes the path without
    # the double slash, and the staging prefix must still be cut out of its files.
    _run(["make", "-C", src, "install", f"DESTDIR={stage}/", "PREFIX=/usr"])

    app = stage / "usr/lib/containerfs"
    assert os.readlink(stage / "usr/bin/containerfs") == "/usr/lib/containerfs/bin/containerfs"
    # the OCI runtime's path for podman and containerd: pip's script, the venv's python
    runc = "/usr/lib/containerfs/bin/containerfs-runc"
    assert os.readlink(stage / "usr/bin/containerfs-runc") == runc
    script = (app / "bin/containerfs-runc").read_text()
    assert script.startswith("#!/usr/lib/containerfs/bin/python")
    # The command is containerfs-exec (kernel/cfsexec.c), which runs the venv's python
    # for all but `exec`; pip's entry script (a Python script) is replaced by it.
    command = (app / "bin/containerfs").read_bytes()
    assert command[:4] == b"\x7fELF"
    assert os.access(app / "bin/containerfs", os.X_OK)
    for where in DATA.values():
        assert (stage / "usr" / where).is_file(), where
    unit = (stage / "usr" / DATA["dist/systemd/containerfs.service"]).read_text()
    assert "@BINDIR@" not in unit and "ExecStart=/usr/bin/containerfs mount" in unit
    # No staging path left in a text file (scripts, pyvenv.cfg) or the bytecode.
    leaked = subprocess.run(["grep", "-rlF", str(stage), stage], capture_output=True, text=True)
    assert leaked.stdout == "", leaked.stdout
    # The staged package finds the programs it carries, not this checkout's.
    found = subprocess.run(
        [
            app / "bin/python",
            "-c",
            "from containerfs.defaults import find_program as f;"
            "print(f('containerfs-pin')); print(f('containerfs-nsscan'));"
            "print(f('containerfs-exec'))",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=_build_env(),
        cwd=tmp_path,  # not this checkout: `-c` imports from the working directory first
    ).stdout.split()
    assert len(found) == 3, found
    for path in found:
        assert path.startswith(f"{app}/lib/") and os.access(path, os.X_OK), path

    _run(["make", "-C", src, "uninstall", f"DESTDIR={stage}", "PREFIX=/usr"])
    assert _files(stage) == set()
    assert not app.exists()
    assert not list((stage / "usr/lib").glob("containerfs.*"))  # no .new or .old left
