"""The steps of one move into namespaces: check, send the fds, setns per thread, verify, undo.

One part of moving a process into namespaces (:mod:`inject`, whose docstring
tells the whole story).  A :class:`Move` drives the other parts in order:
the :class:`ptrace_session.Session` stops every thread, the
:class:`ptrace_call.Injector` runs calls in them, the
:class:`inject_fds.Transfer` gets the namespaces in; the move itself decides
which threads must change, refuses what cannot work before anything changes,
makes each thread ``setns``, checks the result while the threads are still
stopped, and on failure puts every thread back before letting go.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable, Mapping, Sequence

from containerfs.kernel import procfs
from containerfs.kernel import sys as ksys
from containerfs.kernel.inject_fds import Table, Transfer
from containerfs.kernel.ptrace_call import (
    NR_CHDIR,
    NR_CHROOT,
    NR_FCHDIR,
    NR_SETNS,
    USER_CS_64,
    Injector,
    strerror,
)
from containerfs.kernel.ptrace_session import Session, Tracee
from containerfs.nskinds import MOVABLE_KINDS


class Move:
    """One move_into call; all of it on a single (fresh) thread."""

    def __init__(
        self, pid: int, pidfd: int, targets: Mapping[str, int], dest_fds: Mapping[str, int]
    ) -> None:
        self.pid = pid
        self.targets = dict(targets)
        self.dest_fds = dict(dest_fds)
        self.session = Session(pid, pidfd)
        self.calls = Injector(self.session)
        self.fds = Transfer(self.session, self.calls)
        # Called when the move fails, before the threads are let go (``move_into``).
        self.on_failed: Callable[[], None] | None = None

    @property
    def threads(self) -> dict[int, Tracee]:
        """The threads the session holds."""
        return self.session.threads

    # -- the whole move ----------------------------------------------------------

    def run(self, timeout: float) -> None:
        """Move every thread, or none; raise why not (the process as it was)."""
        kinds = [k for k in MOVABLE_KINDS if k in self.targets]
        try:
            self.session.stop_all(timeout)
            signal.pidfd_send_signal(self.session.pidfd, 0)  # the tids were this process's
            for th in self.threads.values():
                th.origin = {k: procfs.thread_ns_inode(self.pid, th.tid, k) for k in kinds}
            todo = [
                th
                for th in self.threads.values()
                if any(th.origin[k] != self.targets[k] for k in kinds)
            ]
            if not todo:
                return
            self._preflight(todo, kinds)
            mnt = "mnt" in kinds and any(th.origin["mnt"] != self.targets["mnt"] for th in todo)
            if mnt:
                self.fds.cwd_path = _cwd_path(self.pid)
            self.calls.open_memory()
            self.calls.load_seccomp()
            self.session.guard_on()
            self.calls.find_code()
            self.fds.open_origins(kinds, self.targets, self.dest_fds, with_dirs=mnt)
            try:
                for th in todo:
                    self.move_thread(th, kinds)
                self.verify(kinds)
            except BaseException as exc:
                if self.session.died():
                    raise
                problems = self.rollback()
                problems += self._not_back(kinds)
                if problems and isinstance(exc, OSError):
                    raise OSError(
                        exc.errno,
                        f"{exc.strerror}; rolling back failed, the process is half-moved: "
                        + "; ".join(problems),
                    ) from exc
                raise
        except BaseException as exc:
            if self.on_failed is not None:
                on_failed, self.on_failed = self.on_failed, None
                try:
                    on_failed()
                except Exception as hook:  # noqa: BLE001 - the move's error is the one to raise
                    exc.add_note(f"undoing the caller's part failed: {hook}")
            problems = self.release()
            if self.session.dying and isinstance(exc, OSError):
                raise ProcessLookupError(
                    errno.ESRCH, f"process {self.pid} exited (killed?) while it was being moved"
                ) from exc
            if problems:
                exc.add_note(f"process {self.pid} not fully restored: " + "; ".join(problems))
            raise
        problems = self.release()
        if self.session.dying:
            raise ProcessLookupError(
                errno.ESRCH, f"process {self.pid} exited (killed?) while it was being moved"
            )
        if problems:
            raise OSError(
                errno.EIO, f"process {self.pid} not fully restored: " + "; ".join(problems)
            )

    def _preflight(self, todo: Sequence[Tracee], kinds: Sequence[str]) -> None:
        """Refuse, before anything changes, what the kernel would refuse half-way."""
        for th in self.threads.values():
            assert th.saved is not None
            if th.saved.cs != USER_CS_64:
                raise OSError(errno.EOPNOTSUPP, f"process {self.pid} is not a 64-bit process")
        moves_mnt = "mnt" in kinds and any(th.origin["mnt"] != self.targets["mnt"] for th in todo)
        if moves_mnt and len(self.threads) > 1:
            raise OSError(
                errno.EINVAL,
                f"process {self.pid} has {len(self.threads)} threads: only a "
                "single-threaded process can change its mount namespace",
            )
        for th in todo:
            st = procfs.read_status(f"/proc/{self.pid}/task/{th.tid}/status")
            for cap, name in (
                (ksys.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
                (ksys.CAP_SYS_CHROOT, "CAP_SYS_CHROOT"),
            ):
                if (cap == ksys.CAP_SYS_ADMIN or moves_mnt) and not procfs.has_cap(st, cap):
                    raise OSError(
                        errno.EPERM,
                        f"process {self.pid} lacks {name} (thread {th.tid}); it would "
                        "have to call setns itself",
                    )

    # -- moving ------------------------------------------------------------------

    def move_thread(self, th: Tracee, kinds: Sequence[str]) -> None:
        """Make thread ``th`` join each target namespace it is not in yet."""
        needs = [k for k in kinds if th.origin[k] != self.targets[k]]
        if not needs:
            return
        table = self.fds.table_for(th)
        for kind in needs:
            r = self.calls.syscall(
                th, NR_SETNS, table.fds[("dest", kind, self.targets[kind])], ksys.NS_FLAGS[kind]
            )
            if r < 0:
                raise OSError(-r, self._setns_failure(th, kind, -r))
            th.moved.append(kind)
            path_at = self.fds.path_at
            if kind == "mnt" and path_at and self.calls.allowed(th, NR_CHDIR, path_at):
                self.calls.syscall(th, NR_CHDIR, path_at)  # best effort: else stays at "/"

    def _setns_failure(self, th: Tracee, kind: str, err: int) -> str:
        why = f"thread {th.tid} of process {self.pid} could not join the {kind} namespace"
        hint = ""
        if err == errno.EPERM:
            hint = (
                ": it lacks CAP_SYS_ADMIN over that namespace (the process calls setns "
                "itself), or a seccomp filter refused"
            )
        elif err == errno.EINVAL and kind == "mnt":
            hint = ": it shares its filesystem information (CLONE_FS) with another process"
        return f"{why} ({strerror(err)}){hint}"

    def verify(self, kinds: Sequence[str]) -> None:
        """Check from /proc, threads still stopped, that every thread is where it should be."""
        if sorted(self.session.live_tids()) != sorted(self.threads):
            raise OSError(errno.EAGAIN, f"the threads of process {self.pid} changed meanwhile")
        for th in self.threads.values():
            for kind in kinds:
                got = procfs.thread_ns_inode(self.pid, th.tid, kind)
                if got != self.targets[kind]:
                    raise OSError(
                        errno.EIO,
                        f"thread {th.tid} of process {self.pid} is in {kind} namespace "
                        f"{got}, not {self.targets[kind]}, after the move",
                    )

    # -- undoing -----------------------------------------------------------------

    def rollback(self) -> list[str]:
        """Put every moved thread back; what could not be undone."""
        problems: list[str] = []
        for th in reversed(list(self.threads.values())):
            if not th.moved:
                continue
            if th.saved is None:
                problems.append(f"thread {th.tid} is stuck in a system call, still moved")
                continue
            table = self.fds.table_seen_by(th)
            for kind in reversed(th.moved):
                key = ("orig", kind, th.origin[kind])
                try:
                    if table is None or key not in table.fds:
                        raise OSError(errno.EBADF, "no fd on the original namespace")
                    r = self.calls.syscall(th, NR_SETNS, table.fds[key], ksys.NS_FLAGS[kind])
                    if r < 0:
                        raise OSError(-r, strerror(-r))
                    if kind == "mnt":
                        self._restore_dirs(th, table)
                except OSError as exc:
                    problems.append(
                        f"thread {th.tid} stays in the new {kind} namespace ({exc.strerror})"
                    )
                    continue
                th.moved.remove(kind)
        return problems

    def _restore_dirs(self, th: Tracee, table: Table) -> None:
        root, cwd = table.fds.get(("root", "", 0)), table.fds.get(("cwd", "", 0))
        if root is None or cwd is None:
            raise OSError(errno.EBADF, "no fd on the original root and cwd")
        if _stat_id(f"/proc/{self.pid}/root") != self.fds.own_ids[("root", "", 0)]:
            for nr, arg in ((NR_FCHDIR, root), (NR_CHROOT, self.fds.dot_at)):
                r = self.calls.syscall(th, nr, arg)
                if r < 0:
                    raise OSError(-r, f"cannot restore its root: {strerror(-r)}")
        r = self.calls.syscall(th, NR_FCHDIR, cwd)
        if r < 0:
            raise OSError(-r, f"cannot restore its current directory: {strerror(-r)}")

    def _not_back(self, kinds: Sequence[str]) -> list[str]:
        """Threads that are not in their original namespaces (after a rollback)."""
        problems = []
        for th in self.threads.values():
            for kind in kinds:
                try:
                    got = procfs.thread_ns_inode(self.pid, th.tid, kind)
                except OSError:
                    continue
                if got != th.origin[kind] and kind not in th.moved:
                    problems.append(f"thread {th.tid} is in {kind} namespace {got}")
        return problems

    def release(self) -> list[str]:
        """Close what we gave the target, restore memory and registers, detach."""
        problems: list[str] = []
        if self.session.died():  # killed: nothing left to restore (our thread's exit lets go)
            self.session.dying = True
            self.fds.tables = []
            self.calls.forget()
            self.threads.clear()
        try:
            self.fds.close_in_target(problems)
            self.calls.unmap(problems)
        except ProcessLookupError:
            self.session.dying = True  # killed meanwhile: the rest does not matter any more
            self.threads.clear()
            self.calls.forget()
        self.calls.restore_memory(problems)
        self.session.let_go(problems)
        self.calls.close()
        self.fds.close_own()
        return problems


def _stat_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _cwd_path(pid: int) -> bytes | None:
    """The process's current directory as a path it can look up again, or None.

    Only when it has our root in our mount namespace (the path is then the
    same for it) and the directory still exists.
    """
    try:
        if _stat_id(f"/proc/{pid}/root") != _stat_id("/proc/self/root") or (
            os.stat(f"/proc/{pid}/ns/mnt").st_ino != os.stat("/proc/self/ns/mnt").st_ino
        ):
            return None
        path = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
    if not path.startswith("/") or path.endswith(" (deleted)") or len(path) >= 4096:
        return None
    return os.fsencode(path)
