"""The bash completion on a real mount: containers of every mounted containerfs.

The unit tests (tests/unit/test_manpages.py) complete against a fake mount table;
this one lets the completion read /proc/self/mounts while a daemon serves, so
the way the kernel lists a containerfs mount (``fuse.containerfs``) is checked too.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from containerfs import manpage

from .conftest import Mounted

BASH = manpage.ROOT / "dist" / "completion" / "containerfs.bash"


def complete(cwd: Path, *words: str) -> list[str]:
    script = f"""
source {BASH}
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
_containerfs
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script, "bash", *words],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=30,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [line for line in done.stdout.splitlines() if line]


def test_bash_completes_the_containers_of_a_mounted_containerfs(cfs: Mounted) -> None:
    os.mkdir(cfs.mnt / "web")
    os.mkdir(cfs.mnt / "web" / "db")
    listed = subprocess.run(
        ["bash", "--norc", "-c", f"source {BASH}; _containerfs_mountpoints"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.splitlines()
    assert str(cfs.mnt) in listed
    # other tests' mounts may be listed too: this one's containers must be offered
    outside = cfs.mnt.parent
    assert f"{cfs.mnt}/web" in complete(outside, "containerfs", "exec", "")
    assert complete(outside, "containerfs", "exec", f"{cfs.mnt}/web/") == [f"{cfs.mnt}/web/db"]
    # inside the mount, names are relative: its containers are directories here
    assert complete(cfs.mnt, "containerfs", "exec", "w") == ["web"]
