"""Hostile input: arbitrary bytes, lengths, encodings, offsets and names.

Property-based (hypothesis) through a mounted daemon: every writable file of a
container (those with mode 0644, enumerated from its directory) gets arbitrary
data, and ``mkdir``, ``mv`` and lookups get arbitrary names. Each call either
succeeds, leaving a valid value (one that reads back the same and that the file
takes back unchanged), or fails with a fitting errno (``EINVAL``,
``ENAMETOOLONG``, ...; never ``EIO``, never a hang), and a refused write keeps
the old value. Afterwards the daemon is alive: its process runs, ``mkdir``
works, and its log has no traceback.

Explicit cases document the file semantics, which follow cgroupfs:

* every ``write()`` is applied on its own (a value split over two ``write()``
  calls on one fd is two values, the last one wins);
* the offset of a write is ignored (``pwrite`` at 5, ``O_APPEND``);
* ``truncate``/``ftruncate``/``O_TRUNC`` of a writable file is accepted and
  changes nothing (``echo X > file`` truncates first);
* a write larger than a page is refused whole with ``E2BIG``, as cgroupfs
  refuses it, even when the kernel hands it to the daemon in pieces; a page
  or less is applied like any other write; a refusal's log line stays short.

Writes only ever go to files of containers the test made, plus the test
mount's own ``release_agent`` and root ``container.subtree``; no write can name
a process (``tasks``) or an existing program (``release_agent``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from .conftest import TIME_SCALE, Mounted, live_pins

pytestmark = pytest.mark.root

T = TypeVar("T")

#: errno a refused write may give. EIO (a daemon bug) and ENOTCONN (a dead or
#: hung daemon) never are.
WRITE_ERRNOS = {
    errno.EINVAL,  # bad value
    errno.ERANGE,  # the kernel's word for out of range (sysctls)
    errno.E2BIG,
    errno.EOVERFLOW,
    errno.ENOSPC,  # e.g. a limit below current use
    errno.EBUSY,  # time.offsets once a process entered
    errno.EPERM,  # user.*_map takes one write
    errno.ESRCH,  # tasks: no such process
    errno.ENODEV,  # io.max: no such block device (and the container was removed)
}
NAME_ERRNOS = {errno.EINVAL, errno.ENAMETOOLONG, errno.EEXIST}
LOOKUP_ERRNOS = {errno.ENOENT, errno.ENAMETOOLONG}

#: Files whose content is not an input the file takes back as is.
NO_ROUND_TRIP = {"tasks", "container.subtree"}

#: How long one request may take before it counts as a hang.
HANG = 10.0 * TIME_SCALE

SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
    derandomize=False,
)


# -- a watchdog: a hung request becomes a test failure, not a hung test ----------


class Watchdog:
    """Aborts the test mount's FUSE connection when one operation hangs.

    A request the daemon never answers blocks the caller in the kernel, where
    no signal short of SIGKILL reaches it; aborting the connection (our own
    mount's, ``/sys/fs/fuse/connections/N/abort``) makes it fail with
    ``ENOTCONN``, and the test fails saying which operation hung.
    """

    def __init__(self, mnt: Path) -> None:
        self.abort = Path(f"/sys/fs/fuse/connections/{os.minor(os.stat(mnt).st_dev)}/abort")
        self.started: float | None = None
        self.what = ""
        self.hung: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            started = self.started
            if started is not None and time.monotonic() - started > HANG and self.hung is None:
                self.hung = self.what
                with contextlib.suppress(OSError):
                    self.abort.write_text("1")

    def call(self, what: str, fn: Callable[[], T]) -> T:
        self.what = what
        self.started = time.monotonic()
        try:
            return fn()
        finally:
            self.started = None
            assert self.hung is None, f"hang: {self.hung} took more than {HANG} s"

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def dog(cfs: Mounted) -> Iterator[Watchdog]:
    w = Watchdog(cfs.mnt)
    yield w
    w.close()


# -- helpers -------------------------------------------------------------------


def writable(d: Path) -> list[str]:
    """The files of ``d`` a write may reach: rw, and write-only (``container.claim``)."""
    modes = (0o644, 0o200)
    return sorted(n for n in os.listdir(d) if stat.S_IMODE(os.stat(d / n).st_mode) in modes)


def read(dog: Watchdog, path: Path) -> bytes:
    return dog.call(f"read {path.name}", path.read_bytes)


def could_name_a_process(data: bytes) -> bool:
    """Whether a ``tasks`` write of DATA could move some process of the host."""
    try:
        words = data.decode().split()
    except UnicodeDecodeError:
        return False
    return len(words) == 1 and words[0].isdigit()


def names_a_program(data: bytes) -> bool:
    """Whether a ``release_agent`` write of DATA could name an existing file."""
    try:
        path = data.decode().strip()
    except UnicodeDecodeError:
        return False
    try:
        return path.startswith("/") and os.path.lexists(path)
    except ValueError:  # a NUL inside
        return False


def safe(name: str, data: bytes) -> bool:
    if name == "tasks":
        return not could_name_a_process(data)
    if name == "release_agent":
        return not names_a_program(data)
    return True


def raw_write(path: Path, data: bytes, offset: int | None = None, flags: int = 0) -> int:
    fd = os.open(path, os.O_WRONLY | flags)
    try:
        return os.write(fd, data) if offset is None else os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def attempt(
    dog: Watchdog, path: Path, data: bytes, offset: int | None = None, flags: int = 0
) -> int | None:
    """Write DATA to PATH; check the outcome; the errno of a refusal, or None.

    A refusal must carry a fitting errno and keep the old value. A success must
    leave a valid value: it reads back the same twice, and (for files that take
    what they show) writing it back is accepted and changes nothing.
    """
    assert safe(path.name, data), f"unsafe test input for {path.name}: {data!r}"
    before = read(dog, path)
    what = f"write {path.name} <- {data[:60]!r}{'...' if len(data) > 60 else ''} at {offset}"
    try:
        dog.call(what, lambda: raw_write(path, data, offset, flags))
    except OSError as exc:
        assert exc.errno in WRITE_ERRNOS, f"{what}: {exc!r}"
        after = read(dog, path)
        assert after == before, f"{what} was refused ({exc}) but changed {before!r} -> {after!r}"
        return exc.errno
    after = read(dog, path)
    after.decode()  # every file is text
    assert read(dog, path) == after, f"{path.name} does not read back the same"
    if path.name not in NO_ROUND_TRIP and after.strip() and safe(path.name, after):
        dog.call(f"write back {path.name}", lambda: raw_write(path, after))
        assert read(dog, path) == after, f"{path.name}: writing back {after!r} changed it"
    return None


def assert_alive(cfs: Mounted, dog: Watchdog) -> None:
    assert cfs.daemon.poll() is None, f"daemon exited {cfs.daemon.poll()}:\n{cfs.log_tail()}"
    probe = cfs.mnt / "alive-probe"
    dog.call("mkdir probe", lambda: os.mkdir(probe))
    assert read(dog, probe / "container.release") == b"ignore\n"
    dog.call("rmdir probe", lambda: os.rmdir(probe))
    log = cfs.log.read_text(errors="replace")
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
    assert "internal error" not in log, cfs.log_tail(60)


# -- strategies ----------------------------------------------------------------

_WORDS = [
    "max", "ignore", "notify", "delete", "+ipc", "-uts", "+bogus", "+cpu", "-pids",
    "monotonic", "boottime", "0-1", "0", "1", "8:0", "rbps=1", "wiops=max", "/bin/true",
    "-1", "+1", "0x10", "010", "1e3", "1.5", "٣", "²", "∞", "NaN", "\u00a0", "\u2028",
]  # fmt: skip

_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**100]),
).map(str)
_spaces = st.sampled_from(["", " ", "\n", "\t", "  ", "\r\n", "\n\n", "\x0b", "\x0c", "\x00"])
_token = st.one_of(
    _numbers,
    _numbers.flatmap(
        lambda n: st.sampled_from(["K", "M", "G", "T", "P", "E", "k", "x", ""]).map(lambda s: n + s)
    ),
    st.sampled_from(_WORDS),
    st.text(max_size=12),
)


@st.composite
def values(draw: st.DrawFn) -> bytes:
    """Plausible and implausible values: tokens joined by whitespace variants, in
    some encoding, or plain arbitrary bytes."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=200))
    tokens = draw(st.lists(_token, min_size=0, max_size=5))
    text = draw(_spaces)
    for t in tokens:
        text += t + draw(_spaces)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "latin-1", "cp500"]))
    return text.encode(encoding, errors="replace")


