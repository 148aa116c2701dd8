"""Every namespace on the host: by ``listns()`` on Linux >= 6.19, else through ``/proc``.

:func:`scan_listns` (the ``listns()`` path) is described where it is defined;
the rest of this text is about the ``/proc`` walk, which older kernels and
ordinary readers get.

A namespace stays alive while something refers to it: a task's active
namespaces, the pid and time namespaces a task's children will get
(``pid_for_children``, ``time_for_children``), an nsfs bind mount, or an open
nsfs file descriptor.  :func:`scan` looks at all of them:

* ``/proc/PID/ns/*`` of every process gives ``nprocs``, counted as lsns
  counts (util-linux 2.38): every /proc/PID entry, kernel threads included,
  in the namespaces of its main thread; a zombie only in its pid and user
  namespaces (the only links it keeps; a zombie init alone keeps its pid
  namespace alive).  Other threads are read only when a process has more
  than one (``st_nlink`` of ``/proc/PID/task`` is 2 plus the thread count); a
  namespace only a thread is in gets ``nprocs`` 0 (lsns does not show it).
* ``*_for_children`` that differ from the active one add a namespace whose
  ``nprocs`` counts only processes active in it: 0 for a time namespace
  nobody has entered yet (a containerfs holder keeps its container's that
  way), or a pid namespace whose init has exited.  lsns shows neither.
* ``/proc/PID/mountinfo``, read once per mount namespace, gives nsfs bind
  mounts (``ip netns add``); ``/proc/PID/fd/*`` link texts give nsfs fds.

Why links are *read* rather than ``stat``-ed: ``readlink`` of a ns file only
formats ``net:[INODE]`` (half the cost of a ``stat``, which builds the nsfs
dentry), and ``readlink`` of an fd never calls into the file's filesystem,
where ``stat`` would (a hung FUSE or NFS mount would hang the scan).  Per
process the cost is ten ``readlink`` calls, two ``stat`` calls (thread and fd
counts) and one ``readlink`` per open fd, nearly all of it kernel time; the
``NS_GET_USERNS``/``NS_GET_PARENT`` ioctls run once per distinct namespace, on
one fd opened from the steadiest source found (a process's ns file, then a
``*_for_children`` file, a thread's, an fd, a bind mount).

The walk over processes (their links and fds, and each namespace's owner and
parent when a process's ns file opens it) runs in ``containerfs-nsscan``
(``nsscan.c``) on one thread per CPU plus one: nearly all of it is kernel time,
which the kernel spreads over CPUs only for calls from several threads, and
Python threads made it slower (the GIL handoff around each short call).  It
prints one record per group of processes sharing all their links, so the
parsing here grows with the groups; without the program the same walk runs in
Python (:func:`_scan_processes`).  Measured here (2 CPUs, 2,000 processes in
200 groups): 94 ms against 175 ms.

Processes come and go during a scan: one that vanishes (``ENOENT``,
``ESRCH``) or may not be inspected (``EACCES``: ptrace read access is needed,
which root lacks for a process with capabilities it has not) is skipped.
The result is a snapshot that was true at some instant for each process, not
an atomic picture of the host.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import logging
import os
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from containerfs.defaults import find_program
from containerfs.kernel import procfs
from containerfs.kernel import sys as ksys
from containerfs.kernel.sys import (
    NS_FLAGS,
    NS_GET_PARENT,
    NS_GET_USERNS,
    become_user_on_this_thread,
)
from containerfs.nskinds import KINDS

log = logging.getLogger(__name__)

#: Kinds that form a tree, for which NS_GET_PARENT answers.
_HIERARCHICAL = frozenset({"pid", "user"})

#: Errors that mean "this process (or this fd) is gone or not ours to look at".
_GONE = frozenset({errno.ENOENT, errno.ESRCH, errno.EACCES, errno.EPERM})

#: Errors of NS_GET_USERNS/NS_GET_PARENT that mean "no answer": the namespace
#: is a root or its relative lies outside the caller's user namespace (EPERM),
#: or the kind has no such relative (EINVAL, ENOTTY).
_NO_RELATIVE = frozenset({errno.EPERM, errno.EINVAL, errno.ENOTTY})

#: How many places to remember per namespace for opening it later: one that
#: vanished before the ioctl phase is replaced by the next.
_MAX_SOURCES = 3

_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


@dataclass(frozen=True)
class NsEntry:
    """One namespace, identified by its nsfs inode."""

    kind: str  # ipc uts net pid mnt user cgroup time (lsns's TYPE names)
    inode: int
    nprocs: int  # processes (not threads) whose active namespace it is
    owner: int | None  # inode of the owning user namespace (NS_GET_USERNS)
    parent: int | None  # pid and user: the parent namespace (NS_GET_PARENT)
    # Held by an nsfs bind mount or an open nsfs fd (listns() path: no process
    # is in it; listns() does not say what holds it).  Not shown in the file.
    persistent: bool
    # The 64-bit id (NS_GET_ID, Linux >= 6.18; None before, or not opened).
    nsid: int | None = None


# =============================================================================
# Pure parsing and formatting
# =============================================================================


def parse_mountinfo_nsfs(text: str) -> list[tuple[str, int, str]]:
    """``(kind, inode, mountpoint)`` of every nsfs mount in a mountinfo text.

    A line is ``ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE
    SOURCE SUPEROPTS``; the optional fields vary in number, hence the search
    for the ``-`` separator.  For nsfs the root is the namespace's name.
    Malformed lines are skipped.
    """
    found = []
    for line in text.splitlines():
        if " nsfs " not in line:  # cheap filter: most mounts are not nsfs
            continue
        try:
            mount = procfs.parse_mountinfo_line(line)
        except ValueError:
            continue
        if mount.fstype != "nsfs":
            continue
        ns = procfs.parse_ns_link(mount.root)
        if ns is not None:
            found.append((ns[0], ns[1], procfs.unescape_mountinfo(mount.mount_point)))
    return found


def format_table(entries: Iterable[NsEntry], path_of: Callable[[str, int], str | None]) -> str:
    """``TYPE INODE NPROCS OWNER_USERNS PARENT CONTAINER_PATH NSID`` lines, ``-`` for None.

    ``path_of(kind, inode)`` names the container owning the namespace, or None.
    No header, one newline-terminated line per entry, in the given order, so
    that the text reads like the other whitespace-separated containerfs files.
    ``NSID`` came last (container names hold no whitespace), so scripts reading
    the first six columns read them as before.
    """

    def dash(value: int | str | None) -> str:
        return "-" if value is None else str(value)

    return "".join(
        f"{e.kind} {e.inode} {e.nprocs} {dash(e.owner)} {dash(e.parent)} "
        f"{dash(path_of(e.kind, e.inode))} {dash(e.nsid)}\n"
        for e in entries
    )


# =============================================================================
# The scan
# =============================================================================


class _Found:
    """What the /proc walk has seen so far, keyed by link text (``net:[N]``)."""

    def __init__(self) -> None:
        # Distinct tuples of ns links (active kinds, then *_for_children) ->
        # [process count, up to _MAX_SOURCES /proc/PID dirs].  Most processes
        # share all their namespaces with many others, so counting whole
        # tuples keeps the per-process work small.
        self.groups: dict[tuple[str | None, ...], tuple[list[int], list[str]]] = {}
        # Tuples of non-main threads -> up to _MAX_SOURCES task dirs.
        self.threads: dict[tuple[str | None, ...], list[str]] = {}
        # Links of nsfs fds and bind mounts -> places to open them, each with
        # the link text it must still show before it is opened (fds) or None.
        self.held: dict[str, list[tuple[str, str | None]]] = {}
        # Links whose owner and parent inodes and id the C walk found (None: none).
        self.relatives: dict[str, tuple[int | None, int | None, int | None]] = {}

    def add_held(self, link: str, path: str, expect: str | None = None) -> None:
        paths = self.held.setdefault(link, [])
        if len(paths) < _MAX_SOURCES:
            paths.append((path, expect))

    def add_process(self, links: tuple[str | None, ...], base: str) -> None:
        group = self.groups.get(links)
        if group is None:
            self.groups[links] = ([1], [base])
        else:
            group[0][0] += 1
            if len(group[1]) < _MAX_SOURCES:
                group[1].append(base)

    def add_thread(self, links: tuple[str | None, ...], task_dir: str) -> None:
        dirs = self.threads.setdefault(links, [])
        if len(dirs) < _MAX_SOURCES:
            dirs.append(task_dir)


def _read_links(ns_dir: str, names: tuple[str, ...], n_active: int) -> tuple[str | None, ...]:
    """Link texts of ``ns_dir`` + each of ``names``: the active kinds, then *_for_children.

    The fast path reads them all in one C-level loop.  When one fails, each
    is read on its own and an unreadable one is None: a zombie keeps only
    its pid and user links (the others went with its nsproxy; lsns counts it
    in those two, and a zombie init still keeps its pid namespace alive),
    and a new pid namespace without an init yet cannot be handed out.
    ``ProcessLookupError`` when no active link can be read (gone, or not ours).
    """
    try:
        return tuple(map(os.readlink, map(ns_dir.__add__, names)))
    except OSError:
        pass
    links: list[str | None] = []
    for name in names:
        try:
            links.append(os.readlink(ns_dir + name))
        except OSError as e:
            if e.errno not in _GONE:
                raise
            links.append(None)
    if all(link is None for link in links[:n_active]):
        raise ProcessLookupError(errno.ESRCH, f"no namespace readable in {ns_dir}")
    return tuple(links)


def _scan_threads(
    base: str, pid: str, names: tuple[str, ...], n_active: int, found: _Found
) -> None:
    """Namespaces of the non-main threads of ``base`` (a ``/proc/PID`` dir)."""
    try:
        tids = os.listdir(base + "/task")
    except OSError as e:
        if e.errno in _GONE:
            return
        raise
    for tid in tids:
        if tid == pid:
            continue
        task_dir = f"{base}/task/{tid}"
        try:
            links = _read_links(task_dir + "/ns/", names, n_active)
        except OSError as e:
            if e.errno in _GONE:
                continue
            raise
        found.add_thread(links, task_dir)


def _scan_fds(base: str, count: int, found: _Found) -> None:
    """nsfs fds of one process, by their link texts (never touching the files).

    ``count`` is the number of open fds (``st_size`` of ``/proc/PID/fd`` since
    Linux 6.2; -1 if unknown).  Most processes have fds 0..count-1 without a
    gap, so those are read straight away, saving the directory listing (four
    system calls); the first gap falls back to listing the directory.
    """
    fd_dir = base + "/fd/"
    start = 0
    if count > 0:
        for fd in range(count):
            name = str(fd)
            try:
                target = os.readlink(fd_dir + name)
            except OSError as e:
                if e.errno not in _GONE:
                    raise
                break  # a gap: list the directory for the rest
            if target.endswith("]"):
                _note_fd(fd_dir + name, target, found)
            start = fd + 1
        else:
            return
    try:
        listed = os.listdir(fd_dir)
    except OSError as e:
        if e.errno in _GONE:
            return
        raise
    for name in listed:
        if int(name) < start:
            continue
        try:
            target = os.readlink(fd_dir + name)
        except OSError as e:
            if e.errno in _GONE:  # closed meanwhile, or the process exited
                continue
            raise
        if target.endswith("]"):
            _note_fd(fd_dir + name, target, found)


def _note_fd(path: str, target: str, found: _Found) -> None:
    parsed = procfs.parse_ns_link(target)
    if parsed is not None:
        found.add_held(f"{parsed[0]}:[{parsed[1]}]", path, target)


def _scan_processes(
    proc: str,
    names: tuple[str, ...],
    n_active: int,
    fd_counts: bool,
    skip: str = "",
    links_only: bool = False,
) -> _Found:
    """One pass over ``/proc``: ns links of every process, its threads and fds
    (all but process ``skip``; ``links_only``: no threads and fds)."""
    found = _Found()
    with os.scandir(proc) as it:
        pids = [entry.name for entry in it if entry.name.isdigit() and entry.name != skip]
    for pid in pids:
        base = f"{proc}/{pid}"
        try:
            links = _read_links(base + "/ns/", names, n_active)
            if links_only:
                found.add_process(links, base)
                continue
            nlink = os.stat(base + "/task").st_nlink
            nfds = os.stat(base + "/fd").st_size if fd_counts else -1
        except OSError as e:
            if e.errno in _GONE:
                continue
            raise
        found.add_process(links, base)
        if nlink > 3:  # 2 + number of threads
            _scan_threads(base, pid, names, n_active, found)
        if nfds:  # 0 for kernel threads
            _scan_fds(base, nfds, found)
    return found


#: The C walk's name (nsscan.c), installed beside the interpreter by ``make``.
WALKER_NAME = "containerfs-nsscan"

#: At most this many threads walk /proc (more than the CPUs gains nothing).
_MAX_WALK_THREADS = 8


@functools.cache
def find_walker() -> str | None:
    return find_program(WALKER_NAME)


def _walk_threads() -> int:
    # One more than the CPUs: a thread waiting on a lock in the kernel leaves
    # its CPU to another (measured here, 2 CPUs: 1 thread 150 ms, 2 90, 3 80).
    return max(1, min(_MAX_WALK_THREADS, len(os.sched_getaffinity(0)) + 1))


def _as_user(ids: tuple[int, int] | None) -> dict[str, Any]:
    """``subprocess`` arguments that run a walk as an ordinary user: ``ids`` (uid,
    gid), no supplementary groups, and so no capabilities (a change of every uid
    away from 0 clears them). The kernel then shows the walk what it shows that
    user's ``lsns``: the ns links of processes it may ptrace-read (its own, with
    the same gid, dumpable, and any in user namespaces it owns)."""
    if ids is None:
        return {}
    return {"user": ids[0], "group": ids[1], "extra_groups": [], "cwd": "/"}


def _scan_processes_in_c(
    walker: str,
    proc: str,
    names: tuple[str, ...],
    n_active: int,
    fd_counts: bool,
    as_user: tuple[int, int] | None = None,
) -> _Found:
    """What :func:`_scan_processes` finds, from the C walk's records (nsscan.c)."""
    argv = [walker, proc, str(_walk_threads()), "1" if fd_counts else "0", str(n_active), *names]
    done = subprocess.run(argv, capture_output=True, check=False, **_as_user(as_user))
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise OSError(errno.EIO, why)
    return parse_walk(done.stdout.decode(errors="replace"), proc, len(names))


