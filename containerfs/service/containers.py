"""Making and removing containers: mkdir, rmdir, rename, chown, and the views' binds.

A mkdir is planned by the engine (so bad input changes nothing), carried out on
the kernel (cgroups first, then a namespace holder), then committed to the
engine. Kernel work that blocks runs on worker threads.
"""

from __future__ import annotations

import errno
import logging
import os

import trio

from ..engine import lifecycle
from ..engine.errors import TryAgain
from ..engine.kinds import NAMESPACE_NAMES, KindClass, Origin
from ..engine.tree import ROOT_IDS, Container, MkdirPlan, check_not_internal, parse_pid
from ..kernel.holder import Holder
from .netnames import NetNames
from .persistence import Persistence
from .runtime import Runtime, refusals_logged, where

log = logging.getLogger("containerfs")

#: Seconds a mkdir waits for its parent's views to be bound.
BIND_WAIT = 10.0


class Containers:
    """The containers' own lifetime, from mkdir to rmdir."""

    def __init__(self, rt: Runtime, store: Persistence) -> None:
        self.rt = rt
        self.store = store
        self.names = NetNames(rt)  # their ip netns names

    # -- mkdir -----------------------------------------------------------------------

    async def mkdir(
        self, parent: Container, name: str, owner: tuple[int, int] = ROOT_IDS
    ) -> Container:
        """``owner``: the maker's (uid, gid); the new container is wholly theirs."""
        with refusals_logged(f"mkdir {where(parent, name)!r}"):
            return await self._mkdir(parent, name, owner)

    async def _mkdir(self, parent: Container, name: str, owner: tuple[int, int]) -> Container:
        rt = self.rt
        # A new parent's views may still be on their way in (its holder may not be in
        # its final mount namespace yet, pin.c "n"): a holder made now would join the
        # parent's namespaces as they are. Not under the lock (the binding needs
        # none); bounded, should a binding ever hang.
        ready = rt.ready.get(parent.uid)
        if ready is not None:
            with trio.move_on_after(BIND_WAIT) as waited:
                await ready.wait()
            if waited.cancelled_caught:
                log.warning("mkdir %s: %s's views still not bound", name, where(parent))
        async with rt.lock:
            if parent.removed:  # while this request waited for the lock
                raise OSError(errno.ENOENT, f"{where(parent)}: no longer exists")
            plan = rt.engine.plan_mkdir(parent, name, owner)
            try:
                self.check_holder_room(plan)
                return await self.make(plan)
            finally:
                rt.engine.abort_mkdir(plan)

    def check_holder_room(self, plan: MkdirPlan) -> None:
        """Charge the holder a planned container needs to its ancestors' ``pids.max``.

        Holders live outside every container's cgroups (they are no tasks and keep no
        container populated), so the kernel counts them nowhere: a delegated user
        could make a holder per container past any ``pids.max``. So a mkdir that
        needs one is refused (EAGAIN, as the kernel refuses a fork past
        ``pids.max``) when, in an ancestor with a ``pids.max`` of its own, the
        tasks of its subtree (``pids.current``) plus the holders there would pass
        it. The root's is the host's cgroup, which counts the holders itself.
        """
        if not any(self.rt.engine.kinds[k].cls == KindClass.NAMESPACE for k in plan.owned):
            return
        self._check_holder_room_from(plan.parent)

    def _check_holder_room_from(self, node: Container | None) -> None:
        """``check_holder_room`` for a holder charged to ``node`` and its ancestors."""
        while node is not None and not node.is_root:
            if "pids" in node.owned:
                self._check_pids_room(node)
            node = node.parent

    def _check_pids_room(self, c: Container) -> None:
        cgroups = self.rt.cgroups
        try:
            text = cgroups.read(c.cgpath, "pids.max").strip()
            if text == "max":
                return
            limit = int(text)
            current = int(cgroups.read(c.cgpath, "pids.current"))
        except (OSError, ValueError) as exc:
            log.warning("%s: cannot read its pids.max: %s", where(c), exc)
            return
        holders = sum(1 for d in c.walk() if d.uid in self.rt.holders)
        if current + holders + 1 > limit:
            raise TryAgain(
                f"{where(c)}: pids.max is {limit}, with {current} task(s) and"
                f" {holders} namespace holder(s) in its subtree"
            )

    async def make(
        self,
        plan: MkdirPlan,
        origin: Origin = Origin.MKDIR,
        join_fds: dict[str, int] | None = None,
    ) -> Container:
        """Make the kernel objects of a planned container, then commit it.

        ``join_fds`` (clone discovery): nsfs fds of namespaces a process made
        itself; the holder joins them instead of unsharing new ones.
        """
        rt = self.rt
        path = (*plan.parent.path, plan.name)
        cgpath = plan.cgpath
        own_ns = frozenset(k for k in plan.owned if rt.engine.kinds[k].cls == KindClass.NAMESPACE)
        own_cg = plan.owned - own_ns
        ids: dict[str, str] = {k: rt.cgroups.cgroup_path(cgpath, k) for k in own_cg}

        def kernel_objects() -> Holder | None:
            # Cgroups, then the holder, on one worker thread: a hop each cost ~0.2 ms.
            rt.cgroups.create(cgpath, own_cg)
            try:
                if not own_ns:
                    return None
                made = self._spawn_holder(plan.parent, cgpath, plan.owned, join_fds or {})
                if "net" in own_ns:  # its ip netns name, before the mkdir is answered
                    self.names.add_path(path, made.pid, made.inodes["net"])
                return made
            except BaseException:
                try:
                    rt.cgroups.remove(cgpath)
                except OSError as exc:
                    log.error("mkdir %s failed and its cgroups stay: %s", "/".join(path), exc)
                raise

        holder = await trio.to_thread.run_sync(kernel_objects)
        if holder is not None:
            ids |= {k: str(holder.inodes[k]) for k in own_ns}
        child = rt.engine.commit_mkdir(plan, ids, origin)
        self.watch(child)
        if holder is not None:
            rt.holders[child.uid] = holder
            await self._init_views(child, holder)
            # A clone's mount namespace is its maker's: nothing is bound into it.
            if "mnt" in plan.owned and rt.nursery is not None and origin == Origin.MKDIR:
                # Not here: mkdir holds the parent directory's lock, and the bind
                # mount's source is a path below it. ``Tasks`` waits for this.
                rt.ready[child.uid] = trio.Event()
                rt.nursery.start_soon(self.bind_internal_views, child, holder)
        log.info(
            "%s %s: own %s",
            "mkdir" if origin == Origin.MKDIR else "found",
            "/".join(path),
            " ".join(sorted(plan.owned)) or "-",
        )
        self.store.save(child)
        return child

    def _spawn_holder(
        self,
        parent: Container,
        path: tuple[str, ...],
        owned: frozenset[str],
        join_fds: dict[str, int],
    ) -> Holder:
        """Start the holder of a new container's namespaces (blocking; on a worker thread).

        When the container unshares its own cgroup namespace, it is rooted at the
        container's cgroups (``cgroup_root``): the unsharing process must sit in
        them at unshare() time, since that fixes the namespace's root. The holder
        itself ends up in the holders' cgroups (``Kernel.spawn_holder``).
        """
        cgroups = self.rt.cgroups

        def owner_path(kind: str) -> tuple[str, ...]:
            return path if kind in owned else parent.owner(kind).cgpath

        unshare_cgroup = "cgroup" in owned and "cgroup" not in join_fds
        # keep in step with cgroupns_root
        root = cgroups.placement(path, owner_path, leaf=False) if unshare_cgroup else None
        return self.rt.kernel.spawn_holder(
            parent=self.rt.holder_for(parent),
            unshare=frozenset(k for k in owned if k in NAMESPACE_NAMES and k not in join_fds),
            join_fds=join_fds,
            cgroup_root=root,
        )

    def watch(self, c: Container) -> None:
        """Watch the container's cgroup.events: the kernel says when it empties."""
        if self.rt.watcher is None or c.is_root:
            return
        try:
            self.rt.watcher.add(c, self.rt.cgroups.events_file(c.cgpath))
        except OSError as exc:
            log.error("%s: cannot watch its cgroup.events: %s", where(c), exc)

    # -- the internal views ---------------------------------------------------------

    async def _init_views(self, c: Container, holder: Holder) -> None:
        knobs = self.rt.engine.knobs_of(c.owned)
        # All in one exchange with the holder: one round trip each cost ~60 us.
        texts = await self.rt.kernel.read_sysctls(holder, [(k.kind, k.sysctl) for k in knobs])
        values = {}
        for knob, text in zip(knobs, texts, strict=True):
            if text is None:
                # Older kernels (6.1) hide e.g. net.core.somaxconn from a network
                # namespace owned by a non-initial user namespace: no view here.
                log.info("%s: no %s in this instance; no view", where(c), knob.sysctl)
                continue
            values[knob.file] = knob.type.read(text)
        self.rt.engine.init_views(c, values)

    async def bind_internal_views(self, c: Container, holder: Holder, stale: bool = False) -> None:
        """Put each knob's internal view over its /proc/sys file inside the container.

        A process inside then reads and sets its own value at the usual path, while
        the kernel enforces the effective one. The holder names each target
        (``Holder.open_sysctl_target``): only a process in the container's ipc,
        net and active pid namespaces reaches the /proc/sys dentries its
        processes use. Then a holder whose mount namespace was deferred enters
        the container's own, a copy that locks the binds (pin.c). ``stale``: a
        previous daemon's (dead) bind mounts may be there; they are detached
        first where they can be (locked ones stay, under the new ones).
        """
        kernel = self.rt.kernel
        knobs = self.rt.engine.knobs_of(c.owned)
        try:
            if stale:
                targets = frozenset(kernel.sysctl_path(k.sysctl) for k in knobs)
                await kernel.detach_stale(holder, targets)
            binds: list[tuple[int, int]] = []
            try:
                for knob in knobs:
                    if knob.file not in c.views:  # the kernel has no such file there
                        continue
                    fd = await self._open_bind_source(c, knob.files[1])
                    binds.append((fd, -1))
                    target = await trio.to_thread.run_sync(
                        kernel.open_sysctl_target, holder, knob.sysctl
                    )
                    binds[-1] = (fd, target)
                await kernel.attach_onto(holder, binds)  # one thread joins for all
            finally:
                for fd, target in binds:
                    os.close(fd)
                    if target >= 0:
                        os.close(target)
        except OSError as exc:
            if not c.removed:  # else: deleted meanwhile, nothing to bind into
                log.error("%s: internal views not bound over /proc/sys: %s", where(c), exc)
        finally:
            try:
                await self._enter_final_mount_ns(c, holder)
            finally:
                self.rt.ready.pop(c.uid, trio.Event()).set()

    async def _open_bind_source(self, c: Container, file: str) -> int:
        """A detached bind mount (``open_tree``) of ``c``'s ``file``, looked up by a
        hidden name in the root directory (``Operations.bind_source``), never in
        ``c``'s directory: a ``mkdir`` below ``c`` holds that one locked while it
        waits for this binding."""
        rt = self.rt
        assert rt.loopback is not None
        if rt.ops is None:
            return await rt.loopback.open_tree(os.path.join(rt.mountpoint, *c.path, file))
        name = rt.ops.bind_source(c, file)
        try:
            return await rt.loopback.open_tree(os.path.join(rt.mountpoint, name))
        finally:
            rt.ops.drop_bind_source(name)

    async def _enter_final_mount_ns(self, c: Container, holder: Holder) -> None:
        """Have the holder enter the container's own mount namespace if it deferred it
        (a container that owns user and mnt), and record the namespace's inode."""
        try:
            mnt = await trio.to_thread.run_sync(self.rt.kernel.enter_final_mount_ns, holder)
        except OSError as exc:
            if not c.removed:
                log.error("%s: holder did not enter its own mount namespace: %s", where(c), exc)
            return
        if lifecycle.set_instance(c, "mnt", mnt):
            self.store.save(c)
            if self.rt.ops is not None:
                self.rt.ops.changed()  # container.subsystems shows the inode

    async def learn_inside_root(self, c: Container, holder: Holder) -> None:
        """Record whom root of ``c``'s user namespace is on the host: the owner of the
        internal views its processes write (``Engine.file_owner``)."""
        try:
            uid, gid = await trio.to_thread.run_sync(self.rt.kernel.inside_root, holder)
        except OSError as exc:
            log.error("%s: cannot read its ID maps: %s", where(c), exc)
            return
        self.rt.engine.set_inside_root(c, uid, gid)

    # -- claim (OCI) ---------------------------------------------------------------------

    async def claim(self, c: Container, text: str, writer_pid: int, writer_uid: int) -> None:
        """``container.claim``: ``c`` comes to own the namespaces an OCI runtime made
        for the process named (README "OCI runtimes"). Answered once they are held
        and the knob views bound: the front end's ``create`` returns only then, so
        ``start`` runs the container's program with the views in place."""
        lifecycle.check_claim_writer(writer_uid)
        pid = parse_pid(text)
        rt = self.rt
        kernel = rt.kernel
        internal = rt.internal_pids()

        def held() -> tuple[int, int]:
            real = kernel.translate_pid(pid, writer_pid) if writer_pid else pid
            check_not_internal(real, internal)  # before anything reads its /proc
            return real, kernel.hold(real)  # the process named now, whatever its pid becomes

        try:
            real, pidfd = await trio.to_thread.run_sync(held)
        except (ProcessLookupError, FileNotFoundError):
            raise OSError(errno.ESRCH, f"no process {pid}") from None
        try:
            async with rt.lock:
                if c.removed:
                    raise OSError(errno.ENOENT, f"{where(c)}: no longer exists")
                holder = await self._claim_held(c, real, pidfd)
        finally:
            os.close(pidfd)
        if holder is not None and rt.ready.get(c.uid) is not None:
            # Outside the lock, as a mkdir's binding (it looks a path up on our mount).
            await self.bind_internal_views(c, holder)
        log.info(
            "claim %s: process %d, own %s",
            where(c),
            real,
            " ".join(k for k in NAMESPACE_NAMES if k in c.owned) or "-",
        )

    async def _claim_held(self, c: Container, pid: int, pidfd: int) -> Holder | None:
        """:meth:`claim` under the lock with the process held by ``pidfd``."""
        rt, kernel = self.rt, self.rt.kernel
        fds: dict[str, int] = {}

        def facts() -> dict[str, str]:
            if not rt.cgroups.inside(pid, c.cgpath):
                raise OSError(errno.ESRCH, f"process {pid} is not in {where(c)}'s cgroup")
            inodes = kernel.process_inodes(pid)
            ancestors: dict[str, list[int]] = {}
            for kind in lifecycle.NESTING_KINDS:
                if kind in inodes and str(inodes[kind]) != c.instance_id(kind):
                    fds[kind] = kernel.open_namespace(f"/proc/{pid}/ns/{kind}", inodes[kind])
                    ancestors[kind] = kernel.namespace_ancestors(fds[kind])
            plan = lifecycle.plan_claim(rt.engine, c, inodes, ancestors)
            for kind, ino in plan.items():
                if kind not in fds:
                    fds[kind] = kernel.open_namespace(f"/proc/{pid}/ns/{kind}", int(ino))
            for kind in set(fds) - set(plan):
                os.close(fds.pop(kind))
            kernel.check_held(pidfd, pid)  # the namespaces read were this process's
            return plan

        try:
            try:
                plan = await trio.to_thread.run_sync(facts)
            except (ProcessLookupError, FileNotFoundError) as exc:
                raise OSError(errno.ESRCH, f"process {pid} is gone: {exc}") from None
            if plan:
                self._check_holder_room_from(c)

            def kernel_objects() -> Holder | None:
                holder = None
                if plan:
                    holder = self._spawn_holder(c.parent or c, c.cgpath, frozenset(plan), fds)
                try:
                    if holder is not None:
                        got = {k: str(holder.inodes[k]) for k in plan}
                        if got != plan:
                            raise OSError(errno.ESRCH, f"the holder joined {got}, not {plan}")
                    rt.cgroups.make_direct(c.cgpath)
                except BaseException:
                    if holder is not None:
                        holder.kill()
                        holder.close()
                    raise
                return holder

            holder = await trio.to_thread.run_sync(kernel_objects)
        finally:
            for fd in fds.values():
                os.close(fd)
        lifecycle.commit_claim(rt.engine, c, plan)
        if holder is not None:
            rt.holders[c.uid] = holder
            if "net" in plan:  # it owned no network namespace before: now a name
                await trio.to_thread.run_sync(self.names.changed, c, None)
            if "user" in plan:
                await self.learn_inside_root(c, holder)
            await self._init_views(c, holder)
            if rt.engine.views_enforced(c) and rt.loopback is not None:
                rt.ready[c.uid] = trio.Event()  # `tasks` and `exec` wait for the binding
        self.store.save(c)
        return holder

    # -- rmdir -------------------------------------------------------------------------

    async def rmdir(self, c: Container) -> None:
        with refusals_logged(f"rmdir {where(c)}"):
            async with self.rt.lock:
                if c.removed:  # by its release policy, while this request waited for the lock
                    raise OSError(errno.ENOENT, f"{where(c)}: no longer exists")
                tasks = await self.tasks_of(c)
                self.rt.engine.check_rmdir(c, len(tasks))
                await trio.to_thread.run_sync(self.destroy, c)
                self.forget(c)
                log.info("rmdir %s", "/".join(c.path))
                self.store.save_removed(c.path)

    async def tasks_of(self, c: Container) -> list[int]:
        """``c``'s processes. Its cgroup removed behind our back holds none: the
        container can still be removed (what is left of it is freed)."""
        try:
            return await trio.to_thread.run_sync(self.rt.cgroups.procs, c.cgpath)
        except FileNotFoundError:
            if c.origin == Origin.OCI:  # runc's delete removes the cgroupsPath directories
                log.info("%s: its cgroup was removed by its runtime", where(c))
            else:
                log.warning("%s: its cgroup was removed behind the daemon's back", where(c))
            return []

    def destroy(self, c: Container) -> None:
        """Free the kernel objects of ``c``: cgroups first, since they refuse while
        anything is inside (leaving the container whole), then the holder."""
        self.rt.cgroups.remove(c.cgpath)
        self.names.remove(c)  # a name would keep its network namespace alive
        # From its parent up, disable the v2 controllers no container below needs now.
        for node, freed in lifecycle.freed_by_removal(c):
            self.rt.cgroups.trim(node.cgpath, freed)
        holder = self.rt.holders.get(c.uid)
        if holder is not None:
            holder.kill()

    def forget(self, c: Container) -> None:
        """Commit a removal. Runs on the event loop, like every user of a holder's pidfd."""
        rt = self.rt
        if rt.watcher is not None:
            rt.watcher.remove(c)
        rt.engine.commit_rmdir(c)
        holder = rt.holders.pop(c.uid, None)
        if holder is not None:
            holder.close()
        rt.entries.pop(c.uid, None)

    # -- rename and chown ---------------------------------------------------------------

    async def rename(self, c: Container, new_parent: Container, new_name: str) -> None:
        with refusals_logged(f"mv {where(c)!r} {where(new_parent, new_name)!r}"):
            async with self.rt.lock:
                lifecycle.check_rename(self.rt.engine, c, new_parent, new_name)
                old = where(c)
                named = self.names.names_below(c)
                lifecycle.commit_rename(self.rt.engine, c, new_name)
                if named:  # the ip netns names follow the paths
                    await trio.to_thread.run_sync(self.names.renamed, named)
                self.store.save()
                log.info("mv %s %s", old, where(c))

    async def chown(self, c: Container, uid: int | None, gid: int | None) -> None:
        """``chown`` of a container directory by root: delegate it (README "Ownership
        and delegation"); ``uid``/``gid`` None: unchanged."""
        with refusals_logged(f"chown {where(c)!r}"):
            async with self.rt.lock:
                self.rt.engine.chown(c, uid, gid)
                self.store.save(c)
            log.info("chown %s -> %d:%d", where(c), *c.owner_ids)