_offsets = st.one_of(st.none(), st.none(), st.integers(0, 2**40))

_name_bytes = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.text(min_size=1, max_size=300).map(os.fsencode),
    st.sampled_from(
        [
            b".",
            b"..",
            b"...",
            b".hidden",
            b"tasks",
            b"pids.max",
            b"a" * 255,
            b"a" * 256,
            b"\xff\xfe",
            b"caf\xc3\xa9",
            b"a b",
            b"a\tb",
            b"a\nb",
            b"\xe2\x80\xa8",
            b"-",
            b"~",
            b"name~2",
            "é".encode() * 127,
            "é".encode() * 128,
            b"\x7f",
        ]
    ),  # fmt: skip
).filter(lambda b: b"/" not in b and b"\0" not in b)


# -- properties ----------------------------------------------------------------


def test_arbitrary_writes_to_every_writable_file(cfs: Mounted, dog: Watchdog) -> None:
    os.mkdir(cfs.mnt / "a")
    targets = [cfs.mnt / "a" / n for n in writable(cfs.mnt / "a")]
    targets += [cfs.mnt / "release_agent", cfs.mnt / "container.subtree"]
    names = [p.name for p in targets]
    # Every writable file the README lists for a container that owns its kinds.
    for want in ("tasks", "container.subtree", "container.release", "pids.max", "memory.max",
                 "uts.hostname", "uts.domainname", "ipc.shm_mni", "ipc.shm_mni.internal",
                 "ipc.sem", "net.ip_local_port_range", "time.offsets",
                 "container.claim"):  # fmt: skip
        assert want in names, (want, names)
    assert all(not n.endswith(".effective") for n in names)
    seen: dict[str, set[int | None]] = {}

    @settings(SETTINGS, max_examples=20 * len(targets))
    @given(st.sampled_from(targets), values(), _offsets)
    def one(path: Path, data: bytes, offset: int | None) -> None:
        assume(safe(path.name, data))
        seen.setdefault(path.name, set()).add(attempt(dog, path, data, offset))

    one()
    # every file was tried with the sampled inputs
    assert len(seen) > len(targets) // 2, sorted(seen)
    for path in targets:  # and each file once more, on its own
        assume_ok = [d for d in (b"", b"\n", b"\xff", b"-1\n") if safe(path.name, d)]
        for data in assume_ok:
            attempt(dog, path, data)
    assert_alive(cfs, dog)


