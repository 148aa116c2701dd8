"""Start-up and shutdown: build the service, take over saved state, run the mount.

``mount`` is ``containerfs mount``. Everything the daemon runs lives in one trio
nursery (``serve``): the FUSE main loop, the signal handler, the release
watcher and clone discovery; shutdown cancels it and keeps every container.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import pyfuse3
import trio

from .. import recovery
from ..defaults import find_program
from ..discovery import Discovery
from ..engine.errors import ContainerError
from ..engine.kinds import NAMESPACE_NAMES
from ..fuse.loopback import Loopback
from ..fuse.ops import Operations
from ..kernel import mounts
from ..kernel.cgroups import CgroupBackend
from ..kernel.holder import PIN_NAME
from ..kernel.sdnotify import Notifier
from ..kernel.system import Kernel
from ..kernel.watch import Watcher
from . import metrics_http
from .daemon import Daemon

log = logging.getLogger("containerfs")

#: Seconds between two checks of the container count for systemd's ``STATUS=``.
STATUS_EVERY = 2.0


@contextlib.contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """One daemon per state dir; one it cannot write (read-only, full) stops the
    start here, before anything is made."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SystemExit(f"containerfs: cannot use state dir {state_dir}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"containerfs: {state_dir} is in use by another daemon") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            raise SystemExit(
                f"containerfs: cannot use state dir {state_dir}: {exc.strerror}"
            ) from None
        yield
    finally:
        os.close(fd)


async def _signals(daemon: Daemon, cancel: trio.CancelScope, notifier: Notifier) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            notifier.stopping(f"unmounting, {_count(daemon)}")
            # Background work may be waiting on our own FUSE requests (a bind mount's
            # source is a containerfs file): let it finish while the mount still answers.
            with trio.move_on_after(5):
                for event in list(daemon.rt.ready.values()):
                    await event.wait()
            pyfuse3.terminate()
            cancel.cancel()
            return


async def _start_lifecycle(daemon: Daemon) -> None:
    """Once the mount answers: re-bind views of taken-over containers, catch up on
    containers that emptied while no daemon watched, then keep watching."""
    rt = daemon.rt
    assert rt.nursery is not None
    for c in list(rt.engine.root.walk()):
        holder = rt.holders.get(c.uid)
        if holder is not None and "user" in c.owned:
            await daemon.containers.learn_inside_root(c, holder)
        if holder is not None and rt.engine.views_enforced(c):
            rt.ready[c.uid] = trio.Event()
            rt.nursery.start_soon(daemon.containers.bind_internal_views, c, holder, True)
    for c in reversed(list(rt.engine.root.walk())):  # children first
        if not c.is_root and not c.removed:
            await daemon.releases.refresh_populated(c)
    rt.nursery.start_soon(daemon.releases.watch_releases)
    rt.nursery.start_soon(Discovery(rt, daemon.containers, daemon.releases).run)


def _count(daemon: Daemon) -> str:
    """``N containers`` below the root (the root counts its descendants: no walk)."""
    n = daemon.rt.engine.root.descendants
    return f"{n} container{'' if n == 1 else 's'}"


async def _tell_systemd(daemon: Daemon, notifier: Notifier) -> None:
    """``READY=1`` once the mount answers, then ``STATUS=`` when the count changes.

    Ready means usable: taken-over containers are caught up (``_start_lifecycle``)
    and one request through the mount, made by the loopback helper as any client
    would, has been answered. The count is looked at every :data:`STATUS_EVERY`
    seconds (one integer compare) and sent only when it changed, so a burst of
    ``mkdir`` costs one datagram.
    """
    rt = daemon.rt
    assert rt.loopback is not None
    probe = os.path.join(rt.mountpoint, "container.subtree")
    try:
        os.close(await rt.loopback.open_tree(probe))
    except OSError as exc:  # still serving: say so, systemd would kill us otherwise
        log.warning("the mount did not answer a first request (%s); ready anyway", exc)
    status = _count(daemon)
    notifier.ready(status)
    log.debug("told systemd: ready, %s", status)
    while True:
        await trio.sleep(STATUS_EVERY)
        now = _count(daemon)
        if now != status:
            status = now
            notifier.status(status)


