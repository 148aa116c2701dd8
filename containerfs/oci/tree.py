"""The containerfs side of an OCI container: its directory ``PARENT/ID`` in a mounted
containerfs, made before runc runs and removed before runc deletes its state.

Only files of the mount are read and written, as a user would with ``mkdir`` and
``echo``; the daemon does the kernel work (docs/design.md, "OCI runtime front end").

- The parent (``oci`` by default) shares every namespace of the root (runc makes
  the namespaces of each container as children of the host's, so the pid and user
  namespaces of a parent of its own could not contain them) and hands its children
  every available controller (``container.subtree``): ``mkdir PARENT/ID`` makes a
  container that owns cgroups and no namespace, and its namespaces come from runc,
  by the claim.
- ``container.claim``: the init's pid, written once runc has made it; the daemon
  makes the container own each namespace of that process that differs from its own,
  binds the knob views, and answers when done.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

_SUBSYSTEMS = "subsystems"
_CONTAINER_SUBSYSTEMS = "container.subsystems"
_SUBTREE = "container.subtree"
_CLAIM = "container.claim"
_CGROUP = "container.cgroup"
_KILL = "container.kill"

#: How long ``rmdir`` is tried again while the kernel still counts the last tasks.
RMDIR_TIMEOUT = 2.0


class TreeError(Exception):
    """Something of the mount refused the front end; the message says what and why."""


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise TreeError(f"cannot read {path}: {e.strerror}") from None


def _write(path: Path, text: str) -> None:
    """One ``write`` of ``text``, as ``echo`` does; the daemon answers with the outcome."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise TreeError(f"cannot open {path}: {e.strerror}") from None
    try:
        os.write(fd, text.encode())
    except OSError as e:
        raise TreeError(f"{path} <- {text.strip()!r}: {e.strerror}") from None
    finally:
        os.close(fd)


def parse_subsystems(text: str) -> tuple[list[str], list[str]]:
    """(namespace kinds, available controllers) from the root's ``subsystems``
    (``name class enter create release available`` lines)."""
    namespaces, controllers = [], []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        if fields[1] == "namespace":
            namespaces.append(fields[0])
        elif fields[1] == "controller" and fields[5] == "yes":
            controllers.append(fields[0])
    return namespaces, controllers


def parse_container_subsystems(text: str) -> dict[str, tuple[bool, str]]:
    """kind -> (owned, id) from a ``container.subsystems`` file."""
    out = {}
    for line in text.splitlines():
        fields = line.split(maxsplit=2)
        if len(fields) == 3:
            out[fields[0]] = (fields[1] == "own", fields[2])
    return out


def one_cgroup_path(owned: dict[str, tuple[bool, str]], controllers: list[str]) -> str:
    """The container's cgroup path, the same for every controller it owns: runc 1.1
    takes one ``cgroupsPath`` for all hierarchies."""
    paths = {owned[c][1] for c in controllers if c in owned and owned[c][0]}
    if not paths:
        raise TreeError("the container owns no cgroup controller")
    if len(paths) > 1:
        raise TreeError(
            "the container's cgroups are not at one path in every hierarchy "
            f"({', '.join(sorted(paths))}); runc takes one cgroupsPath: start the "
            "daemon in cgroups at the same path in each hierarchy"
        )
    return paths.pop()


