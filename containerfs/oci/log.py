"""Errors as runc gives them, so that podman and containerd read ours as runc's.

runc 1.1 (``main.go``, ``fatal``): the error goes to its logger, that is to the
``--log`` file (default standard error) as one line in ``--log-format`` (``text``:
logrus's ``time="..." level=error msg="..."``; ``json``: ``{"level":"error",
"msg":"...","time":"..."}`` with an RFC 3339 time), and, when the log is not standard
error, once more as the bare message on standard error; the exit status is 1.
podman reads the log after a failed ``create`` as one JSON object (several lines
make it fall back to conmon's own message); containerd's shim reads it as a stream
of objects and keeps the last error.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

#: Values logrus's text format writes without quotes.
_BARE = re.compile(r"^[A-Za-z0-9\-._/@^+]+$")


def _now() -> str:
    """RFC 3339 with seconds in local time, as Go's time.RFC3339 (``Z`` for UTC)."""
    t = time.localtime()
    off = t.tm_gmtoff or 0
    zone = (
        "Z"
        if off == 0
        else f"{'+' if off > 0 else '-'}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}"
    )
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + zone


def _text_value(value: str) -> str:
    return value if _BARE.match(value) else json.dumps(value, ensure_ascii=False)


def format_line(level: str, msg: str, fmt: str, now: str | None = None) -> str:
    """One log line (with its newline) in runc's ``--log-format``."""
    when = now or _now()
    if fmt == "json":
        return json.dumps({"level": level, "msg": msg, "time": when}, ensure_ascii=False) + "\n"
    return f"time={_text_value(when)} level={level} msg={_text_value(msg)}\n"


class Log:
    """Where runc would write: the ``--log`` file or standard error."""

    def __init__(self, path: str | None, fmt: str | None) -> None:
        self.path = path if path not in (None, "", "/dev/stderr") else None
        self.fmt = fmt if fmt in ("text", "json") else "text"

    def error(self, msg: str) -> None:
        """runc's ``fatal``: the log line, and the bare message on stderr when the
        log is a file."""
        line = format_line("error", msg, self.fmt)
        if self.path is None:
            sys.stderr.write(line)
            sys.stderr.flush()
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError:
            pass  # as logrus: a log that cannot be written loses the line, stderr still has it
        print(msg, file=sys.stderr, flush=True)
