"""``containerfs exec`` handed to its C program from Python (``containerfs/fastexec.py``):
when it is, with what, and when Python keeps it."""

from __future__ import annotations

import sys

import pytest

from containerfs import defaults, fastexec


class Replaced(Exception):
    """Stands in for ``os.execv`` replacing the process."""


@pytest.fixture
def execv(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []

    def fake(path: str, argv: list[str]) -> None:
        calls.append([path, *argv])
        raise Replaced

    monkeypatch.setattr(fastexec.os, "execv", fake)
    monkeypatch.setattr(fastexec, "_asked", False)
    monkeypatch.setattr(defaults, "find_program", lambda name: f"/opt/{name}")
    monkeypatch.delenv(fastexec.FALLBACK_ENV, raising=False)
    return calls


def test_exec_goes_to_the_program_with_this_interpreter(execv: list[list[str]]) -> None:
    with pytest.raises(Replaced):
        fastexec.hand_over(["exec", "-u", "1", "/c", "--", "id"])
    prog = "/opt/containerfs-exec"
    assert execv == [[prog, prog, sys.executable, "exec", "-u", "1", "/c", "--", "id"]]


def test_other_commands_stay_in_python(execv: list[list[str]]) -> None:
    fastexec.hand_over(["mount", "/m"])
    fastexec.hand_over([])
    assert execv == []


def test_a_line_handed_back_stays_in_python_and_the_marker_goes(
    execv: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fastexec.FALLBACK_ENV, "1")
    fastexec.hand_over(["exec", "--preserve", "/c", "true"])
    assert execv == []
    assert fastexec.FALLBACK_ENV not in fastexec.os.environ  # the command never sees it


def test_asked_once_per_process(execv: list[list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    # __main__ asks, then cli.main asks again: after a hand-back that must not loop.
    monkeypatch.setenv(fastexec.FALLBACK_ENV, "1")
    fastexec.hand_over(["exec", "/c", "true"])
    fastexec.hand_over(["exec", "/c", "true"])
    assert execv == []


def test_without_the_program_python_does_it(
    execv: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(defaults, "find_program", lambda name: None)
    fastexec.hand_over(["exec", "/c", "true"])
    assert execv == []
