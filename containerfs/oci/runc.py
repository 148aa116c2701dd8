"""Finding runc and running it.

runc is run as a direct child of the front end with every descriptor passed through
as it is (no ``close_fds``): for ``create`` the front end's standard input, output and
error are the container's (conmon's pipes, containerd's fifos), and ``--preserve-fds``
and ``LISTEN_FDS`` descriptors must reach runc unchanged. The front end is no
subreaper, so runc's init re-parents to the caller's subreaper (conmon, the shim), as
it would with runc alone. Commands the front end adds nothing to replace the front
end with runc (``exec``): same pid, same signals, same exit status.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

#: Environment variable naming the runc binary (else the first of CANDIDATES).
RUNC_ENV = "CONTAINERFS_OCI_RUNC"
CANDIDATES = ("/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc")


class RuncMissing(Exception):
    """No runc to run."""


def _self() -> str:
    return os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""


def find_runc() -> str:
    """runc's path: ``$CONTAINERFS_OCI_RUNC``, the usual places, then ``PATH``;
    never this front end itself (installed under the name ``runc``, it would call
    itself for ever)."""
    given = os.environ.get(RUNC_ENV)
    if given:
        if os.access(given, os.X_OK):
            return given
        raise RuncMissing(f"{RUNC_ENV}={given} is not an executable file")
    me = _self()
    found = shutil.which("runc")
    for path in (*CANDIDATES, *([found] if found else [])):
        if os.access(path, os.X_OK) and os.path.realpath(path) != me:
            return path
    raise RuncMissing("runc not found (Debian package runc)")


def run(argv: Sequence[str], cwd: str | None = None) -> int:
    """runc with our stdio and every descriptor; its exit status (128+N for signal N)."""
    proc = subprocess.run(list(argv), close_fds=False, cwd=cwd, check=False)
    return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode


def quiet(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """runc for the front end's own use: no stdin, output captured (a cleanup's
    complaint must not become the caller's error)."""
    return subprocess.run(
        list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )


def replace(argv: Sequence[str]) -> None:
    """Become runc (never returns; an ``OSError`` when it cannot be executed)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], list(argv))
