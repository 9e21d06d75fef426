"""Thin bridges between a socket and frames: WebSocket, TCP and HTTP stream (PROTOCOL.md §1.5).

A transport sends bytes and receives decoded :class:`~longlink.protocol.Frame`
values; it knows nothing of sessions. Framing is ``longlink.protocol``'s: a
WebSocket binary message is one frame (:func:`decode_frame`), a TCP stream is
fed to a :class:`FrameDecoder`, and so is the HTTP stream's response
(:mod:`longlink.client.stream`).

Every way a transport can end surfaces as :class:`ConnectionClosed` (from
``send`` and ``recv``); a malformed frame from the server raises
:class:`~longlink.protocol.ProtocolError` from ``recv``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from collections import deque
from typing import Literal, Protocol

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from longlink.client.errors import ConnectFailed, ConnectionClosed
from longlink.client.messages import MAX_SERVER_FRAME
from longlink.client.stream import StreamTransport
from longlink.client.tls import tls_context
from longlink.protocol import ErrorCode, Frame, FrameDecoder, ProtocolError, decode_frame

TransportKind = Literal["ws", "tcp", "stream"]
#: Every transport the SDK speaks, in its default order of preference.
TRANSPORT_KINDS: tuple[TransportKind, ...] = ("ws", "stream", "tcp")

#: The WebSocket subprotocol of PROTOCOL.md §1.4.
SUBPROTOCOL = Subprotocol("longlink.v1")

_READ_CHUNK = 64 * 1024
_CLOSE_TIMEOUT_S = 2.0


class Transport(Protocol):
    """One open connection to a gateway, carrying frames both ways."""

    async def send(self, data: bytes) -> None:
        """Write ``data`` (one or more encoded frames; on WebSocket, exactly one)."""

    async def recv(self) -> Frame:
        """The next frame from the server; cancelling it loses nothing."""

    async def close(self) -> None:
        """Close politely (WebSocket closing handshake); idempotent."""

    def abort(self) -> None:
        """Close at once, without waiting for the peer; ``recv`` then raises."""


class TcpTransport:
    """Frames back to back on a TCP (or TLS) stream."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_frame: int = MAX_SERVER_FRAME,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder(max_frame)
        self._frames: deque[Frame] = deque()

    @classmethod
    async def open(
        cls,
        address: str,
        *,
        ssl: ssl_module.SSLContext | None = None,
        max_frame: int = MAX_SERVER_FRAME,
    ) -> TcpTransport:
        """Connect to ``address`` (``host:port``, ``[v6]:port``); raises ``OSError``."""
        host, port = split_host_port(address)
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl, server_hostname=host if ssl is not None else None
        )
        return cls(reader, writer, max_frame)

    async def send(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionClosed("connection closed")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise ConnectionClosed(f"connection lost: {exc!r}") from exc

    async def recv(self) -> Frame:
        while not self._frames:
            try:
                chunk = await self._reader.read(_READ_CHUNK)
            except (ConnectionError, OSError) as exc:
                raise ConnectionClosed(f"connection lost: {exc!r}") from exc
            if not chunk:
                raise ConnectionClosed("connection closed by the server")
            self._frames.extend(self._decoder.feed(chunk))
        return self._frames.popleft()

    async def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await self._writer.wait_closed()

    def abort(self) -> None:
        self._writer.transport.abort()


class WsTransport:
    """One frame per binary WebSocket message, subprotocol ``longlink.v1``."""

    def __init__(self, ws: ClientConnection, max_frame: int = MAX_SERVER_FRAME) -> None:
        self._ws = ws
        self._max_frame = max_frame

    @classmethod
    async def open(
        cls,
        uri: str,
        *,
        ssl: ssl_module.SSLContext | None = None,
        max_frame: int = MAX_SERVER_FRAME,
        open_timeout: float | None = None,
    ) -> WsTransport:
        """Open the WebSocket at ``uri``; raises ``OSError``, ``TimeoutError`` or a
        ``websockets`` handshake error."""
        ws = await connect(
            uri,
            subprotocols=[SUBPROTOCOL],
            compression=None,  # bodies are compressed by the frame codec already
            max_size=max_frame,
            ping_interval=None,  # liveness is the protocol's HEARTBEAT (§1.3 rule 3)
            open_timeout=open_timeout,
            close_timeout=_CLOSE_TIMEOUT_S,
            ssl=(ssl or tls_context()) if uri.startswith("wss:") else None,
        )
        return cls(ws, max_frame)

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code, once the connection is closed."""
        return self._ws.close_code

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send(data)
        except websockets.exceptions.ConnectionClosed as exc:
            raise ConnectionClosed(f"connection closed: {exc}") from exc

    async def recv(self) -> Frame:
        try:
            message = await self._ws.recv()
        except websockets.exceptions.ConnectionClosed as exc:
            raise ConnectionClosed(f"connection closed: {exc}") from exc
        if isinstance(message, str):
            raise ProtocolError(ErrorCode.BAD_FRAME, "text WebSocket message")
        return decode_frame(message, self._max_frame)

    async def close(self) -> None:
        await self._ws.close()

    def abort(self) -> None:
        self._ws.transport.abort()


async def open_transport(
    kind: TransportKind,
    address: str,
    *,
    ssl: ssl_module.SSLContext | None = None,
    timeout_s: float | None = None,
    max_frame: int = MAX_SERVER_FRAME,
    http: httpx.AsyncClient | None = None,
) -> TcpTransport | WsTransport | StreamTransport:
    """Open a ``kind`` transport to ``address``; any failure raises :class:`ConnectFailed`.

    The HTTP stream opens with its first ``send`` (the AUTH frame is the body of
    its opening POST): its failures surface there, as :class:`ConnectionClosed`.
    ``http`` is the client it uses (else its own, closed with it).
    """
    if kind == "stream":
        if not address.startswith(("http://", "https://")):
            raise ConnectFailed(f"cannot open stream {address}: not an http(s) URL")
        return StreamTransport(
            address, http, ssl=ssl, timeout_s=timeout_s or 10.0, max_frame=max_frame
        )
    try:
        async with asyncio.timeout(timeout_s):
            if kind == "ws":
                return await WsTransport.open(
                    address, ssl=ssl, max_frame=max_frame, open_timeout=timeout_s
                )
            return await TcpTransport.open(address, ssl=ssl, max_frame=max_frame)
    except (OSError, TimeoutError, ValueError, websockets.exceptions.WebSocketException) as exc:
        raise ConnectFailed(f"cannot open {kind} {address}: {exc!r}") from exc


def split_host_port(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[::1]:port"`` as ``(host, port)``; raises ``ValueError``."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)
