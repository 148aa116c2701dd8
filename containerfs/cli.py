"""The `containerfs` command line: `mount` runs the daemon, `exec` enters a container."""

from __future__ import annotations

import argparse
import logging
import sys

DESCRIPTION = """\
containerfs gives Linux namespaces and cgroup controllers one filesystem API.
A directory is a container: mkdir creates real namespaces and cgroups, rmdir
frees them, writing a PID to `tasks` moves a process in, and control files such
as `uts.hostname` or `memory.max` set what the kernel enforces.
"""

MOUNT_HELP = """\
Mount containerfs at MOUNTPOINT (default /run/containerfs) and serve it in the
foreground until SIGINT or SIGTERM, which unmount cleanly. The root directory
is the root container: the daemon's own namespaces and the cgroups it was
started in. Containers are made below those cgroups only, so start the daemon
in a cgroup delegated to it. Needs root and /dev/fuse.

Stopping or killing the daemon keeps every container, empty or not: its
namespaces, cgroups, limits and processes stay, and the tree is saved in the
state dir, so the next mount with the same state dir takes them all over. To
remove containers, rmdir them (children first) while the daemon runs.
"""

EXEC_HELP = """\
Run CMD inside every subsystem of CONTAINER, a directory of a mounted
containerfs: it joins the container's namespaces, starts CMD in its pid and
time namespaces, and CMD is placed in its cgroups before it runs. The exit
status of CMD is passed back (128+N when killed by signal N). Works for an
interactive shell:

    containerfs exec /run/containerfs/web -- /bin/sh

Credentials: in a container with a user namespace of its own whose user.uid_map
and user.gid_map map uid 0 and gid 0, CMD runs as that root (uid and gid 0
inside, no supplementary groups) and keeps its capabilities there. Without
those maps, and in containers that share the caller's user namespace, CMD keeps
the caller's credentials, unless --user says otherwise. The environment (HOME,
USER, ...) is passed on as it is. Options go before CONTAINER.
"""


def _user_ids(text: str) -> tuple[int, int]:
    """``--user``'s argument; a usage error (exit status 2) when it is not UID[:GID]."""
    from .execute import parse_user

    try:
        return parse_user(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from .defaults import DEFAULT_MOUNTPOINT, DEFAULT_STATE_DIR

    parser = argparse.ArgumentParser(
        prog="containerfs",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    m = sub.add_parser(
        "mount",
        help="mount and serve containerfs in the foreground",
        description=MOUNT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m.add_argument("mountpoint", nargs="?", default=DEFAULT_MOUNTPOINT, metavar="MOUNTPOINT")
    m.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        metavar="DIR",
        help=f"where the daemon keeps its state (default {DEFAULT_STATE_DIR})",
    )
    m.add_argument(
        "--subtree",
        default=None,
        metavar="KINDS",
        help="the root's initial container.subtree, e.g. '+uts +ipc +pids' "
        "(default: every available kind but user; '' for none)",
    )
    m.add_argument("--debug", action="store_true", help="log every FUSE request")

    e = sub.add_parser(
        "exec",
        help="run a command inside a container",
        description=EXEC_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="containerfs exec [--user UID[:GID] | --preserve-credentials] CONTAINER -- "
        "CMD [ARGS...]",
    )
    who = e.add_mutually_exclusive_group()
    who.add_argument(
        "-u",
        "--user",
        type=_user_ids,
        metavar="UID[:GID]",
        help="run CMD as these numeric IDs of the container's user namespace, with no "
        "supplementary groups (GID defaults to UID); refused if its maps lack them",
    )
    who.add_argument(
        "--preserve-credentials",
        action="store_true",
        help="keep the caller's uid, gids and groups even when entering a user namespace",
    )
    e.add_argument("container", metavar="CONTAINER", help="the container's directory")
    e.add_argument("argv", nargs=argparse.REMAINDER, metavar="CMD", help="command and arguments")
    return parser


class JournalFormatter(logging.Formatter):
    """Each line led by ``<N>``, its syslog priority, which the journal reads as the
    entry's level (``sd-daemon(3)``): ``journalctl -p warning`` then shows refusals.
    The journal names the unit and pid itself, so no ``containerfs:`` prefix."""

    def __init__(self) -> None:
        from .kernel.sdnotify import priority  # not at the top: `exec` must not pay for it

        super().__init__("%(levelname)s %(message)s")
        self._priority = priority

    def format(self, record: logging.LogRecord) -> str:
        lead = f"<{self._priority(record.levelno)}>"
        return "\n".join(lead + line for line in super().format(record).split("\n"))


def setup_logging(level: int) -> None:
    """The daemon's log on stderr: with levels for the journal when stderr is the
    journal's stream (started by systemd), as before otherwise."""
    from .kernel.sdnotify import stderr_is_journal

    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("containerfs: %(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    # The format shows level and message only: do not gather what it never shows
    # (each write to a control file logs a line, see the logging HOWTO's
    # "Optimization").
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the command line itself: `exec` goes to the C program
        from .fastexec import hand_over

        hand_over(sys.argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "mount":
        setup_logging(logging.DEBUG if args.debug else logging.INFO)
        from .service.startup import mount

        return mount(args.mountpoint, args.state_dir, args.subtree, args.debug)
    if args.command == "exec":
        cmd = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not cmd:
            print("containerfs exec: no command given", file=sys.stderr)
            return 2
        from .execute import run

        return run(
            args.container, cmd, user=args.user, preserve_credentials=args.preserve_credentials
        )
    return 2
