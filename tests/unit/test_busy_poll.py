"""``containerfs mount --busy-poll``: what it accepts, and what reaches ``pyfuse3.main``.

The polling itself is in the patched pyfuse3 (``patches/pyfuse3/spin-before-parking.patch``);
``tests/integration/test_request_loop.py`` checks it on a mount.
"""

from __future__ import annotations

import pyfuse3
import pytest

from containerfs.cli import build_parser
from containerfs.defaults import DEFAULT_BUSY_POLL_US, MAX_BUSY_POLL_US
from containerfs.service import startup


def test_the_default_and_the_bounds_of_busy_poll() -> None:
    parse = build_parser().parse_args
    assert parse(["mount"]).busy_poll == DEFAULT_BUSY_POLL_US
    assert parse(["mount", "--busy-poll", "0"]).busy_poll == 0
    assert parse(["mount", f"--busy-poll={MAX_BUSY_POLL_US}"]).busy_poll == MAX_BUSY_POLL_US


@pytest.mark.parametrize("bad", ["-1", str(MAX_BUSY_POLL_US + 1), "5us", ""])
def test_busy_poll_refuses_what_is_not_a_window(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["mount", "--busy-poll", bad])
    assert exc.value.code == 2
    assert "--busy-poll" in capsys.readouterr().err


def test_the_window_reaches_only_a_pyfuse3_that_takes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RECEIVES_QUEUED", "BUSY_POLLS"):
        monkeypatch.delattr(pyfuse3, name, raising=False)
    args, text = startup._loop_args(50)
    assert args == {} and text.startswith("stock") and "off" in text
    assert startup._loop_args(0) == ({}, "stock")
    monkeypatch.setattr(pyfuse3, "RECEIVES_QUEUED", True, raising=False)
    args, text = startup._loop_args(50)
    assert args == {} and "cannot busy-poll" in text
    monkeypatch.setattr(pyfuse3, "BUSY_POLLS", True, raising=False)
    assert startup._loop_args(50) == (
        {"busy_poll_us": 50},
        "patched: takes queued requests at once, busy-polls up to 50 us",
    )
    assert startup._loop_args(0)[0] == {"busy_poll_us": 0}
    assert startup._loop_args(0)[1].endswith("busy polling off")