def _scan_processes_as_user(
    ids: tuple[int, int], proc: str, names: tuple[str, ...], n_active: int, fd_counts: bool
) -> _Found:
    """:func:`_scan_processes` as an ordinary user (:func:`_as_user`), without the C
    walk: on a fresh thread that becomes the user (its credentials alone change,
    for good) and then ends."""
    found: list[_Found] = []
    failed: list[BaseException] = []

    def walk() -> None:
        try:
            become_user_on_this_thread(*ids)
            # The kernel lets a thread see its own process whoever it is: the
            # daemon is not the user's (the C walk, a child, skips itself too).
            found.append(_scan_processes(proc, names, n_active, fd_counts, str(os.getpid())))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=walk, name=f"nslist-uid-{ids[0]}")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return found[0]


def parse_walk(text: str, proc: str, n_names: int) -> _Found:
    """The records of ``containerfs-nsscan`` (``p``, ``t``, ``f`` and ``n`` lines) as a
    walk's findings. ``OSError(EPROTO)`` for a line that is not one of them."""
    found = _Found()

    def links_of(text: str) -> tuple[str | None, ...]:
        links = tuple(None if x == "-" else x for x in text.split(" "))
        if len(links) != n_names:
            raise OSError(errno.EPROTO, f"{WALKER_NAME}: {len(links)} links, not {n_names}")
        return links

    try:
        for line in text.splitlines():
            tag, _, rest = line.partition(" ")
            if tag == "p":  # p COUNT PID[,PID...] LINK...
                count, pids, links = rest.split(" ", 2)
                dirs = [f"{proc}/{pid}" for pid in pids.split(",")][:_MAX_SOURCES]
                found.groups[links_of(links)] = ([int(count)], dirs)
            elif tag == "t":  # t PID TID LINK...
                pid, tid, links = rest.split(" ", 2)
                found.add_thread(links_of(links), f"{proc}/{pid}/task/{tid}")
            elif tag == "f" and rest.count(" ") == 2:  # f PID FD TARGET
                pid, fd, target = rest.split(" ")
                _note_fd(f"{proc}/{pid}/fd/{fd}", target, found)
            elif tag == "n" and rest.count(" ") in (2, 3):  # n LINK OWNER PARENT [ID]
                link, owner, parent, *nsid = rest.split(" ")
                found.relatives[link] = (
                    None if owner == "-" else int(owner),
                    None if parent == "-" else int(parent),
                    None if not nsid or nsid[0] == "-" else int(nsid[0]),
                )
            else:
                raise ValueError
    except ValueError:
        raise OSError(errno.EPROTO, f"{WALKER_NAME}: unexpected record {line[:80]!r}") from None
    return found


