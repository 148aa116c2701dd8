"""``containerfs exec``'s choice of credentials, from ``--user`` and the ID maps."""

from __future__ import annotations

import pytest

from containerfs.execute import ExecError, choose_ids, is_mapped, parse_user

SHIFTED = "         0     100000      65536\n"
HOST = "         0          0 4294967295\n"


def test_parse_user_takes_numbers_and_defaults_gid_to_uid() -> None:
    assert parse_user("1000") == (1000, 1000)
    assert parse_user("1000:50") == (1000, 50)
    assert parse_user("0:0") == (0, 0)
    assert parse_user("4294967294") == (4294967294, 4294967294)
    for bad in ["", ":", "root", "1000:", ":5", "-1", "+1", " 1", "1:2:3", "4294967295", "١"]:
        with pytest.raises(ValueError):
            parse_user(bad)


def test_is_mapped_reads_every_line_of_a_map() -> None:
    two = "0 100000 1\n1000 200000 10\n"
    assert is_mapped(two, 0) and is_mapped(two, 1009)
    assert not is_mapped(two, 1) and not is_mapped(two, 1010)
    assert not is_mapped("", 0)
    assert is_mapped(HOST, 4294967294)
    with pytest.raises(ExecError, match="bad ID map line"):
        is_mapped("0 x 1\n", 0)


def test_choose_ids_enters_as_root_only_when_both_maps_have_it() -> None:
    assert choose_ids(None, False, True, SHIFTED, SHIFTED) == (0, 0)
    assert choose_ids(None, False, True, SHIFTED, "") is None
    assert choose_ids(None, False, True, "", "") is None
    assert choose_ids(None, False, False, SHIFTED, SHIFTED) is None  # not entering one
    assert choose_ids(None, True, True, SHIFTED, SHIFTED) is None


def test_choose_ids_checks_user_against_the_maps() -> None:
    assert choose_ids((1000, 1001), False, True, SHIFTED, SHIFTED) == (1000, 1001)
    assert choose_ids((1000, 1001), False, False, HOST, HOST) == (1000, 1001)
    with pytest.raises(ExecError, match="uid 65536 is not mapped"):
        choose_ids((65536, 0), False, True, SHIFTED, SHIFTED)
    with pytest.raises(ExecError, match="gid 7 is not mapped"):
        choose_ids((0, 7), False, True, SHIFTED, "0 100000 1\n")
