"""The kernel's binary interface in one place: every ctypes declaration and kernel number.

The system calls Python 3.11 lacks are thin ctypes wrappers here, next to the
numbers the kernel modules pass (CLONE_* flags, nsfs and pidfd ioctls, ptrace
requests and registers, capability numbers, socket options).  Python gained
``os.setns``/``os.unshare`` only in 3.12, so this module binds them (and
mount/umount2, the new mount API, ptrace) from the C library.  Every wrapper
checks for ``-1`` and raises ``OSError`` with the call's errno, so callers
handle kernel errors like any other ``OSError``.  The nsfs ioctls need no
ctypes: ``fcntl.ioctl`` returns the ioctl's integer result.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
from collections.abc import Callable, Iterable
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)

_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int
_libc.unshare.argtypes = [ctypes.c_int]
_libc.unshare.restype = ctypes.c_int
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int

CLONE_FS = 0x00000200
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

#: Namespace kind (the name of its ``/proc/PID/ns`` file) to its CLONE_NEW* flag.
NS_FLAGS: dict[str, int] = {
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "net": CLONE_NEWNET,
    "pid": CLONE_NEWPID,
    "mnt": CLONE_NEWNS,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}

MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SHARED = 1 << 20
MNT_DETACH = 0x2

# linux/nsfs.h: _IO(0xb7, n)
NS_GET_USERNS = 0xB701
NS_GET_PARENT = 0xB702
NS_GET_NSTYPE = 0xB703
NS_GET_OWNER_UID = 0xB704
# _IOR(0xb7, 13, __u64), Linux >= 6.18: the namespace's 64-bit id (never reused
# while the system runs, unlike the inode), which listns() returns and
# ``nsenter --net=:ID`` takes.  Older kernels: ENOTTY.
NS_GET_ID = 0x8008B70D


def _check(result: int) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def flags_of(kinds: Iterable[str]) -> int:
    """OR of the CLONE_NEW* flags of namespace kind names (KeyError if unknown)."""
    flags = 0
    for kind in kinds:
        flags |= NS_FLAGS[kind]
    return flags


def setns(fd: int, nstype: int) -> None:
    """Join the namespace(s) behind ``fd``: an nsfs fd, or a pidfd with several flags."""
    _check(_libc.setns(fd, nstype))


def unshare(flags: int) -> None:
    """Detach the calling thread (or process, for user/pid/time) from its namespaces."""
    _check(_libc.unshare(flags))


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    """mount(2); ``None`` passes NULL."""

    def enc(s: str | None) -> bytes | None:
        return None if s is None else os.fsencode(s)

    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)))


def umount2(target: str, flags: int) -> None:
    """umount2(2)."""
    _check(_libc.umount2(os.fsencode(target), flags))


def ns_get_userns(fd: int) -> int:
    """New fd on the user namespace that owns the namespace behind ``fd``."""
    return fcntl.ioctl(fd, NS_GET_USERNS)


def ns_get_parent(fd: int) -> int:
    """New fd on the parent of a pid or user namespace (EPERM above our own)."""
    return fcntl.ioctl(fd, NS_GET_PARENT)


def ns_get_nstype(fd: int) -> int:
    """The CLONE_NEW* flag of the namespace behind ``fd`` (not an fd)."""
    return fcntl.ioctl(fd, NS_GET_NSTYPE)


def ns_get_id(fd: int) -> int:
    """The 64-bit id of the namespace behind ``fd`` (``NS_GET_ID``; ENOTTY before 6.18)."""
    buf = bytearray(8)
    fcntl.ioctl(fd, NS_GET_ID, buf)
    return int.from_bytes(buf, "little")


def ns_get_owner_uid(fd: int) -> int:
    """The uid (in the caller's user namespace) owning the user namespace behind ``fd``."""
    buf = bytearray(4)
    fcntl.ioctl(fd, NS_GET_OWNER_UID, buf)
    return int.from_bytes(buf, "little")


# Capability numbers (linux/capability.h).
CAP_SYS_CHROOT = 18
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21

PR_SET_PDEATHSIG = 1

# Linux >= 5.6; the same number on x86_64 and arm64 (unified syscall table).
_SYS_PIDFD_GETFD = 438


def set_pdeathsig(sig: int) -> None:
    """Have the kernel send ``sig`` to the caller when its parent thread exits."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0))


PR_SET_DUMPABLE = 4


def set_dumpable(dumpable: bool) -> None:
    """Set the caller's "dumpable" flag. Off: no core dumps, and only a tracer with
    CAP_SYS_PTRACE in the initial user namespace may ptrace it or open its /proc files
    (its fds, its memory). ``execve`` sets it again for the new program."""
    _check(_libc.prctl(PR_SET_DUMPABLE, ctypes.c_ulong(int(dumpable)), 0, 0, 0))


# linux/pidfd.h, Linux >= 6.11: _IO(PIDFS_IOCTL_MAGIC, 8), an nsfs fd on the
# time namespace the process's children get.
PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE = 0xFF08


def pidfd_get_time_for_children_ns(pidfd: int) -> int:
    """New nsfs fd on the time namespace the children of ``pidfd``'s process get.

    ENOTTY or EINVAL before Linux 6.11.
    """
    return fcntl.ioctl(pidfd, PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE)


# Linux >= 6.5: the kernel hands the receiver a pidfd of the sender.  Not in
# Python 3.11's socket module.
SO_PASSPIDFD = 76
SCM_PIDFD = 0x04


def pidfd_getfd(pidfd: int, targetfd: int) -> int:
    """A duplicate of fd ``targetfd`` of the process behind ``pidfd`` (close-on-exec).

    Like ``dup``: the new fd shares the open file (offset, flags) with the
    target's.  Needs ptrace-attach rights over the target (``EPERM``);
    ``EBADF`` when the target has no such fd, ``ESRCH`` once it has exited.
    """
    return _check(_libc.syscall(_SYS_PIDFD_GETFD, pidfd, targetfd, 0))


# The new mount API (Linux 5.2+): used to place a detached bind mount of a
# containerfs file inside a container's mount namespace. x86_64 and arm64
# share these numbers (they were added after the syscall tables unified).
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
AT_FDCWD = -100


def open_tree_clone(path: str) -> int:
    """A detached bind mount of ``path`` (an fd), ready for :func:`move_mount_onto`."""
    return _check(
        _libc.syscall(
            _SYS_OPEN_TREE, AT_FDCWD, os.fsencode(path), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC
        )
    )


AT_EMPTY_PATH = 0x1000


def open_tree_of_fd(fd: int) -> int:
    """A detached bind mount of what ``fd`` names (an nsfs fd: a bind of that
    namespace, as a bind of ``/proc/PID/ns/KIND`` is), for :func:`move_mount_to`."""
    return _check(
        _libc.syscall(_SYS_OPEN_TREE, fd, b"", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH)
    )


def move_mount_to(fd: int, target: str) -> None:
    """Attach the detached mount ``fd`` on the path ``target`` (in the caller's
    mount namespace)."""
    _check(
        _libc.syscall(
            _SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, os.fsencode(target), MOVE_MOUNT_F_EMPTY_PATH
        )
    )


def move_mount_onto(fd: int, target_fd: int) -> None:
    """Attach the detached mount ``fd`` on the file ``target_fd`` (an ``O_PATH`` fd)
    names; its mount must be in the caller's mount namespace."""
    _check(
        _libc.syscall(
            _SYS_MOVE_MOUNT,
            fd,
            b"",
            target_fd,
            b"",
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    )


# -- listns() and nsfs file handles (Linux >= 6.19) ----------------------------
# The same number on x86_64 and arm64 (added after the syscall tables unified).
_SYS_LISTNS = 470
_SYS_OPEN_BY_HANDLE_AT = 304  # x86_64
#: open_by_handle_at's "directory" for nsfs handles (linux/fcntl.h, 6.18).
FD_NSFS_ROOT = -10003
#: linux/exportfs.h: the handle type nsfs encodes.
FILEID_NSFS = 0xF1


class NsIdReq(ctypes.Structure):
    """``struct ns_id_req`` (linux/nsfs.h, 32 bytes): where listns() resumes
    (``ns_id``: the last id seen, 0 to start), which kinds (``ns_type``: OR of
    CLONE_NEW* flags, 0 for all) and whose (``user_ns_id``: 0 for every owner)."""

    _fields_ = [
        ("size", ctypes.c_uint32),
        ("spare", ctypes.c_uint32),
        ("ns_id", ctypes.c_uint64),
        ("ns_type", ctypes.c_uint32),
        ("spare2", ctypes.c_uint32),
        ("user_ns_id", ctypes.c_uint64),
    ]


class NsfsFileHandle(ctypes.Structure):
    """``struct file_handle`` with a ``struct nsfs_file_handle`` payload: an id
    alone names a namespace (type and inode 0: "any")."""

    _fields_ = [
        ("handle_bytes", ctypes.c_uint32),
        ("handle_type", ctypes.c_int),
        ("ns_id", ctypes.c_uint64),
        ("ns_type", ctypes.c_uint32),
        ("ns_inum", ctypes.c_uint32),
    ]


def listns(after: int, ns_type: int = 0, count: int = 1024) -> list[int]:
    """Ids of up to ``count`` active namespaces after id ``after``, ascending (listns(2)).

    ENOSYS before Linux 6.19.  "Active" is what keeps a namespace usable: a
    task in it or about to be (``*_for_children``), an nsfs bind mount or fd.
    """
    req = NsIdReq(size=ctypes.sizeof(NsIdReq), ns_id=after, ns_type=ns_type)
    ids = (ctypes.c_uint64 * count)()
    n = _check(
        _libc.syscall(
            ctypes.c_long(_SYS_LISTNS),
            ctypes.byref(req),
            ids,
            ctypes.c_size_t(count),
            ctypes.c_uint(0),
        )
    )
    return list(ids[:n])


def open_ns_by_id(ns_id: int) -> int:
    """A new fd on the namespace with id ``ns_id`` (open_by_handle_at on nsfs, Linux
    >= 6.18; needs CAP_SYS_ADMIN over it).  ENOENT or ESTALE: it is gone."""
    handle = NsfsFileHandle(handle_bytes=16, handle_type=FILEID_NSFS, ns_id=ns_id)
    return _check(
        _libc.syscall(
            ctypes.c_long(_SYS_OPEN_BY_HANDLE_AT),
            ctypes.c_int(FD_NSFS_ROOT),
            ctypes.byref(handle),
            ctypes.c_int(os.O_RDONLY | os.O_CLOEXEC),
        )
    )


# -- inotify (not in Python's os module) --------------------------------------

_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_init1.restype = ctypes.c_int
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_add_watch.restype = ctypes.c_int
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.inotify_rm_watch.restype = ctypes.c_int

IN_MODIFY = 0x00000002
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000


def inotify_init1(flags: int) -> int:
    return _check(_libc.inotify_init1(flags))


def inotify_add_watch(fd: int, path: str, mask: int) -> int:
    return _check(_libc.inotify_add_watch(fd, os.fsencode(path), mask))


def inotify_rm_watch(fd: int, wd: int) -> None:
    _check(_libc.inotify_rm_watch(fd, wd))


# -- ptrace (x86_64 register layout) ------------------------------------------
#
# For the ptrace move (kernel/ptrace_session.py, ptrace_call.py).  glibc's
# ptrace() is variadic; with fixed argtypes the call is still right on x86_64
# (no floating-point arguments).  PEEK requests
# are not wrapped (glibc returns their result differently): tracee memory is
# read and written through /proc/PID/mem instead.

_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long

PTRACE_CONT = 7
PTRACE_SINGLESTEP = 9
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_DETACH = 17
PTRACE_SETOPTIONS = 0x4200
PTRACE_SEIZE = 0x4206
#: PTRACE_SETOPTIONS: SIGKILL the tracee if the tracer exits.
PTRACE_O_EXITKILL = 1 << 20
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
#: ``status >> 16`` of a group-stop or PTRACE_INTERRUPT stop of a seized tracee.
PTRACE_EVENT_STOP = 128
#: waitpid(2) flag: wait for threads (clone children) too.  Not in Python's os.
WALL = 0x40000000


_USER_REGS = (
    "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs"
    " eflags rsp ss fs_base gs_base ds es fs gs"
)


class UserRegs(ctypes.Structure):
    """``struct user_regs_struct`` of x86_64 (sys/user.h), as PTRACE_GETREGS fills it."""

    _fields_ = [(name, ctypes.c_ulonglong) for name in _USER_REGS.split()]


def u64(value: int) -> int:
    """``value`` as a register holds it: unsigned 64-bit (``-1`` becomes ``2**64 - 1``)."""
    return value & (2**64 - 1)


def _ptrace(request: int, tid: int, addr: int, data: int) -> int:
    return _check(_libc.ptrace(request, tid, addr, data))


def ptrace_seize(tid: int, options: int = 0) -> None:
    """Attach to thread ``tid`` without stopping it (EPERM: not allowed, or already traced)."""
    _ptrace(PTRACE_SEIZE, tid, 0, options)


def ptrace_setoptions(tid: int, options: int) -> None:
    """Replace the ptrace options of an attached tracee ``tid``."""
    _ptrace(PTRACE_SETOPTIONS, tid, 0, options)


def ptrace_interrupt(tid: int) -> None:
    """Ask a seized thread to stop (reported to waitpid as a PTRACE_EVENT_STOP)."""
    _ptrace(PTRACE_INTERRUPT, tid, 0, 0)


def ptrace_getregs(tid: int) -> UserRegs:
    regs = UserRegs()
    _ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(regs))
    return regs


def ptrace_setregs(tid: int, regs: UserRegs) -> None:
    _ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(regs))


