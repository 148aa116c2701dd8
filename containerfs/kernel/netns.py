"""``ip netns`` names: bind mounts of network namespaces in ``/run/netns``.

``ip netns`` lists the files in ``/run/netns``, each a bind mount of a network
namespace's nsfs file, and ``/run/netns`` is a shared bind mount of itself
(so that a name made later also shows in mount namespaces made from the
host's with shared or slave propagation, ``ip netns exec``'s among them).
This module makes and removes such names the way iproute2 does, in the
daemon's mount namespace, with the new mount API: ``open_tree`` of an nsfs
fd the caller checked by inode (never a path through a pid that may be
reused), ``move_mount`` onto the name's file.

Every change checks what is there first: a name is only removed while it is
bound to the namespace the caller names, so a name of the same spelling that
another daemon or a user made is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat

from . import sys as ksys

#: Where iproute2 keeps its names (its NETNS_RUN_DIR; /var/run is /run).
NETNS_DIR = "/run/netns"


def _nsfs_dev() -> int:
    return os.stat("/proc/self/ns/net").st_dev


def bound_inode(name: str) -> int | None:
    """The inode of the namespace ``/run/netns/NAME`` is bound to; None when nothing
    is bound there (a plain file, or no file). ``stat`` shows the topmost mount."""
    try:
        st = os.stat(os.path.join(NETNS_DIR, name))
    except FileNotFoundError:
        return None
    return st.st_ino if st.st_dev == _nsfs_dev() else None


_prepared = False  # /run/netns made ready by this process already


def _prepare_dir() -> None:
    """``/run/netns`` as iproute2 makes it: a directory, a mount of its own with
    shared propagation (a bind of itself when it is not a mount yet). Once per
    daemon: changing the propagation walks every name below it."""
    global _prepared
    if _prepared and os.path.isdir(NETNS_DIR):
        return
    os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
    try:
        ksys.mount(None, NETNS_DIR, None, ksys.MS_SHARED | ksys.MS_REC, None)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: not a mount point
            raise
        ksys.mount(NETNS_DIR, NETNS_DIR, None, ksys.MS_BIND | ksys.MS_REC, None)
        ksys.mount(None, NETNS_DIR, None, ksys.MS_SHARED | ksys.MS_REC, None)
    _prepared = True


def bind(nsfd: int, name: str) -> bool:
    """Bind the network namespace of ``nsfd`` (an nsfs fd whose inode the caller
    checked) at ``/run/netns/NAME``. False when it is bound there already;
    ``FileExistsError`` when another namespace is (the name is someone else's)."""
    ino = os.fstat(nsfd).st_ino
    there = bound_inode(name)
    if there == ino:
        return False
    if there is not None:
        raise FileExistsError(errno.EEXIST, f"{NETNS_DIR}/{name} is bound to net:[{there}]")
    _prepare_dir()
    path = os.path.join(NETNS_DIR, name)
    try:  # the mount point: an empty file, as `ip netns add` makes it
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
    except FileExistsError:
        st = os.lstat(path)  # left by a cut-short bind or a deleted name: reused
        if not stat.S_ISREG(st.st_mode):
            raise
    tree = ksys.open_tree_of_fd(nsfd)
    try:
        if os.fstat(tree).st_ino != ino:  # cannot happen: a namespace fd names itself
            raise OSError(errno.ESTALE, f"open_tree of net:[{ino}] gave another namespace")
        ksys.move_mount_to(tree, path)
    finally:
        os.close(tree)
    return True


def unbind(name: str, ino: int | None) -> bool:
    """Remove ``/run/netns/NAME`` while it is bound to namespace ``ino`` (any
    namespace: None), as ``ip netns delete`` does (detach, then unlink the file).
    A name bound to another namespace is left alone; False then, or when there
    was nothing to remove."""
    path = os.path.join(NETNS_DIR, name)
    removed = False
    for _ in range(8):  # a bind stacked on a bind, should one ever be
        there = bound_inode(name)
        if there is None or (ino is not None and there != ino):
            break
        ksys.umount2(path, ksys.MNT_DETACH)
        removed = True
    if bound_inode(name) is None:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                os.unlink(path)
                removed = True
    return removed


def names() -> list[str]:
    """The names in ``/run/netns`` (bound or not)."""
    try:
        return os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []


#: Where the locks on prefixes are: root's alone (an abstract socket, which any
#: user may bind, let anyone turn a daemon's names off).
PREFIX_LOCKS = "/run/containerfs-netns"


class Held:
    """A lock held while its fd is open (``claim_prefix``)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def claim_prefix(prefix: str, locks: str = PREFIX_LOCKS) -> Held | None:
    """Hold ``prefix`` for this daemon while the returned object is open: an
    ``flock`` on ``LOCKS/PREFIX.lock`` in a directory only root may write, which
    the kernel drops with its last holder, so a crashed daemon leaves no lock
    behind. None when another daemon holds it."""
    os.makedirs(locks, mode=0o700, exist_ok=True)
    st = os.lstat(locks)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise OSError(errno.EPERM, f"{locks} is not a directory only root may write")
    fd = os.open(
        os.path.join(locks, f"{prefix}.lock"),
        os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
        0o600,
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return Held(fd)
