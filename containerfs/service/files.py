"""Reading and writing a container's files, dispatched by the catalogue's role.

``engine/catalog.py`` says what every file is (its role); this part holds the
one table from a role to the kernel work that reads or writes it
(:meth:`Files._tables`). The engine checks and parses a write before anything
reaches the kernel, so bad input changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from ..engine.catalog import Role
from ..engine.errors import ContainerError, InvalidInput, TooBig
from ..engine.tree import (
    ROOT_IDS,
    Container,
    FileSpec,
    format_limit,
    parse_kill,
    parse_time_offsets,
)
from ..engine.views import Knob
from ..kernel.holder import Holder
from .containers import Containers
from .listing import Listing
from .metrics import Metrics
from .persistence import Persistence
from .releases import Releases
from .runtime import Runtime, log_after_reply, where
from .tasks import Tasks

log = logging.getLogger("containerfs")

Ids = tuple[int, int]
#: How a file of a role is read: (container, file, reader's fsuid and fsgid).
Reader = Callable[[Container, FileSpec, Ids], Awaitable[str | bytes]]
#: How one is written: (container, file, text, writer's pid, writer's uid).
Writer = Callable[[Container, FileSpec, str, int, int], Awaitable[None]]

#: The longest write a control file takes: a page, as cgroupfs (kernfs's
#: ``atomic_write_len``; past it, ``E2BIG``). The kernel hands the daemon a write
#: in pieces of up to FUSE's ``max_write`` (1 MiB with libfuse 3, which sets it
#: from its buffer: far more than a page), so the first piece of any longer write
#: is itself longer than this and refused, and the kernel sends none of the rest.
WRITE_MAX = os.sysconf("SC_PAGE_SIZE")


class Files:
    """``read`` and ``write`` of every file but the directories."""

    def __init__(
        self,
        rt: Runtime,
        store: Persistence,
        containers: Containers,
        releases: Releases,
        tasks: Tasks,
    ) -> None:
        self.rt = rt
        self.store = store
        self.containers = containers
        self.releases = releases
        self.tasks = tasks
        self.listing = Listing(rt)
        self.metrics = Metrics(rt, self.listing)
        self.readers, self.writers = self._tables()
        self._told_no_one_path = False  # container.cgroup's '-' explained in the log

    async def read(self, c: Container, spec: FileSpec, reader: Ids) -> str | bytes:
        """``reader``: the opener's fsuid and fsgid (who ``namespaces`` is shown to).
        Bytes from a reader that keeps its text encoded (``metrics``)."""
        return await self.readers[spec.role](c, spec, reader)

    async def write(
        self, c: Container, spec: FileSpec, data: bytes, writer_pid: int, writer_uid: int
    ) -> None:
        """``writer_pid``/``writer_uid``: the opener's (as cgroupfs judges a write by
        the opener's credentials)."""
        try:  # as refusals_logged, with the text of the log line made only for one
            if len(data) > WRITE_MAX:
                raise TooBig(f"{len(data)} bytes or more; a write takes at most {WRITE_MAX}")
            text = data.decode()  # UnicodeDecodeError is a ValueError: EINVAL
            writer = self.writers.get(spec.role)
            if writer is None:
                raise InvalidInput(f"{spec.name}: read-only")
            try:
                await writer(c, spec, text, writer_pid, writer_uid)
            finally:  # whatever it changed, metrics reads anew (even a half-done write)
                self.metrics.touched(c, everything=spec.role in (Role.TASKS, Role.KILL))
        except (ContainerError, OSError, ValueError) as exc:
            shown = data[:80].decode(errors="replace").strip()
            log.warning("%s: refused: %s", f"{where(c, spec.name)} <- {shown!r}", exc)
            raise

    def _tables(self) -> tuple[dict[Role, Reader], dict[Role, Writer]]:
        """The one table from a catalogue role (engine/catalog.py) to the kernel
        work that reads or writes such a file. A role with no writer is read-only."""
        readers: dict[Role, Reader] = {
            Role.SUBSYSTEMS: self._read_subsystems,
            Role.CONTAINER_SUBSYSTEMS: self._read_container_subsystems,
            Role.SUBTREE: self._read_subtree,
            Role.RELEASE: self._read_release,
            Role.MAX_DEPTH: self._read_limit,
            Role.MAX_DESCENDANTS: self._read_limit,
            Role.TASKS: self._read_tasks,
            Role.EVENTS: self._read_events,
            Role.ORIGIN: self._read_origin,
            Role.RELEASE_AGENT: self._read_release_agent,
            Role.NAMESPACES: self._read_namespaces,
            Role.METRICS: self._read_metrics,
            Role.INIT: self._read_init,
            Role.KILL: self._read_nothing,
            Role.CLAIM: self._read_nothing,
            Role.CGROUP_PATH: self._read_cgroup_path,
            Role.SYSCTL: self._read_sysctl,
            Role.ID_MAP: self._read_id_map,
            Role.TIME_OFFSETS: self._read_time_offsets,
            Role.CGROUP: self._read_cgroup,
            Role.VIEW: self._read_view,
            Role.INFO: self._read_info,
            Role.CGROUPNS_ROOT: self._read_cgroupns_root,
        }
        writers: dict[Role, Writer] = {
            Role.TASKS: self._write_tasks,
            Role.SUBTREE: self._write_subtree,
            Role.RELEASE: self._write_release,
            Role.MAX_DEPTH: self._write_limit,
            Role.MAX_DESCENDANTS: self._write_limit,
            Role.KILL: self._write_kill,
            Role.CLAIM: self._write_claim,
            Role.RELEASE_AGENT: self._write_release_agent,
            Role.SYSCTL: self._write_sysctl,
            Role.ID_MAP: self._write_id_map,
            Role.TIME_OFFSETS: self._write_time_offsets,
            Role.CGROUP: self._write_cgroup,
            Role.VIEW: self._write_view,
        }
        assert readers.keys() == set(Role), set(Role) - readers.keys()
        return readers, writers

    def _owner_holder(self, c: Container, spec: FileSpec) -> Holder | None:
        """The holder of the namespace a file of ``spec.kind`` shows (None: the root's)."""
        assert spec.kind is not None
        owner = c.owner(spec.kind)
        return None if owner.is_root else self.rt.holder(owner)

    # -- readers, by role ------------------------------------------------------------

    async def _read_subsystems(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return self.rt.engine.render_subsystems()

    async def _read_container_subsystems(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        # A user-namespaced container's mount namespace is made once its views
        # are bound (pin.c, "n"): `exec` must not learn the inode before.
        ready = self.rt.ready.get(c.uid)
        if ready is not None:
            await ready.wait()
        return self.rt.engine.render_container_subsystems(c)

    async def _read_subtree(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return self.rt.engine.render_subtree(c)

    async def _read_release(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return f"{c.release}\n"

    async def _read_limit(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return format_limit(c.max_depth if spec.role == Role.MAX_DEPTH else c.max_descendants)

    async def _read_tasks(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        # cgroupfs answers from memory: a worker thread would cost more.
        return "".join(f"{p}\n" for p in self.rt.cgroups.procs(c.cgpath))

    async def _read_events(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        # The root is populated: the daemon itself is in it.
        populated = True if c.is_root else self.rt.cgroups.populated(c.cgpath)
        return f"populated {int(populated)}\nreleased {c.released}\n"

    async def _read_origin(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return f"{c.origin}\n"

    async def _read_release_agent(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return f"{self.rt.release_agent}\n" if self.rt.release_agent else ""

    async def _read_namespaces(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return await self.listing.render(reader)

    async def _read_metrics(self, c: Container, spec: FileSpec, reader: Ids) -> bytes:
        return await self.metrics.render(reader)

    async def _read_init(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        holder = self.rt.holder_for(c)
        return f"{holder.pid if holder else 0}\n"

    async def _read_nothing(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        return ""  # write-only, like cgroup.kill

    async def _read_cgroup_path(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        """The one path, or ``-`` when there is none (readable all the same: every
        file is, to anyone); why is logged once."""
        try:
            return self.rt.cgroups.one_path(c.cgpath) + "\n"
        except OSError as exc:
            if not self._told_no_one_path:
                self._told_no_one_path = True
                log.warning("container.cgroup is '-': %s", exc.strerror)
            return "-\n"

    async def _read_sysctl(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        assert spec.kind is not None
        holder = self._owner_holder(c, spec)
        return await self.rt.kernel.read_sysctl(holder, spec.kind, spec.entry.key)

    async def _read_id_map(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        holder = self._owner_holder(c, spec)
        return await trio.to_thread.run_sync(self.rt.kernel.read_id_map, holder, spec.entry.key)

    async def _read_time_offsets(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        holder = self._owner_holder(c, spec)
        text = await trio.to_thread.run_sync(self.rt.kernel.time_offsets, holder)
        return "".join(" ".join(line.split()) + "\n" for line in text.splitlines())

    async def _read_cgroup(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        assert spec.kind is not None
        return self.rt.cgroups.read(c.owner(spec.kind).cgpath, spec.name)

    async def _read_view(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        knob, view = spec.entry.knob, spec.entry.view
        assert knob is not None and view is not None
        await self._reconcile(c.owner(knob.kind), knob)
        return self.rt.engine.render_view(c, knob, view)

    async def _read_info(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        holder = self._owner_holder(c, spec)
        return await self.rt.kernel.render_info(spec.entry.key, holder, self.rt.internal_pids)

    async def _read_cgroupns_root(self, c: Container, spec: FileSpec, reader: Ids) -> str:
        owner = c.owner("cgroup")
        if owner.is_root:  # the daemon's own cgroup namespace: the hierarchies' tops
            return "".join(f"{h.mount}\n" for h in self.rt.cgroups.hierarchies)
        return "".join(f"{d}\n" for d in self._cgroupns_root(owner))

    def _cgroupns_root(self, c: Container) -> list[Path]:
        """The cgroups a process inside sees as ``/``: where its holder unshared
        (``Containers._spawn_holder``)."""
        assert c.parent is not None
        return self.rt.cgroups.placement(c.cgpath, lambda kind: c.owner(kind).cgpath, leaf=False)

    async def _reconcile(self, owner: Container, knob: Knob) -> None:
        """Read the knob's kernel value; put the effective one back if the container
        changed it behind containerfs's back (see ``Engine.observe``)."""
        kernel = self.rt.kernel
        holder = None if owner.is_root else self.rt.holder(owner)
        text = await kernel.read_sysctl(holder, knob.kind, knob.sysctl)
        again = self.rt.engine.observe(owner, knob, knob.type.read(text))
        if again is not None and holder is not None:
            value = knob.type.format(again)
            try:
                await kernel.write_sysctl(holder, knob.kind, knob.sysctl, value)
            except OSError as exc:  # a read has no refusal log of its own
                log.error(
                    "%s: %s was changed inside; cannot put the effective %s back: %s",
                    where(owner),
                    knob.file,
                    value,
                    exc,
                )
                raise
            log.info(
                "%s: %s was changed inside; effective %s again", where(owner), knob.file, value
            )

    # -- writers, by role ------------------------------------------------------------

    async def _write_tasks(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        await self.tasks.write(c, text, writer_pid, writer_uid)

    async def _write_subtree(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        async with self.rt.lock:
            self.rt.engine.set_subtree(c, text)
            self.store.save(c)

    async def _write_release(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        self.rt.engine.set_release(c, text)
        self.store.save(c)
        log.info("%s <- %s", where(c, spec.name), c.release)
        await self.releases.check_release(c)  # already empty: `delete` acts now

    async def _write_limit(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        async with self.rt.lock:  # mkdirs check the limits under it
            self.rt.engine.set_limit(c, spec.role, text)
            self.store.save(c)
        log.info("%s <- %s", where(c, spec.name), text.strip()[:20])

    async def _write_kill(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        parse_kill(text)
        n = await trio.to_thread.run_sync(self.rt.cgroups.kill, c.cgpath)
        log.info("%s: killed (%d task(s))", where(c), n)

    async def _write_claim(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        await self.containers.claim(c, text, writer_pid, writer_uid)

    async def _write_release_agent(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        self.rt.release_agent = parse_agent(text)
        self.store.save()
        log.info("release_agent <- %r", self.rt.release_agent)

    def _parsed(self, c: Container, spec: FileSpec, text: str) -> str:
        """A plain control file's write, checked writable and parsed by its catalogue line."""
        self.rt.engine.check_knob_write(c, spec.name)
        assert spec.entry.parse is not None
        return spec.entry.parse(text, spec.name)

    @staticmethod
    def _written(c: Container, spec: FileSpec, text: str) -> None:
        log_after_reply("%s/%s <- %s", "/".join(c.path), spec.name, text.strip()[:80])

    async def _write_sysctl(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        value = self._parsed(c, spec, text)
        assert spec.kind is not None
        await self.rt.kernel.write_sysctl(self.rt.holder(c), spec.kind, spec.entry.key, value)
        self._written(c, spec, text)

    async def _write_id_map(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        value = self._parsed(c, spec, text)
        holder = self.rt.holder(c)
        try:
            write = self.rt.kernel.write_id_map
            await trio.to_thread.run_sync(write, holder, spec.entry.key, value)
        finally:
            await self.containers.learn_inside_root(c, holder)
        self._written(c, spec, text)

    async def _write_time_offsets(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        self.rt.engine.check_knob_write(c, spec.name)
        current = parse_time_offsets(await self._read_time_offsets(c, spec, ROOT_IDS), {})
        new = parse_time_offsets(text, current)
        holder = self.rt.holder(c)
        await trio.to_thread.run_sync(
            self.rt.kernel.set_time_offsets, holder, new["monotonic"], new["boottime"]
        )
        self._written(c, spec, text)

    async def _write_cgroup(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        self.rt.engine.check_knob_write(c, spec.name)
        cgroups = self.rt.cgroups
        # Inline when the kernel only stores the value, on a worker thread when it
        # may work first (memory limits reclaim, cpusets move tasks and pages).
        if cgroups.write_may_work(spec.name):
            await trio.to_thread.run_sync(cgroups.write, c.cgpath, spec.name, text)
        else:
            cgroups.write(c.cgpath, spec.name, text)
        self._written(c, spec, text)

    async def _write_view(
        self, c: Container, spec: FileSpec, text: str, writer_pid: int, writer_uid: int
    ) -> None:
        """Parse, have the kernel enforce the new effective value, then commit and
        journal it, all before the write is answered. Nothing here waits when the
        lock is free and the sysctl's fd is kept (``Kernel.write_sysctl``), so the
        handler runs through without handing the loop to another request."""
        rt, kernel = self.rt, self.rt.kernel
        lock = rt.lock
        try:  # no checkpoint when free (trio's acquire() always yields once)
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            knob, state = rt.engine.plan_view_write(c, spec.name, text)
            value = knob.type.format(state.effective(knob.type))
            old = rt.engine.render_view(c, knob, "effective").strip()
            try:
                await kernel.write_sysctl(rt.holder(c), knob.kind, knob.sysctl, value)
            except OSError:
                # The kernel may have stored part of a refused value (kernel.sem
                # restores only SEMMNI): put the effective value back.
                with contextlib.suppress(OSError):
                    await kernel.write_sysctl(rt.holder(c), knob.kind, knob.sysctl, old)
                raise
            rt.engine.commit_view(c, knob, state)
            self.store.save_view(c.owner(knob.kind), knob.file, state)
        finally:
            lock.release()
        log_after_reply("%s <- %s (effective %s)", where(c, spec.name), text.strip()[:80], value)


def parse_agent(text: str) -> str:
    """The release agent: an absolute path to an executable regular file, or empty
    for none. ``access(X_OK)`` alone passes a directory for root, which then
    failed at each release instead of here."""
    path = text.strip()
    if path and (not path.startswith("/") or any(ch.isspace() for ch in path)):
        raise InvalidInput("release_agent must be an absolute path (no spaces), or empty")
    if not path:
        return path
    shown = path if len(path) <= 80 else f"{path[:80]}... ({len(path)} chars)"
    try:
        mode = os.stat(path).st_mode  # through symlinks, as exec goes
    except OSError as exc:
        raise InvalidInput(f"release_agent {shown}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise InvalidInput(f"release_agent {shown}: not a regular file")
    if not os.access(path, os.X_OK):  # for root: some execute bit is set
        raise InvalidInput(f"release_agent {shown}: not executable")
    return path