def ptrace_singlestep(tid: int, sig: int = 0) -> None:
    """Resume a stopped tracee for one instruction (``sig``: signal to deliver, 0 none)."""
    _ptrace(PTRACE_SINGLESTEP, tid, 0, sig)


def ptrace_cont(tid: int, sig: int = 0) -> None:
    _ptrace(PTRACE_CONT, tid, 0, sig)


def ptrace_detach(tid: int, sig: int = 0) -> None:
    """Let a stopped tracee go (ESRCH when it is not stopped or gone)."""
    _ptrace(PTRACE_DETACH, tid, 0, sig)


#: ``struct sock_filter``: u16 code, u8 jt, u8 jf, u32 k.
SOCK_FILTER_SIZE = 8


def ptrace_seccomp_filter(tid: int, index: int) -> bytes:
    """The classic BPF program of the stopped tracee's seccomp filter ``index``.

    0 is the oldest filter.  ``ENOENT`` past the last one, ``EINVAL`` when the
    thread has no filter, ``EMEDIUMTYPE`` when the kernel kept no copy,
    ``EACCES`` without CAP_SYS_ADMIN.  The raw ``struct sock_filter`` array.
    """
    count = _ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, 0)
    buf = ctypes.create_string_buffer(count * SOCK_FILTER_SIZE)
    _ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, ctypes.addressof(buf))
    return buf.raw