def _scan_mounts(kinds: tuple[str, ...], mnt_dirs: dict[str, list[str]], found: _Found) -> None:
    """nsfs bind mounts, from one mountinfo per mount namespace.

    A task's mountinfo lists only the mounts below its root, so a task that
    is not chrooted (its ``root`` link reads ``/``) is asked; when none of the
    candidates is, the mountinfo of each is read and the results merged.  A
    mountinfo is trusted only if the task is still in that mount namespace
    after the read (its pid may have been reused meanwhile).
    """
    for mnt_link, dirs in mnt_dirs.items():
        chrooted = []
        for task_dir in dirs:
            try:
                unrooted = os.readlink(task_dir + "/root") == "/"
            except OSError as e:
                if e.errno not in _GONE:
                    raise
                unrooted = False
            if not unrooted:
                chrooted.append(task_dir)
            elif _read_bind_mounts(task_dir, mnt_link, kinds, found):
                break
        else:
            for task_dir in chrooted:
                _read_bind_mounts(task_dir, mnt_link, kinds, found)


def _read_bind_mounts(task_dir: str, mnt_link: str, kinds: tuple[str, ...], found: _Found) -> bool:
    """Record the nsfs mounts in ``task_dir``'s mountinfo; False if it could not be read."""
    try:
        with open(task_dir + "/mountinfo") as f:
            text = f.read()
        if os.readlink(task_dir + "/ns/mnt") != mnt_link:
            return False
    except OSError as e:
        # EINVAL: the task lost its nsproxy (exited) between lookup and open.
        if e.errno in _GONE or e.errno == errno.EINVAL:
            return False
        raise
    for kind, inode, mountpoint in parse_mountinfo_nsfs(text):
        if kind in kinds:
            found.add_held(f"{kind}:[{inode}]", f"{task_dir}/root{mountpoint}")
    return True