def test_arbitrary_names_for_mkdir_mv_and_lookup(cfs: Mounted, dog: Watchdog) -> None:
    base = cfs.mnt / "n"
    os.mkdir(base)
    os.mkdir(base / "x")
    files = set(os.listdir(base)) - {"x"}

    @settings(SETTINGS, max_examples=120)
    @given(_name_bytes)
    def lookup(name: bytes) -> None:
        path = os.fsencode(base) + b"/" + name
        for op in ("stat", "open", "create"):
            try:
                if op == "stat":
                    dog.call(f"stat {name!r}", lambda: os.stat(path))
                else:
                    flags = os.O_RDONLY | (os.O_CREAT | os.O_EXCL if op == "create" else 0)
                    dog.call(f"{op} {name!r}", lambda f=flags: os.close(os.open(path, f, 0o644)))
            except OSError as exc:
                allowed = LOOKUP_ERRNOS | ({errno.EPERM, errno.EEXIST} if op == "create" else set())
                assert exc.errno in allowed, f"{op} {name!r}: {exc!r}"
                if exc.errno == errno.ENOENT:
                    assert os.fsdecode(name) not in files | {"x"}
            else:
                assert name in (b".", b"..", b"x") or os.fsdecode(name) in files, (op, name)
                assert op != "create" or name in (b".", b".."), name

    @settings(SETTINGS, max_examples=60)
    @given(_name_bytes)
    def mkdir(name: bytes) -> None:
        path = os.fsencode(base) + b"/" + name
        try:
            dog.call(f"mkdir {name!r}", lambda: os.mkdir(path))
        except OSError as exc:
            assert exc.errno in NAME_ERRNOS, f"mkdir {name!r}: {exc!r}"
            if exc.errno == errno.ENAMETOOLONG:
                assert len(name) > 255
            if exc.errno != errno.EEXIST:
                assert name not in os.listdir(os.fsencode(base))
            return
        assert len(name) <= 255 and not name.startswith(b".")
        assert name in os.listdir(os.fsencode(base)), name
        assert read(dog, Path(os.fsdecode(path)) / "container.release") == b"ignore\n"
        dog.call(f"rmdir {name!r}", lambda: os.rmdir(path))

    @settings(SETTINGS, max_examples=60)
    @given(_name_bytes)
    def rename(name: bytes) -> None:
        old = os.fsencode(base / "x")
        new = os.fsencode(base) + b"/" + name
        try:
            dog.call(f"mv x {name!r}", lambda: os.rename(old, new))
        except OSError as exc:
            # EEXIST for a taken name, EBUSY for "." and "..", ENOTDIR onto a file
            allowed = NAME_ERRNOS | {errno.EBUSY, errno.ENOTDIR, errno.ENOTEMPTY, errno.EPERM}
            assert exc.errno in allowed, f"mv x {name!r}: {exc!r}"
            assert b"x" in os.listdir(os.fsencode(base))
            return
        listing = os.listdir(os.fsencode(base))
        assert name in listing and (name == b"x" or b"x" not in listing), (name, listing)
        dog.call(f"mv {name!r} x", lambda: os.rename(new, old))
        # the renamed container still answers
        assert read(dog, base / "x" / "container.release") == b"ignore\n"

    # and a rename of names that are not containers
    @settings(SETTINGS, max_examples=40)
    @given(_name_bytes)
    def rename_from(name: bytes) -> None:
        old = os.fsencode(base) + b"/" + name
        try:
            dog.call(f"mv {name!r} y", lambda: os.rename(old, os.fsencode(base / "y")))
        except OSError as exc:
            allowed = LOOKUP_ERRNOS | {errno.EPERM, errno.EBUSY, errno.EINVAL}
            assert exc.errno in allowed, f"mv {name!r} y: {exc!r}"
        else:
            assert name == b"x", name
            os.rename(base / "y", base / "x")

    lookup()
    mkdir()
    rename()
    rename_from()
    assert sorted(os.listdir(base)) == sorted(files | {"x"})
    assert_alive(cfs, dog)


