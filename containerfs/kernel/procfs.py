"""The one parser of ``/proc`` text formats: mountinfo, status and nsfs link names.

Several kernel modules read the same /proc files for different facts (the
cgroup mounts, the nsfs bind mounts, a namespace's mount table, a dead FUSE
mount; a process's ids, capabilities, tracer, pid in each pid namespace).
The formats are parsed here, once, so that a quirk of a format (mountinfo's
optional fields and octal escapes, an empty mount source) is handled the same
way everywhere; each caller keeps only its own choice of lines and fields.
The few facts a tracer asks about one thread (its state, tracer, namespace)
are read here too, so that the ptrace modules read no /proc file themselves.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from containerfs.nskinds import KINDS

# =============================================================================
# /proc/PID/mountinfo
# =============================================================================


@dataclass(frozen=True)
class MountLine:
    """One line of ``/proc/PID/mountinfo``; path fields keep the kernel's octal escapes.

    A line is ``ID PARENT MAJ:MIN ROOT MOUNT_POINT MOUNT_OPTS [OPTIONAL...] -
    FSTYPE SOURCE SUPER_OPTS``; the optional fields vary in number and end at
    the lone ``-``.
    """

    device: str  # major:minor, identical for every mount of one superblock
    root: str  # the path inside the filesystem that is the top of this mount
    mount_point: str
    mount_options: str
    fstype: str
    source: str
    super_options: str  # "" if the line ends after the source


def parse_mountinfo_line(line: str) -> MountLine:
    """The fields of one mountinfo line; ``ValueError`` if it is malformed.

    Split on single spaces, not on runs of whitespace: a mount's source may be
    empty (``mount -t tmpfs "" DIR``), which leaves two spaces in a row.
    Every other field has its whitespace escaped (``\\040`` for a space).
    """
    fields = line.split(" ")
    try:
        sep = fields.index("-", 6)
    except ValueError:
        raise ValueError(f"mountinfo line without separator: {line!r}") from None
    if len(fields) < sep + 3:
        raise ValueError(f"mountinfo line too short: {line!r}")
    return MountLine(
        device=fields[2],
        root=fields[3],
        mount_point=fields[4],
        mount_options=fields[5],
        fstype=fields[sep + 1],
        source=fields[sep + 2],
        super_options=fields[sep + 3] if len(fields) > sep + 3 else "",
    )


def parse_mountinfo(text: str, *, skip_malformed: bool = False) -> Iterator[MountLine]:
    """Every line of a mountinfo text, in the kernel's (mount) order; blank lines skipped.

    A malformed line raises ``ValueError`` unless ``skip_malformed``.
    """
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            yield parse_mountinfo_line(line)
        except ValueError:
            if not skip_malformed:
                raise


def unescape_mountinfo(field: str) -> str:
    r"""A mountinfo path field with the kernel's octal escapes (``\040`` etc.) undone.

    The kernel escapes space, tab, newline and backslash as ``\ooo``.
    """
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        chunk = field[i + 1 : i + 4]
        if field[i] == "\\" and len(chunk) == 3 and all(c in "01234567" for c in chunk):
            out.append(chr(int(chunk, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


# =============================================================================
# /proc/PID/status
# =============================================================================


def parse_status(text: str) -> dict[str, str]:
    """``/proc/PID/status`` as ``{field: value}``, values stripped (``"Uid": "0\\t0\\t0\\t0"``)."""
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def read_status(path: str) -> dict[str, str]:
    """The status file at ``path`` (``/proc/PID/status`` or a thread's), parsed.

    ``ProcessLookupError`` when it is gone: the process (or thread) exited.
    """
    try:
        with open(path) as f:
            return parse_status(f.read())
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {path}") from None


def status_ids(status: Mapping[str, str], name: str) -> list[int]:
    """Real, effective, saved (and fs) ids of a status ``Uid``/``Gid`` line."""
    return [int(x) for x in status[name].split()]


def has_cap(status: Mapping[str, str], cap: int, which: str = "CapEff") -> bool:
    """Whether capability number ``cap`` is in the status's ``which`` set (hex mask)."""
    return bool(int(status[which], 16) >> cap & 1)


def parse_nspid(status: str) -> list[int]:
    """The ``NSpid:`` line of a /proc/PID/status text, outermost namespace first."""
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return [int(x) for x in line.split()[1:]]
    raise ValueError("no NSpid line in status")


def nspids(pid: int | str) -> list[int]:
    """Pid of ``pid`` in each pid namespace from /proc's down to its own."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return parse_nspid(f.read())
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {pid}") from None


# =============================================================================
# /proc/PID/stat
# =============================================================================


def parse_stat(stat: bytes) -> tuple[str, int, int]:
    """(comm, ppid, start time in ticks) from a /proc/PID/stat text.

    COMM is between the first "(" and the *last* ")": it may hold both.
    """
    open_, close = stat.find(b"("), stat.rfind(b")")
    comm = stat[open_ + 1 : close].decode(errors="replace")
    fields = stat[close + 2 :].split()
    # fields[0] is state (field 3); ppid is field 4, starttime field 22.
    return comm, int(fields[1]), int(fields[19])


def process_stat(pid: int) -> tuple[str, int, int]:
    """:func:`parse_stat` of a live process; ``ProcessLookupError`` once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return parse_stat(f.read())
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {pid}") from None


def parse_stat_state(stat: bytes) -> str:
    """The state letter of a ``/proc/PID/stat`` text (``R``, ``S``, ``Z``, ...).

    The command name in parentheses may itself hold spaces and parentheses,
    so the fields are counted from the *last* ``)``.
    """
    fields = stat[stat.rfind(b")") + 1 :].split()
    if not fields:
        raise ValueError("no state in /proc/PID/stat")
    return fields[0].decode(errors="replace")


# =============================================================================
# One thread: /proc/PID/task/TID (what a tracer asks about the threads it holds)
# =============================================================================


def thread_state(pid: int, tid: int) -> str:
    """The state letter of thread ``tid`` of ``pid`` (``Z``: a zombie).

    ``ProcessLookupError`` when the thread is gone from /proc, ``ValueError``
    when its stat text has no state.
    """
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
            stat_text = f.read()
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such thread: {tid}") from None
    return parse_stat_state(stat_text)


def tracer_pid(pid: int, tid: int) -> int:
    """The process tracing thread ``tid`` of ``pid`` (or its process), 0 for none.

    The thread's ``TracerPid`` first, then the process's; a status that cannot
    be read counts as untraced.
    """
    for path in (f"/proc/{pid}/task/{tid}/status", f"/proc/{pid}/status"):
        try:
            tracer = int(read_status(path).get("TracerPid", "0"))
        except (OSError, ValueError):
            continue
        if tracer:
            return tracer
    return 0


def thread_wait_info(pid: int, tid: int) -> str:
    """Where thread ``tid`` of ``pid`` waits, for a message: "state S (sleeping), in pipe_read"."""
    try:
        st = read_status(f"/proc/{pid}/task/{tid}/status").get("State", "?")
        with open(f"/proc/{pid}/task/{tid}/wchan") as f:
            wchan = f.read().strip()
    except OSError:
        return "state unknown"
    return f"state {st}" + (f", in {wchan}" if wchan and wchan != "0" else "")


def thread_ns_inode(pid: int, tid: int, kind: str) -> int:
    """The inode of the ``kind`` namespace thread ``tid`` of ``pid`` is in.

    ``ProcessLookupError`` when the thread is gone.
    """
    try:
        return os.stat(f"/proc/{pid}/task/{tid}/ns/{kind}").st_ino
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"thread {tid} of process {pid} is gone") from None


