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
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from ..engine.errors import ContainerError
from ..engine.metrics import RequestStats

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
    """Wrap a handler so no exception but FUSEError escapes, and say why on refusal.

    Each request is counted and timed too, by its operation (the handler's name),
    in the ``requests`` statistics of the handler's object when it has them
    (``metrics``: counts, errors, latencies)."""
    operation = fn.__name__.lstrip("_")  # ``_open``, the slow half of ``open``, is open

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        stats: RequestStats | None = getattr(args[0], "requests", None)
        start = time.perf_counter()
        failed = True
        try:
            result = await fn(*args, **kwargs)
            failed = False
            return result
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
        finally:
            if stats is not None:
                stats.observe(operation, time.perf_counter() - start, failed)

    return wrapper
