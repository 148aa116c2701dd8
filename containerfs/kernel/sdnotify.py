"""Talking to systemd without libsystemd: the notify socket and the journal stream.

Both are plain kernel interfaces (``sd_notify(3)``, ``sd-daemon(3)``):

- **notify.** ``$NOTIFY_SOCKET`` names an ``AF_UNIX`` datagram socket (a path,
  or ``@name`` for one in the abstract namespace); each state change is one
  datagram of ``KEY=VALUE`` lines: ``READY=1``, ``STATUS=...``, ``STOPPING=1``.
  Without ``$NOTIFY_SOCKET`` (not started by systemd with ``Type=notify``)
  every call does nothing.
- **journal.** When stderr is the journal's stream, ``$JOURNAL_STREAM`` is its
  ``DEVICE:INODE``, and a line starting ``<N>`` is logged at syslog priority N.

A failed send is logged once and never raised: systemd's view of the daemon is
a courtesy, the mount works without it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__name__)

#: syslog priorities (``syslog(3)``) for Python's log levels, as sd-daemon reads them.
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def priority(levelno: int) -> int:
    """The syslog priority of a Python log level (DEBUG and below: 7)."""
    for level, prio in _PRIORITY:
        if levelno >= level:
            return prio
    return 7


def socket_address(value: str) -> str | None:
    """The address to send to for a ``$NOTIFY_SOCKET`` value: a path as it is,
    ``@name`` as the abstract ``\\0name``; None for what we cannot use (empty,
    relative, ``vsock:``)."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


class Notifier:
    """The daemon's notify socket, read once from the environment.

    ``$NOTIFY_SOCKET`` is taken out of ``environ`` (as ``sd_notify``'s
    ``unset_environment`` does) so that nothing the daemon starts (holders,
    release agents, the loopback helper) can speak for the service.
    """

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        value = env.pop("NOTIFY_SOCKET", "")
        self.address = socket_address(value) if value else None
        if value and self.address is None:
            log.warning("NOTIFY_SOCKET=%s: not a unix socket address; not notifying", value)
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """One datagram of ``KEY=VALUE`` lines; whether it was sent."""
        if self.address is None:
            return False
        text = "".join(f"{key}={value}\n" for key, value in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(text.encode(), self.address)
        except OSError as exc:
            if not self._failed:  # once: systemd gone is not news at every change
                log.warning("cannot notify systemd at %s: %s", self.address, exc.strerror or exc)
                self._failed = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(STOPPING=1, STATUS=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """Whether `fd` is the journal stream ``$JOURNAL_STREAM`` names (``DEVICE:INODE``).

    Compared with the descriptor itself, as ``sd-daemon(3)`` says: a child whose
    stderr was redirected inherits the variable but not the stream.
    """
    env = os.environ if environ is None else environ
    dev, sep, ino = env.get("JOURNAL_STREAM", "").partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False
