"""Moving this whole (single-threaded) process into a holder's namespaces, for ``containerfs exec``.

:func:`enter_holder` checks by inode that the holder is still in the
container's namespaces, then joins those that differ with one ``setns``
through a pidfd (time through an nsfs fd: the container's is the holder's
``time_for_children``).  :func:`holder_id_maps` reads the ID maps the exec
client needs before it enters.  This module must stay cheap to import: the
exec client is a short-lived process (no trio).
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Mapping

from containerfs.kernel import sys as ksys
from containerfs.kernel.holder import holder_inode, holder_pidfd, open_proc_checked, time_ns_fd
from containerfs.kernel.namespaces import (
    check_kind,
    check_same_namespaces,
    ns_inode_for_children,
)


def enter_holder(holder_pid: int, expected_inodes: Mapping[str, int]) -> None:
    """Join the namespaces of holder ``holder_pid`` that differ from ours, after checking them.

    ``expected_inodes`` (kind -> inode, e.g. from ``container.subsystems``) are
    the namespaces the container has; the holder must still be in every one of
    them, which guards against a changed container or a reused pid.  Then one
    ``setns`` through a pidfd joins the kinds where we differ, except time:
    ``setns(pidfd, CLONE_NEWTIME)`` would take the holder's *active* time
    namespace, while the container's is the holder's ``time_for_children``, so
    that one is joined first through an nsfs fd (checked by inode).  Changes
    the calling *process* (for pid: only its future children; joining a time
    namespace moves the caller too, and from then on its offsets are fixed),
    so it must run single-threaded (the kernel refuses user and time
    otherwise).  After a mount namespace switch the current directory is
    looked up again by path (falling back to "/"), as a shell user expects.

    Raises ``OSError`` whose ``strerror`` is a full sentence: ESRCH when the
    holder is gone or not in the expected namespaces, the kernel's errno when
    ``setns`` refuses.
    """
    for kind in expected_inodes:
        check_kind(kind)
    pidfd = holder_pidfd(holder_pid)
    time_fd = -1
    try:
        try:
            actual = {kind: holder_inode(holder_pid, kind) for kind in expected_inodes}
            # Still alive after the reads: the inodes are this pidfd's process.
            signal.pidfd_send_signal(pidfd, 0)
        except ProcessLookupError:
            raise ProcessLookupError(
                errno.ESRCH, f"container holder {holder_pid} is gone"
            ) from None
        check_same_namespaces(holder_pid, expected_inodes, actual)
        flags = ksys.flags_of(
            k for k, ino in expected_inodes.items() if ns_inode_for_children("self", k) != ino
        )
        if not flags:
            return
        if flags & ksys.CLONE_NEWTIME:
            # setns(pidfd) would join the holder's active time namespace, not
            # the container's; open that one now, before /proc may change with
            # the mount namespace, and check it is the expected one.
            try:
                time_fd = time_ns_fd(pidfd, holder_pid)
            except ProcessLookupError:
                raise ProcessLookupError(
                    errno.ESRCH, f"container holder {holder_pid} is gone"
                ) from None
            time_inode = os.fstat(time_fd).st_ino
            check_same_namespaces(
                holder_pid, {"time": expected_inodes["time"]}, {"time": time_inode}
            )
        cwd: str | None
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = None
        try:
            # Time first, while we still have every capability over its owner
            # (a namespace owned by an ancestor's user namespace would refuse
            # us once we are in the container's own user namespace).
            if time_fd >= 0:
                ksys.setns(time_fd, ksys.CLONE_NEWTIME)
            if flags & ~ksys.CLONE_NEWTIME:
                ksys.setns(pidfd, flags & ~ksys.CLONE_NEWTIME)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot enter namespaces of holder {holder_pid}: {exc.strerror}"
            ) from None
        if flags & ksys.CLONE_NEWNS:
            try:
                os.chdir(cwd or "/")
            except OSError:
                os.chdir("/")
    finally:
        if time_fd >= 0:
            os.close(time_fd)
        os.close(pidfd)


def holder_id_maps(holder_pid: int, user_inode: int) -> tuple[str, str]:
    """The ``uid_map`` and ``gid_map`` texts of holder ``holder_pid``'s user namespace.

    ``containerfs exec`` reads them before it enters (its ``/proc`` may be
    another one afterwards) to know which IDs it may switch to inside.  The
    holder must still be in user namespace ``user_inode`` (the container's):
    otherwise ``OSError(ESRCH)``, as in :func:`enter_holder`.  The first and
    third fields of each line (IDs inside, count) are the same whoever reads;
    only the second depends on the reader's user namespace.
    """
    pidfd = holder_pidfd(holder_pid)
    try:
        texts: list[str] = []
        try:
            for name in ("uid_map", "gid_map"):
                fd = open_proc_checked(pidfd, holder_pid, name, os.O_RDONLY)
                with open(fd) as f:
                    texts.append(f.read())
            # A map file shows the namespace its process was in when opened;
            # a holder never changes its user namespace, so one check covers both.
            user_fd = open_proc_checked(pidfd, holder_pid, "ns/user", os.O_RDONLY)
        except ProcessLookupError:
            raise ProcessLookupError(
                errno.ESRCH, f"container holder {holder_pid} is gone"
            ) from None
        try:
            actual = os.fstat(user_fd).st_ino
        finally:
            os.close(user_fd)
        check_same_namespaces(holder_pid, {"user": user_inode}, {"user": actual})
        return texts[0], texts[1]
    finally:
        os.close(pidfd)
