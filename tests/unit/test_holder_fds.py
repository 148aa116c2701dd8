"""The daemon's side of pin.c's "f" and "i" requests, against a fake holder on a
socketpair (no root needed): fds handed over are kept, used without asking again
and closed with the holder; a pin older than the requests (which answers EINVAL)
is asked once, then the daemon falls back to the requests it always had."""

from __future__ import annotations

import array
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from containerfs.kernel.holder import Holder

Answer = Callable[[bytes], tuple[bytes, list[int]]]


class Fake:
    """A holder process played by a thread: ``answer`` gets each request (its tag
    removed) and returns the reply and the fds to attach."""

    def __init__(self, answer: Answer) -> None:
        self.requests: list[bytes] = []
        ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.settimeout(0.0)  # as the daemon's end is
        self.holder = Holder(os.getpid(), os.pidfd_open(os.getpid()), {}, ours)
        self.answer = answer
        self.thread = threading.Thread(target=self._serve)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            msg = self.theirs.recv(9000)
            if not msg:
                return
            tag, _, req = msg.partition(b" ")
            self.requests.append(req)
            reply, fds = self.answer(req)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
            self.theirs.sendmsg([tag + b" " + reply], rights)
            for fd in fds:
                os.close(fd)

    def close(self) -> None:
        self.holder.close()
        self.theirs.shutdown(socket.SHUT_RDWR)
        self.thread.join()
        self.theirs.close()


@pytest.fixture
def fake() -> Iterator[Callable[[Answer], Fake]]:
    made: list[Fake] = []
    before = sorted(os.listdir("/proc/self/fd"))

    def make(answer: Answer) -> Fake:
        made.append(Fake(answer))
        return made[-1]

    yield make
    for f in made:
        f.close()
    assert sorted(os.listdir("/proc/self/fd")) == before  # every fd kept was closed


def older_pin(req: bytes) -> tuple[bytes, list[int]]:
    """What a pin from before "f" and "i" answers to them (pin.c: a bad request)."""
    return (b"err 22", []) if req[:1] in (b"f", b"i") else (b"ok", [])


def test_an_older_pin_is_asked_once_then_written_through(fake: Callable[[Answer], Fake]) -> None:
    f = fake(older_pin)

    async def main() -> None:
        assert not await f.holder.write_sysctl_fd_async("kernel.shmmni", b"5")
        assert not await f.holder.write_sysctl_fd_async("kernel.shmmni", b"6")
        assert not await f.holder.ipc_fds_async()
        assert not await f.holder.ipc_fds_async()
        await f.holder.set_sysctl_async("kernel.shmmni", "7")

    trio.run(main)
    assert f.requests == [b"f kernel/shmmni", b"i", b"w kernel/shmmni 7"]
    assert f.holder.sysctl_by_fd("kernel.shmmni") is None


def test_a_sysctl_fd_is_kept_and_written_at_offset_0(
    fake: Callable[[Answer], Fake], tmp_path: Path
) -> None:
    target = tmp_path / "shmmni"
    target.write_text("")

    def pin(req: bytes) -> tuple[bytes, list[int]]:
        assert req == b"f kernel/shmmni"
        return b"ok", [os.open(target, os.O_RDWR)]

    f = fake(pin)

    async def main() -> None:
        for value in (b"17", b"23"):
            assert await f.holder.write_sysctl_fd_async("kernel.shmmni", value)

    trio.run(main)
    assert f.requests == [b"f kernel/shmmni"]  # asked once
    assert target.read_text() == "23"  # each write at offset 0, as a sysctl takes it
    assert f.holder.sysctl_by_fd("kernel.shmmni") == "23"


def test_ipc_fds_whose_mqueue_cannot_be_mounted_fall_back_for_good(
    fake: Callable[[Answer], Fake], tmp_path: Path
) -> None:
    """The fourth fd must be an mqueue filesystem context the daemon mounts
    (fsmount); anything else: every fd closed, and the holder read as before."""
    (tmp_path / "mq").mkdir()

    def pin(req: bytes) -> tuple[bytes, list[int]]:
        assert req == b"i"
        for n in ("shm", "msg", "sem"):
            (tmp_path / n).write_text("key id\n")
        files = [tmp_path / n for n in ("shm", "msg", "sem", "mq")]
        return b"ok", [os.open(p, os.O_RDONLY) for p in files]

    f = fake(pin)

    async def main() -> None:
        assert not await f.holder.ipc_fds_async()
        assert not await f.holder.ipc_fds_async()

    trio.run(main)
    assert f.requests == [b"i"]
    assert f.holder.with_ipc_fds(len) is None


def test_a_reply_cut_short_of_its_fds_falls_back(fake: Callable[[Answer], Fake]) -> None:
    f = fake(lambda req: (b"ok", []))  # "ok" without the fd: never trusted

    async def main() -> None:
        assert not await f.holder.write_sysctl_fd_async("kernel.shmmni", b"5")
        assert not await f.holder.write_sysctl_fd_async("kernel.shmmni", b"5")

    trio.run(main)
    assert f.holder.sysctl_by_fd("kernel.shmmni") is None
    assert f.requests == [b"f kernel/shmmni"] * 2  # not an older pin: asked again
