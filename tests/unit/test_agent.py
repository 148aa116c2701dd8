"""The release agent queue (``containerfs/agent.py``): a few runs at once, a path
waiting is not queued twice, and a full queue drops with a log line."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from containerfs.agent import AgentRunner


class Runs:
    """A fake agent: records each run and waits until the test lets it end."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.now = 0
        self.most = 0
        self.go = trio.Event()

    async def __call__(self, program: str, where: str) -> None:
        self.started.append(where)
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await self.go.wait()
        finally:
            self.now -= 1


async def test_at_most_workers_run_and_every_path_runs_once() -> None:
    runs = Runs()
    runner = AgentRunner(lambda: "/agent", workers=3, run=runs)
    async with trio.open_nursery() as nursery:
        for i in range(10):
            runner.notify(nursery, f"/c{i}")
        await trio.testing.wait_all_tasks_blocked()
        assert runs.started == ["/c0", "/c1", "/c2"]  # oldest first
        runs.go.set()
    assert runs.most == 3
    assert runs.started == [f"/c{i}" for i in range(10)]
    assert runner.running == 0 and not runner.pending


async def test_a_waiting_path_is_not_queued_twice_but_a_running_one_is() -> None:
    runs = Runs()
    runner = AgentRunner(lambda: "/agent", workers=1, run=runs)
    async with trio.open_nursery() as nursery:
        runner.notify(nursery, "/a")
        await trio.testing.wait_all_tasks_blocked()
        assert runs.started == ["/a"]  # running: a new emptying queues it again
        for _ in range(5):
            runner.notify(nursery, "/a")
            runner.notify(nursery, "/b")
        assert list(runner.pending) == ["/a", "/b"]
        runs.go.set()
    assert runs.started == ["/a", "/a", "/b"]


async def test_a_full_queue_drops_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    runs = Runs()
    runner = AgentRunner(lambda: "/agent", workers=1, limit=2, run=runs)
    with caplog.at_level(logging.INFO, logger="containerfs"):
        async with trio.open_nursery() as nursery:
            for i in range(5):  # /c0 runs, /c1 and /c2 wait, /c3 and /c4 are dropped
                runner.notify(nursery, f"/c{i}")
                await trio.testing.wait_all_tasks_blocked()
            runs.go.set()
    assert runs.started == ["/c0", "/c1", "/c2"]
    assert runner.dropped == 2
    lines = [r.getMessage() for r in caplog.records]
    assert "/c4: release agent not run: 2 paths already wait (2 dropped so far)" in lines


async def test_the_agent_is_read_when_a_run_starts(caplog: pytest.LogCaptureFixture) -> None:
    runs = Runs()
    program = ["/agent"]
    runner = AgentRunner(lambda: program[0], workers=1, run=runs)
    with caplog.at_level(logging.INFO, logger="containerfs"):
        async with trio.open_nursery() as nursery:
            runner.notify(nursery, "/a")
            runner.notify(nursery, "/b")
            await trio.testing.wait_all_tasks_blocked()
            program[0] = ""  # release_agent emptied while /b waits
            runs.go.set()
    assert runs.started == ["/a"]
    assert "/b: release notification (no release_agent set)" in caplog.text


def test_close_says_what_was_never_run(caplog: pytest.LogCaptureFixture) -> None:
    runner = AgentRunner(lambda: "/agent")
    runner.pending = {"/x": None, "/y": None}
    with caplog.at_level(logging.WARNING, logger="containerfs"):
        runner.close()
    assert "2 release agent run(s) not made, the daemon stopped (/x first)" in caplog.text
    assert not runner.pending
