"""Moving a running process into namespaces: ptrace code injection (x86_64).

A process can only ``setns()`` itself, so :func:`move_into` makes the target
call it: every thread is seized and stopped, and runs a few system calls we
place in it with ``PTRACE_SINGLESTEP``, then carries on exactly where it was.

How a thread is made to run a system call
-----------------------------------------
``PTRACE_SEIZE`` + ``PTRACE_INTERRUPT``, wait for the stop, save the registers
(``PTRACE_GETREGS``).  For each call: ``rax`` = number, ``rdi``... = arguments,
``orig_rax`` = -1 (so the kernel's syscall-restart logic does not fire on the
way back to user mode), ``rip`` = the address of a ``syscall`` instruction,
then ``PTRACE_SINGLESTEP`` and wait: the thread stops right after the
instruction with the result in ``rax``.  At the end the saved registers go
back in and ``PTRACE_DETACH``.  A thread stopped while blocked in a system call
(``read``, ``wait4``, ``nanosleep``) has ``rax`` = ``-ERESTART...`` and
``orig_rax`` = its syscall number in the saved registers; restoring them
exactly makes the kernel restart that call when the thread resumes (for
``nanosleep`` through ``restart_syscall`` with the original deadline, which
our calls do not touch), as after any stop.

The ``syscall`` instruction: most stopped threads sit just after one (the
bytes at ``rip - 2`` of a thread blocked in a system call are ``0f 05``); any
executable copy serves for every thread, so then no code is written at all.
Otherwise ``0f 05`` is written over two bytes at a thread's ``rip`` and put
back afterwards.  Memory goes through ``/proc/PID/mem``.  Data the calls need
(a ``msghdr``, a path) is written below the stack pointer of the receiving
thread, past the 128-byte red zone, and restored afterwards; if that page is
not mapped, an anonymous page is mapped for the occasion and unmapped again.

Getting the namespaces into the target
--------------------------------------
The target needs an nsfs fd for each namespace it joins.  Paths the *target*
would open (``/proc/HOLDER/ns/net``) resolve in the target's mount namespace
and in the pid namespace of the ``/proc`` mounted there: in a container that
path may not exist or may name another process, and opening it needs ptrace
rights over the holder (holders are not dumpable).  Pulling an fd the daemon
holds (``pidfd_open(daemon)`` + ``pidfd_getfd``) needs the daemon visible in
the target's pid namespace and the *target* to be allowed to ptrace the
daemon.  Neither holds in general.  What always works: the target makes a
``socketpair``; we take a copy of one end with ``pidfd_getfd`` (we may: we are
already its tracer) and send our nsfs fds over it with ``SCM_RIGHTS``; the
target ``recvmsg``s them (``MSG_CMSG_CLOEXEC``) and closes both ends.  No path,
no pid namespace, no permission of the target over anything is involved, and
the fds are the ones we opened and checked by inode.  The same message carries
an fd on each thread's *original* namespaces (and, for a mount namespace, the
original root and current directory), so a rollback needs no second transfer.
Threads share one fd table, so one transfer serves all of them (a thread with
a table of its own gets its own transfer: each thread's ``/proc/PID/task/TID/fd``
is checked).

Per kind
--------
- ``uts``, ``ipc``, ``net``, ``cgroup``: each thread calls ``setns`` itself.
  ``ipc``: joining drops the thread's System V semaphore undo list; once the
  last thread has joined, the kernel applies the process's ``SEM_UNDO``
  adjustments as at exit (``commit_nsset``), and a rollback cannot bring
  them back.  ``net``:
  sockets opened before keep their namespace; ``/proc/PID/net`` follows the
  leader thread.
- ``mnt``: only a single-threaded process.  ``setns(CLONE_NEWNS)`` refuses
  (EINVAL) a caller that shares its ``fs_struct`` (root, cwd, umask), which all
  threads of a process do; ``unshare(CLONE_FS)`` in each thread would make it
  work but would split the threads' current directories for good, which no
  program expects, so a multithreaded process is refused (EINVAL).  Joining
  sets root and cwd to the namespace's root; the old current directory is
  then looked up again by path (as ``containerfs exec`` does), staying at "/"
  when that fails or the target does not share our root.  The kernel also
  wants CAP_SYS_CHROOT.
- ``pid``, ``time``, ``user``: refused (``ValueError``).  A process cannot
  change its own pid namespace (only its children's), a multithreaded one
  cannot join a user or time namespace: those are "spawn" kinds.

Who may
-------
The target does the ``setns``, so the *target* needs CAP_SYS_ADMIN in its own
user namespace and in the one owning each destination namespace: a process
without it cannot be moved (EPERM; checked from ``CapEff`` before anything is
touched, then by the kernel).  We need ptrace rights over it (root with
CAP_SYS_PTRACE; the kernel decides: EPERM).  A process already traced (by a
debugger, strace, or a concurrent move) cannot be seized: EBUSY.  Which
*writer* may ask for a move is policy: :func:`ptrace_rules.ptrace_refusal`
tells whether the writer could have ptraced the target itself (the kernel's
rules, read from ``/proc``), the natural rule since a move is a ptrace on the
writer's behalf.

Seccomp: an injected call that a seccomp filter answers with KILL, TRAP or
USER_NOTIF would kill or hang the target.  Each filtered thread's filters are
read (``PTRACE_SECCOMP_GET_FILTER``) and run (:mod:`seccomp`) on every call
before it is made; such a call is refused (EPERM) instead.  A strict-mode (mode 1) process is
refused outright.

All or nothing
--------------
Every thread is stopped before anything changes; threads that appear meanwhile
are seized too (the task list is scanned again until it is stable with every
thread stopped: a stopped thread cannot make new ones).  A pidfd taken first
and checked alive after the seizes makes sure the pid was not reused.  When a
step fails, threads already moved ``setns`` back into their own namespaces,
the memory and registers are restored, and the error is raised as ``OSError``
with a sentence saying why.  After the moves, each thread's
``/proc/PID/task/TID/ns/KIND`` is checked against the expected inode while the
threads are still stopped.  Signals that arrive during the injection are held
back and delivered when the thread is let go.

The ptrace work runs on a fresh thread that exits at the end: ptrace binds a
tracee to the tracer *thread*, and when a thread exits the kernel detaches
whatever it still traces (and cancels a pending stop), so no process can stay
attached to a pooled daemon thread, even when a thread never stopped.

Exits are looked at, never reaped (``waitid`` with ``WNOWAIT``): reaping a
tracee that is also the caller's child would steal its exit status from the
caller's own ``wait``.  If the process is killed meanwhile, the threads we hold
exit as zombies waiting for us, which also holds back the report of the
leader's exit; any of them exiting therefore means "killed", and the move
ends at once with ``ProcessLookupError`` (ESRCH).

Measured here (``python -m bench.inject``, medians of 200): 1.6 ms for one
kind, 1.9 ms for uts+ipc+net of a ``sleep`` or a bash, 1.8 ms for mnt+uts of
a bash, 3.7 ms for a 4-thread and 9.5 ms for a 16-thread Python process;
0.05 ms when the process is already there.  Each injected call costs a
singlestep round trip (~40-70 µs from Python); per move: socketpair, recvmsg,
2 closes, then one setns per thread and kind, one close per fd sent.

Limits
------
- A thread that cannot stop (uninterruptible sleep, a frozen cgroup, a FUSE
  request: ptrace stops happen on the way back to user mode) makes the move
  fail with EAGAIN after ``timeout``.  In particular the daemon must not move
  a process synchronously from its own FUSE ``write`` handler when the writer
  is (a thread of) that process (``echo $$ > tasks``): the writer cannot stop
  until the daemon answers.  (FUSE's request pid is the writing *thread*:
  compare its ``Tgid``.)  A way out, not built: seize and interrupt first,
  answer the write, and the writer stops on its way out of ``write()``
  before running any user code; a failure could then be reported by
  setting the saved ``rax`` of that ``write`` to ``-errno``.
- If the daemon dies in the middle, the target is detached with our registers
  in place: it will most likely crash.  The window is a few milliseconds
  per move.
- When no stopped thread sits after a ``syscall`` instruction, two bytes of
  code are written and put back: the page stays a private copy (4 KiB).  A
  process that shares its memory without being a thread of it (``clone``
  with ``CLONE_VM``, not ``vfork``) could run that code meanwhile; nothing
  in /proc tells.  Another process sharing the fd table sees the passed fds
  for the duration.
- x86_64 only (register layout and syscall numbers); 32-bit processes are
  refused (EOPNOTSUPP).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from containerfs.kernel import procfs, seccomp
from containerfs.kernel import sys as ksys
from containerfs.nskinds import MOVABLE_KINDS, SPAWN_KINDS

#: Seconds every thread gets to reach its ptrace stop.
STOP_TIMEOUT = 2.0

#: Seconds one injected system call may take (none of ours blocks).
_STEP_TIMEOUT = 5.0

# x86_64 system call numbers.
_NR_CLOSE = 3
_NR_MMAP = 9
_NR_MUNMAP = 11
_NR_RECVMSG = 47
_NR_SOCKETPAIR = 53
_NR_CHDIR = 80
_NR_FCHDIR = 81
_NR_CHROOT = 161
_NR_SETNS = 308
_SYSCALL_NAMES = {
    _NR_CLOSE: "close",
    _NR_MMAP: "mmap",
    _NR_MUNMAP: "munmap",
    _NR_RECVMSG: "recvmsg",
    _NR_SOCKETPAIR: "socketpair",
    _NR_CHDIR: "chdir",
    _NR_FCHDIR: "fchdir",
    _NR_CHROOT: "chroot",
    _NR_SETNS: "setns",
}

_SYSCALL_INSN = b"\x0f\x05"
_USER_CS_64 = 0x33
_RED_ZONE = 128
_PAGE = 4096
_NO_SYSCALL = 2**64 - 1  # orig_rax = -1

_SOCK_CLOEXEC = 0o2000000
_MSG_DONTWAIT = 0x40
_MSG_CTRUNC = 0x8
_MSG_CMSG_CLOEXEC = 0x40000000
_SCM_RIGHTS = 1
_PROT_RW = 0x3
_MAP_PRIVATE_ANON = 0x02 | 0x20

# Keys of the fds sent to the target.
_Key = tuple[str, str, int]  # ("dest" | "orig", kind, inode) or ("root" | "cwd", "", 0)


def _strerror(err: int) -> str:
    return os.strerror(err) if err else "no error"


def _signed(value: int) -> int:
    return value - 2**64 if value >= 2**63 else value


# -- the injection ---------------------------------------------------------------


@dataclass
class _Tracee:
    tid: int
    saved: ksys.UserRegs | None = None  # registers at the stop
    dirty: bool = False  # registers changed since
    signals: list[int] = field(default_factory=list)  # held back during injection
    origin: dict[str, int] = field(default_factory=dict)  # kind -> inode before
    moved: list[str] = field(default_factory=list)  # kinds joined, in order
    filters: list[bytes] | None = None  # seccomp programs (None: no filter)


@dataclass
class _Table:
    """Fds received by one thread: valid in its fd table (and every thread sharing it)."""

    receiver: int
    fds: dict[_Key, int]  # key -> fd number in the target
    ids: dict[_Key, tuple[int, int]]  # key -> (st_dev, st_ino) of the file


class _Move:
    """One move_into call; all of it on a single (fresh) thread."""

    def __init__(
        self, pid: int, pidfd: int, targets: Mapping[str, int], dest_fds: Mapping[str, int]
    ) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.targets = dict(targets)
        self.dest_fds = dict(dest_fds)
        self.threads: dict[int, _Tracee] = {}
        self.mem = -1
        self.code = 0
        self.code_saved: bytes | None = None
        self.scratch: list[tuple[int, bytes]] = []  # (address, original bytes)
        self.mapped: list[tuple[int, int, int]] = []  # (tid, address, length)
        self.tables: list[_Table] = []
        self.own_fds: dict[_Key, int] = {}  # fds we opened to send
        self.own_ids: dict[_Key, tuple[int, int]] = {}
        self.borrowed: set[_Key] = set()  # the caller's fds: not ours to close
        self.cwd_path: bytes | None = None
        self.path_at = 0  # the cwd path in the receiver's scratch (0: none)
        self.dot_at = 0  # the string "." there
        self.dying = False  # the process was killed while we held it
        self.guard = 0  # the tid that carries PTRACE_O_EXITKILL while we change the process
        # Called once every thread known so far was seized and asked to stop,
        # before waiting for the stops (see ``move_into``'s ``on_seized``).
        self.on_seized: Callable[[], None] | None = None
        # Called when the move fails, before the threads are let go (``move_into``).
        self.on_failed: Callable[[], None] | None = None

    # -- waiting ---------------------------------------------------------------

    def _wait(self, tid: int, deadline: float) -> tuple[int, int] | None:
        """The next stop of tracee ``tid`` as (signal, ptrace event), None at the deadline.

        Stops are consumed; an exit is only looked at (``WNOWAIT``) and raised
        as ``ProcessLookupError``: when the target is also our child, reaping
        it here would steal its exit status from our own ``wait``.  (An exited
        tracee that is not our child is released to its parent when our thread
        exits.)
        """
        spins = 0
        while True:
            try:
                got = os.waitid(os.P_PID, tid, os.WSTOPPED | os.WNOHANG | ksys.WALL)
            except ChildProcessError:
                got = None
                if not os.path.exists(f"/proc/{self.pid}/task/{tid}"):
                    self._gone(tid)
                    raise ProcessLookupError(
                        errno.ESRCH, f"thread {tid} of process {self.pid} is gone"
                    ) from None
            if got is not None and got.si_code in (os.CLD_TRAPPED, os.CLD_STOPPED):
                return got.si_status & 0xFF, got.si_status >> 8
            if got is not None or _exited(tid):
                self._gone(tid)
                raise ProcessLookupError(
                    errno.ESRCH, f"process {self.pid} exited while it was being moved"
                )
            if time.monotonic() > deadline:
                return None
            if spins >= 200 and spins % 10 == 0:
                if _is_zombie(self.pid, tid):  # exited, its report held back by siblings
                    self._gone(tid)
                    raise ProcessLookupError(
                        errno.ESRCH, f"thread {tid} of process {self.pid} exited"
                    )
                self._check_dying(tid)
            spins += 1
            if spins < 200:
                os.sched_yield()
            else:
                time.sleep(min(0.005, 0.00005 * (spins - 199)))

    def _gone(self, tid: int) -> None:
        th = self.threads.pop(tid, None)
        if th is not None and th.saved is not None:
            self.dying = True  # a thread we hold stopped exits only when killed

    def _check_dying(self, waiting_for: int) -> None:
        """Raise ``ProcessLookupError`` if another thread we hold stopped has exited.

        A stopped thread exits only when the process is killed; it then stays
        a zombie for us (its tracer), which also holds back the report of the
        leader's exit that we might be waiting for.
        """
        for tid, th in list(self.threads.items()):
            if tid == waiting_for or th.saved is None:
                continue
            if _exited(tid):
                self._gone(tid)
                raise ProcessLookupError(
                    errno.ESRCH, f"process {self.pid} was killed while it was being moved"
                )

    # -- stopping every thread --------------------------------------------------

    def _live_tids(self) -> list[int]:
        try:
            names = os.listdir(f"/proc/{self.pid}/task")
        except FileNotFoundError:
            raise ProcessLookupError(errno.ESRCH, f"process {self.pid} is gone") from None
        tids = []
        for name in names:
            tid = int(name)
            if tid in self.threads or not _is_zombie(self.pid, tid):
                tids.append(tid)
        tids.sort(key=lambda t: (t != self.pid, t))
        return tids

    def _seize_refused(self, tid: int, exc: OSError) -> OSError:
        tracer = _tracer(self.pid, tid)
        if tracer:
            who = "us" if os.path.exists(f"/proc/self/task/{tracer}") else f"process {tracer}"
            return OSError(
                errno.EBUSY,
                f"process {self.pid} is already traced by {who} (thread {tid}): "
                "a debugger, strace or another move",
            )
        return OSError(
            exc.errno or errno.EPERM,
            f"not allowed to ptrace process {self.pid} (thread {tid}): {exc.strerror}",
        )

    def stop_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            new = [t for t in self._live_tids() if t not in self.threads]
            if not new:
                break
            for tid in new:
                try:
                    ksys.ptrace_seize(tid)
                except ProcessLookupError:
                    continue  # exited meanwhile
                except PermissionError as exc:
                    if _is_zombie(self.pid, tid):
                        continue  # exited meanwhile: a zombie cannot be attached
                    raise self._seize_refused(tid, exc) from None
                self.threads[tid] = _Tracee(tid)
                try:
                    ksys.ptrace_interrupt(tid)
                except ProcessLookupError:
                    self._gone(tid)
            if self.on_seized is not None:
                on_seized, self.on_seized = self.on_seized, None
                on_seized()
            for tid in new:
                if tid in self.threads:
                    self._first_stop(self.threads[tid], deadline)
        if not self.threads:
            raise ProcessLookupError(errno.ESRCH, f"process {self.pid} is gone")

    def _first_stop(self, th: _Tracee, deadline: float) -> None:
        while True:
            try:
                status = self._wait(th.tid, deadline)
            except ProcessLookupError:
                return  # this thread exited meanwhile (a whole-process exit shows later)
            if status is None:
                raise OSError(
                    errno.EAGAIN,
                    f"thread {th.tid} of process {self.pid} did not stop within the timeout "
                    f"({_thread_state(self.pid, th.tid)}): it may be frozen, in uninterruptible "
                    "sleep, or waiting for this daemon (a FUSE request)",
                )
            sig, event = status
            if event == ksys.PTRACE_EVENT_STOP:
                th.saved = ksys.ptrace_getregs(th.tid)
                return
            # A signal-delivery-stop that came first: deliver the signal; the
            # interrupt stays pending and stops the thread right after.
            ksys.ptrace_cont(th.tid, sig if event == 0 else 0)

    # -- memory --------------------------------------------------------------------

    def _read(self, addr: int, n: int) -> bytes:
        data = os.pread(self.mem, n, addr)
        if len(data) != n:
            raise OSError(errno.EIO, f"short read of process {self.pid} memory at {addr:#x}")
        return data

    def _write(self, addr: int, data: bytes) -> None:
        if os.pwrite(self.mem, data, addr) != len(data):
            raise OSError(errno.EIO, f"short write to process {self.pid} memory at {addr:#x}")

    def open_memory(self) -> None:
        # Through a live thread: a leader that exited (a zombie) has no memory.
        tid = next(iter(self.threads))
        self.mem = os.open(f"/proc/{self.pid}/task/{tid}/mem", os.O_RDWR | os.O_CLOEXEC)
        signal.pidfd_send_signal(self.pidfd, 0)  # the file is this pidfd's process's

    def find_code(self) -> None:
        """An address holding a ``syscall`` instruction (written there if none is found)."""
        for th in self.threads.values():
            assert th.saved is not None
            rip = th.saved.rip
            if (rip - 2) // _PAGE != rip // _PAGE:
                continue
            try:
                if self._read(rip - 2, 2) == _SYSCALL_INSN:
                    self.code = rip - 2
                    return
            except OSError:
                continue
        leader = next(iter(self.threads.values()))
        assert leader.saved is not None
        self.code = leader.saved.rip
        self.code_saved = self._read(self.code, 2)
        self._write(self.code, _SYSCALL_INSN)

    # -- running one system call in a thread ------------------------------------

    def syscall(self, th: _Tracee, nr: int, *args: int) -> int:
        """Make thread ``th`` run system call ``nr``; its return value (-errno on failure)."""
        assert th.saved is not None
        if th.filters is not None:
            self._check_seccomp(th, nr, args)
        regs = ksys.UserRegs.from_buffer_copy(th.saved)
        regs.rax = nr
        regs.orig_rax = _NO_SYSCALL
        regs.rip = self.code
        for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args, strict=False):
            setattr(regs, name, ksys.u64(value))
        th.dirty = True
        ksys.ptrace_setregs(th.tid, regs)
        deadline = time.monotonic() + _STEP_TIMEOUT
        for _ in range(1000):
            ksys.ptrace_singlestep(th.tid)
            status = self._wait(th.tid, deadline)
            if status is None:
                self._unstick(th)
                raise OSError(
                    errno.ETIMEDOUT,
                    f"thread {th.tid} of process {self.pid} did not come back from "
                    f"{_SYSCALL_NAMES.get(nr, nr)}",
                )
            sig, event = status
            now = ksys.ptrace_getregs(th.tid)
            if event == 0 and sig == signal.SIGTRAP and now.rip == self.code + 2:
                return _signed(now.rax)
            if now.rip != self.code:
                raise OSError(
                    errno.EIO,
                    f"thread {th.tid} stopped at an unexpected place ({now.rip:#x}, "
                    f"signal {sig}) while running {_SYSCALL_NAMES.get(nr, nr)}",
                )
            if event == 0:
                # A signal arrived before our instruction ran: hold it back (the
                # next step suppresses it) and deliver it when we let go.
                th.signals.append(sig)
        raise OSError(errno.EIO, f"thread {th.tid} never ran {_SYSCALL_NAMES.get(nr, nr)}")

    def _unstick(self, th: _Tracee) -> None:
        """Interrupt a thread blocked in our call, so that it stops and gets its registers back.

        If it cannot even be interrupted, it is left to our thread's exit to
        detach (it then resumes with our registers: the one case where the
        target is not restored).
        """
        with contextlib.suppress(OSError):
            ksys.ptrace_interrupt(th.tid)
        try:
            status = self._wait(th.tid, time.monotonic() + STOP_TIMEOUT)
        except ProcessLookupError:
            return
        if status is None:
            th.saved = None  # not stopped: cannot be restored or detached by us

    def _allowed(self, th: _Tracee, nr: int, *args: int) -> bool:
        """Whether the thread's seccomp filters let system call ``nr`` run (or fail cleanly)."""
        if th.filters is None:
            return True
        verdict = seccomp.seccomp_verdict(th.filters, nr, self.code + 2, args)
        return verdict & seccomp.SECCOMP_RET_ACTION_FULL in seccomp.SECCOMP_HARMLESS

    def _died(self) -> bool:
        """Whether the process is gone or being killed (a thread we stopped has exited)."""
        if self.dying:
            return True
        try:
            signal.pidfd_send_signal(self.pidfd, 0)
        except ProcessLookupError:
            return True
        return any(
            th.saved is not None and _is_zombie(self.pid, th.tid) for th in self.threads.values()
        )

    def _check_seccomp(self, th: _Tracee, nr: int, args: Sequence[int]) -> None:
        assert th.filters is not None
        verdict = seccomp.seccomp_verdict(th.filters, nr, self.code + 2, args)
        action = verdict & seccomp.SECCOMP_RET_ACTION_FULL
        if action not in seccomp.SECCOMP_HARMLESS:
            raise OSError(
                errno.EPERM,
                f"the seccomp filter of thread {th.tid} of process {self.pid} would "
                f"{seccomp.SECCOMP_ACTIONS.get(action, f'answer {action:#x} to')} "
                f"{_SYSCALL_NAMES.get(nr, nr)}: not moving it",
            )

    def load_seccomp(self) -> None:
        for th in self.threads.values():
            st = procfs.read_status(f"/proc/{self.pid}/task/{th.tid}/status")
            mode = int(st.get("Seccomp", "0"))
            if mode == 0:
                continue
            if mode == 1:
                raise OSError(
                    errno.EPERM, f"thread {th.tid} of process {self.pid} is in strict seccomp mode"
                )
            filters = []
            index = 0
            while True:
                try:
                    filters.append(ksys.ptrace_seccomp_filter(th.tid, index))
                except FileNotFoundError:
                    break
                except OSError as exc:
                    raise OSError(
                        errno.EPERM,
                        f"cannot read the seccomp filter of thread {th.tid} of process "
                        f"{self.pid} ({exc.strerror}) to check that the injected system "
                        "calls are allowed",
                    ) from None
                index += 1
            th.filters = filters

    # -- getting the fds into the target -----------------------------------------

    def open_origins(self, kinds: Sequence[str], with_dirs: bool) -> None:
        """Open the namespaces each thread is in now (and root/cwd for mnt), keyed by inode."""
        for kind in kinds:
            dest = self.dest_fds[kind]
            self._add(("dest", kind, self.targets[kind]), dest, own=False)
        for th in self.threads.values():
            for kind in kinds:
                ino = th.origin[kind]
                key = ("orig", kind, ino)
                if ino == self.targets[kind] or key in self.own_fds:
                    continue
                fd = os.open(
                    f"/proc/{self.pid}/task/{th.tid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC
                )
                if os.fstat(fd).st_ino != ino:
                    os.close(fd)
                    raise OSError(errno.EAGAIN, f"thread {th.tid} changed namespaces meanwhile")
                self._add(key, fd, own=True)
        if with_dirs:
            for name in ("root", "cwd"):
                fd = os.open(f"/proc/{self.pid}/{name}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                self._add((name, "", 0), fd, own=True)
        signal.pidfd_send_signal(self.pidfd, 0)

    def _add(self, key: _Key, fd: int, *, own: bool) -> None:
        st = os.fstat(fd)
        self.own_ids[key] = (st.st_dev, st.st_ino)
        self.own_fds[key] = fd
        if not own:
            self.borrowed.add(key)

    def table_for(self, th: _Tracee) -> _Table:
        """The received fds as thread ``th`` sees them; a transfer to it if it has none."""
        for table in self.tables:
            if table.receiver == th.tid or all(
                self._fd_matches(th.tid, n, table.ids[key]) for key, n in table.fds.items()
            ):
                return table
        return self._receive(th)

    def _fd_matches(self, tid: int, n: int, ident: tuple[int, int]) -> bool:
        try:
            st = os.stat(f"/proc/{self.pid}/task/{tid}/fd/{n}")
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == ident

    def _scratch(self, th: _Tracee, size: int) -> int:
        """``size`` bytes of writable memory for thread ``th``'s calls (restored later)."""
        assert th.saved is not None
        size = (size + 15) & ~15
        base = int(th.saved.rsp - _RED_ZONE - size) & ~15
        try:
            original = self._read(base, size)
            self._write(base, original)
        except OSError:
            length = (size + _PAGE - 1) & ~(_PAGE - 1)
            addr = self.syscall(th, _NR_MMAP, 0, length, _PROT_RW, _MAP_PRIVATE_ANON, -1, 0)
            if -4096 < addr < 0:
                raise OSError(-addr, f"no memory for the move in process {self.pid}") from None
            self.mapped.append((th.tid, addr, length))
            return addr
        self.scratch.append((base, original))
        return base

    def _receive(self, th: _Tracee) -> _Table:
        keys = list(self.own_fds)
        fds = [self.own_fds[k] for k in keys]
        n = len(fds)
        ctl_len = 16 + ((4 * n + 7) & ~7)  # CMSG_SPACE
        path = self.cwd_path + b"\0" if self.cwd_path is not None else b""
        base = self._scratch(th, 96 + ctl_len + len(path))
        sv_at, byte_at, iov_at, msg_at, ctl_at = base, base + 8, base + 16, base + 32, base + 96
        iov = struct.pack("<QQ", byte_at, 1)
        msg = struct.pack("<QI4xQQQQi4x", 0, 0, iov_at, 1, ctl_at, ctl_len, 0)
        self._write(base, bytes(16) + iov + msg + b".\0" + bytes(6) + bytes(ctl_len) + path)
        self.dot_at = base + 88
        self.path_at = ctl_at + ctl_len if path else 0
        r = self.syscall(
            th, _NR_SOCKETPAIR, socket.AF_UNIX, socket.SOCK_STREAM | _SOCK_CLOEXEC, 0, sv_at
        )
        if r < 0:
            raise OSError(-r, f"process {self.pid} could not make a socketpair: {_strerror(-r)}")
        sv0, sv1 = struct.unpack("<ii", self._read(sv_at, 8))
        table = _Table(th.tid, {}, {})
        try:
            pidfd = self.pidfd if th.tid == self.pid else ksys.pidfd_open_thread(th.tid)
            try:
                ours = ksys.pidfd_getfd(pidfd, sv0)
            finally:
                if pidfd != self.pidfd:
                    os.close(pidfd)
            with socket.socket(fileno=ours) as sock:
                socket.send_fds(sock, [b"\0"], fds)
            r = self.syscall(th, _NR_RECVMSG, sv1, msg_at, _MSG_DONTWAIT | _MSG_CMSG_CLOEXEC)
            flags = struct.unpack("<i", self._read(msg_at + 48, 4))[0]
            cmsg_len, level, kind = struct.unpack("<Qii", self._read(ctl_at, 16))
            got: list[int] = []
            if r == 1 and level == socket.SOL_SOCKET and kind == _SCM_RIGHTS and cmsg_len >= 16:
                count = min((cmsg_len - 16) // 4, n)
                got = list(struct.unpack(f"<{count}i", self._read(ctl_at + 16, 4 * count)))
            for key, fd in zip(keys, got, strict=False):
                table.fds[key] = fd
                table.ids[key] = self.own_ids[key]
            self.tables.append(table)  # closed at the end, even if incomplete
            if r < 0:
                raise OSError(
                    -r, f"process {self.pid} could not receive the namespaces: {_strerror(-r)}"
                )
            if len(got) < n or flags & _MSG_CTRUNC:
                raise OSError(
                    errno.EMFILE,
                    f"process {self.pid} could not take {n} more file descriptors "
                    f"(it got {len(got)}): too many open files?",
                )
        finally:
            for fd in (sv0, sv1):
                self.syscall(th, _NR_CLOSE, fd)
        return table

    # -- moving ------------------------------------------------------------------

    def move_thread(self, th: _Tracee, kinds: Sequence[str]) -> None:
        needs = [k for k in kinds if th.origin[k] != self.targets[k]]
        if not needs:
            return
        table = self.table_for(th)
        for kind in needs:
            r = self.syscall(
                th, _NR_SETNS, table.fds[("dest", kind, self.targets[kind])], ksys.NS_FLAGS[kind]
            )
            if r < 0:
                raise OSError(-r, self._setns_failure(th, kind, -r))
            th.moved.append(kind)
            if kind == "mnt" and self.path_at and self._allowed(th, _NR_CHDIR, self.path_at):
                self.syscall(th, _NR_CHDIR, self.path_at)  # best effort: else stays at "/"

    def _setns_failure(self, th: _Tracee, kind: str, err: int) -> str:
        why = f"thread {th.tid} of process {self.pid} could not join the {kind} namespace"
        hint = ""
        if err == errno.EPERM:
            hint = (
                ": it lacks CAP_SYS_ADMIN over that namespace (the process calls setns "
                "itself), or a seccomp filter refused"
            )
        elif err == errno.EINVAL and kind == "mnt":
            hint = ": it shares its filesystem information (CLONE_FS) with another process"
        return f"{why} ({_strerror(err)}){hint}"

    def verify(self, kinds: Sequence[str]) -> None:
        if sorted(self._live_tids()) != sorted(self.threads):
            raise OSError(errno.EAGAIN, f"the threads of process {self.pid} changed meanwhile")
        for th in self.threads.values():
            for kind in kinds:
                got = _thread_inode(self.pid, th.tid, kind)
                if got != self.targets[kind]:
                    raise OSError(
                        errno.EIO,
                        f"thread {th.tid} of process {self.pid} is in {kind} namespace "
                        f"{got}, not {self.targets[kind]}, after the move",
                    )

    def rollback(self) -> list[str]:
        """Put every moved thread back; what could not be undone."""
        problems: list[str] = []
        for th in reversed(list(self.threads.values())):
            if not th.moved:
                continue
            if th.saved is None:
                problems.append(f"thread {th.tid} is stuck in a system call, still moved")
                continue
            table = next(
                (t for t in self.tables if t.receiver == th.tid), None
            ) or self._table_seen_by(th)
            for kind in reversed(th.moved):
                key = ("orig", kind, th.origin[kind])
                try:
                    if table is None or key not in table.fds:
                        raise OSError(errno.EBADF, "no fd on the original namespace")
                    r = self.syscall(th, _NR_SETNS, table.fds[key], ksys.NS_FLAGS[kind])
                    if r < 0:
                        raise OSError(-r, _strerror(-r))
                    if kind == "mnt":
                        self._restore_dirs(th, table)
                except OSError as exc:
                    problems.append(
                        f"thread {th.tid} stays in the new {kind} namespace ({exc.strerror})"
                    )
                    continue
                th.moved.remove(kind)
        return problems

    def _table_seen_by(self, th: _Tracee) -> _Table | None:
        for table in self.tables:
            if all(self._fd_matches(th.tid, n, table.ids[k]) for k, n in table.fds.items()):
                return table
        return None

    def _restore_dirs(self, th: _Tracee, table: _Table) -> None:
        root, cwd = table.fds.get(("root", "", 0)), table.fds.get(("cwd", "", 0))
        if root is None or cwd is None:
            raise OSError(errno.EBADF, "no fd on the original root and cwd")
        if _stat_id(f"/proc/{self.pid}/root") != self.own_ids[("root", "", 0)]:
            for nr, arg in ((_NR_FCHDIR, root), (_NR_CHROOT, self.dot_at)):
                r = self.syscall(th, nr, arg)
                if r < 0:
                    raise OSError(-r, f"cannot restore its root: {_strerror(-r)}")
        r = self.syscall(th, _NR_FCHDIR, cwd)
        if r < 0:
            raise OSError(-r, f"cannot restore its current directory: {_strerror(-r)}")

    # -- letting go --------------------------------------------------------------

    def guard_on(self) -> None:
        """From here until everything is restored, our death kills the process.

        If the daemon dies (SIGKILL) while a thread runs our registers or the
        code page holds our instruction, the kernel detaches the threads as
        they are, and the process would go on from a state that is not its
        own. PTRACE_O_EXITKILL on one thread makes the kernel kill the whole
        process instead: a move never leaves a corrupted process running.
        Before this point nothing is changed, and a tracer's death just lets
        the stopped threads go on.
        """
        for tid in self.threads:
            try:
                ksys.ptrace_setoptions(tid, ksys.PTRACE_O_EXITKILL)
            except ProcessLookupError:
                continue
            self.guard = tid
            return

    def _guard_off(self) -> None:
        if self.guard and self.guard in self.threads:
            with contextlib.suppress(OSError):
                ksys.ptrace_setoptions(self.guard, 0)
        self.guard = 0

    def release(self) -> list[str]:
        """Close what we gave the target, restore memory and registers, detach."""
        problems: list[str] = []
        if self._died():  # killed: nothing left to restore (our thread's exit lets go)
            self.dying = True
            self.tables, self.mapped, self.scratch, self.code_saved = [], [], [], None
            self.threads.clear()
        try:
            for table in self.tables:
                th = self.threads.get(table.receiver)
                if th is None or th.saved is None:
                    continue
                for fd in table.fds.values():
                    try:
                        self.syscall(th, _NR_CLOSE, fd)
                    except ProcessLookupError:
                        raise
                    except OSError as exc:
                        problems.append(f"fd {fd} left open in the process ({exc.strerror})")
            for tid, addr, length in reversed(self.mapped):
                th = self.threads.get(tid)
                if th is not None and th.saved is not None:
                    try:
                        self.syscall(th, _NR_MUNMAP, addr, length)
                    except ProcessLookupError:
                        raise
                    except OSError as exc:
                        problems.append(f"a page left mapped at {addr:#x} ({exc.strerror})")
        except ProcessLookupError:
            self.dying = True  # killed meanwhile: the rest does not matter any more
            self.threads.clear()
            self.scratch, self.code_saved = [], None
        if self.mem >= 0:
            writes = list(reversed(self.scratch))
            if self.code_saved is not None:
                writes.append((self.code, self.code_saved))
            for addr, data in writes:
                try:
                    self._write(addr, data)
                except OSError as exc:
                    problems.append(f"memory at {addr:#x} not restored ({exc.strerror})")
        restored = True
        for th in self.threads.values():
            if th.saved is None or not th.dirty:
                continue
            try:
                ksys.ptrace_setregs(th.tid, th.saved)
                th.dirty = False
            except ProcessLookupError:
                continue  # gone: our thread's exit releases whatever is left
            except OSError as exc:
                restored = False
                problems.append(f"thread {th.tid} registers not restored ({exc.strerror})")
        if restored and not problems:
            self._guard_off()  # the process is its own again
        for th in self.threads.values():
            if th.saved is None:
                continue
            try:
                ksys.ptrace_detach(th.tid, th.signals[0] if th.signals else 0)
            except ProcessLookupError:
                continue  # gone: our thread's exit releases whatever is left
            except OSError as exc:
                problems.append(f"thread {th.tid} not released ({exc.strerror})")
                continue
            for sig in th.signals[1:]:
                with contextlib.suppress(OSError):
                    ksys.tgkill(self.pid, th.tid, sig)
        if self.mem >= 0:
            os.close(self.mem)
        for key, fd in self.own_fds.items():
            if key not in self.borrowed:
                os.close(fd)
        return problems

    # -- the whole move ----------------------------------------------------------

    def run(self, timeout: float) -> None:
        kinds = [k for k in MOVABLE_KINDS if k in self.targets]
        try:
            self.stop_all(timeout)
            signal.pidfd_send_signal(self.pidfd, 0)  # the tids were this process's
            for th in self.threads.values():
                th.origin = {k: _thread_inode(self.pid, th.tid, k) for k in kinds}
            todo = [
                th
                for th in self.threads.values()
                if any(th.origin[k] != self.targets[k] for k in kinds)
            ]
            if not todo:
                return
            self._preflight(todo, kinds)
            mnt = "mnt" in kinds and any(th.origin["mnt"] != self.targets["mnt"] for th in todo)
            if mnt:
                self.cwd_path = _cwd_path(self.pid)
            self.open_memory()
            self.load_seccomp()
            self.guard_on()
            self.find_code()
            self.open_origins(kinds, with_dirs=mnt)
            try:
                for th in todo:
                    self.move_thread(th, kinds)
                self.verify(kinds)
            except BaseException as exc:
                if self._died():
                    raise
                problems = self.rollback()
                problems += self._not_back(kinds)
                if problems and isinstance(exc, OSError):
                    raise OSError(
                        exc.errno,
                        f"{exc.strerror}; rolling back failed, the process is half-moved: "
                        + "; ".join(problems),
                    ) from exc
                raise
        except BaseException as exc:
            if self.on_failed is not None:
                on_failed, self.on_failed = self.on_failed, None
                try:
                    on_failed()
                except Exception as hook:  # noqa: BLE001 - the move's error is the one to raise
                    exc.add_note(f"undoing the caller's part failed: {hook}")
            problems = self.release()
            if self.dying and isinstance(exc, OSError):
                raise ProcessLookupError(
                    errno.ESRCH, f"process {self.pid} exited (killed?) while it was being moved"
                ) from exc
            if problems:
                exc.add_note(f"process {self.pid} not fully restored: " + "; ".join(problems))
            raise
        problems = self.release()
        if self.dying:
            raise ProcessLookupError(
                errno.ESRCH, f"process {self.pid} exited (killed?) while it was being moved"
            )
        if problems:
            raise OSError(
                errno.EIO, f"process {self.pid} not fully restored: " + "; ".join(problems)
            )

    def _not_back(self, kinds: Sequence[str]) -> list[str]:
        """Threads that are not in their original namespaces (after a rollback)."""
        problems = []
        for th in self.threads.values():
            for kind in kinds:
                try:
                    got = _thread_inode(self.pid, th.tid, kind)
                except OSError:
                    continue
                if got != th.origin[kind] and kind not in th.moved:
                    problems.append(f"thread {th.tid} is in {kind} namespace {got}")
        return problems

    def _preflight(self, todo: Sequence[_Tracee], kinds: Sequence[str]) -> None:
        for th in self.threads.values():
            assert th.saved is not None
            if th.saved.cs != _USER_CS_64:
                raise OSError(errno.EOPNOTSUPP, f"process {self.pid} is not a 64-bit process")
        moves_mnt = "mnt" in kinds and any(th.origin["mnt"] != self.targets["mnt"] for th in todo)
        if moves_mnt and len(self.threads) > 1:
            raise OSError(
                errno.EINVAL,
                f"process {self.pid} has {len(self.threads)} threads: only a "
                "single-threaded process can change its mount namespace",
            )
        for th in todo:
            st = procfs.read_status(f"/proc/{self.pid}/task/{th.tid}/status")
            for cap, name in (
                (ksys.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
                (ksys.CAP_SYS_CHROOT, "CAP_SYS_CHROOT"),
            ):
                if (cap == ksys.CAP_SYS_ADMIN or moves_mnt) and not procfs.has_cap(st, cap):
                    raise OSError(
                        errno.EPERM,
                        f"process {self.pid} lacks {name} (thread {th.tid}); it would "
                        "have to call setns itself",
                    )


# -- /proc helpers -----------------------------------------------------------------


def _exited(tid: int) -> bool:
    """Whether tracee ``tid`` has an exit to report, looked at without reaping it.

    A tracer is told of ptrace stops whatever it asks for (``WEXITED`` alone
    returns them too, here unconsumed): only an exit counts.
    """
    try:
        got = os.waitid(os.P_PID, tid, os.WEXITED | os.WNOHANG | os.WNOWAIT | ksys.WALL)
    except ChildProcessError:
        return False
    return got is not None and got.si_code in (os.CLD_EXITED, os.CLD_KILLED, os.CLD_DUMPED)


def _is_zombie(pid: int, tid: int) -> bool:
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
            stat_text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    try:
        return procfs.parse_stat_state(stat_text) in ("Z", "X")
    except ValueError:
        return False


def _tracer(pid: int, tid: int) -> int:
    for path in (f"/proc/{pid}/task/{tid}/status", f"/proc/{pid}/status"):
        try:
            tracer = int(procfs.read_status(path).get("TracerPid", "0"))
        except (OSError, ValueError):
            continue
        if tracer:
            return tracer
    return 0


def _thread_state(pid: int, tid: int) -> str:
    try:
        st = procfs.read_status(f"/proc/{pid}/task/{tid}/status").get("State", "?")
        with open(f"/proc/{pid}/task/{tid}/wchan") as f:
            wchan = f.read().strip()
    except OSError:
        return "state unknown"
    return f"state {st}" + (f", in {wchan}" if wchan and wchan != "0" else "")


def _thread_inode(pid: int, tid: int, kind: str) -> int:
    try:
        return os.stat(f"/proc/{pid}/task/{tid}/ns/{kind}").st_ino
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"thread {tid} of process {pid} is gone") from None


def _already_in(pid: int, targets: Mapping[str, int]) -> bool:
    """Whether every thread of ``pid`` is in every target namespace already (then nothing to do)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {pid}") from None
    for name in tids:
        for kind, ino in targets.items():
            try:
                if os.stat(f"/proc/{pid}/task/{name}/ns/{kind}").st_ino != ino:
                    return False
            except FileNotFoundError:
                continue  # exited, or a zombie
    return True


def _stat_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _cwd_path(pid: int) -> bytes | None:
    """The process's current directory as a path it can look up again, or None.

    Only when it has our root in our mount namespace (the path is then the
    same for it) and the directory still exists.
    """
    try:
        if _stat_id(f"/proc/{pid}/root") != _stat_id("/proc/self/root") or (
            os.stat(f"/proc/{pid}/ns/mnt").st_ino != os.stat("/proc/self/ns/mnt").st_ino
        ):
            return None
        path = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
    if not path.startswith("/") or path.endswith(" (deleted)") or len(path) >= 4096:
        return None
    return os.fsencode(path)


# -- entry point -------------------------------------------------------------------


def _open_sources(
    targets: Mapping[str, int], sources: Mapping[str, str | int]
) -> tuple[dict[str, int], list[int]]:
    """kind -> nsfs fd (checked by type and inode), and the fds we opened."""
    fds: dict[str, int] = {}
    opened: list[int] = []
    try:
        for kind, source in sources.items():
            if isinstance(source, int):
                fd = source
            else:
                try:
                    fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    raise OSError(
                        exc.errno, f"cannot open the {kind} namespace at {source}: {exc.strerror}"
                    ) from None
                opened.append(fd)
            try:
                nstype = ksys.ns_get_nstype(fd)
            except OSError:
                nstype = -1
            if nstype != ksys.NS_FLAGS[kind]:
                raise OSError(errno.EINVAL, f"{source!r} is not a {kind} namespace")
            if os.fstat(fd).st_ino != targets[kind]:
                raise OSError(
                    errno.ESRCH,
                    f"{source!r} is {kind} namespace {os.fstat(fd).st_ino}, not the expected "
                    f"{targets[kind]} (container changed or pid reused)",
                )
            fds[kind] = fd
    except BaseException:
        for fd in opened:
            os.close(fd)
        raise
    return fds, opened


def move_into(
    pid: int,
    targets: Mapping[str, int],
    *,
    sources: Mapping[str, str | int],
    timeout: float = STOP_TIMEOUT,
    on_seized: Callable[[], None] | None = None,
    on_failed: Callable[[], None] | None = None,
    pidfd: int | None = None,
) -> None:
    """Move every thread of running process ``pid`` into the namespaces ``targets``.

    ``pidfd``: the caller's pidfd on ``pid`` (kept open), taken when the
    process was named: if the pid was reused since, the move fails with ESRCH
    rather than reach another process.

    ``targets``: kind -> inode of the namespace to join (kinds of
    :data:`MOVABLE_KINDS`; ``pid``, ``time`` and ``user`` raise ``ValueError``).
    ``sources``: the same kinds -> where *we* (the caller) reach that
    namespace: a path such as ``/proc/HOLDERPID/ns/net`` opened here, or an
    open nsfs fd (borrowed, not closed).  Each is checked to be that kind with
    that inode (ESRCH otherwise) and handed to the target over a socketpair
    (module docstring), so the target's own mount and pid namespaces do not
    matter.  ``pid`` is in our pid namespace.  Threads already in a target
    namespace are left alone; a process already there is not touched at all.

    ``on_seized`` is called (on the tracing thread) once every thread has been
    seized and asked to stop, before waiting for them: a thread blocked in a
    request that the caller must answer stops as soon as that request returns,
    before running anything else. It is how the daemon moves a process that
    wrote its own pid (``echo $$ > tasks``): it answers the write from this
    callback. It is not called when the move fails before that point.

    ``on_failed`` is called (on the tracing thread) when the move fails, after
    the namespaces are rolled back and before the threads are let go: what the
    caller changed for the move is undone while the process cannot run. The
    daemon puts its cgroups back there; done after, a process that wrote its
    own pid could run on, and write again, in the cgroups it was refused.

    Blocks for the move (typically a few milliseconds; up to ``timeout`` for
    the threads to stop).  Raises ``OSError`` with a sentence saying why, the
    process being exactly as before: EBUSY (already traced), EPERM (we may not
    ptrace it, it lacks CAP_SYS_ADMIN, seccomp would kill it), EINVAL (mnt for
    a multithreaded process), EAGAIN (a thread did not stop in time),
    ESRCH/``ProcessLookupError`` (it exited), or the kernel's errno from
    ``setns`` in the target.  EIO only when the process could not be put back
    exactly (the message says what is left), which no test has produced.

    Callable from any thread, a pooled one included (under trio:
    ``trio.to_thread.run_sync``): the tracing happens on a thread of its own.
    """
    for kind in targets:
        if kind in SPAWN_KINDS:
            raise ValueError(
                f"a running process cannot be moved into a {kind} namespace (spawn kind)"
            )
        if kind not in MOVABLE_KINDS:
            raise ValueError(f"unknown namespace kind: {kind!r}")
    if set(sources) != set(targets):
        raise ValueError("sources must name the same kinds as targets")
    if os.uname().machine != "x86_64":
        raise OSError(errno.EOPNOTSUPP, "moving a running process is implemented for x86_64 only")
    if pid == os.getpid():
        raise OSError(errno.EINVAL, "cannot move our own process this way")
    if not targets or _already_in(pid, targets):
        return
    dest_fds, opened = _open_sources(targets, sources)
    try:
        ours = pidfd is None
        try:
            fd = os.pidfd_open(pid) if pidfd is None else pidfd
        except ProcessLookupError:
            raise ProcessLookupError(errno.ESRCH, f"no such process: {pid}") from None
        try:
            tracer = _tracer(pid, pid)
            if tracer:
                raise OSError(errno.EBUSY, f"process {pid} is already traced by process {tracer}")
            move = _Move(pid, fd, targets, dest_fds)
            move.on_seized = on_seized
            move.on_failed = on_failed
            _run_on_fresh_thread(lambda: move.run(timeout))
        finally:
            if ours:
                os.close(fd)
    finally:
        for fd in opened:
            os.close(fd)


def _run_on_fresh_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` on a new OS thread and wait until that thread has *exited*.

    The kernel detaches whatever a thread still traces when it exits; when
    ``fn`` failed, that must have happened before we return.  ``join`` returns
    a little before the OS thread is gone, so its ``/proc/self/task`` entry is
    watched too.
    """
    outcome: list[BaseException] = []
    tids: list[int] = []

    def body() -> None:
        tids.append(threading.get_native_id())
        try:
            fn()
        except BaseException as exc:  # re-raised on the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=body, name="containerfs-inject", daemon=True)
    thread.start()
    thread.join()
    if outcome:
        deadline = time.monotonic() + 1.0
        while tids and os.path.exists(f"/proc/self/task/{tids[0]}"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.0002)
        raise outcome[0]


__all__ = ["STOP_TIMEOUT", "move_into"]