_SYS_TGKILL = 234  # x86_64

# x86_64 numbers. The raw calls change the calling thread's credentials only;
# glibc's wrappers of the same names change every thread's.
_SYS_SETGROUPS = 116
_SYS_SETRESUID = 117
_SYS_SETRESGID = 119


def become_user_on_this_thread(uid: int, gid: int) -> None:
    """Make the calling thread alone an ordinary user: ``uid`` and ``gid``, no
    supplementary groups, no capabilities (changing every uid away from 0 drops
    them). There is no way back: call it on a thread of its own that then ends."""
    _check(_libc.syscall(ctypes.c_long(_SYS_SETGROUPS), ctypes.c_long(0), None))
    _check(_libc.syscall(ctypes.c_long(_SYS_SETRESGID), *(ctypes.c_long(gid),) * 3))
    _check(_libc.syscall(ctypes.c_long(_SYS_SETRESUID), *(ctypes.c_long(uid),) * 3))


def tgkill(tgid: int, tid: int, sig: int) -> None:
    """Send ``sig`` to thread ``tid`` of process ``tgid`` (x86_64 syscall number)."""
    _check(
        _libc.syscall(
            ctypes.c_long(_SYS_TGKILL), ctypes.c_long(tgid), ctypes.c_long(tid), ctypes.c_long(sig)
        )
    )