async def _ready(daemon: Daemon, notifier: Notifier) -> None:
    await _start_lifecycle(daemon)
    if notifier.enabled:
        await _tell_systemd(daemon, notifier)


def _loop_args(busy_poll_us: int) -> tuple[dict[str, int], str]:
    """``pyfuse3.main``'s arguments for this pyfuse3, and what to log about its loop
    (README "The request loop")."""
    if not getattr(pyfuse3, "RECEIVES_QUEUED", False):
        return {}, "stock" + (" (--busy-poll needs the patched one: off)" if busy_poll_us else "")
    text = "patched: takes queued requests at once"
    if not getattr(pyfuse3, "BUSY_POLLS", False):
        return {}, text + (", cannot busy-poll (--busy-poll: off)" if busy_poll_us else "")
    if busy_poll_us:
        return {"busy_poll_us": busy_poll_us}, text + f", busy-polls up to {busy_poll_us} us"
    return {"busy_poll_us": 0}, text + ", busy polling off"


async def serve(
    daemon: Daemon,
    options: set[str],
    notifier: Notifier,
    busy_poll_us: int = 0,
    metrics_listen: tuple[str, int] | None = None,
) -> None:
    rt = daemon.rt
    listeners: list[trio.SocketListener] = []
    if metrics_listen is not None:
        host, port = metrics_listen
        try:
            listeners = await metrics_http.open_listeners(host, port)
        except OSError as exc:
            raise SystemExit(
                f"containerfs: --metrics-listen {host}:{port}: {exc.strerror or exc}"
            ) from None
    ops = Operations(daemon, rt.requests)
    rt.ops = ops
    rt.watcher = Watcher()
    for c in rt.engine.root.walk():
        daemon.containers.watch(c)
    pyfuse3.init(ops, rt.mountpoint, options)
    rt.loopback = Loopback()
    rt.nudge()  # starts the helper's heartbeat
    ops.toucher_pid = rt.loopback.pid
    try:
        log.info("mounted at %s (state in %s)", rt.mountpoint, rt.state_dir)
        loop_args, loop_text = _loop_args(busy_poll_us)
        log.info("pyfuse3 %s", loop_text)
        async with trio.open_nursery() as nursery:
            rt.nursery = nursery
            nursery.start_soon(_signals, daemon, nursery.cancel_scope, notifier)
            nursery.start_soon(_ready, daemon, notifier)
            if metrics_listen is not None:
                nursery.start_soon(metrics_http.serve, listeners, daemon.files.metrics.render)
                log.info("metrics at http://%s:%d/metrics", *metrics_listen)
            await pyfuse3.main(**loop_args)
            nursery.cancel_scope.cancel()
    finally:
        notifier.stopping()  # again after a signal: harmless, and covers a crash
        rt.loopback.stop()
        pyfuse3.close(unmount=True)  # ends any request of the helper left unanswered
        rt.loopback.reap()
        daemon.teardown()
        rt.watcher.close()
        log.info("unmounted %s", rt.mountpoint)


def find_pin() -> str:
    """The holder binary (``defaults.find_program``); without it no container can be made."""
    found = find_program(PIN_NAME)
    if found is None:
        raise SystemExit(
            "containerfs: containerfs-pin not found in the package, beside the interpreter"
            " or on PATH (install with pip, or build it with `make`)"
        )
    return found


def service_leaf() -> str | None:
    """systemd's start leaf, when our unit names it (``CONTAINERFS_SERVICE_LEAF``,
    the same name as its ``DelegateSubgroup=``) and systemd started us
    (``INVOCATION_ID``). Only then is a cgroup of that name below a ``.service``
    taken for it (``cghierarchy.daemon_base``): a ``containerfs mount`` started from
    another unit keeps that unit's leaf as its base and removes nothing of it."""
    leaf = os.environ.pop("CONTAINERFS_SERVICE_LEAF", "")
    if not leaf or not os.environ.get("INVOCATION_ID"):
        return None
    if leaf.startswith(".") or "/" in leaf or leaf in ("..", "."):
        log.warning("CONTAINERFS_SERVICE_LEAF=%r is no cgroup name; ignored", leaf)
        return None
    return leaf


