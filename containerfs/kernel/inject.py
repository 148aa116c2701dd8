"""Moving a running process into namespaces: ptrace code injection (x86_64).

A process can only ``setns()`` itself, so :func:`move_into` makes the target
call it: every thread is seized and stopped, and runs a few system calls we
place in it with ``PTRACE_SINGLESTEP``, then carries on exactly where it was.

This module is the entry point (checks, the sources, the fresh thread); the
work is in four parts: :mod:`ptrace_session` holds the threads (seize, stop,
wait, let go), :mod:`ptrace_call` runs one system call in a stopped thread,
:mod:`inject_fds` hands our nsfs fds to the process, and :mod:`inject_move`
runs the steps of a move in order and undoes them on failure.

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

import errno
import os
import threading
import time
from collections.abc import Callable, Mapping

from containerfs.kernel import procfs
from containerfs.kernel import sys as ksys
from containerfs.kernel.inject_move import Move
from containerfs.kernel.ptrace_session import STOP_TIMEOUT
from containerfs.nskinds import MOVABLE_KINDS, SPAWN_KINDS


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
            tracer = procfs.tracer_pid(pid, pid)
            if tracer:
                raise OSError(errno.EBUSY, f"process {pid} is already traced by process {tracer}")
            move = Move(pid, fd, targets, dest_fds)
            move.session.on_seized = on_seized
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
