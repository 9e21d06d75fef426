"""The WebSocket port's front door: the first bytes of a connection decide who serves it.

The gateway's WebSocket port (default 7000) serves two transports
(PROTOCOL.md §1.5): WebSocket (``GET /ws`` with an upgrade) and the HTTP
stream (``POST /v1/stream…``). Every connection accepted there starts as a
:class:`PortConnection`:

* a request that starts with ``GET `` is handed at once, bytes and all, to a
  :class:`~longlink.gateway.websocket.WsConnection` (it parses the upgrade
  itself: nothing is parsed twice, a WebSocket costs no more than before);
* anything else is read as HTTP/1.1 requests
  (:class:`~longlink.protocol.stream.RequestReader`): ``POST /v1/stream``
  hands the connection to a :class:`~longlink.gateway.stream.StreamConnection`
  with the request's body (the AUTH frame); ``POST /v1/stream/{conn_id}`` is
  answered here (204 once the frames reached the session: on this process,
  or through :mod:`~longlink.gateway.relay` on the process that owns it),
  keep-alive, one request after the other; ``OPTIONS`` is the CORS preflight.

CORS (PROTOCOL.md §1.5): a request whose ``Origin`` the origin policy
(``LONGLINK_ALLOWED_ORIGINS``) does not allow gets 403; allowed ones get
``Access-Control-Allow-Origin`` on every answer, the stream's included.

Deadlines, without a timer per connection: :class:`Door` keeps the time by
which each of its connections must have sent a complete request
(``auth_timeout_s`` after connecting, :data:`KEEPALIVE_S` after an answer)
and a sweep once a second (:meth:`Door.run`) closes those that did not.
Connections handed to a transport leave the door: their session's own
deadlines apply.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from longlink.gateway.connection import WS
from longlink.gateway.metrics import GatewayMetrics
from longlink.gateway.stream import StreamConnection, StreamInbox
from longlink.gateway.websocket import WsConnection
from longlink.lifetime import cancel_requested
from longlink.protocol.stream import (
    Request,
    RequestError,
    RequestReader,
    Route,
    cors_headers,
    preflight_headers,
    response,
    route,
)

if TYPE_CHECKING:
    from longlink.gateway.relay import Relay
    from longlink.gateway.sessions import Sessions

log = logging.getLogger("longlink.gateway")

#: Seconds an idle keep-alive connection (between two POSTs) is kept open.
KEEPALIVE_S = 75.0
#: Largest body of ``POST /v1/stream/{conn_id}``, in frames of the largest size.
BODY_FRAMES = 4
_GET = b"GET "


class Door:
    """The front door of one gateway's WebSocket port (see the module docstring)."""

    def __init__(
        self,
        host: Sessions,
        inbox: StreamInbox,
        metrics: GatewayMetrics,
        *,
        owner: str,
        relay: Relay | None = None,
        clock: Callable[[], float],
    ) -> None:
        self.host = host
        self.inbox = inbox
        self.metrics = metrics
        #: The conn_id prefix of this process's sessions (gateway/relay.py).
        self.owner = owner
        self.relay = relay
        self.clock = clock
        self.max_body = BODY_FRAMES * host.rules.max_frame
        self.auth_timeout_s = host.rules.auth_timeout_s
        #: Seconds an idle keep-alive connection is kept (:data:`KEEPALIVE_S`).
        self.keepalive_s = KEEPALIVE_S
        #: Connections at the door -> when their next complete request is due.
        self.deadlines: dict[PortConnection, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def protocol(self) -> PortConnection:
        """The protocol factory of the WebSocket port's listener."""
        return PortConnection(self)

    # ------------------------------------------------------------------ serving

    def send(self, conn_id: str, token: str, body: bytes) -> int | asyncio.Future[int]:
        """Frames for the session ``conn_id``: here, or at the process that owns it."""
        owner = conn_id.rpartition("-")[0]
        if owner == self.owner or self.relay is None:
            return self.inbox.deliver(conn_id, token, body)
        task = asyncio.ensure_future(self.relay.forward(owner, conn_id, token, body))
        return task

    def cors(self, request: Request) -> list[tuple[str, str]]:
        """The request's CORS headers; raises 403 for an origin the policy does not allow."""
        origin = request.origin
        if origin is None:
            return []
        allowed = self.host.origins.cors_origin(origin)
        if allowed is None:
            raise RequestError(403, f"origin {origin[:100]} is not allowed")
        return cors_headers(allowed)

    # ------------------------------------------------------------------ deadlines

    def wait(self, conn: PortConnection, seconds: float) -> None:
        self.deadlines[conn] = self.clock() + seconds

    def left(self, conn: PortConnection) -> None:
        self.deadlines.pop(conn, None)

    def sweep(self, now: float) -> None:
        """Close the connections whose request is overdue."""
        late = [conn for conn, due in self.deadlines.items() if due <= now]
        for conn in late:
            self.deadlines.pop(conn, None)
            if conn.transport is not None:
                conn.transport.close()

    async def run(self) -> None:
        """The sweep loop, until cancelled."""
        while not cancel_requested():
            await asyncio.sleep(1.0)
            self.sweep(self.clock())

    def close(self) -> None:
        """Close every connection still at the door (the gateway is stopping)."""
        for conn in list(self.deadlines):
            if conn.transport is not None:
                conn.transport.close()
        self.deadlines.clear()


class PortConnection(asyncio.Protocol):
    """A connection to the WebSocket port until it is handed on (module docstring)."""

    __slots__ = ("busy", "door", "first", "http", "peer", "queue", "reader", "transport")

    def __init__(self, door: Door) -> None:
        self.door = door
        self.peer: str | None = None  # the address counted in its share (gateway/sessions.py)
        self.transport: asyncio.Transport | None = None
        self.reader: RequestReader | None = None  # none between two requests (keep-alive)
        self.http = False  # it speaks HTTP requests (not a WebSocket upgrade)
        self.first = b""  # the first bytes, while fewer than "GET " arrived
        self.queue: list[Request] = []  # requests read, not answered yet (rarely more than one)
        self.busy = False  # a request is being answered (its answer waits)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        host = self.door.host
        # The WebSocket port's share per address (max_conns_per_ip) counts from arrival.
        admitted, self.peer = host.admit_peer(WS, transport)
        if not admitted or not host.accepting:
            self._give_back()
            transport.close()
            return
        self.transport = cast(asyncio.Transport, transport)
        self.door.wait(self, self.door.auth_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self.door.left(self)
        self._give_back()
        self.transport = None
        self.queue.clear()

    def _give_back(self) -> None:
        """Hand the address's share back (closed, or handed to a transport that counts
        itself)."""
        if self.peer is not None:
            self.door.host.release_peer(WS, self.peer)
            self.peer = None

    def data_received(self, data: bytes) -> None:
        if self.reader is None:
            if not self.http:  # the first bytes: WebSocket or HTTP stream?
                data = self.first + data
                if len(data) < len(_GET) and _GET.startswith(data):
                    self.first = data
                    return
                self.first = b""
                if data.startswith(_GET):
                    self._websocket(data)
                    return
                self.http = True
            self.reader = RequestReader(self.door.max_body)
        try:
            self.queue.extend(self.reader.feed(data))
        except RequestError as exc:
            self._refuse(exc)
            return
        self._next()

    def _websocket(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        self.door.left(self)
        self._give_back()
        self.transport = None
        conn = WsConnection(self.door.host)
        transport.set_protocol(conn)
        conn.connection_made(transport)
        if not transport.is_closing():
            conn.data_received(data)

    def _next(self) -> None:
        """Answer the queued requests in order; stop while an answer waits."""
        door = self.door
        while self.queue and not self.busy and self.transport is not None:
            request = self.queue.pop(0)
            door.left(self)
            try:
                kind, conn_id = route(request)
                cors = door.cors(request)
            except RequestError as exc:
                self._refuse(exc)
                return
            if kind == Route.OPEN:
                self._stream(request, cors)
                return
            if kind == Route.PREFLIGHT:
                headers = preflight_headers(cors[0][1]) if cors else [("Allow", "POST, OPTIONS")]
                self._answer(request, 204, headers)
                continue
            token = request.bearer
            if token is None:
                door.metrics.stream_posts.labels("401").inc()
                self._answer(request, 401, cors, "Authorization: Bearer <connection token>")
                continue
            status = door.send(conn_id, token, request.body)
            if isinstance(status, int):
                door.metrics.stream_posts.labels(str(status)).inc()
                self._answer(request, status, cors)
                continue
            self.busy = True
            if self.transport is not None:
                self.transport.pause_reading()  # the answer waits: so does the next request
            status.add_done_callback(functools.partial(self._answered, request=request, cors=cors))

    def _answered(
        self, future: asyncio.Future[int], *, request: Request, cors: list[tuple[str, str]]
    ) -> None:
        self.busy = False
        if future.cancelled():
            status = 503
        elif future.exception() is not None:
            log.warning("stream POST not delivered: %r", future.exception())
            status = 503
        else:
            status = future.result()
        self.door.metrics.stream_posts.labels(str(status)).inc()
        if self.transport is None:
            return
        self._answer(request, status, cors)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            self._next()

    def _answer(
        self, request: Request, status: int, headers: list[tuple[str, str]], reason: str = ""
    ) -> None:
        transport = self.transport
        if transport is None:
            return
        keep = request.keep_alive and status < 400
        transport.write(
            response(status, reason or _REASONS.get(status, ""), headers, keep_alive=keep)
        )
        if not keep:
            transport.close()
            self.transport = None
            self.queue.clear()
        elif not self.queue:
            self.door.wait(self, self.door.keepalive_s)  # the next request within this
            if self.reader is not None and self.reader.idle:
                self.reader = None  # an idle keep-alive connection keeps no parser

    def _refuse(self, error: RequestError) -> None:
        transport = self.transport
        if transport is None:
            return
        transport.write(response(error.status, error.reason))
        transport.close()
        self.transport = None
        self.queue.clear()

    def _stream(self, request: Request, cors: list[tuple[str, str]]) -> None:
        """Hand the connection to a stream session; the body is its first frames."""
        transport = self.transport
        assert transport is not None
        self._give_back()
        self.transport = None
        self.queue.clear()
        conn = StreamConnection(self.door.host, cors)
        transport.set_protocol(conn)
        conn.connection_made(transport)
        conn.open(request.body)


_REASONS = {
    400: "the body must be whole valid frames",
    401: "the token is not this session's",
    404: "no such stream session (it ended): connect again",
    503: "try again",
}