# -- explicit cases ----------------------------------------------------------------

HOSTILE: list[bytes] = [
    b"\0",
    b"5\0",
    b"\0" * 100,
    b"\xff\xfe\xfd",
    b"\xc3",  # a truncated UTF-8 sequence
    b"5\xc3\n",
    "5".encode("utf-16"),
    b"-1\n",
    b"-0\n",
    b"-9223372036854775808\n",
    str(2**64).encode(),
    str(2**64 - 1).encode(),
    str(10**100).encode(),
    b"9" * 5000,  # past Python's int() digit limit
    b" 5 \n",
    b"\t5\n",
    b"5\r\n",
    b"\n\n5\n\n",
    b"5 5\n",
    b"\xc2\xa05\n",  # NBSP
    "٣\n".encode(),  # ARABIC-INDIC DIGIT THREE
    "²\n".encode(),
    "５\n".encode(),  # FULLWIDTH DIGIT FIVE
    b"0x10\n",
    b"1e3\n",
]


def test_explicit_hostile_values_to_every_writable_file(cfs: Mounted, dog: Watchdog) -> None:
    os.mkdir(cfs.mnt / "a")
    targets = [cfs.mnt / "a" / n for n in writable(cfs.mnt / "a")]
    targets += [cfs.mnt / "release_agent", cfs.mnt / "container.subtree"]
    for path in targets:
        for data in HOSTILE:
            if safe(path.name, data):
                attempt(dog, path, data)
    assert_alive(cfs, dog)


def test_huge_numbers_and_negatives_are_refused(cfs: Mounted, dog: Watchdog) -> None:
    os.mkdir(cfs.mnt / "a")
    a = cfs.mnt / "a"
    for name in ("pids.max", "memory.max", "cpu.weight", "ipc.shm_mni", "ipc.shm_max.internal",
                 "net.somaxconn", "pid.max"):  # fmt: skip
        for data in (b"-1\n", str(2**64).encode(), str(10**100).encode(), b"99999999999999999999M"):
            assert attempt(dog, a / name, data) in WRITE_ERRNOS, (name, data)
    # the largest u64 is a valid byte count; a suffix past it is not
    assert attempt(dog, a / "ipc.shm_max", str(2**64 - 1).encode()) is None
    assert attempt(dog, a / "memory.max", b"16E") == errno.EINVAL
    assert_alive(cfs, dog)


