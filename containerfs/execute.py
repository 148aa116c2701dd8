"""``containerfs exec CONTAINER -- CMD``: run a command inside a container.

The client side of entering a container (docs/design.md, "Entering").  It stays
single-threaded plain Python on purpose: the kernel lets only a
single-threaded process join user and time namespaces, and only a process that
does not share its filesystem context join a mount namespace.

Steps: open ``CONTAINER/tasks`` first (the containerfs mount may be invisible
once we are in the container's mount namespace), read the holder's pid and
the container's namespace inodes, enter the holder's namespaces
(:func:`containerfs.kernel.enter.enter_holder` checks them first, which
guards against a changed container or a reused pid), fork (a pid namespace
applies to children only), have the daemon place the child by writing its
pid to ``tasks``, and only then let the child ``exec``, so the command never
runs outside the container's cgroups.

Credentials, as ``nsenter(1)`` sets them: entering a user namespace whose maps
give uid 0 and gid 0 a host ID, the command runs as that root (uid and gid 0
inside, no supplementary groups), so it keeps its capabilities there across
``exec``; ``--user UID[:GID]`` picks other IDs of the container's user
namespace; ``--preserve-credentials`` (and a user namespace without those maps)
keeps the caller's.  The IDs are checked against the maps before anything is
entered, the supplementary groups are dropped before and after joining (as
nsenter does: before, the caller may still drop them; after, only if the
namespace allows setgroups), and the child switches IDs itself, so the client
keeps its own credentials.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from typing import NoReturn

from containerfs.kernel import sys as ksys
from containerfs.kernel.enter import enter_holder, holder_id_maps
from containerfs.kernel.namespaces import ns_inode_for_children
from containerfs.kernel.procfs import parse_id_map
from containerfs.nskinds import KINDS

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


#: The largest valid uid or gid: (uid_t)-1 means "unchanged" to the kernel.
ID_MAX = 2**32 - 2

#: uid and gid the command switches to, in the container's user namespace.
Ids = tuple[int, int]


def parse_user(text: str) -> Ids:
    """``UID[:GID]`` (numbers in the container's user namespace) -> (uid, gid).

    GID defaults to UID.  Names are not taken: which ``/etc/passwd`` would
    say what they mean (the caller's, the container's) is ambiguous.
    """
    uid_text, sep, gid_text = text.partition(":")
    if not sep:
        gid_text = uid_text
    ids = []
    for part in (uid_text, gid_text):
        if not part.isascii() or not part.isdigit() or int(part) > ID_MAX:
            raise ValueError(f"not UID[:GID] (numbers up to {ID_MAX}): {text!r}")
        ids.append(int(part))
    return ids[0], ids[1]


def is_mapped(id_map: str, ident: int) -> bool:
    """Whether ``ident`` (an ID inside) is in ``id_map``, a ``uid_map``/``gid_map`` text."""
    try:
        ranges = parse_id_map(id_map)
    except ValueError as exc:
        raise ExecError(str(exc)) from None
    return any(inside <= ident < inside + count for inside, _, count in ranges)


def choose_ids(
    user: Ids | None, preserve: bool, enters_user_ns: bool, uid_map: str, gid_map: str
) -> Ids | None:
    """The (uid, gid) the command runs as, or None to keep the caller's.

    ``user`` (``--user``) must be mapped, or the command would not start:
    ``ExecError`` says which.  Without it, entering a user namespace makes the
    command its root when both maps give 0 a host ID (as nsenter and
    lxc-attach do); without such maps there is no root to become, and the
    caller's credentials stay (the namespace shows them as the overflow IDs,
    and the command has no capabilities there once it runs).
    """
    if preserve:
        return None
    if user is not None:
        uid, gid = user
        if not is_mapped(uid_map, uid):
            raise ExecError(f"uid {uid} is not mapped in the container's user namespace")
        if not is_mapped(gid_map, gid):
            raise ExecError(f"gid {gid} is not mapped in the container's user namespace")
        return user
    if enters_user_ns and is_mapped(uid_map, 0) and is_mapped(gid_map, 0):
        return 0, 0
    return None


def _own_id_maps() -> tuple[str, str]:
    """Our own user namespace's maps (the root container, or one we share it with)."""
    texts = []
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/self/{name}") as f:
            texts.append(f.read())
    return texts[0], texts[1]