_SYS_PIDFD_OPEN = 434
#: pidfd_open flag (Linux >= 6.9): a pidfd on one thread rather than a process.
PIDFD_THREAD = os.O_EXCL


def pidfd_open_thread(tid: int) -> int:
    """A pidfd on thread ``tid`` (PIDFD_THREAD), e.g. for ``pidfd_getfd`` on its fd table."""
    return _check(
        _libc.syscall(
            ctypes.c_long(_SYS_PIDFD_OPEN), ctypes.c_long(tid), ctypes.c_long(PIDFD_THREAD)
        )
    )


# The new mount API: fsopen(2), fsconfig(2) with FSCONFIG_CMD_CREATE only,
# fsmount(2).  Python 3.11 has none of them; glibc >= 2.36 exports them, older
# ones only through syscall(2) with numbers that are the same on every
# architecture but alpha.

_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_FSOPEN_CLOEXEC = 0x1
_FSCONFIG_CMD_CREATE = 6
_FSMOUNT_CLOEXEC = 0x1
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8

# A syscall(2) of its own (``[]`` makes a new function object): it returns a long.
_syscall_long = _libc["syscall"]
_syscall_long.restype = ctypes.c_long


def _bind(name: str, argtypes: list[Any]) -> Callable[..., int] | None:
    """glibc's prototype-checked wrapper ``name``, or None when this libc lacks it."""
    try:
        fn = getattr(_libc, name)
    except AttributeError:
        return None
    fn.argtypes = argtypes
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_fsopen_c = _bind("fsopen", [ctypes.c_char_p, ctypes.c_uint])
_fsconfig_c = _bind(
    "fsconfig", [ctypes.c_int, ctypes.c_uint, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
)
_fsmount_c = _bind("fsmount", [ctypes.c_int, ctypes.c_uint, ctypes.c_uint])


def fsopen(fstype: str) -> int:
    """fsopen(2): a filesystem context fd (close-on-exec) for ``fstype``."""
    name = fstype.encode()
    if _fsopen_c is not None:
        return _check(_fsopen_c(name, _FSOPEN_CLOEXEC))
    return _check(_syscall_long(ctypes.c_long(_SYS_FSOPEN), name, ctypes.c_uint(_FSOPEN_CLOEXEC)))


def fsconfig_create(fs_fd: int) -> None:
    """fsconfig(2) ``FSCONFIG_CMD_CREATE``: get (or create) the superblock."""
    if _fsconfig_c is not None:
        _check(_fsconfig_c(fs_fd, _FSCONFIG_CMD_CREATE, None, None, 0))
        return
    _check(
        _syscall_long(
            ctypes.c_long(_SYS_FSCONFIG),
            ctypes.c_int(fs_fd),
            ctypes.c_uint(_FSCONFIG_CMD_CREATE),
            None,
            None,
            ctypes.c_int(0),
        )
    )


def fsmount(fs_fd: int, attr_flags: int) -> int:
    """fsmount(2): a detached mount fd (close-on-exec) with ``MOUNT_ATTR_*`` flags."""
    if _fsmount_c is not None:
        return _check(_fsmount_c(fs_fd, _FSMOUNT_CLOEXEC, attr_flags))
    return _check(
        _syscall_long(
            ctypes.c_long(_SYS_FSMOUNT),
            ctypes.c_int(fs_fd),
            ctypes.c_uint(_FSMOUNT_CLOEXEC),
            ctypes.c_uint(attr_flags),
        )
    )