def test_large_writes(cfs: Mounted, dog: Watchdog) -> None:
    """1 MiB, a page and a page + 1: refused or applied, never EIO, never a hang.

    As on cgroupfs, a write of more than a page is refused with E2BIG, whatever it
    holds; a page or less is judged by its value. The log names each refusal but
    does not copy a megabyte value.
    """
    os.mkdir(cfs.mnt / "a")
    a = cfs.mnt / "a"
    page = os.sysconf("SC_PAGE_SIZE")
    logged = cfs.log.stat().st_size
    for size in (page - 1, page, page + 1, 1 << 20):
        for name in ("pids.max", "uts.hostname", "ipc.sem.internal", "container.release", "tasks"):
            if name != "tasks":  # a PID of the host could be a process
                assert attempt(dog, a / name, b"7" * size) in WRITE_ERRNOS
            assert attempt(dog, a / name, b"\0" * size) in WRITE_ERRNOS
            assert attempt(dog, a / name, os.urandom(size)) in WRITE_ERRNOS
            if size > page:
                assert attempt(dog, a / name, b"\0" * size) == errno.E2BIG
    # a valid value padded with whitespace: to a page it is taken, past it not
    data = b"9" + b" " * (page - 2) + b"\n"
    assert attempt(dog, a / "pids.max", data) is None
    assert read(dog, a / "pids.max") == b"9\n"
    assert attempt(dog, a / "pids.max", b"8" + b" " * (page - 1) + b"\n") == errno.E2BIG
    assert read(dog, a / "pids.max") == b"9\n"
    # every refusal is logged with its reason, but a megabyte value is not logged whole
    for name in writable(a):
        if name != "tasks":
            attempt(dog, a / name, b"1" * (1 << 20))
        attempt(dog, a / name, b"x" * (1 << 20))
    grown = cfs.log.stat().st_size - logged
    assert grown < 256 * 1024, f"the log grew by {grown} bytes"
    assert_alive(cfs, dog)


def test_oversized_write_is_refused_whole(cfs: Mounted, dog: Watchdog) -> None:
    """A write() larger than the kernel's FUSE chunk reaches the daemon in pieces;
    none of them may be applied: E2BIG for the whole write, the old value kept.

    Issue 14: 2 MiB of `+pids +pids ...` to container.subtree left `pid pids`, and
    `7` and 10 MB of spaces set pids.max to 7.
    """
    os.mkdir(cfs.mnt / "a")
    a = cfs.mnt / "a"
    subtree = a / "container.subtree"
    assert attempt(dog, subtree, b"+pids") is None
    before = read(dog, subtree)
    for data in (b"+pids " * 400_000, b"+pid " * 400_000, b"-pids +uts " * 200_000):
        assert attempt(dog, subtree, data) == errno.E2BIG
        assert read(dog, subtree) == before
    assert attempt(dog, a / "pids.max", b"12\n") is None
    for data in (b"7" + b" " * 10_000_000, b"7" * 3_000_000, b"7\n" + b" " * (1 << 20)):
        assert attempt(dog, a / "pids.max", data) == errno.E2BIG
        assert read(dog, a / "pids.max") == b"12\n"
    # the same through writev: one system call, one refusal
    fd = os.open(a / "pids.max", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as exc:
            dog.call("writev", lambda: os.writev(fd, [b"7", b" " * (4 << 20)]))
        assert exc.value.errno == errno.E2BIG
    finally:
        os.close(fd)
    assert read(dog, a / "pids.max") == b"12\n"
    page = os.sysconf("SC_PAGE_SIZE")
    assert f"bytes or more; a write takes at most {page}" in cfs.log.read_text()
    assert_alive(cfs, dog)


def test_split_write_applies_each_write_on_its_own(cfs: Mounted, dog: Watchdog) -> None:
    """As with cgroupfs, each write() is one value: `12` then `34` sets 12, then 34."""
    os.mkdir(cfs.mnt / "a")
    a = cfs.mnt / "a"
    fd = os.open(a / "pids.max", os.O_WRONLY)
    try:
        assert os.write(fd, b"12") == 2
        assert read(dog, a / "pids.max") == b"12\n"
        assert os.write(fd, b"34\n") == 3
        assert read(dog, a / "pids.max") == b"34\n"
        # a value cut in the middle of a word: each half is refused on its own
        with pytest.raises(OSError) as exc:
            os.write(fd, b"ma")
        assert exc.value.errno == errno.EINVAL
        with pytest.raises(OSError) as exc:
            os.write(fd, b"x\n")
        assert exc.value.errno == errno.EINVAL
        assert read(dog, a / "pids.max") == b"34\n"
    finally:
        os.close(fd)
    fd = os.open(a / "uts.hostname", os.O_WRONLY)
    try:
        os.write(fd, b"web")
        os.write(fd, b"-1\n")
    finally:
        os.close(fd)
    assert read(dog, a / "uts.hostname") == b"-1\n"
    assert_alive(cfs, dog)


def test_offsets_and_append_are_ignored(cfs: Mounted, dog: Watchdog) -> None:
    """A write sets the whole value wherever it is made: pwrite at 5, O_APPEND."""
    os.mkdir(cfs.mnt / "a")
    a = cfs.mnt / "a"
    assert attempt(dog, a / "pids.max", b"17\n", offset=5) is None
    assert read(dog, a / "pids.max") == b"17\n"
    assert attempt(dog, a / "pids.max", b"18\n", offset=2**40) is None
    assert read(dog, a / "pids.max") == b"18\n"
    assert attempt(dog, a / "pids.max", b"19\n", flags=os.O_APPEND) is None
    assert read(dog, a / "pids.max") == b"19\n"
    assert attempt(dog, a / "uts.hostname", b"web\n", offset=5) is None
    assert read(dog, a / "uts.hostname") == b"web\n"
    assert attempt(dog, a / "container.release", b"notify\n", flags=os.O_APPEND) is None
    assert read(dog, a / "container.release") == b"notify\n"
    # a refused write at an offset keeps the value
    assert attempt(dog, a / "pids.max", b"x\n", offset=3) == errno.EINVAL
    assert_alive(cfs, dog)


def test_truncate_changes_nothing(cfs: Mounted, dog: Watchdog) -> None:
    os.mkdir(cfs.mnt / "a")
    a = cfs.mnt / "a"
    (a / "pids.max").write_bytes(b"23\n")
    for name in writable(a):
        path = a / name
        before = read(dog, path)
        for size in (0, 1, 3, 4096, 2**40):
            dog.call(f"truncate {name} {size}", lambda p=path, s=size: os.truncate(p, s))
            assert read(dog, path) == before, (name, size)
            fd = os.open(path, os.O_WRONLY)
            try:
                dog.call(f"ftruncate {name} {size}", lambda f=fd, s=size: os.ftruncate(f, s))
            finally:
                os.close(fd)
            assert read(dog, path) == before, (name, size)
        with pytest.raises(OSError) as exc:
            os.truncate(path, -1)
        assert exc.value.errno == errno.EINVAL
        # O_TRUNC without a write (`: > file`) changes nothing either
        os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))
        assert read(dog, path) == before, name
    # read-only files refuse a truncate
    for name in ("pids.current", "container.events", "ipc.shm_mni.effective"):
        with pytest.raises(PermissionError):
            os.truncate(a / name, 0)
    assert read(dog, a / "pids.max") == b"23\n"
    assert_alive(cfs, dog)


