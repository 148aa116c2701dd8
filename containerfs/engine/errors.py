"""Domain errors of the state engine.

Each carries the errno a filesystem user should see; the FUSE adapter turns
them into errno in one place (``containerfs.fuse.errors``). The message is
what the daemon logs, so it says *why*.
"""

from __future__ import annotations

import errno


class ContainerError(Exception):
    """Base class: a request the engine refuses. ``errno`` is what the caller gets."""

    errno: int = errno.EIO

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ContainerError):
    errno = errno.EINVAL


class NotFound(ContainerError):
    errno = errno.ENOENT


class Exists(ContainerError):
    errno = errno.EEXIST


class Busy(ContainerError):
    errno = errno.EBUSY


class NotPermitted(ContainerError):
    errno = errno.EPERM


class Unsupported(ContainerError):
    """A request this container's layout cannot honour (e.g. a limit nothing enforces)."""

    errno = errno.EOPNOTSUPP


class ReadOnly(ContainerError):
    """Writing a file that is read-only here (a shared kind, or the root's own objects)."""

    errno = errno.EACCES


class TryAgain(ContainerError):
    """A limit of the tree is reached (``container.max.*``), as cgroup v2's mkdir says."""

    errno = errno.EAGAIN


class NameTooLong(ContainerError):
    errno = errno.ENAMETOOLONG


class TooBig(ContainerError):
    """A write longer than a control file takes (cgroupfs: more than a page)."""

    errno = errno.E2BIG
