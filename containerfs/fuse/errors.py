"""The one place where failures become errno.

pyfuse3 ends the whole mount when a handler raises anything but
``FUSEError``, so every handler goes through ``fuse_errors``: domain errors
carry their errno, ``OSError`` keeps its own, a ``ValueError`` from a
backend's input validation is ``EINVAL``, and anything else is a bug that is
logged with its traceback and reported as ``EIO``.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from ..engine.errors import ContainerError

log = logging.getLogger("containerfs.fuse")

P = ParamSpec("P")
T = TypeVar("T")


def to_errno(exc: BaseException) -> int:
    if isinstance(exc, pyfuse3.FUSEError):
        return exc.errno
    if isinstance(exc, ContainerError):
        return exc.errno
    if isinstance(exc, OSError):
        return exc.errno or errno.EIO
    if isinstance(exc, ValueError):
        return errno.EINVAL
    return errno.EIO


def fuse_errors(
    fn: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Wrap a handler so no exception but FUSEError escapes, and say why on refusal."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except (ContainerError, OSError, ValueError) as exc:
            # The service logs refusals with their context; here only the errno is decided.
            code = to_errno(exc)
            log.debug("%s: %s (%s)", fn.__name__, exc, errno.errorcode.get(code, code))
            raise pyfuse3.FUSEError(code) from None
        except Exception:
            log.exception("%s: internal error", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper
