"""``patches/pyfuse3/`` fits the pyfuse3 this checkout pins (``tools/pyfuse3-patched``).

pyfuse3 installs its Cython sources beside the module, so the check needs no
network: a stock pyfuse3's sources must take every patch (else a version bump
would silently fall back to the slow loop), and a patched one must hold them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pyfuse3
import pytest

PATCHES = sorted((Path(__file__).parents[2] / "patches" / "pyfuse3").glob("*.patch"))
SOURCES = ("__init__.pyx", "internal.pxi", "asyncio.py")


def _tree(tmp_path: Path) -> Path:
    """A copy of the installed sources laid out as in pyfuse3's sdist (src/pyfuse3/)."""
    here = Path(pyfuse3.__file__).parent
    dest = tmp_path / "src" / "pyfuse3"
    dest.mkdir(parents=True)
    for name in SOURCES:
        if not (here / name).exists():
            pytest.skip(f"pyfuse3 installed without its source {name}")
        shutil.copy(here / name, dest / name)
    return tmp_path


def test_the_patches_fit_the_installed_pyfuse3(tmp_path: Path) -> None:
    if shutil.which("patch") is None:
        pytest.skip("no patch(1) here (make deps installs it)")
    assert PATCHES, "patches/pyfuse3 is empty"
    tree = _tree(tmp_path)
    patched = getattr(pyfuse3, "RECEIVES_QUEUED", False)
    for p in PATCHES:
        # A patched pyfuse3 takes each patch reversed, a stock one forwards.
        args = ["patch", "-p1", "--dry-run", "-d", str(tree), "-i", str(p), "-f"]
        if patched:
            args.append("-R")
        done = subprocess.run(args, capture_output=True, text=True)
        assert done.returncode == 0, (
            f"{p.name} ({'reversed' if patched else 'forwards'}): {done.stdout}"
        )