class Tree:
    """``PARENT`` in the containerfs mounted at ``mount``."""

    def __init__(self, mount: str, parent: str) -> None:
        self.mount = Path(mount)
        rel = parent.strip("/")
        if not rel or any(p in ("", ".", "..") for p in rel.split("/")):
            raise TreeError(f"--parent {parent!r}: a container path below the mount's root")
        self.rel = rel
        self.parent = self.mount / rel
        self._kinds: tuple[list[str], list[str]] | None = None

    def dir(self, cid: str) -> Path:
        return self.parent / cid

    def name(self, cid: str) -> str:
        """The container's path in the tree, as the daemon's log shows it."""
        return f"/{self.rel}/{cid}"

    @property
    def kinds(self) -> tuple[list[str], list[str]]:
        """(namespace kinds, available controllers) of the mount."""
        if self._kinds is None:
            if not (self.mount / _SUBSYSTEMS).is_file():
                raise TreeError(f"no containerfs is mounted at {self.mount}")
            self._kinds = parse_subsystems(_read(self.mount / _SUBSYSTEMS))
        return self._kinds

    def offered(self) -> frozenset[str]:
        """The names in the root directory (which knob views this kernel has)."""
        try:
            return frozenset(os.listdir(self.mount))
        except OSError as e:
            raise TreeError(f"cannot list {self.mount}: {e.strerror}") from None

    # -- the parent -------------------------------------------------------------------

    def _mkdir_sharing(self, d: Path) -> None:
        """``mkdir d`` so that it shares every namespace: its parent's
        ``container.subtree`` says what a new child owns, so the namespace kinds are
        taken out of it for the one ``mkdir`` and put back right after."""
        namespaces, _ = self.kinds
        subtree = d.parent / _SUBTREE
        listed = [k for k in _read(subtree).split() if k in namespaces]
        if listed:
            _write(subtree, " ".join(f"-{k}" for k in listed) + "\n")
        try:
            d.mkdir()
        except FileExistsError:
            pass  # another front end made it meanwhile
        except OSError as e:
            raise TreeError(f"mkdir {d}: {e.strerror}") from None
        finally:
            if listed:
                _write(subtree, " ".join(f"+{k}" for k in listed) + "\n")

    def ensure_parent(self) -> None:
        """Make the parent if it is missing; check it shares the root's namespaces,
        and have its children own every available controller and no namespace."""
        namespaces, controllers = self.kinds
        made = self.mount
        for part in self.rel.split("/"):
            made = made / part
            if not made.is_dir():
                self._mkdir_sharing(made)
        root = parse_container_subsystems(_read(self.mount / _CONTAINER_SUBSYSTEMS))
        mine = parse_container_subsystems(_read(self.parent / _CONTAINER_SUBSYSTEMS))
        apart = [k for k in namespaces if k in mine and mine[k][1] != root.get(k, (0, ""))[1]]
        if apart:
            raise TreeError(
                f"{self.parent} has {' '.join(apart)} namespaces of its own; OCI "
                "containers need a parent that shares the namespaces of the root"
            )
        have = _read(self.parent / _SUBTREE).split()
        change = [f"-{k}" for k in have if k in namespaces]
        change += [f"+{c}" for c in controllers if c not in have]
        if change:
            _write(self.parent / _SUBTREE, " ".join(change) + "\n")

    # -- one container ----------------------------------------------------------------

    def exists(self, cid: str) -> bool:
        return self.dir(cid).is_dir()

    def make(self, cid: str) -> None:
        try:
            self.dir(cid).mkdir()
        except FileExistsError:
            raise TreeError(f"container with id exists: {cid}") from None
        except OSError as e:
            raise TreeError(f"mkdir {self.dir(cid)}: {e.strerror}") from None

    def cgroups_path(self, cid: str) -> str:
        """runc's ``linux.cgroupsPath``: ``container.cgroup``, the container's one
        absolute path in every hierarchy (``-`` where the daemon's cgroups are at
        different paths; then ``container.subsystems`` names them in the error)."""
        d = self.dir(cid)
        path = _read(d / _CGROUP).strip()
        if path.startswith("/"):
            return path
        _, controllers = self.kinds
        owned = parse_container_subsystems(_read(d / _CONTAINER_SUBSYSTEMS))
        return one_cgroup_path(owned, controllers)  # raises, naming the paths

    def claim(self, cid: str, pid: int) -> None:
        """The container takes the namespaces of ``pid`` (runc's init)."""
        try:
            _write(self.dir(cid) / _CLAIM, f"{pid}\n")
        except TreeError as e:
            raise TreeError(
                f"claim of the namespaces of pid {pid} by {self.name(cid)}: {e}"
            ) from None

    def write_view(self, cid: str, name: str, value: str) -> None:
        _write(self.dir(cid) / name, value + "\n")

    def kill(self, cid: str) -> None:
        """SIGKILL every task (``container.kill`` returns once they are gone); a
        container already removed (a concurrent ``delete``: podman's own and its
        cleanup's) is no error."""
        try:
            _write(self.dir(cid) / _KILL, "1\n")
        except TreeError:
            if self.exists(cid):
                raise

    def remove(self, cid: str) -> None:
        """``rmdir``, tried again for a moment while the last tasks are on their way out."""
        deadline = time.monotonic() + RMDIR_TIMEOUT
        while True:
            try:
                self.dir(cid).rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise TreeError(f"rmdir {self.dir(cid)}: {e.strerror}") from None
                time.sleep(0.01)