def _relative(fd: int, request: int) -> int | None:
    """Inode of the namespace an nsfs ioctl returns, or None when it has none for us."""
    try:
        rel = fcntl.ioctl(fd, request)
    except OSError as e:
        if e.errno in _NO_RELATIVE:
            return None
        raise
    try:
        return os.fstat(rel).st_ino
    finally:
        os.close(rel)


def _ns_id(fd: int) -> int | None:
    """The namespace's 64-bit id (``NS_GET_ID``), or None on a kernel before 6.18."""
    try:
        return ksys.ns_get_id(fd)
    except OSError as e:
        if e.errno in _NO_RELATIVE:
            return None
        raise


def _open_ns(paths: Iterable[tuple[str, str | None]], inode: int, nsfs_dev: int) -> int | None:
    """An fd on the namespace from the first of ``paths`` that still leads to it.

    A path may lead elsewhere by now (pid or fd number reused), so the fd is
    kept only if it is the nsfs inode wanted.  An fd path is re-read first so
    that a reused number is not opened at all (it might be a FIFO or device).
    """
    for path, expect in paths:
        try:
            if expect is not None and os.readlink(path) != expect:
                continue
            fd = os.open(path, _OPEN_FLAGS)
        except OSError:
            continue  # gone, not ours, or not openable: try the next place
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            continue
        if st.st_ino == inode and st.st_dev == nsfs_dev:
            return fd
        os.close(fd)
    return None