def _drop_groups() -> OSError | None:
    """``setgroups([])``; the error instead of raising it (nsenter tries twice)."""
    try:
        os.setgroups([])
    except OSError as exc:
        return exc
    return None


def _switch_ids(ids: Ids) -> None:
    """Become ``ids``: gid first, while we may still change it."""
    uid, gid = ids
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _child(
    argv: list[str],
    gate: int,
    saved_mask: set[int | signal.Signals],
    own_group: bool,
    ids: Ids | None,
) -> NoReturn:
    """The forked child: wait for the go-ahead, then become the command. Never returns."""
    code = EXIT_FAILURE
    try:
        if own_group:
            os.setpgid(0, 0)
        if ids is not None:
            # Before the death signal: a change of IDs clears it.  (The maps
            # were checked, so this is not expected to fail.)
            try:
                _switch_ids(ids)
            except OSError as exc:
                print(
                    f"{PROG}: cannot switch to {ids[0]}:{ids[1]}: {exc.strerror}", file=sys.stderr
                )
                raise  # the finally below exits
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


def spawn_and_register(argv: list[str], tasks_fd: int, ids: Ids | None = None) -> int:
    """Fork ``argv``, write the child's pid to ``tasks_fd``, run it, return its status.

    The child waits on a pipe until its pid was accepted, so it only runs once
    placed.  While waiting we ignore SIGINT and SIGQUIT, as a shell does.  On a
    terminal the child runs in a process group of its own, made the foreground
    one (see ``_give_terminal``), so keyboard signals reach the command alone.
    Returns the exit status, or 128+N when killed by signal N.  With ``ids``
    the child switches to that uid and gid before it waits.
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
        _child(argv, gate_r, saved_mask, tty is not None, ids)
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


def run(
    container_dir: str,
    argv: list[str],
    *,
    user: Ids | None = None,
    preserve_credentials: bool = False,
) -> int:
    """``containerfs exec CONTAINER -- CMD``: the command's exit status, or 1 on error.

    ``user`` is ``--user`` (uid, gid), ``preserve_credentials``
    ``--preserve-credentials``: see the module docstring.
    """
    tasks_fd = -1
    try:
        if user is not None and preserve_credentials:
            raise ExecError("--user and --preserve-credentials exclude each other")
        tasks = os.path.join(container_dir, "tasks")
        try:
            tasks_fd = os.open(tasks, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise ExecError(f"cannot open {tasks}: {exc.strerror}") from None
        # We hold host credentials and an open `tasks`: once in the container's
        # namespaces, nothing in there may ptrace us or open our fds.
        ksys.set_dumpable(False)
        holder = read_init(container_dir)
        expected: dict[str, int] = {}
        if holder:
            try:
                expected = read_subsystems(container_dir)
            except OSError as exc:
                raise ExecError(f"cannot read {container_dir}: {exc.strerror}") from None
        user_ns = expected.get("user")
        enters_user_ns = user_ns is not None and ns_inode_for_children("self", "user") != user_ns
        ids = None
        if not preserve_credentials and (user is not None or enters_user_ns):
            # The maps of the user namespace the command will run in.
            if user_ns is None:
                maps = _own_id_maps()
            else:
                try:
                    maps = holder_id_maps(holder, user_ns)
                except OSError as exc:
                    raise ExecError(exc.strerror or str(exc)) from None
            ids = choose_ids(user, preserve_credentials, enters_user_ns, *maps)
        # Before joining, while we may; again after, if the namespace allows it.
        groups_error = _drop_groups() if ids is not None else None
        if holder:
            try:
                enter_holder(holder, expected)
            except OSError as exc:
                raise ExecError(exc.strerror or str(exc)) from None
        if groups_error is not None and (not enters_user_ns or _drop_groups() is not None):
            raise ExecError(f"cannot drop supplementary groups: {groups_error.strerror}")
        return spawn_and_register(argv, tasks_fd, ids)
    except ExecError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"{PROG}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if tasks_fd >= 0:
            os.close(tasks_fd)
