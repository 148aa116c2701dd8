"""Build the C programs with the package, so that a wheel (and ``pip install``)
carries everything ``containerfs mount`` needs, with no ``make``.

The metadata lives in pyproject.toml; this file only adds a build step. ``build_py``
is extended rather than ``build_ext`` because the programs are executables the
daemon starts, not extension modules Python loads: they land in the package as
``containerfs/bin/`` (where ``containerfs.defaults.find_program`` looks first), so
they go wherever the package goes (a venv, ``--user``, ``--target``, a Debian
``dist-packages``). Editable installs (``pip install -e``, what ``make`` does) skip
the step: ``make`` builds the programs into the venv's ``bin`` instead.

The wheel is tagged ``py3-none-<platform>``: the programs are machine code, but
they do not link against Python, so any CPython 3 of that platform can use it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:  # setuptools 70.1 and later carry bdist_wheel themselves
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # older ones get it from `wheel`, which their build backend requires
    try:
        from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]
    except ImportError:  # an sdist made where `wheel` is missing: no wheel to tag
        bdist_wheel = None  # type: ignore[assignment,misc]

#: Program name, source, extra flags; static-pie is tried first for the holder, for
#: `containerfs exec` and for the /proc walk, which the daemon starts per listing
#: (no dynamic loader to start).
PROGRAMS = [
    ("containerfs-pin", "containerfs/kernel/pin.c", ["-static-pie"], []),
    ("containerfs-nsscan", "containerfs/kernel/nsscan.c", ["-static-pie"], ["-pthread"]),
    ("containerfs-exec", "containerfs/kernel/cfsexec.c", ["-static-pie"], []),
]

#: As the Makefile compiles them, less -Werror: a newer compiler's new warning
#: must not make an install fail on a user's machine.
BASE_FLAGS = ["-O2", "-Wall", "-Wextra"]


def _compiler() -> list[str]:
    """``CC``, ``CPPFLAGS``, ``CFLAGS`` and ``LDFLAGS`` from the environment, as a
    packager sets them (Debian's hardening flags, a cross compiler)."""
    cc = shlex.split(os.environ.get("CC") or "gcc")
    flags = [os.environ.get(v, "") for v in ("CPPFLAGS", "CFLAGS", "LDFLAGS")]
    return cc + BASE_FLAGS + [f for v in flags for f in shlex.split(v)]


def compile_program(source: Path, target: Path, first: list[str], always: list[str]) -> None:
    """Compile ``source`` to ``target``: with the ``first`` flags when the toolchain
    can (``-static-pie`` needs a static libc), else without them, as ``make`` does."""
    target.parent.mkdir(parents=True, exist_ok=True)
    cc = _compiler()
    base = [*cc, *always, "-o", str(target), str(source)]
    n = len(shlex.split(os.environ.get("CC") or "gcc"))  # after the compiler (`ccache gcc`)
    try:
        tried = subprocess.run(base[:n] + first + base[n:], capture_output=True) if first else None
        if tried is None or tried.returncode != 0:
            subprocess.run(base, check=True)  # its errors show in pip's output
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            f"containerfs: cannot compile {source} ({exc}); install a C compiler (gcc)"
        ) from None
    target.chmod(0o755)


class BuildWithPrograms(build_py):
    """``build_py`` that also compiles the C programs into ``containerfs/bin``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # `pip install -e`: make builds them into the venv's bin
        for name, source, first, always in PROGRAMS:
            target = Path(self.build_lib, "containerfs", "bin", name)
            self.announce(f"compiling {source} -> {target}", level=2)
            compile_program(Path(source), target, first, always)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs: list[str] = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        return outputs + [str(Path(self.build_lib, "containerfs", "bin", p[0])) for p in PROGRAMS]


class WithPrograms(Distribution):
    """Not pure Python: the package goes to platlib and the wheel names a platform."""

    def has_ext_modules(self) -> bool:
        return True


CMDCLASS: dict[str, type] = {"build_py": BuildWithPrograms}

if bdist_wheel is not None:

    class PlatformWheel(bdist_wheel):
        """A wheel for one platform, any Python 3: the programs do not link libpython."""

        def get_tag(self) -> tuple[str, str, str]:
            _, _, plat = super().get_tag()
            return "py3", "none", plat

    CMDCLASS["bdist_wheel"] = PlatformWheel

setup(distclass=WithPrograms, cmdclass=CMDCLASS)
