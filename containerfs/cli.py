"""The `containerfs` command line: `mount` runs the daemon, `exec` enters a container,
`oci` is an OCI runtime (containerfs/oci/)."""

from __future__ import annotations

import argparse
import logging
import math
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


TREE_HELP = """\
Show the container tree below PATH as systemd-cgls draws cgroups: each
container with its task count, its release policy and the kinds it owns.
Reads only the mounted files, so any user who may read the tree can run it.
"""

TOP_HELP = """\
Show every container below PATH, one row each, with its tasks, CPU use (100%
is one CPU), memory and pids, refreshed every SECONDS, as systemd-cgtop does.
Keys: p, t, c, m and n sort by path, tasks, CPU, memory and pids; q quits.
Reads the root's metrics file, so any user who may read it can run it.
Memory and pids show only for containers that own those controllers.
"""

OCI_HELP = """\
An OCI runtime with runc's command line, for podman and containerd: each OCI
container is a container PARENT/ID of the containerfs mounted at DIR. runc
(Debian's runc 1.1) does the process set-up (root file system, mounts,
capabilities, seccomp, rlimits, user, console, hooks, linux.resources) and
makes the namespaces; containerfs makes the container's cgroups and takes the
namespaces over (container.claim) before `create` returns. Commands and
options are runc's (create, start, state, kill, delete, exec, ps, pause,
resume, update, events, list, spec, features, --version; --root, --log,
--log-format, --debug, --systemd-cgroup). `containerfs-runc` is the same
command under one executable name, for runtime settings that take a path:

    containerfs oci --log-format=json create --bundle B --pid-file P ID
"""

_PATH_HELP = "a container directory (default: the root of the first mounted containerfs)"


def _user_ids(text: str) -> tuple[int, int]:
    """``--user``'s argument; a usage error (exit status 2) when it is not UID[:GID]."""
    from .execute import parse_user

    try:
        return parse_user(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _listen(text: str) -> tuple[str, int]:
    """``--metrics-listen``'s argument; a usage error when it is not ADDR:PORT."""
    from .service.metrics_http import parse_listen

    try:
        return parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _busy_poll(text: str) -> int:
    """Microseconds, 0 (off) up to ``MAX_BUSY_POLL_US``: a longer window only burns CPU."""
    from .defaults import MAX_BUSY_POLL_US

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of microseconds: {text!r}") from None
    if not 0 <= value <= MAX_BUSY_POLL_US:
        raise argparse.ArgumentTypeError(f"must be 0 to {MAX_BUSY_POLL_US} microseconds")
    return value


def _netns_prefix(text: str) -> str:
    """``--netns-prefix``'s argument (``engine.netnames.check_prefix``); '' for none."""
    from .engine.errors import ContainerError
    from .engine.netnames import check_prefix

    try:
        return check_prefix(text)
    except ContainerError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def build_parser() -> argparse.ArgumentParser:
    from .defaults import (
        DEFAULT_BUSY_POLL_US,
        DEFAULT_MOUNTPOINT,
        DEFAULT_NETNS_PREFIX,
        DEFAULT_STATE_DIR,
    )

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
    m.add_argument(
        "--busy-poll",
        type=_busy_poll,
        default=DEFAULT_BUSY_POLL_US,
        metavar="USEC",
        help="after answering a request, look for the next one for up to USEC "
        "microseconds before sleeping (adapted to how close requests come; 0: off; "
        f"needs the patched pyfuse3; default {DEFAULT_BUSY_POLL_US})",
    )
    m.add_argument(
        "--metrics-listen",
        type=_listen,
        default=None,
        metavar="ADDR:PORT",
        help="also serve the root's metrics file over HTTP at /metrics on this address "
        "(e.g. 127.0.0.1:9464; [::1]:9464 for IPv6); off by default",
    )
    m.add_argument(
        "--netns-prefix",
        type=_netns_prefix,
        default=DEFAULT_NETNS_PREFIX,
        metavar="PREFIX",
        help="show each container that owns its network namespace to `ip netns` as "
        f"PREFIX:PATH (default {DEFAULT_NETNS_PREFIX}; 'cfs' and up to 32 of "
        "[A-Za-z0-9_.-]; one daemon per prefix; '' for no names)",
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

    t = sub.add_parser(
        "tree",
        help="show the container tree",
        description=TREE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("path", nargs="?", default=None, metavar="PATH", help=_PATH_HELP)
    t.add_argument("--json", action="store_true", help="print a JSON list, one object a container")

    top = sub.add_parser(
        "top",
        help="show containers by CPU, memory, pids and tasks, live",
        description=TOP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("path", nargs="?", default=None, metavar="PATH", help=_PATH_HELP)
    top.add_argument(
        "-d",
        "--delay",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="seconds between refreshes (default 1)",
    )
    top.add_argument(
        "-o",
        "--order",
        choices=("path", "tasks", "cpu", "memory", "pids"),
        default="cpu",
        help="the column to sort by at start (default cpu)",
    )
    top.add_argument(
        "-n",
        "--iterations",
        type=int,
        default=None,
        metavar="N",
        help="stop after N refreshes (default: until q)",
    )
    top.add_argument(
        "-b", "--batch", action="store_true", help="print plain tables, no screen, no keys"
    )
    o = sub.add_parser(
        "oci",
        help="an OCI runtime with runc's command line, for podman and containerd",
        description=OCI_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="containerfs oci [--mount DIR] [--parent PATH] [--root DIR] [RUNC-OPTIONS] "
        "COMMAND [ARGS...]",
    )
    o.add_argument(
        "--mount",
        metavar="DIR",
        help="the containerfs mount the containers are made in (default "
        f"$CONTAINERFS_OCI_MOUNT, else {DEFAULT_MOUNTPOINT})",
    )
    o.add_argument(
        "--parent",
        metavar="PATH",
        help="the container, below the mount's root, that OCI containers are made in "
        "(default $CONTAINERFS_OCI_PARENT, else oci); made if missing",
    )
    o.add_argument(
        "--root",
        metavar="DIR",
        help="runc's state directory (default /run/containerfs-runc)",
    )
    o.add_argument(
        "argv",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help="runc's command, its options and the container's ID",
    )
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds from 0.1 to 3600, got {text!r}")
    return value


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
    words = sys.argv[1:] if argv is None else argv
    if words[:1] == ["oci"]:  # runc's command line, parsed as runc does (oci/args.py)
        from .oci.frontend import main as oci_main

        return oci_main(words[1:], prog="containerfs oci")
    args = build_parser().parse_args(argv)
    if args.command == "mount":
        setup_logging(logging.DEBUG if args.debug else logging.INFO)
        from .service.startup import mount

        return mount(
            args.mountpoint,
            args.state_dir,
            args.subtree,
            args.debug,
            busy_poll_us=args.busy_poll,
            metrics_listen=args.metrics_listen,
            netns_prefix=args.netns_prefix,
        )
    if args.command == "exec":
        cmd = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not cmd:
            print("containerfs exec: no command given", file=sys.stderr)
            return 2
        from .execute import run

        return run(
            args.container, cmd, user=args.user, preserve_credentials=args.preserve_credentials
        )
    if args.command == "tree":
        from . import treeview

        return treeview.run(args.path, args.json)
    if args.command == "top":
        from . import top

        return top.run(args.path, args.delay, args.order, args.iterations, args.batch)
    return 2