def _nsfs_dev(proc: str) -> int:
    """Device number of the nsfs superblock (one for all namespaces)."""
    for path in ("/proc/thread-self/ns/user", f"{proc}/thread-self/ns/user"):
        try:
            return os.stat(path).st_dev
        except OSError:
            continue
    raise OSError(errno.ENOENT, "cannot stat an nsfs file of our own")


def _ns_names(proc: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Kinds this kernel has, in :data:`KINDS` order, and its ``*_for_children`` files.

    Time namespaces came in 5.6 and cgroup ones in 4.6; reading a file the
    kernel lacks would make every process look gone.
    """
    for path in ("/proc/thread-self/ns", f"{proc}/thread-self/ns"):
        try:
            present = set(os.listdir(path))
        except OSError:
            continue
        kinds = tuple(kind for kind in KINDS if kind in present)
        return kinds, tuple((n, k) for n, k in procfs.FOR_CHILDREN if n in present and k in kinds)
    return KINDS, procfs.FOR_CHILDREN


def _fd_counts_known(proc: str) -> bool:
    """Whether ``st_size`` of ``PROC/PID/fd`` counts the open fds (Linux >= 6.2).

    Asked with an fd of our own open, so that 0 means "not supported".
    """
    fd = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        return os.stat(f"{proc}/self/fd").st_size > 0
    except OSError:
        return False
    finally:
        os.close(fd)


# =============================================================================
# listns() (Linux >= 6.19)
# =============================================================================


class NsOps(Protocol):
    """The kernel calls the listns() path makes, so that tests can fake them."""

    def listns(self, after: int, count: int) -> list[int]: ...
    def open_id(self, nsid: int) -> int: ...
    def inode(self, fd: int) -> int: ...
    def nstype(self, fd: int) -> int: ...
    def relative(self, fd: int, request: int) -> int | None: ...
    def close(self, fd: int) -> None: ...


class _LiveNs:
    """:class:`NsOps` of the running kernel."""

    def listns(self, after: int, count: int) -> list[int]:
        return ksys.listns(after, count=count)

    def open_id(self, nsid: int) -> int:
        return ksys.open_ns_by_id(nsid)

    def inode(self, fd: int) -> int:
        return os.fstat(fd).st_ino

    def nstype(self, fd: int) -> int:
        return ksys.ns_get_nstype(fd)

    def relative(self, fd: int, request: int) -> int | None:
        return _relative(fd, request)

    def close(self, fd: int) -> None:
        os.close(fd)


_LIVE = _LiveNs()

#: Kind of each CLONE_NEW* flag, as NS_GET_NSTYPE answers.
_KIND_OF_FLAG = {flag: kind for kind, flag in NS_FLAGS.items()}

#: Ids asked of listns() per call (8 KiB of ids).
_LISTNS_BATCH = 1024

#: Errors of open_by_handle_at that mean "this namespace is gone" (ENOENT,
#: ESTALE: its last active reference went after listns()) or "not ours to open".
_ID_GONE = frozenset({errno.ENOENT, errno.ESTALE, errno.EPERM, errno.EACCES})


@functools.cache
def listns_available() -> bool:
    """Whether this kernel has listns() and lets us list every namespace; asked once.

    ENOSYS before Linux 6.19; EPERM when a seccomp filter or a user namespace
    of our own refuses it: the /proc walk then, as on an older kernel.
    """
    try:
        ksys.listns(0, count=1)
    except OSError as e:
        if e.errno in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
            return False
        raise
    return True


def _count_processes(
    proc: str, walker: str | None, kinds: tuple[str, ...], fd_counts: bool
) -> dict[str, int]:
    """Processes per active ns link (``net:[N]``), counted as :func:`scan` counts them,
    from the links of each process alone (no threads, fds, mountinfo or opens)."""
    if walker is not None:
        argv = [walker, proc, str(_walk_threads()), "2", str(len(kinds)), *kinds]
        done = subprocess.run(argv, capture_output=True, check=False)
        if done.returncode != 0:
            why = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
            raise OSError(errno.EIO, why)
        found = parse_walk(done.stdout.decode(errors="replace"), proc, len(kinds))
    else:
        found = _scan_processes(proc, kinds, len(kinds), fd_counts, links_only=True)
    nprocs: dict[str, int] = {}
    for links, (count, _) in found.groups.items():
        for link in links:
            if link is not None:
                nprocs[link] = nprocs.get(link, 0) + count[0]
    return nprocs


def _listed(
    ops: NsOps, nsid: int, kinds: tuple[str, ...], nprocs: dict[str, int]
) -> NsEntry | None:
    """The entry of the namespace with id ``nsid``, from an fd opened by its id;
    None when it is gone by now, or of a kind this lister does not show."""
    try:
        fd = ops.open_id(nsid)
    except OSError as e:
        if e.errno in _ID_GONE:
            return None
        raise
    try:
        kind = _KIND_OF_FLAG.get(ops.nstype(fd))
        if kind is None or kind not in kinds:
            return None
        inode = ops.inode(fd)
        owner = ops.relative(fd, NS_GET_USERNS)
        parent = ops.relative(fd, NS_GET_PARENT) if kind in _HIERARCHICAL else None
    finally:
        ops.close(fd)
    count = nprocs.get(f"{kind}:[{inode}]", 0)
    return NsEntry(
        kind=kind,
        inode=inode,
        nprocs=count,
        owner=owner,
        parent=parent,
        # Something other than a process keeps it: a bind mount, an fd, a
        # *_for_children or a thread (listns() does not say which).
        persistent=count == 0,
        nsid=nsid,
    )


def parse_listed(text: str, kinds: tuple[str, ...]) -> list[NsEntry]:
    """The ``l`` records of ``containerfs-nsscan``'s listns() mode (``l KIND INODE
    NPROCS OWNER PARENT ID``) as entries, sorted by (kind, inode).
    ``OSError(EPROTO)`` for a line that is not one, or a kind not asked for."""
    entries = []
    try:
        for line in text.splitlines():
            tag, kind, inode, nprocs, owner, parent, nsid = line.split(" ")
            if tag != "l" or kind not in kinds:
                raise ValueError
            entries.append(
                NsEntry(
                    kind=kind,
                    inode=int(inode),
                    nprocs=int(nprocs),
                    owner=None if owner == "-" else int(owner),
                    parent=None if parent == "-" else int(parent),
                    persistent=nprocs == "0",
                    nsid=int(nsid),
                )
            )
    except ValueError:
        raise OSError(errno.EPROTO, f"{WALKER_NAME}: unexpected record {line[:80]!r}") from None
    entries.sort(key=lambda e: (e.kind, e.inode))
    return entries


def _scan_listns_in_c(walker: str, proc: str, kinds: tuple[str, ...]) -> list[NsEntry]:
    """:func:`scan_listns` in ``containerfs-nsscan`` (its mode 3): listns(), the opens
    and ioctls, and the process count, on its threads; the processes' links are
    read only for the kinds that have more than one namespace (see nsscan.c)."""
    argv = [walker, proc, str(_walk_threads()), "3", str(len(kinds)), *kinds]
    done = subprocess.run(argv, capture_output=True, check=False)
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise OSError(errno.EIO, why)
    return parse_listed(done.stdout.decode(errors="replace"), kinds)


def scan_listns(
    proc: str = "/proc", walker: str | None = None, ops: NsOps = _LIVE
) -> list[NsEntry]:
    """What :func:`scan` gives, with the namespaces found by listns() (Linux >= 6.19).

    listns() hands out the id of every active namespace (one a task is in or
    will give its children, or an nsfs bind mount or fd holds): each is opened
    by its id (``open_by_handle_at`` on an nsfs handle), and its kind, inode,
    owner and parent read from that fd, so none of the fds, threads and
    mountinfo of processes is read.  ``NPROCS`` has no kernel source but the
    processes.  With ``containerfs-nsscan`` (``walker``) and the live kernel,
    all of it runs there (:func:`_scan_listns_in_c`): the listing first, then
    the links of each process, only of kinds with several namespaces (a kind
    with one holds every process that has a link of it).  Else, here: the ns
    links of each process, every kind (:func:`_count_processes`), read before
    the listing so that a namespace a process was in is still active when
    listed.  ``persistent`` is True for a namespace with no process in it
    (listns() does not tell a bind mount from an fd).  Sorted by (kind,
    inode), as :func:`scan`.
    """
    kinds, _ = _ns_names(proc)
    if walker == _FIND:
        walker = find_walker()
    if walker is not None and ops is _LIVE:
        try:
            return _scan_listns_in_c(walker, proc, kinds)
        except OSError as e:
            # A program older than this code (no mode 3), say: the count
            # below, which reports real errors again.
            log.warning("namespaces: %s's listns() mode failed (%s)", WALKER_NAME, e)
    nprocs = _count_processes(proc, walker, kinds, _fd_counts_known(proc))
    entries = []
    after = 0
    while True:
        ids = ops.listns(after, _LISTNS_BATCH)
        for nsid in ids:
            entry = _listed(ops, nsid, kinds, nprocs)
            if entry is not None:
                entries.append(entry)
        if len(ids) < _LISTNS_BATCH:
            break
        after = ids[-1]
    entries.sort(key=lambda e: (e.kind, e.inode))
    return entries


_FIND = "find"


def scan(
    proc: str = "/proc",
    walker: str | None = _FIND,
    as_user: tuple[int, int] | None = None,
    listns: bool = True,
) -> list[NsEntry]:
    """Every namespace reachable through ``proc``, sorted by (kind, inode).

    Blocking (tens of ms per thousand processes); call it from a worker
    thread.  Needs root (ptrace read access to the processes) for a full
    picture; anything it may not inspect is left out rather than reported.
    ``walker``: the ``containerfs-nsscan`` program that walks the processes
    on several threads (by default :func:`find_walker`'s); None, or none
    found: the same walk in Python, on this thread.

    ``as_user``: (uid, gid) of an ordinary user: the walk runs as that user
    (:func:`_as_user`), so only processes whose namespaces the kernel shows
    that user count, as for its own ``lsns``; namespaces none of them is in,
    uses or holds by fd are left out (bind mounts in their mount namespaces
    stay: the user sees those in its mountinfo).

    Root's listing of the real ``/proc`` comes from :func:`scan_listns` on a
    kernel with listns() (Linux >= 6.19), unless ``listns`` is False.
    """
    if listns and as_user is None and proc == "/proc" and listns_available():
        return scan_listns(proc, walker)
    kinds, for_children = _ns_names(proc)
    nsfs_dev = _nsfs_dev(proc)
    names = kinds + tuple(name for name, _ in for_children)
    n_active = len(kinds)
    child_index = [kinds.index(kind) for _, kind in for_children]
    fd_counts = _fd_counts_known(proc)
    if walker == _FIND:
        walker = find_walker()
    if walker is not None:
        try:
            found = _scan_processes_in_c(walker, proc, names, n_active, fd_counts, as_user)
        except PermissionError:
            if as_user is None:
                raise
            # The user may not run the program (installed below a private home,
            # say): the Python walk, as that user, on a thread of ours.
            found = _scan_processes_as_user(as_user, proc, names, n_active, fd_counts)
    elif as_user is not None:
        found = _scan_processes_as_user(as_user, proc, names, n_active, fd_counts)
    else:
        found = _scan_processes(proc, names, n_active, fd_counts)

    nprocs: dict[str, int] = {}
    # Places to open each namespace, steadiest first: a process's ns file,
    # its *_for_children file, a thread's, then fds and bind mounts.
    sources: dict[str, list[tuple[str, str | None]]] = {}
    mnt_dirs: dict[str, list[str]] = {}
    mnt_index = kinds.index("mnt") if "mnt" in kinds else -1

    def add_sources(link: str, paths: Iterable[str]) -> None:
        known = sources.setdefault(link, [])
        for path in paths:
            if len(known) >= _MAX_SOURCES:
                return
            known.append((path, None))

    def add_mnt_dirs(link: str | None, dirs: list[str]) -> None:
        if link is None:
            return
        known = mnt_dirs.setdefault(link, [])
        known.extend(dirs[: _MAX_SOURCES - len(known)])

    for links, (count, dirs) in found.groups.items():
        for i, kind in enumerate(kinds):
            link = links[i]
            if link is None:  # a zombie's: only its pid and user links remain
                continue
            nprocs[link] = nprocs.get(link, 0) + count[0]
            add_sources(link, (f"{d}/ns/{kind}" for d in dirs))
        for j, (name, _) in enumerate(for_children):
            link = links[n_active + j]
            if link is not None and link != links[child_index[j]]:
                add_sources(link, (f"{d}/ns/{name}" for d in dirs))
        if mnt_index >= 0:
            add_mnt_dirs(links[mnt_index], dirs)
    for links, dirs in found.threads.items():
        for name, link in zip(names, links, strict=True):
            if link is not None:
                add_sources(link, (f"{d}/ns/{name}" for d in dirs))
        if mnt_index >= 0:
            add_mnt_dirs(links[mnt_index], dirs)
    _scan_mounts(kinds, mnt_dirs, found)

    entries = []
    for link in sources.keys() | found.held.keys():
        parsed = procfs.parse_ns_link(link)
        if parsed is None:  # cannot happen for kernel-made names; be safe
            continue
        kind, inode = parsed
        owner = parent = nsid = None
        if link in found.relatives:  # the C walk opened it already
            owner, parent, nsid = found.relatives[link]
        elif (
            fd := _open_ns(sources.get(link, []) + found.held.get(link, []), inode, nsfs_dev)
        ) is not None:
            try:
                owner = _relative(fd, NS_GET_USERNS)
                if kind in _HIERARCHICAL:
                    parent = _relative(fd, NS_GET_PARENT)
                nsid = _ns_id(fd)
            finally:
                os.close(fd)
        entries.append(
            NsEntry(
                kind=kind,
                inode=inode,
                nprocs=nprocs.get(link, 0),
                owner=owner,
                parent=parent,
                persistent=link in found.held,
                nsid=nsid,
            )
        )
    entries.sort(key=lambda e: (e.kind, e.inode))
    return entries
