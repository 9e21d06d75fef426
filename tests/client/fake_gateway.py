"""A tiny gateway and control API speaking the contract, for testing the SDK alone.

``FakeGateway`` listens on TCP (asyncio.start_server) or WebSocket
(websockets' server) on a free port and answers the session ops the way
PROTOCOL.md §1.2 says, recording every client frame. ``FakeControl`` is a
``/v1/connect`` behind ``httpx.MockTransport``. Tests drive both and wait for
what they expect with timeouts, never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed as WsClosed
from websockets.typing import Subprotocol

from longlink.protocol import Frame, FrameDecoder, Op, ProtocolError, decode_frame, encode_frame
from tests.conftest import WAIT


def body_of(**fields: Any) -> bytes:
    return msgspec.json.encode(fields)


class FakeConn:
    """One client connection as the fake gateway sees it."""

    def __init__(self, gateway: FakeGateway, number: int) -> None:
        self.gateway = gateway
        self.number = number
        self.frames: asyncio.Queue[Frame] = asyncio.Queue()
        self.auth: dict[str, Any] = {}
        self.closed = asyncio.Event()
        self._send_bytes: Any = None
        self._abort: Any = None

    async def send(self, op: int, body: bytes = b"", **header: int) -> None:
        await self.send_raw(encode_frame(op, body, **header))

    async def send_raw(self, data: bytes) -> None:
        await self._send_bytes(data)

    async def next_frame(self, *ops: int) -> Frame:
        """The next recorded client frame, skipping ops not in ``ops`` (if given)."""
        while True:
            frame = await asyncio.wait_for(self.frames.get(), WAIT)
            if not ops or frame.op in ops:
                return frame

    def drop(self) -> None:
        """Lose the connection abruptly."""
        self._abort()

    async def _handle(self, frame: Frame) -> bool:
        """Answer one client frame; False ends the connection."""
        self.frames.put_nowait(frame)
        gw = self.gateway
        if frame.op == Op.AUTH:
            self.auth = msgspec.json.decode(frame.body)
            if gw.auth_errors:
                code = gw.auth_errors.pop(0)
                await self.send(Op.ERROR, body_of(code=code, message="refused"), seq=frame.seq)
                return False
            ok = body_of(
                conn_id=f"c{self.number}",
                user="u1",
                device="d1",
                node=gw.node,
                heartbeat_s=gw.heartbeat_s,
                codec="br",
                rooms=self.auth.get("rooms", []),
            )
            await self.send(Op.AUTH_OK, ok, seq=frame.seq)
            gw.connections.put_nowait(self)
        elif frame.op == Op.HEARTBEAT and gw.answer_heartbeats:
            await self.send(Op.HEARTBEAT_OK, body_of(online=gw.online), seq=frame.seq)
        elif frame.op == Op.JOIN:
            room = msgspec.json.decode(frame.body)["room"]
            if room in gw.silent_rooms:
                return True
            if room in gw.join_errors:
                error = body_of(code=gw.join_errors[room], message="no")
                await self.send(Op.ERROR, error, seq=frame.seq)
            else:
                await self.send(Op.JOIN_OK, body_of(room=room, online=3), seq=frame.seq)
        elif frame.op == Op.LEAVE:
            await self.send(Op.LEAVE_OK, frame.body, seq=frame.seq)
        elif frame.op == Op.UPSTREAM:
            await self.send(Op.UPSTREAM_OK, seq=frame.seq)
        return True


@dataclass
class FakeGateway:
    """A gateway node on a free port: ``address`` is its ws URL or ``host:port``."""

    kind: str = "tcp"
    node: str = "g1"
    heartbeat_s: int = 30
    online: dict[str, int] = field(default_factory=dict)
    answer_heartbeats: bool = True
    auth_errors: list[str] = field(default_factory=list)
    join_errors: dict[str, str] = field(default_factory=dict)
    silent_rooms: set[str] = field(default_factory=set)
    address: str = ""
    connections: asyncio.Queue[FakeConn] = field(default_factory=asyncio.Queue)
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _tcp: asyncio.Server | None = None
    _ws: Server | None = None
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    async def start(self) -> FakeGateway:
        if self.kind == "tcp":
            self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", 0)
            port = self._tcp.sockets[0].getsockname()[1]
            self.address = f"127.0.0.1:{port}"
        else:
            self._ws = await serve(
                self._serve_ws,
                "127.0.0.1",
                0,
                subprotocols=[Subprotocol("longlink.v1")],
                compression=None,
            )
            port = next(iter(self._ws.sockets)).getsockname()[1]
            self.address = f"ws://127.0.0.1:{port}/ws"
        return self

    async def stop(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
            for task in self._handlers:
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._tcp.wait_closed()
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()

    async def next_connection(self) -> FakeConn:
        """The next connection that completed AUTH."""
        return await asyncio.wait_for(self.connections.get(), WAIT)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        conn = FakeConn(self, next(self._counter))

        async def send_bytes(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        conn._send_bytes = send_bytes
        conn._abort = writer.transport.abort
        decoder = FrameDecoder()
        try:
            while chunk := await reader.read(65536):
                try:
                    frames = decoder.feed(chunk)
                except ProtocolError as exc:
                    await conn.send(Op.ERROR, body_of(code=exc.code.value, message=exc.message))
                    break
                for frame in frames:
                    if not await conn._handle(frame):
                        break
                else:
                    continue
                break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            conn.closed.set()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._handlers.discard(task)

    async def _serve_ws(self, ws: ServerConnection) -> None:
        conn = FakeConn(self, next(self._counter))

        async def send_bytes(data: bytes) -> None:
            await ws.send(data)

        conn._send_bytes = send_bytes
        conn._abort = ws.transport.abort
        try:
            async for message in ws:
                assert isinstance(message, bytes)
                if not await conn._handle(decode_frame(message)):
                    break
        except WsClosed:
            pass
        finally:
            conn.closed.set()


class FakeControl:
    """``POST /v1/connect`` answering grants for ``gateways`` (best first), recording bodies."""

    def __init__(self, *gateways: FakeGateway) -> None:
        self.gateways = list(gateways)
        self.requests: list[dict[str, Any]] = []
        self.failures: list[httpx.Response] = []  # answered first, one per request
        self.extra_endpoints: list[dict[str, Any]] = []  # listed before the gateways

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/connect"
        self.requests.append(msgspec.json.decode(request.content))
        if self.failures:
            return self.failures.pop(0)
        endpoints = [
            {"node": gw.node, "region": "local", gw.kind: gw.address} for gw in self.gateways
        ]
        grant = {
            "token": f"tok-{len(self.requests)}",
            "expires_at": 1_790_000_000,
            "heartbeat_s": 30,
            "endpoints": self.extra_endpoints + endpoints,
        }
        return httpx.Response(200, json=grant)

    def http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))