def test_reads_at_arbitrary_offsets(cfs: Mounted, dog: Watchdog) -> None:
    os.mkdir(cfs.mnt / "a")
    a = cfs.mnt / "a"
    names = sorted(os.listdir(a))

    @settings(SETTINGS, max_examples=150)
    @given(
        st.sampled_from(names),
        st.lists(
            st.tuples(
                st.one_of(st.integers(0, 300), st.integers(0, 2**62)),
                st.one_of(st.integers(0, 300), st.just(1 << 20)),
            ),
            min_size=1,
            max_size=6,
        ),
    )
    def reads(name: str, spans: list[tuple[int, int]]) -> None:
        fd = os.open(a / name, os.O_RDONLY)
        try:
            whole = dog.call(f"read {name}", lambda: os.pread(fd, 1 << 20, 0))
            for off, size in spans:
                if off == 0:
                    continue  # a read from 0 renders the file anew (a seq_file)
                what = f"pread {name} {size}@{off}"
                got = dog.call(what, lambda o=off, s=size: os.pread(fd, s, o))
                assert got == whole[off : off + size], (name, off, size, whole)
        finally:
            os.close(fd)

    reads()
    assert_alive(cfs, dog)


#: Per file: values at and past the edges of what it takes.
EDGES: dict[str, list[bytes]] = {
    "pids.max": [b"0", b"4194304", b"4194305", b"max ", b"MAX", b"max\nmax", b"+5", b"5 6"],
    "memory.max": [b"0", b"1K", b"15E", b"16E", b"1.5G", b"1 G", b"1KB", b"-1", b"max"],
    "cpu.max": [b"max", b"1000 1000", b"999 1000", b"max 999", b"1000 1000001",
                b"17592186044416 1000", b"17592186044415 100000", b"max 100000 1", b"1000"],
    "cpu.weight": [b"0", b"1", b"10000", b"10001", b"100"],
    "cpuset.cpus": [b"", b"0", b"1-0", b"0-65536", b"0-3:0/4", b"0-3:2/1", b"0-1:1/2", b"0,,1",
                    b"999", b"0-65535"],
    "cpuset.mems": [b"", b"0", b"1", b"0-1", b"-"],
    "io.max": [b"8:0 rbps=1", b"8:0 rbps=max", b"1:3 rbps=1", b"999999:999999 rbps=1",
               b"8:0 rbps=0", b"8:0 rbps=-1", b"8:0 bogus=1", b"8:0", b"a:b rbps=1", b"8:0 rbps"],
    "uts.hostname": [b"a" * 64, b"a" * 65, "é".encode() * 32, "é".encode() * 33, "🐳".encode(),
                     b"a.b-c_d", b"\xff", b"a\x7f", b"a\x00b", b"\n"],
    "uts.domainname": [b"a" * 64, b"a" * 65, b"(none)", b"-"],
    "time.offsets": [b"monotonic 99999999999999999999", b"monotonic -99999999999999999999 0",
                     b"boottime 1 999999999", b"boottime 1 1000000000", b"monotonic 1 -1",
                     b"monotonic --5", b"monotonic -1", b"boottime 0 0\nmonotonic 5",
                     b"realtime 5", b"monotonic", b"monotonic 1 2 3", b"monotonic 0 0"],
    "ipc.sem": [b"1 2 3", b"1 2 3 4 5", b"-1 2 3 4", b"2147483648 1 1 1", b"32000 1 1 32769",
                b"0 0 0 0", b"max"],
    "ipc.sem.internal": [b"1 2 3 4", b"32000 1024000000 500 32769", b"0 0 0 0", b"max"],
    "ipc.shm_mni": [b"0", b"1", b"32768", b"32769", b"max"],
    "ipc.shm_mni.internal": [b"0", b"1", b"32768", b"32769", b"max"],
    "ipc.mq_msgsize_max.internal": [b"127", b"128", b"16777216", b"16777217"],
    "net.ip_local_port_range": [b"2 1", b"0 65535", b"1 65536", b"1 65535", b"1024 1024",
                                b"1 100", b"max"],
    "net.ip_local_port_range.internal": [b"2 1", b"0 65535", b"1 65535", b"60999 32768",
                                         b"1024 1024", b"1 100", b"40000 50000"],
    "pid.max": [b"300", b"301", b"4194304", b"4194305", b"max"],
    "pid.max.internal": [b"300", b"301", b"4194304", b"4194305"],
    "container.release": [b"IGNORE", b"delete now", b"notify\x00", b"notify"],
    "container.subtree": [b"+", b"-", b"+ipc -ipc", b"+ipc +ipc", b"ipc", b"+user", b"-user",
                          b"+hugetlb", b"+cpu\t-memory", b"+" + b"x" * 300],
}  # fmt: skip


