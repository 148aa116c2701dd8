"""Where the daemon finds its C programs: a wheel puts them in the package, ``make``
beside the venv's interpreter; the package's own copy wins, PATH comes last."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from containerfs import defaults


def _program(where: Path, name: str, mode: int = 0o755) -> str:
    where.mkdir(parents=True, exist_ok=True)
    path = where / name
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return str(path)


def test_package_copy_first_then_beside_interpreter_then_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package, venv, on_path = tmp_path / "pkg", tmp_path / "venv", tmp_path / "path"
    monkeypatch.setattr(defaults, "PACKAGE_BIN", str(package))
    monkeypatch.setattr(sys, "executable", str(venv / "python"))
    monkeypatch.setenv("PATH", str(on_path))
    assert defaults.find_program("cfs-x") is None
    found_on_path = _program(on_path, "cfs-x")
    assert defaults.find_program("cfs-x") == found_on_path
    beside = _program(venv, "cfs-x")
    assert defaults.find_program("cfs-x") == beside
    _program(package, "cfs-x", 0o644)  # not executable: skipped
    assert defaults.find_program("cfs-x") == beside
    (package / "cfs-x").chmod(0o755)
    assert defaults.find_program("cfs-x") == str(package / "cfs-x")