# =============================================================================
# nsfs names (/proc/PID/ns/* links, fds on nsfs files, nsfs mount roots)
# =============================================================================

#: ``/proc/PID/ns`` entries naming a namespace for the children, with their kind.
FOR_CHILDREN: tuple[tuple[str, str], ...] = (
    ("pid_for_children", "pid"),
    ("time_for_children", "time"),
)

_KIND_OF_NAME: dict[str, str] = {kind: kind for kind in KINDS}
_KIND_OF_NAME.update(FOR_CHILDREN)


def parse_ns_link(text: str) -> tuple[str, int] | None:
    """``(kind, inode)`` of an nsfs name like ``net:[4026531833]``, else None.

    This is what ``readlink`` gives for ``/proc/PID/ns/*`` and for an fd on an
    nsfs file, and the root field of an nsfs mount in mountinfo.  Other fd
    targets (``socket:[…]``, ``pipe:[…]``, ``anon_inode:[…]``, paths) give None.
    ``pid_for_children:[…]`` is accepted as ``pid`` (and likewise ``time``),
    in case a kernel names the dentry after the file that created it.
    """
    name, sep, rest = text.partition(":[")
    kind = _KIND_OF_NAME.get(name)
    if kind is None or not sep or not rest.endswith("]"):
        return None
    digits = rest[:-1]
    if not digits.isdigit():
        return None
    return kind, int(digits)


def parse_id_map(text: str) -> list[tuple[int, int, int]]:
    """A ``/proc/PID/{uid,gid}_map`` text -> its ``(inside, outside, count)`` ranges
    (the middle field is relative to the reader's user namespace).
    ``ValueError`` on a line that is not three numbers."""
    ranges = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or not all(f.isascii() and f.isdigit() for f in fields):
            raise ValueError(f"bad ID map line: {line[:60]!r}")
        inside, outside, count = (int(f) for f in fields)
        ranges.append((inside, outside, count))
    return ranges
