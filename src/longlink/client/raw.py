"""A bare connection to a gateway, for tests that must break the rules.

:class:`RawConnection` does no session work at all: no AUTH, no heartbeats,
no replies. It sends whatever it is given (garbage bytes, an oversize frame, a
JOIN before AUTH) and hands back the server's frames one by one::

    async with await RawConnection.open("tcp", "127.0.0.1:7001") as raw:
        await raw.send_frame(Op.JOIN, b'{"room": "r1"}')
        frame = await raw.recv_frame()          # ERROR auth_required
        assert await raw.wait_closed()          # and the server closes
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from collections import deque
from types import TracebackType

from longlink.client.errors import ConnectionClosed
from longlink.client.messages import MAX_SERVER_FRAME
from longlink.client.stream import StreamTransport
from longlink.client.transport import TcpTransport, TransportKind, WsTransport, open_transport
from longlink.protocol import Frame, encode_frame


class RawConnection:
    """One open WebSocket, TCP or HTTP stream connection speaking raw frames; an async
    context manager. (The HTTP stream opens with the first frame sent: its AUTH.)"""

    def __init__(self, transport: TcpTransport | WsTransport | StreamTransport) -> None:
        self._transport = transport
        self._backlog: deque[Frame] = deque()  # frames read by wait_closed()
        self._closed_by_peer = False

    @classmethod
    async def open(
        cls,
        transport: TransportKind | str,
        address: str,
        *,
        timeout_s: float = 10.0,
        ssl: ssl_module.SSLContext | None = None,
        max_frame: int = MAX_SERVER_FRAME,
    ) -> RawConnection:
        """Connect to ``address``: a ``ws://`` URL for ``"ws"``, ``host:port`` for ``"tcp"``,
        an ``http://…/v1/stream`` URL for ``"stream"``.

        Raises :class:`~longlink.client.ConnectFailed` if it cannot be opened,
        ``ValueError`` for another ``transport``. Server frames up to
        ``max_frame`` bytes are accepted.
        """
        if transport not in ("ws", "tcp", "stream"):
            raise ValueError(f"transport must be 'ws', 'tcp' or 'stream', not {transport!r}")
        kind: TransportKind = (
            "ws" if transport == "ws" else "stream" if transport == "stream" else "tcp"
        )
        opened = await open_transport(
            kind, address, ssl=ssl, timeout_s=timeout_s, max_frame=max_frame
        )
        return cls(opened)

    async def __aenter__(self) -> RawConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code once closed (``None`` for TCP)."""
        if isinstance(self._transport, WsTransport):
            return self._transport.close_code
        return None

    async def send_bytes(self, data: bytes) -> None:
        """Send ``data`` as is: one binary message on WebSocket, raw stream bytes on TCP,
        one POST body on the HTTP stream.

        Raises :class:`ConnectionClosed` if the connection is gone.
        """
        await self._transport.send(data)

    async def send_frame(
        self,
        op: int,
        body: bytes = b"",
        *,
        flags: int = 0,
        codec: int = 0,
        seq: int = 0,
        msg_id: int = 0,
    ) -> None:
        """Encode one frame with :func:`longlink.protocol.encode_frame` and send it."""
        await self.send_bytes(
            encode_frame(op, body, flags=flags, codec=codec, seq=seq, msg_id=msg_id)
        )

    async def recv_frame(self, timeout: float | None = 10.0) -> Frame:  # noqa: ASYNC109
        """The next frame from the server.

        Raises :class:`TimeoutError` after ``timeout`` seconds, :class:`ConnectionClosed`
        once the server has closed and every frame it sent was returned, and
        :class:`~longlink.protocol.ProtocolError` if the server sent a malformed frame.
        """
        if self._backlog:
            return self._backlog.popleft()
        if self._closed_by_peer:
            raise ConnectionClosed("connection closed by the server")
        async with asyncio.timeout(timeout):
            try:
                return await self._transport.recv()
            except ConnectionClosed:
                self._closed_by_peer = True
                raise

    async def wait_closed(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109
        """Wait for the server to close; True if it did within ``timeout`` seconds.

        Frames arriving meanwhile are kept and returned by :meth:`recv_frame`.
        """
        if self._closed_by_peer:
            return True
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._backlog.append(await self._transport.recv())
        except ConnectionClosed:
            self._closed_by_peer = True
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        with contextlib.suppress(ConnectionClosed):
            await self._transport.close()

    def abort(self) -> None:
        """Drop the connection at once, with no closing handshake (a reset, as the server sees it).

        :meth:`close` may still be called afterwards.
        """
        self._transport.abort()
