"""``containerfs exec CONTAINER -- CMD``: run a command inside a container.

The client side of entering a container (docs/design.md, "Entering").  It stays
single-threaded plain Python on purpose: the kernel lets only a
single-threaded process join user and time namespaces, and only a process that
does not share its filesystem context join a mount namespace.

Steps: open ``CONTAINER/tasks`` first (the containerfs mount may be invisible
once we are in the container's mount namespace), read the holder's pid and
the container's namespace inodes, enter the holder's namespaces
(:func:`containerfs.kernel.namespaces.enter_holder` checks them first, which
guards against a changed container or a reused pid), fork (a pid namespace
applies to children only), have the daemon place the child by writing its
pid to ``tasks``, and only then let the child ``exec``, so the command never
runs outside the container's cgroups.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from typing import NoReturn

from containerfs.kernel import sys as ksys
from containerfs.kernel.namespaces import KINDS, enter_holder

PROG = "containerfs exec"

# Exit codes for a command that could not be started, as util-linux and shells use.
EXIT_FAILURE = 1
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127


class ExecError(Exception):
    """A failure to report as ``containerfs exec: <message>``."""


def read_init(container_dir: str) -> int:
    """The holder pid from ``container.init``; 0 (absent or "0") for the root container."""
    try:
        with open(os.path.join(container_dir, "container.init")) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return 0
    if not text.isdigit():
        raise ExecError(f"{container_dir}: bad container.init: {text[:40]!r}")
    return int(text)


def parse_subsystems(text: str) -> dict[str, int]:
    """Namespace kind -> inode from ``container.subsystems`` lines ``name own|shared ID``.

    Controller lines (ID is a cgroup path) are not needed to enter and are skipped.
    """
    inodes: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or fields[1] not in ("own", "shared"):
            raise ExecError(f"bad container.subsystems line: {line[:60]!r}")
        name, _, ident = fields
        if name in KINDS:
            if not ident.isdigit():
                raise ExecError(f"bad namespace id for {name}: {ident[:40]!r}")
            inodes[name] = int(ident)
    return inodes


def read_subsystems(container_dir: str) -> dict[str, int]:
    """:func:`parse_subsystems` of ``CONTAINER/container.subsystems``."""
    with open(os.path.join(container_dir, "container.subsystems")) as f:
        return parse_subsystems(f.read())


def _become_root_inside() -> None:
    """In a user namespace where our uid is not mapped but 0 is, become its root, as
    ``nsenter`` does: a host root keeps its capabilities across ``execve`` only as
    the namespace's root (else the command would run as ``nobody`` with none).
    Without such a map nothing changes."""
    if os.geteuid() == 0:
        return
    with contextlib.suppress(OSError):
        os.setgroups([])
    with contextlib.suppress(OSError):
        os.setresgid(0, 0, 0)
    with contextlib.suppress(OSError):
        os.setresuid(0, 0, 0)


def _child(
    argv: list[str], gate: int, saved_mask: set[int | signal.Signals], own_group: bool
) -> NoReturn:
    """The forked child: wait for the go-ahead, then become the command. Never returns."""
    code = EXIT_FAILURE
    try:
        if own_group:
            os.setpgid(0, 0)
        # The command lives as long as `containerfs exec` does, even if that is SIGKILLed.
        # (Had the parent died before this, the gate below reads EOF.)
        ksys.set_pdeathsig(signal.SIGKILL)
        # Python ignores SIGPIPE and SIGXFSZ; a command expects defaults.
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, saved_mask)
        if os.read(gate, 1) != b"g":
            os._exit(EXIT_FAILURE)  # the parent gave up; it kills us anyway
        os.close(gate)
        _become_root_inside()
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            code = EXIT_NOT_FOUND if exc.errno == errno.ENOENT else EXIT_CANNOT_EXECUTE
            print(f"{PROG}: failed to execute {argv[0]}: {exc.strerror}", file=sys.stderr)
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


def _foreground_tty() -> int | None:
    """Standard input, when it is a terminal whose foreground we are."""
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            return 0
    except OSError:
        pass
    return None


def _give_terminal(tty: int, pgrp: int) -> None:
    """Make ``pgrp`` the terminal's foreground process group.

    An interactive shell in the container's pid namespace cannot see our
    process group, so it must get a group of its own, in the foreground, as
    a shell gives each job; we take the terminal back when it ends.
    """
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(tty, pgrp)
    finally:
        signal.signal(signal.SIGTTOU, old)


FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def spawn_and_register(argv: list[str], tasks_fd: int) -> int:
    """Fork ``argv``, write the child's pid to ``tasks_fd``, run it, return its status.

    The child waits on a pipe until its pid was accepted, so it only runs once
    placed.  While waiting we ignore SIGINT and SIGQUIT, as a shell does.  On a
    terminal the child runs in a process group of its own, made the foreground
    one (see ``_give_terminal``), so keyboard signals reach the command alone.
    Returns the exit status, or 128+N when killed by signal N.
    """
    if not argv:
        raise ExecError("no command given")
    gate_r, gate_w = os.pipe()  # close-on-exec: the command does not inherit them
    tty = _foreground_tty()
    interactive = {signal.SIGINT, signal.SIGQUIT}
    # Blocked across fork so that neither side can die of ^C before it is ready.
    saved_mask = signal.pthread_sigmask(signal.SIG_BLOCK, interactive)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, saved_mask)
        os.close(gate_r)
        os.close(gate_w)
        raise
    if pid == 0:
        os.close(gate_w)
        _child(argv, gate_r, saved_mask, tty is not None)
    os.close(gate_r)
    if tty is not None:
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # whichever of us runs first does it
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in interactive}

    def forward(signum: int, _frame: object) -> None:
        os.kill(pid, signum)

    # Signals sent to `containerfs exec` alone (kill PID) are meant for the command.
    for sig in FORWARDED:
        saved[sig] = signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_SETMASK, saved_mask)
    try:
        try:
            os.write(tasks_fd, f"{pid}\n".encode())
        except OSError as exc:
            os.close(gate_w)  # the child reads EOF and exits; make sure of it
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise ExecError(f"cannot add process to the container: {exc.strerror}") from None
        if tty is not None:
            _give_terminal(tty, pid)
        with contextlib.suppress(BrokenPipeError):  # killed before it ran: its status says so
            os.write(gate_w, b"g")
        os.close(gate_w)
        _, status = os.waitpid(pid, 0)
    finally:
        if tty is not None:
            _give_terminal(tty, os.getpgrp())
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def run(container_dir: str, argv: list[str]) -> int:
    """``containerfs exec CONTAINER -- CMD``: the command's exit status, or 1 on error."""
    tasks_fd = -1
    try:
        tasks = os.path.join(container_dir, "tasks")
        try:
            tasks_fd = os.open(tasks, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise ExecError(f"cannot open {tasks}: {exc.strerror}") from None
        holder = read_init(container_dir)
        if holder:
            try:
                expected = read_subsystems(container_dir)
            except OSError as exc:
                raise ExecError(f"cannot read {container_dir}: {exc.strerror}") from None
            try:
                enter_holder(holder, expected)
            except OSError as exc:
                raise ExecError(exc.strerror or str(exc)) from None
        return spawn_and_register(argv, tasks_fd)
    except ExecError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"{PROG}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if tasks_fd >= 0:
            os.close(tasks_fd)
