"""HTTP stream bridge (PROTOCOL.md §1.5): the session's frames as a chunked response.

A client that cannot open a WebSocket sends ``POST /v1/stream`` with its AUTH
frame as the body; the answer is a 200 whose chunked body is the server's
frames back to back, open while the session lives. Its later frames come as
``POST /v1/stream/{conn_id}`` requests (``Authorization: Bearer`` the token
of its AUTH), possibly on other connections, possibly to another gateway
process sharing the port (:mod:`~longlink.gateway.relay` forwards those).

* :class:`StreamConnection` is the connection whose transport carries the
  response: a :class:`~longlink.gateway.connection.Connection` like the
  others (one session, one outbox budget, the same fan-out groups), whose
  writes are chunks (:func:`~longlink.protocol.stream.chunk`, built once per
  fan-out group by :mod:`~longlink.gateway.fanout`). It is made by the port's
  front door (:mod:`~longlink.gateway.port`) once the opening request is
  complete.
* :class:`StreamInbox` hands the frames of a ``POST /v1/stream/{conn_id}``
  to the session it names, on this process.

Back-pressure: a client's upstream is its POSTs. While its connection is
behind (past the outbox's soft limit, :mod:`~longlink.gateway.outbox`), the
answer to its POST is held until the buffer drains, so a client that sends
without reading waits instead of making the server write replies without
bound (the SDKs send one POST at a time); past the hard limit it is closed
with ``server_busy`` as on every transport.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import ClassVar

from longlink.gateway.connection import STREAM, Connection, SessionHost
from longlink.gateway.hub import Hub
from longlink.protocol import ErrorCode, Frame, Op, ProtocolError
from longlink.protocol.messages import Auth, decode_body
from longlink.protocol.stream import (
    LAST_CHUNK,
    RequestError,
    body_frames,
    chunk,
    response,
    stream_head,
)

#: The answer to a POST whose frames reached the session.
DELIVERED = 204


class StreamConnection(Connection):
    """A session whose server frames travel as the chunked body of one HTTP response."""

    __slots__ = ("cors", "started", "token", "waiters")

    kind: ClassVar[int] = STREAM

    def __init__(self, host: SessionHost, cors: list[tuple[str, str]]) -> None:
        super().__init__(host)
        self.cors = cors  # CORS headers of the response (the page's origin)
        self.started = False  # the 200 head was written
        self.token = ""  # the AUTH token: later POSTs must carry it
        # POST answers held while the connection is behind (the module docstring).
        self.waiters: list[asyncio.Future[int]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.closed and self.transport is not None:
            self.transport.write(stream_head(self.cors))
            self.started = True

    def open(self, body: bytes) -> None:
        """Hand the opening request's frames (its AUTH first) to the session."""
        if self.closed:
            return
        try:
            frames = body_frames(body, self.rules.max_frame)
        except ProtocolError as exc:
            self.protocol_error(exc)
            return
        except RequestError as exc:
            self.protocol_error(ProtocolError(ErrorCode.BAD_FRAME, exc.reason))
            return
        self.token = _auth_token(frames[0], self.rules.max_frame)
        for frame in frames:
            self.frame_received(frame)
            if self.closed:
                return

    # ------------------------------------------------------------------ writes

    def write(self, frame: bytes) -> None:
        if self.transport is not None:
            self.transport.write(chunk(frame))

    def write_many(self, frames: list[bytes]) -> None:
        if self.transport is not None:
            self.transport.write(chunk(b"".join(frames)))

    def shutdown(self) -> None:
        """End the response (its last chunk), then the connection; a stream refused on
        arrival gets 503 instead."""
        transport = self.transport
        if transport is None:
            return
        if not transport.is_closing():
            if self.started:
                transport.write(LAST_CHUNK)
            else:
                transport.write(response(503, "the gateway does not take connections now"))
        transport.close()

    def data_received(self, data: bytes) -> None:
        # The request is complete: anything more on this connection is not HTTP we serve.
        self.protocol_error(
            ProtocolError(ErrorCode.BAD_FRAME, "send frames as POST /v1/stream/{conn_id}")
        )

    # ------------------------------------------------------------------ back-pressure

    def resume_writing(self) -> None:
        super().resume_writing()
        self._release()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._release()

    def held(self) -> asyncio.Future[int]:
        """A future answering a POST once this connection is no longer behind."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self.waiters is None:
            self.waiters = []
        self.waiters.append(future)
        return future

    def _release(self) -> None:
        waiters, self.waiters = self.waiters, None
        for future in waiters or ():
            if not future.done():
                future.set_result(DELIVERED)


def _auth_token(frame: Frame, max_frame: int) -> str:
    """The token of an AUTH frame ("" when it is not one: the session refuses it)."""
    if frame.op != Op.AUTH:
        return ""
    try:
        return decode_body(frame.payload(max_frame), Auth).token
    except ProtocolError:
        return ""


class StreamInbox:
    """The frames of ``POST /v1/stream/{conn_id}`` to the sessions of this process."""

    __slots__ = ("behind", "hub", "max_frame")

    def __init__(self, hub: Hub, behind: set[Connection], max_frame: int) -> None:
        self.hub = hub
        self.behind = behind  # the outbox's connections past the soft limit
        self.max_frame = max_frame

    def deliver(self, conn_id: str, token: str, body: bytes) -> int | asyncio.Future[int]:
        """Hand ``body``'s frames to the session ``conn_id``; the status to answer with, or
        a future of it when the answer waits for the connection to drain.

        404: no such open stream session here; 401: ``token`` is not its AUTH
        token; 400: the body is not whole valid frames (the session is then
        closed with ERROR ``bad_frame``, as on any transport); 204: handed over.
        """
        conn = self.hub.conns.get(conn_id)
        if not isinstance(conn, StreamConnection) or conn.closed:
            return 404
        if not token or not hmac.compare_digest(conn.token.encode(), token.encode()):
            return 401
        try:
            frames = body_frames(body, self.max_frame)
        except ProtocolError as exc:
            conn.protocol_error(exc)
            return 400
        except RequestError:
            return 400
        for frame in frames:
            conn.frame_received(frame)
            if conn.closed:
                return DELIVERED
        if conn in self.behind:
            return conn.held()
        return DELIVERED
