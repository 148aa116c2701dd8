"""SharedRuns: concurrent readers share runs, and no reader gets a result older
than its request (``cat namespaces``, issue 14)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from containerfs.shared import SharedRuns


class Gate:
    """A function whose runs each wait until the test lets them end; it records
    the runs it was asked for and what had been asked before each started."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int]] = []  # (key, requests made before it began)
        self.release = trio.Event()
        self.requests = 0
        self.going = 0
        self.most_at_once = 0

    async def __call__(self, key: str) -> tuple[str, int]:
        self.started.append((key, self.requests))
        self.going += 1
        self.most_at_once = max(self.most_at_once, self.going)
        try:
            await self.release.wait()
            self.release = trio.Event()
            if key == "bad":
                raise OSError(5, "walk failed")
            return key, len(self.started)
        finally:
            self.going -= 1


async def test_readers_at_once_share_at_most_two_runs() -> None:
    gate = Gate()
    shared: SharedRuns[str, tuple[str, int]] = SharedRuns(gate)
    got: list[tuple[str, int]] = []

    async def reader() -> None:
        gate.requests += 1
        got.append(await shared.get("root"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()  # the first run is going
        for _ in range(7):
            nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert shared.runs == 1
        gate.release.set()  # run 1 ends: the seven asked during it share run 2
        await trio.testing.wait_all_tasks_blocked()
        assert shared.runs == 2
        gate.release.set()
    assert shared.runs == 2 and len(got) == 8
    assert got.count(("root", 1)) == 1 and got.count(("root", 2)) == 7
    # run 2 began after every one of its readers had asked: nothing older
    assert gate.started[1] == ("root", 8)


async def test_one_run_at_a_time_across_keys_and_errors_reach_every_reader() -> None:
    gate = Gate()
    shared: SharedRuns[str, tuple[str, int]] = SharedRuns(gate)
    errors: list[OSError] = []
    values: list[tuple[str, int]] = []

    async def reader(key: str) -> None:
        try:
            values.append(await shared.get(key))
        except OSError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, "a")
        await trio.testing.wait_all_tasks_blocked()
        for key in ("bad", "bad", "b", "a"):
            nursery.start_soon(reader, key)
        await trio.testing.wait_all_tasks_blocked()
        while shared.runs < 4 or gate.going:
            gate.release.set()
            await trio.testing.wait_all_tasks_blocked()
    assert gate.most_at_once == 1
    assert shared.runs == 4  # a, then bad (shared by two), b, a again
    assert len(errors) == 2 and all(e.errno == 5 for e in errors)
    assert sorted(k for k, _ in values) == ["a", "a", "b"]


async def test_a_reader_cancelled_before_its_run_starts_leaves_the_others_served() -> None:
    gate = Gate()
    shared: SharedRuns[str, tuple[str, int]] = SharedRuns(gate)
    got: list[tuple[str, int]] = []

    async def reader(key: str) -> None:
        got.append(await shared.get(key))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, "x")  # holds the turn
        await trio.testing.wait_all_tasks_blocked()
        driver = trio.CancelScope()

        async def cancelled_reader() -> None:
            with driver:
                await shared.get("y")

        nursery.start_soon(cancelled_reader)  # drives the next "y" run, waits its turn
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(reader, "y")  # waits on that run
        await trio.testing.wait_all_tasks_blocked()
        driver.cancel()  # its run never started
        await trio.testing.wait_all_tasks_blocked()
        while len(got) < 2:
            gate.release.set()
            await trio.testing.wait_all_tasks_blocked()
    assert sorted(k for k, _ in got) == ["x", "y"]
    assert shared.runs == 2


@pytest.mark.parametrize("n", [1, 3])
async def test_sequential_readers_each_get_a_run_of_their_own(n: int) -> None:
    gate = Gate()
    shared: SharedRuns[str, tuple[str, int]] = SharedRuns(gate)
    for i in range(n):
        gate.release.set()
        assert await shared.get("k") == ("k", i + 1)
    assert shared.runs == n