def test_edge_values(cfs: Mounted, dog: Watchdog) -> None:
    """Values at each file's edges: applied as documented or refused, old value kept."""
    os.mkdir(cfs.mnt / "a")
    a = cfs.mnt / "a"
    names = writable(a)
    for name, datas in EDGES.items():
        if name not in names:
            continue  # e.g. pid.max before Linux 6.14
        for data in datas:
            for suffix in (b"", b"\n"):
                attempt(dog, a / name, data + suffix)
    # a few of them, exactly
    assert attempt(dog, a / "pids.max", b"4194305") == errno.EINVAL
    assert attempt(dog, a / "uts.hostname", b"a" * 65) == errno.EINVAL
    assert attempt(dog, a / "uts.hostname", "é".encode() * 32) is None
    assert attempt(dog, a / "net.ip_local_port_range.internal", b"2 1") == errno.EINVAL
    assert attempt(dog, a / "time.offsets", b"monotonic 99999999999999999999") == errno.ERANGE
    assert attempt(dog, a / "time.offsets", b"boottime 1 1000000000") == errno.EINVAL
    assert_alive(cfs, dog)


def test_read_write_fd_and_stale_handles(cfs: Mounted, dog: Watchdog) -> None:
    """O_RDWR handles; handles of a renamed container follow it; handles of a removed
    one fail with ENODEV (as cgroupfs's do) and never reach a new container of that
    name."""
    os.mkdir(cfs.mnt / "a")
    fd = os.open(cfs.mnt / "a" / "pids.max", os.O_RDWR)
    try:
        assert os.read(fd, 100) == b"max\n"
        assert os.write(fd, b"5\n") == 2
        assert os.pread(fd, 100, 0) == b"5\n"  # a read from 0 renders it anew
        with pytest.raises(OSError) as exc:
            os.write(fd, b"-5\n")
        assert exc.value.errno == errno.EINVAL
        assert os.pread(fd, 100, 0) == b"5\n"
    finally:
        os.close(fd)

    os.mkdir(cfs.mnt / "b")
    w = os.open(cfs.mnt / "b" / "pids.max", os.O_WRONLY)
    r = os.open(cfs.mnt / "b" / "tasks", os.O_RDONLY)
    try:
        os.rename(cfs.mnt / "b", cfs.mnt / "c")
        os.write(w, b"7\n")
        assert read(dog, cfs.mnt / "c" / "pids.max") == b"7\n"
        os.rmdir(cfs.mnt / "c")
        os.mkdir(cfs.mnt / "c")
        with pytest.raises(OSError) as exc:
            dog.call("write to a removed container", lambda: os.write(w, b"8\n"))
        assert exc.value.errno == errno.ENODEV
        assert read(dog, cfs.mnt / "c" / "pids.max") == b"max\n"
        with contextlib.suppress(OSError):  # empty, or ENODEV: never another container's
            assert dog.call("read a removed container", lambda: os.pread(r, 100, 0)) == b""
    finally:
        os.close(w)
        os.close(r)
    assert_alive(cfs, dog)


