"""The commands of ``containerfs oci`` / ``containerfs-runc``.

``create``, ``state``, ``delete``, ``features`` and ``--version`` are the front end's
own; every other command (``start``, ``kill``, ``exec``, ``ps``, ``pause``,
``resume``, ``update``, ``events``, ``list``, ``spec``) is runc's, which finds the
container's process and cgroup in its own state: the front end replaces itself with
runc for them. docs/design.md, "OCI runtime front end", says why each step is where
it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import args as cli
from . import runc
from .bundle import BundleError, check_id, knob_table, rewrite
from .log import Log
from .tree import Tree, TreeError

#: runc's state directory when the caller gives no ``--root``: podman calls
#: ``state`` without one, so it must be the same for every call.
DEFAULT_ROOT = "/run/containerfs-runc"
DEFAULT_PARENT = "oci"
MOUNT_ENV = "CONTAINERFS_OCI_MOUNT"
PARENT_ENV = "CONTAINERFS_OCI_PARENT"
#: Beside runc's ``--root``: one directory per container with the private
#: ``config.json`` and the caller's bundle path (runc's own directory for the id must
#: not exist before ``runc create``).
PRIVATE_SUFFIX = ".containerfs"
#: The annotation ``features`` adds to runc's answer.
FEATURES_ANNOTATION = "io.containerfs.oci.frontend"

#: Commands runc has that the front end does not offer (they would make or restore
#: a container outside containerfs).
REFUSED = {
    "run": "use create, then start",
    "restore": "checkpoint and restore are not supported",
    "checkpoint": "checkpoint and restore are not supported",
}
PASSED = ("start", "kill", "exec", "ps", "pause", "resume", "update", "events", "list", "spec")

HELP = """\
{prog}: an OCI runtime with runc's command line, whose containers are
containers of a mounted containerfs (containerfs(8), "containerfs oci").

usage: {prog} [global options] COMMAND [command options] [ID] ...

commands: create, start, state, kill, delete, exec, ps, pause, resume,
  update, events, list, spec, features (each as runc's)
global options: runc's (--root DIR, default {root};
  --log FILE; --log-format text|json; --debug; --systemd-cgroup, accepted
  and not used), and
  --mount DIR    the containerfs mount (default ${mount_env}, else {mount})
  --parent PATH  the container OCI containers are made in (default
                 ${parent_env}, else {parent})
