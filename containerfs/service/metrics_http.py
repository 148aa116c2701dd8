"""``--metrics-listen``: the ``metrics`` file over HTTP, for Prometheus to scrape.

HTTP/1.1 by h11 (python-hyper's sans-I/O protocol library, made to sit under
trio: it parses and frames, we move the bytes), on trio's TCP listeners, each
connection a task of the daemon's nursery. ``GET /metrics`` answers what a
read of the root's ``metrics`` file gives; anything else is 404 (405 for a
method other than GET or HEAD, 400 to what is not HTTP). A connection is
closed after :data:`IDLE` seconds without a request, when a request takes more
than :data:`REQUEST_TIME` to arrive or an answer more than :data:`SEND_TIME` to
be taken, and after :data:`MAX_REQUESTS` requests; at most
:data:`MAX_CONNECTIONS` are served at once. A client can end its own connection,
never the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import h11
import trio

from ..engine.metrics import CONTENT_TYPE

log = logging.getLogger("containerfs")

IDLE = 30.0  # seconds a kept-alive connection may wait for its next request
REQUEST_TIME = 30.0  # seconds a client has to send one whole request
SEND_TIME = 30.0  # seconds a client has to take one whole answer
MAX_CONNECTIONS = 32
MAX_REQUESTS = 100  # on one connection; then it is closed
_READ = 16384

Render = Callable[[], Awaitable[bytes]]


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[ADDR]:PORT`` for IPv6) -> (host, port); ValueError if not."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected ADDR:PORT with a port from 1 to 65535, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or "[" in host or "]" in host:
        raise ValueError(f"expected ADDR:PORT (an address is needed), got {text!r}")
    return host, int(port)


async def open_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """Bound before the mount is made, so a port in use stops the start."""
    return await trio.open_tcp_listeners(port, host=host)


async def serve(listeners: list[trio.SocketListener], render: Render) -> None:
    """Serve until cancelled (the daemon's nursery). Nothing a client sends or
    fails to read can end the daemon: a connection's failure ends that connection."""
    slots = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def handler(stream: trio.SocketStream) -> None:
        if slots.borrowed_tokens >= MAX_CONNECTIONS:
            await stream.aclose()
            return
        # the client may go away at any point: nothing to do then
        gone = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
        async with slots, stream:
            try:
                await _connection(stream, render)
            except gone:
                pass
            except h11.ProtocolError as exc:
                log.info("metrics: a client broke HTTP: %s", exc)
            except Exception:
                log.exception("metrics: a connection failed")

    await trio.serve_listeners(handler, listeners)


async def _connection(stream: trio.SocketStream, render: Render) -> None:
    conn = h11.Connection(h11.SERVER)
    for _ in range(MAX_REQUESTS):
        try:
            # a whole request (line, headers, body) within REQUEST_TIME
            with trio.move_on_after(REQUEST_TIME) as waited:
                event = await _next_event(conn, stream)
                request = event
                while isinstance(event, h11.Request | h11.Data):
                    event = await _next_event(conn, stream)
            if waited.cancelled_caught:
                return
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with trio.move_on_after(SEND_TIME):
                    await _send(conn, stream, exc.error_status_hint, b"bad request\n")
            return
        if not isinstance(request, h11.Request) or not isinstance(event, h11.EndOfMessage):
            return  # idle, closed, or a request cut short
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("ascii", "replace").split("?", 1)[0]
        with trio.move_on_after(SEND_TIME) as sending:
            if method not in ("GET", "HEAD"):
                await _send(conn, stream, 405, b"only GET and HEAD\n", allow=True)
            elif target == "/metrics":
                body = await render()
                await _send(conn, stream, 200, body, head=method == "HEAD", ctype=CONTENT_TYPE)
            elif target == "/":
                await _send(conn, stream, 200, b"containerfs: the metrics are at /metrics\n")
            else:
                await _send(conn, stream, 404, b"not found: the metrics are at /metrics\n")
        if sending.cancelled_caught or conn.our_state is h11.MUST_CLOSE:
            return
        conn.start_next_cycle()


async def _next_event(conn: h11.Connection, stream: trio.SocketStream) -> h11.Event | None:
    """The next event from the client; None once it has been idle for :data:`IDLE`."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event  # type: ignore[return-value]
        with trio.move_on_after(IDLE):
            conn.receive_data(await stream.receive_some(_READ))
            continue
        return None


async def _send(
    conn: h11.Connection,
    stream: trio.SocketStream,
    status: int,
    body: bytes,
    *,
    head: bool = False,
    ctype: str = "text/plain; charset=utf-8",
    allow: bool = False,
) -> None:
    headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
    if allow:
        headers.append(("Allow", "GET, HEAD"))
    await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
    if not head:
        await stream.send_all(conn.send(h11.Data(data=body)))
    await stream.send_all(conn.send(h11.EndOfMessage()))
