"""Who may ptrace whom: the kernel's ptrace permission rules, read from ``/proc``.

A move into namespaces (:mod:`inject`) is a ptrace on a writer's behalf, so
the daemon lets a writer move a process only when the writer could have
ptraced (attached to) it itself: :func:`ptrace_refusal` says why not, or None.
The daemon's own ptrace is decided by the kernel when the move seizes.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping

from containerfs.kernel import procfs
from containerfs.kernel import sys as ksys


def _userns_fd(pid: int) -> int:
    return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)


def _ns_capable(
    caller: int, caller_status: Mapping[str, str], target_userns: int, cap: int
) -> bool:
    """Whether ``caller`` has ``cap`` in the user namespace behind fd ``target_userns``.

    The kernel's rule: the caller has it when its user namespace is that one
    or an ancestor and ``cap`` is in its effective set, or when it is in the
    parent of a namespace on the way (or that one) and owns it (same euid).
    """
    mine = os.stat(f"/proc/{caller}/ns/user").st_ino
    euid = procfs.status_ids(caller_status, "Uid")[1]
    fd = os.dup(target_userns)
    try:
        while True:
            if os.fstat(fd).st_ino == mine:
                return procfs.has_cap(caller_status, cap)
            try:
                parent = ksys.ns_get_parent(fd)
            except OSError:
                return False  # reached the top (or above what we may see)
            try:
                if os.fstat(parent).st_ino == mine and ksys.ns_get_owner_uid(fd) == euid:
                    return True
            except OSError:
                pass
            os.close(fd)
            fd = parent
    finally:
        os.close(fd)


def _is_ancestor(ancestor: int, pid: int) -> bool:
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            pid = int(procfs.read_status(f"/proc/{pid}/status")["PPid"])
        except (OSError, KeyError, ValueError):
            return False
        if pid == ancestor:
            return True
    return False


def ptrace_refusal(caller_pid: int, target_pid: int) -> str | None:
    """Why process ``caller_pid`` may not ptrace ``target_pid``, or None if it may.

    For the daemon to decide whether a *writer* may move a process: it may
    when it could have ptraced (attached to) the process itself.  The kernel's
    ``PTRACE_MODE_ATTACH_REALCREDS`` rules, read from ``/proc``:

    - same process: yes;
    - the caller's real uid equals the target's real, effective and saved
      uids and its real gid the target's three gids, or the caller has
      CAP_SYS_PTRACE in the target's user namespace;
    - a non-dumpable target (``/proc/PID`` then belongs to root, not to its
      euid) needs CAP_SYS_PTRACE;
    - the caller's permitted capabilities must include the target's (same user
      namespace), unless it has CAP_SYS_PTRACE;
    - Yama ``ptrace_scope``: 1 = only ancestors (or CAP_SYS_PTRACE), 2 = only
      CAP_SYS_PTRACE, 3 = nobody.

    Approximations: a ``PR_SET_PTRACER`` exception (Yama 1) is invisible in
    /proc, so this may refuse what the kernel allows; LSMs other than Yama
    (SELinux, AppArmor) are not consulted.  The daemon's own ptrace is decided
    by the kernel (``move_into`` raises EPERM).  ``ProcessLookupError`` when
    either process is gone.
    """
    if caller_pid == target_pid:
        return None
    cs = procfs.read_status(f"/proc/{caller_pid}/status")
    ts = procfs.read_status(f"/proc/{target_pid}/status")
    if cs.get("Tgid") == ts.get("Tgid"):
        return None
    try:
        userns = _userns_fd(target_pid)
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {target_pid}") from None
    try:
        has_ptrace_cap = _ns_capable(caller_pid, cs, userns, ksys.CAP_SYS_PTRACE)
    finally:
        os.close(userns)
    ruid, rgid = procfs.status_ids(cs, "Uid")[0], procfs.status_ids(cs, "Gid")[0]
    same_ids = all(u == ruid for u in procfs.status_ids(ts, "Uid")[:3]) and all(
        g == rgid for g in procfs.status_ids(ts, "Gid")[:3]
    )
    if not same_ids and not has_ptrace_cap:
        return (
            f"process {caller_pid} (uid {ruid}) does not own process {target_pid} "
            f"(uids {ts['Uid']}) and lacks CAP_SYS_PTRACE over it"
        )
    target_euid = procfs.status_ids(ts, "Uid")[1]
    try:
        dumpable = target_euid == 0 or os.stat(f"/proc/{target_pid}").st_uid == target_euid
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {target_pid}") from None
    if not dumpable and not has_ptrace_cap:
        return f"process {target_pid} is not dumpable and {caller_pid} lacks CAP_SYS_PTRACE"
    same_userns = os.stat(f"/proc/{caller_pid}/ns/user").st_ino == (
        os.stat(f"/proc/{target_pid}/ns/user").st_ino
    )
    caller_prm, target_prm = int(cs["CapPrm"], 16), int(ts["CapPrm"], 16)
    if not has_ptrace_cap and not (same_userns and target_prm & ~caller_prm == 0):
        return (
            f"process {target_pid} has capabilities that {caller_pid} lacks "
            f"(CapPrm {ts['CapPrm']} vs {cs['CapPrm']})"
        )
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = int(f.read())
    except (FileNotFoundError, ValueError):
        scope = 0
    if scope >= 3:
        return "Yama ptrace_scope is 3: nobody may attach"
    if scope == 2 and not has_ptrace_cap:
        return f"Yama ptrace_scope is 2 and {caller_pid} lacks CAP_SYS_PTRACE"
    if scope == 1 and not has_ptrace_cap and not _is_ancestor(caller_pid, target_pid):
        return f"Yama ptrace_scope is 1 and {caller_pid} is not an ancestor of {target_pid}"
    return None


__all__ = ["ptrace_refusal"]
