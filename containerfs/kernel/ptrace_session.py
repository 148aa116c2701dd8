"""Holding a running process still by ptrace: every thread seized, stopped, waited on, let go.

One part of moving a process into namespaces (:mod:`inject`, whose docstring
tells the whole story).  A :class:`Session` is the tracer's bookkeeping for
one process: which threads it holds and the registers each had at its stop,
whether the process is being killed meanwhile, and the thread that carries
``PTRACE_O_EXITKILL`` while the process is changed.  Nothing here changes
the process; :mod:`ptrace_call` runs system calls in the stopped threads.

All of it runs on the one (fresh) thread that traces: ptrace binds a tracee
to the tracer *thread*.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from containerfs.kernel import procfs
from containerfs.kernel import sys as ksys

#: Seconds every thread gets to reach its ptrace stop.
STOP_TIMEOUT = 2.0


@dataclass
class Tracee:
    """One thread we seized, and what a move did to it (to undo it)."""

    tid: int
    saved: ksys.UserRegs | None = None  # registers at the stop
    dirty: bool = False  # registers changed since
    signals: list[int] = field(default_factory=list)  # held back during injection
    origin: dict[str, int] = field(default_factory=dict)  # kind -> inode before
    moved: list[str] = field(default_factory=list)  # kinds joined, in order
    filters: list[bytes] | None = None  # seccomp programs (None: no filter)


class Session:
    """The threads of process ``pid`` we trace; ``pidfd`` proves the pid was not reused."""

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.threads: dict[int, Tracee] = {}
        self.dying = False  # the process was killed while we held it
        self.guard = 0  # the tid that carries PTRACE_O_EXITKILL while we change the process
        # Called once every thread known so far was seized and asked to stop,
        # before waiting for the stops (see ``inject.move_into``'s ``on_seized``).
        self.on_seized: Callable[[], None] | None = None

    # -- waiting ---------------------------------------------------------------

    def wait(self, tid: int, deadline: float) -> tuple[int, int] | None:
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
                if is_zombie(self.pid, tid):  # exited, its report held back by siblings
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

    def died(self) -> bool:
        """Whether the process is gone or being killed (a thread we stopped has exited)."""
        if self.dying:
            return True
        try:
            signal.pidfd_send_signal(self.pidfd, 0)
        except ProcessLookupError:
            return True
        return any(
            th.saved is not None and is_zombie(self.pid, th.tid) for th in self.threads.values()
        )

    # -- stopping every thread --------------------------------------------------

    def live_tids(self) -> list[int]:
        """The process's threads (zombies left out unless we hold them), leader first."""
        try:
            names = os.listdir(f"/proc/{self.pid}/task")
        except FileNotFoundError:
            raise ProcessLookupError(errno.ESRCH, f"process {self.pid} is gone") from None
        tids = []
        for name in names:
            tid = int(name)
            if tid in self.threads or not is_zombie(self.pid, tid):
                tids.append(tid)
        tids.sort(key=lambda t: (t != self.pid, t))
        return tids

    def _seize_refused(self, tid: int, exc: OSError) -> OSError:
        tracer = procfs.tracer_pid(self.pid, tid)
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
        """Seize and stop every thread, scanning the task list again until it is stable."""
        deadline = time.monotonic() + timeout
        while True:
            new = [t for t in self.live_tids() if t not in self.threads]
            if not new:
                break
            for tid in new:
                try:
                    ksys.ptrace_seize(tid)
                except ProcessLookupError:
                    continue  # exited meanwhile
                except PermissionError as exc:
                    if is_zombie(self.pid, tid):
                        continue  # exited meanwhile: a zombie cannot be attached
                    raise self._seize_refused(tid, exc) from None
                self.threads[tid] = Tracee(tid)
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

    def _first_stop(self, th: Tracee, deadline: float) -> None:
        while True:
            try:
                status = self.wait(th.tid, deadline)
            except ProcessLookupError:
                return  # this thread exited meanwhile (a whole-process exit shows later)
            if status is None:
                raise OSError(
                    errno.EAGAIN,
                    f"thread {th.tid} of process {self.pid} did not stop within the timeout "
                    f"({procfs.thread_wait_info(self.pid, th.tid)}): it may be frozen, in "
                    "uninterruptible sleep, or waiting for this daemon (a FUSE request)",
                )
            sig, event = status
            if event == ksys.PTRACE_EVENT_STOP:
                th.saved = ksys.ptrace_getregs(th.tid)
                return
            # A signal-delivery-stop that came first: deliver the signal; the
            # interrupt stays pending and stops the thread right after.
            ksys.ptrace_cont(th.tid, sig if event == 0 else 0)

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

    def let_go(self, problems: list[str]) -> None:
        """Restore every thread's registers and detach it, held-back signals delivered.

        ``problems`` (what could not be restored so far) grows with what fails
        here; the guard comes off only when nothing did.
        """
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


def is_zombie(pid: int, tid: int) -> bool:
    """Whether thread ``tid`` of ``pid`` has exited (a zombie, or gone from /proc)."""
    try:
        return procfs.thread_state(pid, tid) in ("Z", "X")
    except ProcessLookupError:
        return True
    except ValueError:
        return False