#: Names of cgroupfs's own files (v1 and v2): a container by such a name must not
#: collide with the file of that name in its parent's cgroup directory.
CGROUP_FILE_NAMES = [
    "cgroup.procs", "cgroup.controllers", "cgroup.events", "cgroup.subtree_control",
    "cgroup.type", "cgroup.kill", "cgroup.clone_children", "notify_on_release", "release_agent",
    "cpu.shares", "cpuacct.usage", "memory.limit_in_bytes", "memory.stat", "freezer.state",
    "devices.allow", "cpuset.cpu_exclusive", "pids.events", "io.pressure", "irq.pressure",
]  # fmt: skip


def test_mkdir_of_cgroup_file_names(cfs: Mounted, dog: Watchdog) -> None:
    os.mkdir(cfs.mnt / "n")
    pins = live_pins(str(cfs.mnt))
    problems = []
    for name in CGROUP_FILE_NAMES:
        path = cfs.mnt / "n" / name
        try:
            dog.call(f"mkdir {name}", lambda p=path: os.mkdir(p))
        except OSError as exc:
            if exc.errno not in NAME_ERRNOS:
                problems.append(f"mkdir {name}: {exc}")
            continue
        try:
            assert read(dog, path / "container.release") == b"ignore\n"
            dog.call(f"rmdir {name}", lambda p=path: os.rmdir(p))
        except (OSError, AssertionError) as exc:
            problems.append(f"{name}: made, then {exc!r}")
    assert live_pins(str(cfs.mnt)) == pins or problems
    assert not problems, "\n".join(problems)
    assert_alive(cfs, dog)


def test_release_agent_refusal_is_not_logged_whole(cfs: Mounted, dog: Watchdog) -> None:
    logged = cfs.log.stat().st_size
    assert attempt(dog, cfs.mnt / "release_agent", b"/" + b"x" * (1 << 20)) == errno.E2BIG
    grown = cfs.log.stat().st_size - logged
    assert grown < 64 * 1024, f"the log grew by {grown} bytes"
    assert_alive(cfs, dog)


def test_files_and_links_cannot_be_made_or_removed(cfs: Mounted, dog: Watchdog) -> None:
    """README *Errors*: creating or deleting a file is ``EPERM``, links included
    (``ln -s`` answered ``ENOSYS`` before), as the commands a user types show it."""
    cfs.sh("mkdir d")
    tries = {
        "ln -s": "ln -s /etc/hostname d/link",
        "ln -s (root)": "ln -s d/tasks link",
        "ln": "ln d/tasks d/hard",
        "ln (into another)": "ln d/tasks hard",
        "touch": "touch d/new",
        "mknod": "mknod d/fifo p",
        "rm": "rm -f d/tasks",
    }
    for what, script in tries.items():
        r = dog.call(what, lambda s=script: cfs.sh(s, check=False))  # type: ignore[misc]
        assert r.returncode != 0, what
        assert "Operation not permitted" in r.stderr, f"{what}: {r.stderr.strip()}"
    for name in ("link", "hard"):
        assert not os.path.lexists(cfs.mnt / name)
    for name in ("link", "hard", "new", "fifo"):
        assert not os.path.lexists(cfs.mnt / "d" / name)
    assert (cfs.mnt / "d" / "tasks").exists()
    assert_alive(cfs, dog)