"""


@dataclass
class Settings:
    """Where things are, from the global flags and the environment."""

    root: str
    mount: str
    parent: str
    log: Log
    globals: cli.Values

    @classmethod
    def of(cls, values: cli.Values) -> Settings:
        from ..defaults import DEFAULT_MOUNTPOINT

        root = str(values.get("root") or DEFAULT_ROOT)
        mount = str(values.get("mount") or os.environ.get(MOUNT_ENV) or DEFAULT_MOUNTPOINT)
        parent = str(values.get("parent") or os.environ.get(PARENT_ENV) or DEFAULT_PARENT)
        log = Log(_str(values.get("log")), _str(values.get("log-format")))
        return cls(os.path.abspath(root), mount, parent, log, {**values, "root": root})

    def runc(self, *words: str, log: bool = True) -> list[str]:
        """runc's command line with the caller's global flags (without ``--log``
        for the front end's own queries)."""
        values = self.globals if log else {"root": self.globals["root"]}
        return [runc.find_runc(), *cli.global_words(values), *words]

    def private(self, cid: str) -> str:
        return os.path.join(self.root.rstrip("/") + PRIVATE_SUFFIX, cid)


def _str(value: str | bool | None) -> str | None:
    return value if isinstance(value, str) else None


class Failed(Exception):
    """A command failed with a message for the log (runc's own are already out)."""


def main(argv: Sequence[str], prog: str = "containerfs-runc") -> int:
    """Run one runc command line; the exit status."""
    if argv[:1] == ["--"]:
        argv = argv[1:]
    try:
        parsed = cli.parse(argv)
    except cli.UsageError as e:
        print(f"Incorrect Usage: {e}", file=sys.stderr)
        return 1
    settings = Settings.of(parsed.globals)
    if parsed.globals.get("version") is True:
        return version(settings)
    if parsed.globals.get("help") is True or parsed.command in ("", "help", "h"):
        print(_help(prog))
        return 0
    try:
        return dispatch(settings, parsed.command, parsed.rest, prog)
    except cli.UsageError as e:
        settings.log.error(f"{prog}: {e}")
        return 1
    except (Failed, runc.RuncMissing) as e:
        settings.log.error(str(e))
        return 1
    except (OSError, ValueError, KeyError, TypeError) as e:  # a bug: still runc's form
        settings.log.error(f"{prog} {parsed.command}: internal error: {e!r}")
        return 1


def _help(prog: str) -> str:
    from ..defaults import DEFAULT_MOUNTPOINT

    return HELP.format(
        prog=prog,
        root=DEFAULT_ROOT,
        mount=DEFAULT_MOUNTPOINT,
        parent=DEFAULT_PARENT,
        mount_env=MOUNT_ENV,
        parent_env=PARENT_ENV,
    )


def dispatch(s: Settings, command: str, rest: list[str], prog: str) -> int:
    if command in REFUSED:
        raise Failed(f"{prog} {command} is not supported: {REFUSED[command]}")
    if command in cli.COMMAND_FLAGS:
        flags, positional = cli.parse_command(command, rest)
        if flags.get("help") is True:
            print(_help(prog))
            return 0
        if command == "features":
            return features(s)
        cid = cli.container_id(command, positional)
        try:  # before anything makes a path of it (a "../x" would leave the state dir)
            check_id(cid)
        except BundleError as e:
            raise Failed(str(e)) from None
        if command == "create":
            return create(s, flags, cid)
        if command == "state":
            return state(s, cid)
        return delete(s, cid, force=flags.get("force") is True)
    if command in PASSED:
        try:
            runc.replace(s.runc(command, *rest))
        except OSError as e:
            raise Failed(f"cannot run runc: {e.strerror}") from None
    raise cli.UsageError(f"No help topic for '{command}'")


# -- create ---------------------------------------------------------------------------


def _load_config(bundle: str) -> dict[str, Any]:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise Failed("JSON specification file config.json not found") from None
    except (OSError, ValueError) as e:
        raise Failed(f"cannot read {path}: {e}") from None
    if not isinstance(config, dict):
        raise Failed(f"{path} is not a JSON object")
    return config


def _write_private(s: Settings, cid: str, config: dict[str, Any], bundle: str) -> str:
    private = s.private(cid)
    os.makedirs(os.path.dirname(private), mode=0o700, exist_ok=True)
    os.mkdir(private, 0o700)
    with open(os.path.join(private, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    with open(os.path.join(private, "bundle"), "w", encoding="utf-8") as f:
        f.write(bundle)
    return private


def _read_pid(path: str) -> int:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError) as e:
        raise Failed(f"cannot read the init's pid from {path}: {e}") from None


def create(s: Settings, flags: cli.Values, cid: str) -> int:
    """``PARENT/ID`` made, runc's ``create`` with the private bundle, the namespaces
    claimed, the sysctl knobs written to the internal views. On any failure every
    step is undone and nothing is left behind."""
    bundle = os.path.abspath(_str(flags.get("bundle")) or os.getcwd())
    try:
        check_id(cid)
    except BundleError as e:
        raise Failed(str(e)) from None
    if os.path.lexists(os.path.join(s.root, cid)) or os.path.lexists(s.private(cid)):
        raise Failed(f"container with id exists: {cid}")
    config = _load_config(bundle)
    tree = Tree(s.mount, s.parent)
    try:
        tree.ensure_parent()
        tree.make(cid)
    except TreeError as e:
        raise Failed(str(e)) from None
    ran = False
    try:
        rewritten = rewrite(config, bundle, tree.cgroups_path(cid), knob_table(tree.offered()))
        private = _write_private(s, cid, rewritten.config, bundle)
        pid_file = _str(flags.get("pid-file")) or os.path.join(private, "init.pid")
        words = ["create", "--bundle", private, "--pid-file", pid_file]
        for name in ("console-socket", "preserve-fds"):
            if isinstance(flags.get(name), str):
                words.append(f"--{name}={flags[name]}")
        words += [f"--{n}" for n in ("no-pivot", "no-new-keyring") if flags.get(n) is True]
        ran = True
        status = runc.run(s.runc(*words, "--", cid))
        if status != 0:  # runc said why, in the log and on stderr
            _undo(s, tree, cid)
            return status
        tree.claim(cid, _read_pid(pid_file))
        for name, value in rewritten.views.items():
            tree.write_view(cid, name, value)
    except (Failed, TreeError, BundleError, OSError, runc.RuncMissing) as e:
        _undo(s, tree, cid, ran)
        if isinstance(e, OSError) and not isinstance(e, Failed):
            raise Failed(f"{e.filename or ''}: {e.strerror}".lstrip(": ")) from None
        raise Failed(str(e)) from None
    return 0


def _undo(s: Settings, tree: Tree, cid: str, ran: bool = True) -> None:
    """A failed ``create`` leaves nothing: the processes, the tree's directory,
    runc's state, the private bundle. Best effort, in that order; quiet."""
    with contextlib.suppress(TreeError):
        tree.kill(cid)
    with contextlib.suppress(TreeError):
        tree.remove(cid)
    if ran:
        with contextlib.suppress(OSError, runc.RuncMissing):
            runc.quiet(s.runc("delete", "--force", "--", cid, log=False))
    shutil.rmtree(s.private(cid), ignore_errors=True)


# -- state, delete, features, version -----------------------------------------------


def _original_bundle(s: Settings, cid: str) -> str | None:
    try:
        with open(os.path.join(s.private(cid), "bundle"), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def state(s: Settings, cid: str) -> int:
    """runc's state JSON, with the caller's bundle instead of the private copy."""
    done = runc.quiet(s.runc("state", "--", cid))
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        return done.returncode
    try:
        st = json.loads(done.stdout)
    except ValueError:
        sys.stdout.write(done.stdout)
        return 0
    bundle = _original_bundle(s, cid)
    if bundle is not None:
        st["bundle"] = bundle
    sys.stdout.write(json.dumps(st, indent=2))
    sys.stdout.flush()
    return 0


def delete(s: Settings, cid: str, force: bool) -> int:
    """containerfs's directory first (``container.kill``, ``rmdir``), then
    ``runc delete --force``, which removes runc's state and runs the poststop hooks.
    An unknown id with ``--force`` is no error (containerd deletes twice)."""
    tree = Tree(s.mount, s.parent)
    known = runc.quiet(s.runc("state", "--", cid, log=False))
    if known.returncode != 0:
        if os.path.isdir(s.private(cid)):  # a create cut short: ours to clean
            with contextlib.suppress(TreeError):
                tree.kill(cid)
                tree.remove(cid)
                shutil.rmtree(s.private(cid), ignore_errors=True)
        if force:
            return 0
        raise Failed("container does not exist")
    try:
        status = json.loads(known.stdout).get("status")
    except ValueError:
        status = None
    if status in ("running", "paused") and not force:
        raise Failed(f"cannot delete container {cid} that is not stopped: {status}")
    if status == "paused":  # a frozen task would not die of the SIGKILL
        runc.quiet(s.runc("resume", "--", cid, log=False))
    problem = None
    try:
        tree.kill(cid)
        tree.remove(cid)
    except TreeError as e:
        problem = str(e)
    status_code = runc.run(s.runc("delete", "--force", "--", cid))
    if problem is not None:  # the private dir stays: a retry cleans the tree
        raise Failed(problem)
    shutil.rmtree(s.private(cid), ignore_errors=True)
    return status_code


def features(s: Settings) -> int:
    """runc's features, and an annotation naming the front end."""
    done = runc.quiet(s.runc("features", log=False))
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        return done.returncode
    found = json.loads(done.stdout)
    notes = found.setdefault("annotations", {})
    notes[FEATURES_ANNOTATION] = f"containerfs {_version()}"
    if "org.opencontainers.runc.checkpoint.enabled" in notes:  # refused here
        notes["org.opencontainers.runc.checkpoint.enabled"] = "false"
    print(json.dumps(found, indent=4))
    return 0


def _version() -> str:
    try:
        from importlib.metadata import version as dist_version

        return dist_version("containerfs")
    except Exception:  # not installed as a distribution (a bare checkout)
        return "unknown"


def version(s: Settings) -> int:
    """Our line, then runc's own lines (podman info shows them)."""
    print(f"containerfs version {_version()} (OCI runtime front end)")
    try:
        done = runc.quiet([runc.find_runc(), "--version"])
    except runc.RuncMissing as e:
        print(str(e), file=sys.stderr)
        return 1
    sys.stdout.write(done.stdout)
    return done.returncode


def runc_main() -> int:
    """``containerfs-runc``: the console script podman's ``[engine.runtimes]`` and
    containerd's ``--runc-binary`` point at (a path, no arguments)."""
    return main(sys.argv[1:], prog=os.path.basename(sys.argv[0]) or "containerfs-runc")