@contextlib.contextmanager
def _cgroups(v2_fallback: Path) -> Iterator[CgroupBackend]:
    """The host's cgroups; on a host without a cgroup2 mount, one of our own while we run."""
    try:
        cgroups = CgroupBackend.discover(v2_fallback=v2_fallback, service_leaf=service_leaf())
    except OSError as exc:
        raise SystemExit(f"containerfs: {exc.strerror or exc}") from None
    try:
        yield cgroups
    finally:
        cgroups.close()


def _raise_nofile() -> None:
    """The soft limit on open files up to the hard one, as systemd advises services
    to do themselves: each container costs the daemon a few descriptors (its
    holder's pidfd and socket, the sysctl files it was given, the figure files a
    scrape keeps open), and a shell's soft limit is often 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def mount(
    mountpoint: str,
    state_dir: str,
    root_subtree: str | None,
    debug: bool,
    metrics_listen: tuple[str, int] | None = None,
    busy_poll_us: int = 0,
    netns_prefix: str = "",
) -> int:
    """`containerfs mount`: run in the foreground until SIGINT/SIGTERM.
    ``netns_prefix``: of the containers' ``ip netns`` names (empty: none)."""
    if os.geteuid() != 0:
        raise SystemExit("containerfs: mount needs root")
    if not os.path.exists("/dev/fuse"):
        raise SystemExit("containerfs: /dev/fuse is missing (modprobe fuse)")
    pin = find_pin()
    _raise_nofile()
    # Taken from the environment before anything is started (see Notifier).
    notifier = Notifier()
    with state_lock(Path(state_dir)), contextlib.closing(notifier):
        if mounts.clear_stale_mount(mountpoint):
            log.info("detached the dead mount of a previous daemon at %s", mountpoint)
        os.makedirs(mountpoint, exist_ok=True)
        if os.path.ismount(mountpoint):
            raise SystemExit(f"containerfs: {mountpoint} is already a mount point")
        return _mount_locked(
            mountpoint,
            state_dir,
            root_subtree,
            debug,
            pin,
            notifier,
            busy_poll_us=busy_poll_us,
            metrics_listen=metrics_listen,
            netns_prefix=netns_prefix,
        )


def _mount_locked(
    mountpoint: str,
    state_dir: str,
    root_subtree: str | None,
    debug: bool,
    pin: str,
    notifier: Notifier,
    metrics_listen: tuple[str, int] | None = None,
    busy_poll_us: int = 0,
    netns_prefix: str = "",
) -> int:
    saved = recovery.load(Path(state_dir))
    with _cgroups(Path(state_dir) / "cgroup2") as cgroups:
        if root_subtree is not None:  # before setup() moves anything
            words = {w[1:] for w in root_subtree.split()}
            unknown = words - set(NAMESPACE_NAMES) - set(cgroups.kinds())
            if unknown:
                raise SystemExit(f"containerfs: --subtree: unknown kinds: {' '.join(unknown)}")
        cgroups.setup()
        kernel = Kernel(cgroups, pin, mountpoint)
        try:
            daemon = Daemon.build(kernel, mountpoint, Path(state_dir), root_subtree)
        except ContainerError as exc:
            raise SystemExit(f"containerfs: --subtree: {exc}") from None
        engine = daemon.rt.engine
        if saved is not None:
            recovery.adopt(daemon.rt, saved)
            if root_subtree is not None:  # the command line wins over the saved value
                engine.reset_subtree(engine.root, frozenset())
                if root_subtree.strip():
                    engine.set_subtree(engine.root, root_subtree)
        daemon.rt.netns_prefix = netns_prefix
        try:  # names of the containers taken over; those of gone ones removed
            daemon.containers.names.start(saved.get("netns_prefix") if saved else None)
        except OSError as exc:
            log.error("ip netns names: %s", exc)
        daemon.store.save()
        options = {
            "fsname=containerfs",
            "subtype=containerfs",
            "default_permissions",
            "allow_other",
        }
        if debug:
            options.add("debug")
        try:
            trio.run(serve, daemon, options, notifier, busy_poll_us, metrics_listen)
        finally:  # also when serve() stops before its teardown (a busy --metrics-listen)
            daemon.containers.names.close()
    return 0
