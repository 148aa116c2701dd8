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
SOURCES = ("__init__.pyx", "__init__.pyi", "internal.pxi", "asyncio.py")


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
    # The patches build on each other, in name order (as tools/pyfuse3-patched
    # applies them): a patched pyfuse3 takes them all reversed, last first, and a
    # stock one forwards; each step is applied to the copy so the next one sees it.
    for p in reversed(PATCHES) if patched else PATCHES:
        args = ["patch", "-p1", "-d", str(tree), "-i", str(p), "-f"]
        if patched:
            args.append("-R")
        done = subprocess.run(args, capture_output=True, text=True)
        assert done.returncode == 0, (
            f"{p.name} ({'reversed' if patched else 'forwards'}): {done.stdout}"
        )


def test_a_patched_pyfuse3_has_every_patch() -> None:
    """``tools/pyfuse3-patched`` installs all patches or none: a module with the first
    patch's marker has the busy polling of the second (``containerfs mount
    --busy-poll``)."""
    if not getattr(pyfuse3, "RECEIVES_QUEUED", False):
        pytest.skip("the stock pyfuse3 is installed (PYFUSE3_PATCHED=0 or no build)")
    assert getattr(pyfuse3, "BUSY_POLLS", False)
