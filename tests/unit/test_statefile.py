"""The state dir's snapshot + journal (``containerfs/statefile.py``), without root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from containerfs import statefile
from containerfs.statefile import StateFile


def rec(*path: str, release: str = "ignore") -> dict[str, object]:
    return {"path": list(path), "release": release}


def base(*records: dict[str, object]) -> dict[str, object]:
    return {"version": 2, "mountpoint": "/m", "release_agent": "", "containers": list(records)}


def paths(state: dict[str, object] | None) -> list[tuple[str, ...]]:
    assert state is not None
    return [tuple(r["path"]) for r in state["containers"]]  # type: ignore[attr-defined,index]


def test_no_state_is_a_first_start(tmp_path: Path) -> None:
    assert statefile.load(tmp_path) is None


def test_journal_puts_and_drops_apply_in_order(tmp_path: Path) -> None:
    sf = StateFile(tmp_path)
    sf.snapshot(base(rec(), rec("a")))
    assert sf.append([{"put": rec("a", "b")}, {"put": rec("c")}])
    assert sf.append([{"put": rec("a", release="delete")}])  # changed in place
    assert sf.append([{"drop": ["c"]}, {"put": rec("c")}])  # removed, then made again
    assert sf.append([{"drop": ["a"]}])  # takes a/b along
    assert sf.entries == 6
    state = statefile.load(tmp_path)
    assert paths(state) == [(), ("c",)]
    assert "log" not in state  # type: ignore[operator]


def test_records_come_back_parents_first(tmp_path: Path) -> None:
    sf = StateFile(tmp_path)
    sf.snapshot(base(rec(), rec("a"), rec("a", "b")))
    # A rename: the old subtree dropped, the new one put back, parents first.
    sf.append([{"drop": ["a"]}, {"put": rec("z")}, {"put": rec("z", "b")}, {"put": rec("y")}])
    sf.append([{"put": rec("z", release="delete")}])
    state = statefile.load(tmp_path)
    # Each container before its subtree; siblings in the order they were made.
    assert paths(state) == [(), ("z",), ("z", "b"), ("y",)]
    assert state["containers"][1]["release"] == "delete"  # type: ignore[index]


def test_a_partial_last_line_is_ignored(tmp_path: Path) -> None:
    sf = StateFile(tmp_path)
    sf.snapshot(base(rec()))
    sf.append([{"put": rec("a")}])
    sf.close()
    with open(tmp_path / statefile.JOURNAL, "a") as f:
        f.write('{"put":{"path":["b"')  # a crash in the middle of an append
    assert paths(statefile.load(tmp_path)) == [(), ("a",)]


def test_an_old_journal_does_not_apply_to_a_newer_snapshot(tmp_path: Path) -> None:
    sf = StateFile(tmp_path)
    sf.snapshot(base(rec()))
    sf.append([{"put": rec("old")}])
    old_journal = (tmp_path / statefile.JOURNAL).read_bytes()
    sf.snapshot(base(rec(), rec("new")))
    # A crash between the snapshot and its new journal leaves the old one.
    (tmp_path / statefile.JOURNAL).write_bytes(old_journal)
    assert paths(statefile.load(tmp_path)) == [(), ("new",)]


def test_a_snapshot_empties_the_journal(tmp_path: Path) -> None:
    sf = StateFile(tmp_path)
    sf.snapshot(base(rec()))
    sf.append([{"put": rec("a")}])
    sf.snapshot(base(rec(), rec("b")))
    assert sf.entries == 0
    assert len((tmp_path / statefile.JOURNAL).read_text().splitlines()) == 1
    assert paths(statefile.load(tmp_path)) == [(), ("b",)]


def test_without_a_snapshot_nothing_is_appended(tmp_path: Path) -> None:
    sf = StateFile(tmp_path)
    assert not sf.append([{"put": rec("a")}])
    sf.snapshot(base(rec()))
    sf.close()
    assert not sf.append([{"put": rec("a")}])


def test_a_state_without_journal_id_loads_as_it_is(tmp_path: Path) -> None:
    (tmp_path / statefile.SNAPSHOT).write_text(json.dumps(base(rec(), rec("a"))))
    assert paths(statefile.load(tmp_path)) == [(), ("a",)]


def test_damaged_state_is_a_value_error(tmp_path: Path) -> None:
    (tmp_path / statefile.SNAPSHOT).write_text("{")
    with pytest.raises(ValueError):
        statefile.load(tmp_path)
    (tmp_path / statefile.SNAPSHOT).write_text("[]")
    with pytest.raises(ValueError, match="not a containerfs state"):
        statefile.load(tmp_path)


def test_moves_left_open_are_reported(tmp_path: Path) -> None:
    sf = StateFile(tmp_path)
    sf.snapshot({**base(rec()), "moving": [{"pid": 7, "start": 1}]})
    sf.append([{"moving": {"pid": 8, "start": 2}}, {"moving": {"pid": 9, "start": 3}}])
    sf.append([{"moved": 8}, {"moved": 7}])
    state = statefile.load(tmp_path)
    assert state is not None and state["moving"] == [{"pid": 9, "start": 3}]


def test_a_view_line_sets_one_knob_of_the_record_at_its_path(tmp_path: Path) -> None:
    """A view write journals one short line, not the container's whole record."""
    sf = StateFile(tmp_path)
    old = {"internal": 4096, "external": None}
    sf.snapshot(base(rec(), rec("a") | {"views": {"ipc.shm_mni": old}}))
    assert sf.append([{"view": [["a"], "ipc.shm_mni", 4096, 8]}])
    assert sf.append([{"view": [["a"], "ipc.sem", [250, 32000, 32, 128], None]}])
    assert sf.append([{"view": [["gone"], "ipc.shm_mni", 1, 1]}])  # no such record: nothing
    assert sf.append([{"view": [["a"], 7, 1, 1]}, {"view": "bad"}])  # malformed: skipped
    state = statefile.load(tmp_path)
    assert state is not None
    (a,) = [r for r in state["containers"] if r["path"] == ["a"]]
    assert a["views"] == {
        "ipc.shm_mni": {"internal": 4096, "external": 8},
        "ipc.sem": {"internal": [250, 32000, 32, 128], "external": None},
    }
    assert paths(state) == [(), ("a",)]
    # A later put of the whole record replaces it, view lines before it included.
    assert sf.append([{"put": rec("a")}, {"view": [["a"], "ipc.shm_mni", 1, None]}])
    state = statefile.load(tmp_path)
    assert state is not None
    (a,) = [r for r in state["containers"] if r["path"] == ["a"]]
    assert a["views"] == {"ipc.shm_mni": {"internal": 1, "external": None}}
