"""Running a system call inside a stopped thread (x86_64): registers, code, memory, seccomp.

One part of moving a process into namespaces (:mod:`inject`, whose docstring
tells the whole story).  An :class:`Injector` works on the threads a
:class:`ptrace_session.Session` holds stopped: it finds (or writes) a
``syscall`` instruction, runs one call at a time in a thread with
``PTRACE_SINGLESTEP``, reads and writes the process's memory through
``/proc/PID/task/TID/mem``, lends scratch memory below a thread's stack, and
checks each call against the thread's seccomp filters first.  What it changed
in memory it puts back in :meth:`Injector.restore_memory`; the registers are
the session's to restore.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Sequence

from containerfs.kernel import procfs, seccomp
from containerfs.kernel import sys as ksys
from containerfs.kernel.ptrace_session import STOP_TIMEOUT, Session, Tracee

#: Seconds one injected system call may take (none of ours blocks).
_STEP_TIMEOUT = 5.0

# x86_64 system call numbers of the calls a move injects.
NR_CLOSE = 3
NR_MMAP = 9
NR_MUNMAP = 11
NR_RECVMSG = 47
NR_SOCKETPAIR = 53
NR_CHDIR = 80
NR_FCHDIR = 81
NR_CHROOT = 161
NR_SETNS = 308
_SYSCALL_NAMES = {
    NR_CLOSE: "close",
    NR_MMAP: "mmap",
    NR_MUNMAP: "munmap",
    NR_RECVMSG: "recvmsg",
    NR_SOCKETPAIR: "socketpair",
    NR_CHDIR: "chdir",
    NR_FCHDIR: "fchdir",
    NR_CHROOT: "chroot",
    NR_SETNS: "setns",
}

_SYSCALL_INSN = b"\x0f\x05"
#: The code segment of a 64-bit process (a 32-bit one cannot be injected into).
USER_CS_64 = 0x33
_RED_ZONE = 128
_PAGE = 4096
_NO_SYSCALL = 2**64 - 1  # orig_rax = -1

_PROT_RW = 0x3
_MAP_PRIVATE_ANON = 0x02 | 0x20


def strerror(err: int) -> str:
    """``os.strerror``, with 0 read as "no error"."""
    return os.strerror(err) if err else "no error"


def _signed(value: int) -> int:
    return value - 2**64 if value >= 2**63 else value


class Injector:
    """System calls run in the stopped threads of ``session``'s process."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.pid = session.pid
        self.mem = -1
        self.code = 0  # the address of the syscall instruction the threads run
        self.code_saved: bytes | None = None  # the bytes we wrote over there, if any
        self.scratch: list[tuple[int, bytes]] = []  # (address, original bytes)
        self.mapped: list[tuple[int, int, int]] = []  # (tid, address, length)

    # -- memory --------------------------------------------------------------------

    def read(self, addr: int, n: int) -> bytes:
        """``n`` bytes of the process's memory at ``addr`` (EIO if short)."""
        data = os.pread(self.mem, n, addr)
        if len(data) != n:
            raise OSError(errno.EIO, f"short read of process {self.pid} memory at {addr:#x}")
        return data

    def write(self, addr: int, data: bytes) -> None:
        """Write ``data`` into the process's memory at ``addr`` (EIO if short)."""
        if os.pwrite(self.mem, data, addr) != len(data):
            raise OSError(errno.EIO, f"short write to process {self.pid} memory at {addr:#x}")

    def open_memory(self) -> None:
        """Open the process's memory, checked to be the pidfd's process."""
        # Through a live thread: a leader that exited (a zombie) has no memory.
        tid = next(iter(self.session.threads))
        self.mem = os.open(f"/proc/{self.pid}/task/{tid}/mem", os.O_RDWR | os.O_CLOEXEC)
        signal.pidfd_send_signal(self.session.pidfd, 0)  # the file is this pidfd's process's

    def find_code(self) -> None:
        """An address holding a ``syscall`` instruction (written there if none is found)."""
        for th in self.session.threads.values():
            assert th.saved is not None
            rip = th.saved.rip
            if (rip - 2) // _PAGE != rip // _PAGE:
                continue
            try:
                if self.read(rip - 2, 2) == _SYSCALL_INSN:
                    self.code = rip - 2
                    return
            except OSError:
                continue
        leader = next(iter(self.session.threads.values()))
        assert leader.saved is not None
        self.code = leader.saved.rip
        self.code_saved = self.read(self.code, 2)
        self.write(self.code, _SYSCALL_INSN)

    def scratch_area(self, th: Tracee, size: int) -> int:
        """``size`` bytes of writable memory for thread ``th``'s calls (restored later)."""
        assert th.saved is not None
        size = (size + 15) & ~15
        base = int(th.saved.rsp - _RED_ZONE - size) & ~15
        try:
            original = self.read(base, size)
            self.write(base, original)
        except OSError:
            length = (size + _PAGE - 1) & ~(_PAGE - 1)
            addr = self.syscall(th, NR_MMAP, 0, length, _PROT_RW, _MAP_PRIVATE_ANON, -1, 0)
            if -4096 < addr < 0:
                raise OSError(-addr, f"no memory for the move in process {self.pid}") from None
            self.mapped.append((th.tid, addr, length))
            return addr
        self.scratch.append((base, original))
        return base

    # -- running one system call in a thread ------------------------------------

    def syscall(self, th: Tracee, nr: int, *args: int) -> int:
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
            status = self.session.wait(th.tid, deadline)
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

    def _unstick(self, th: Tracee) -> None:
        """Interrupt a thread blocked in our call, so that it stops and gets its registers back.

        If it cannot even be interrupted, it is left to our thread's exit to
        detach (it then resumes with our registers: the one case where the
        target is not restored).
        """
        with contextlib.suppress(OSError):
            ksys.ptrace_interrupt(th.tid)
        try:
            status = self.session.wait(th.tid, time.monotonic() + STOP_TIMEOUT)
        except ProcessLookupError:
            return
        if status is None:
            th.saved = None  # not stopped: cannot be restored or detached by us

    # -- seccomp -------------------------------------------------------------------

    def allowed(self, th: Tracee, nr: int, *args: int) -> bool:
        """Whether the thread's seccomp filters let system call ``nr`` run (or fail cleanly)."""
        if th.filters is None:
            return True
        verdict = seccomp.seccomp_verdict(th.filters, nr, self.code + 2, args)
        return verdict & seccomp.SECCOMP_RET_ACTION_FULL in seccomp.SECCOMP_HARMLESS

    def _check_seccomp(self, th: Tracee, nr: int, args: Sequence[int]) -> None:
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
        """Read every filtered thread's seccomp programs; refuse a strict-mode thread."""
        for th in self.session.threads.values():
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

    # -- putting memory back -------------------------------------------------------

    def unmap(self, problems: list[str]) -> None:
        """Unmap the pages :meth:`scratch_area` mapped; ``ProcessLookupError`` if killed."""
        for tid, addr, length in reversed(self.mapped):
            th = self.session.threads.get(tid)
            if th is not None and th.saved is not None:
                try:
                    self.syscall(th, NR_MUNMAP, addr, length)
                except ProcessLookupError:
                    raise
                except OSError as exc:
                    problems.append(f"a page left mapped at {addr:#x} ({exc.strerror})")

    def forget(self) -> None:
        """The process is gone or dying: nothing of its memory is ours to put back."""
        self.mapped, self.scratch, self.code_saved = [], [], None

    def restore_memory(self, problems: list[str]) -> None:
        """Put back the bytes under the scratch areas and the syscall instruction."""
        if self.mem < 0:
            return
        writes = list(reversed(self.scratch))
        if self.code_saved is not None:
            writes.append((self.code, self.code_saved))
        for addr, data in writes:
            try:
                self.write(addr, data)
            except OSError as exc:
                problems.append(f"memory at {addr:#x} not restored ({exc.strerror})")

    def close(self) -> None:
        """Close the process's memory file."""
        if self.mem >= 0:
            os.close(self.mem)
