"""Starting again after a stop or a crash: take the saved tree back, clean up the rest.

Containers outlive the daemon: their holders keep the namespaces, their
cgroups stay, and ``state.json`` (written after every change) says what the
tree was. A new daemon with the same state dir

1. puts every saved container back whose holder is still the same process in
   the same namespaces (checked by inode through a pidfd, so a reused pid is
   refused) and whose cgroup is still there; a container that lost either is
   dropped, with its subtree;
2. removes what no saved container accounts for: holders in ``.pins`` and
   cgroup directories left by a ``mkdir``/``rmdir`` the crash cut short (a
   directory with processes in it is kept and reported, never emptied by
   force);
3. lets the caller re-arm release handling and catch up on containers that
   emptied while no daemon was watching.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import statefile
from .engine import lifecycle
from .engine.errors import ContainerError
from .engine.kinds import NAMESPACE_NAMES, Origin
from .engine.tree import Container

if TYPE_CHECKING:
    from .service.runtime import Runtime

log = logging.getLogger("containerfs")


def load(state_dir: Path) -> dict[str, Any] | None:
    """The saved state (``statefile.py``), or None when there is none (a first start)."""
    try:
        return statefile.load(state_dir)
    except ValueError as exc:
        raise SystemExit(f"containerfs: {state_dir}/state.json is damaged: {exc}") from None


def adopt(rt: Runtime, state: dict[str, Any]) -> None:
    """Put the saved tree back (step 1), then sweep leftovers (step 2)."""
    records = state["containers"]
    rt.release_agent = str(state.get("release_agent", ""))
    # Records come parents first: one below a dropped container has its parent here
    # (a look at its parent only, so the check costs the same at any depth).
    dropped: set[tuple[str, ...]] = set()
    for rec in records:
        path = tuple(rec.get("path", ()))
        if path and path[:-1] in dropped:
            dropped.add(path)
            continue  # below a dropped container
        try:
            c = lifecycle.restore(rt.engine, rec)
        except (ContainerError, ValueError, KeyError, TypeError) as exc:
            log.error("state: cannot restore %s: %s", "/".join(path) or "/", exc)
            if path:  # the root's record: the rest may still fit the default root
                dropped.add(path)
            continue
        if c.is_root:
            continue
        if c.origin == Origin.OCI:  # its processes are in its directory (no .tasks)
            rt.cgroups.direct.add(c.cgpath)
        why = _check(rt, c, rec)
        if why is not None:
            log.warning("state: dropping %s: %s", "/".join(path), why)
            _drop(rt, c)
            dropped.add(path)
    finish_moves(rt, state.get("moving", []))
    sweep(rt)
    n = sum(1 for _ in rt.engine.root.walk()) - 1
    log.info("took over %d container(s) from %s", n, rt.state_dir)


def finish_moves(rt: Runtime, moving: list[dict[str, Any]]) -> None:
    """Undo the ``tasks`` moves a killed daemon left half done.

    The cgroups move first, then the namespaces (``service/tasks.py``). A process
    that is in its new cgroups but not all of its new namespaces goes back to
    the cgroups it came from, as a refused move would have left it. One whose
    namespaces all moved keeps the move. The process must still be the same
    one (pid and start time), else nothing is touched.
    """
    for move in moving:
        try:
            pid, start = int(move["pid"]), int(move["start"])
            targets = {str(k): int(v) for k, v in move["targets"].items()}
            if rt.kernel.start_time(pid) != start:
                continue  # gone, and the pid reused
            inodes = rt.kernel.process_inodes(pid)
            if all(inodes.get(k) == ino for k, ino in targets.items()):
                continue  # it got there: the move is complete
            rt.cgroups.put_back_recorded(pid, move["before"])
            log.warning(
                "state: process %d was being moved into %s when the daemon stopped: moved back",
                pid,
                "/".join(move.get("into", ())) or "/",
            )
        except (ProcessLookupError, FileNotFoundError):
            continue  # gone: nothing to undo
        except (KeyError, TypeError, ValueError, OSError) as exc:
            log.error("state: cannot undo an unfinished move %r: %s", move, exc)


def _check(rt: Runtime, c: Container, rec: dict[str, Any]) -> str | None:
    """Attach the container's holder and check its cgroup; why it cannot be kept, if so."""
    own_ns = {k: int(c.ids[k]) for k in c.owned if k in NAMESPACE_NAMES and k in c.ids}
    if own_ns:
        pid = rec.get("holder")
        if not isinstance(pid, int):
            return "no holder recorded"
        try:
            holder = rt.kernel.attach_holder(pid, own_ns)
        except OSError as exc:
            if c.origin == Origin.OCI:
                # Its init exited (and the holder with its pid namespace): an OCI
                # container stays until its runtime's delete, namespaces or not.
                log.info("state: %s: its init has exited", "/".join(c.path))
                return None if rt.cgroups.events_file(c.cgpath).exists() else "its cgroup is gone"
            return f"holder {pid}: {exc.strerror or exc}"
        rt.holders[c.uid] = holder
    if not rt.cgroups.events_file(c.cgpath).exists():
        return "its cgroup is gone"
    return None


def _drop(rt: Runtime, c: Container) -> None:
    holder = rt.holders.pop(c.uid, None)
    if holder is not None:
        holder.close()  # the sweep kills it: no container accounts for it now
    rt.engine.commit_rmdir(c)


def sweep(rt: Runtime) -> None:
    """Remove holders and cgroup directories that no container accounts for."""
    keep = {h.pid for h in rt.holders.values()}
    for pid in rt.cgroups.pin_pids():
        if pid not in keep and rt.kernel.kill_stray_holder(pid):
            log.info("killed leftover namespace holder %d", pid)
    known = {c.cgpath for c in rt.engine.root.walk()}
    extra = sorted(rt.cgroups.container_dirs() - known, key=len, reverse=True)
    for path in extra:
        try:
            _remove_leftover(rt, path, keep)
            log.info("removed leftover cgroups of %s", "/".join(path))
        except OSError as exc:
            if any(known_path[: len(path)] == path for known_path in known):
                continue  # an ancestor of a kept container (v1 pass-through)
            log.warning("leftover cgroups of %s stay: %s", "/".join(path), exc)


def _remove_leftover(rt: Runtime, path: tuple[str, ...], keep: set[int]) -> None:
    """Remove the cgroups of a half-made container, killing the holder inside.

    A holder may still sit there (it is placed there to unshare a cgroup
    namespace), or be about to: a crash between fork and exec leaves a copy
    of the daemon that becomes a pin, finds its daemon gone and exits. So a
    busy directory is tried again for a second before it is left alone.
    """
    for attempt in range(20):
        with contextlib.suppress(OSError):
            for pid in rt.cgroups.procs_anywhere(path):
                if pid not in keep and rt.kernel.kill_stray_holder(pid):
                    log.info("killed leftover namespace holder %d", pid)
        try:
            rt.cgroups.remove(path)
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or attempt == 19:
                raise
            time.sleep(0.05)
