"""WebSocket bridge: ``/ws`` with subprotocol ``longlink.v1``, one frame per binary message.

The framing is longlink's own sans-I/O code (:mod:`longlink.protocol.websocket`)
on a plain asyncio protocol: a library connection object per client would
cost 10–30 KiB each (docs/websocket.md has the figures). An upgrade whose
``Origin`` header names an origin the host's policy does not allow is refused
with 403 (PROTOCOL.md §1.5).
"""

from __future__ import annotations

from typing import ClassVar

from longlink.gateway.connection import WS, Connection, SessionHost
from longlink.protocol import ErrorCode, ProtocolError, decode_frame
from longlink.protocol import websocket as wsp

SUBPROTOCOL = "longlink.v1"
WS_PATH = "/ws"


def ws_message(frame: bytes) -> bytes:
    """``frame`` as one binary WebSocket message (the same bytes for every client)."""
    return wsp.encode_frame(wsp.WsOpcode.BINARY, frame)


class WsConnection(Connection):
    """A connection over WebSocket; the handshake parser is dropped after the upgrade."""

    __slots__ = ("handshake", "reader")

    kind: ClassVar[int] = WS

    def __init__(self, host: SessionHost) -> None:
        super().__init__(host)
        self.handshake: wsp.HandshakeParser | None = wsp.HandshakeParser()
        self.reader: wsp.WsReader | None = None

    def write(self, frame: bytes) -> None:
        if self.transport is not None and self.reader is not None:
            self.transport.write(wsp.encode_frame(wsp.WsOpcode.BINARY, frame))

    def write_many(self, frames: list[bytes]) -> None:
        # One WebSocket message per frame (PROTOCOL §1.4), all in one transport write.
        if self.transport is not None and self.reader is not None:
            binary = wsp.WsOpcode.BINARY
            self.transport.write(b"".join([wsp.encode_frame(binary, f) for f in frames]))

    def shutdown(self) -> None:
        if self.transport is not None:
            if self.reader is not None and not self.transport.is_closing():
                self.transport.write(wsp.encode_close(1000))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.handshake is not None:
            data = self._upgrade(data)
            if not data:
                return
        assert self.reader is not None
        try:
            messages = self.reader.feed(data)
        except wsp.WsError as exc:
            self._ws_error(exc)
            return
        max_frame = self.rules.max_frame
        for opcode, payload in messages:
            if opcode == wsp.WsOpcode.BINARY:
                try:
                    frame = decode_frame(payload, max_frame)
                except ProtocolError as exc:
                    self.protocol_error(exc)
                    return
                self.frame_received(frame)
            elif opcode == wsp.WsOpcode.PING:
                if self.transport is not None:
                    self.transport.write(wsp.encode_frame(wsp.WsOpcode.PONG, payload))
            elif opcode == wsp.WsOpcode.CLOSE:
                self._closed_by_peer(payload)
                return
            elif opcode == wsp.WsOpcode.TEXT:
                self.protocol_error(
                    ProtocolError(ErrorCode.BAD_FRAME, "text message: frames are binary")
                )
                return
            if self.transport is None or self.transport.is_closing():
                return

    def _upgrade(self, data: bytes) -> bytes:
        """Feed the HTTP upgrade; returns bytes that follow it (already WebSocket)."""
        assert self.handshake is not None and self.transport is not None
        try:
            request = self.handshake.feed(data)
            if request is None:
                return b""
            if request.path.split("?", 1)[0] != WS_PATH:
                raise wsp.HandshakeError(404, f"no WebSocket endpoint at {request.path}")
            # PROTOCOL §1.5: a browser page from an origin not allowed gets 403.
            origin = request.headers.get("origin")
            if not self.host.origins.allows(origin):
                raise wsp.HandshakeError(403, f"origin {origin} is not allowed")
        except wsp.HandshakeError as exc:
            self.transport.write(wsp.reject_response(exc.status, exc.reason))
            self.handshake = None
            self.transport.close()
            return b""
        leftover = self.handshake.leftover
        self.handshake = None
        # PROTOCOL §1.4: subprotocol longlink.v1; a client that names none is served too.
        chosen = SUBPROTOCOL if SUBPROTOCOL in request.subprotocols else None
        if request.subprotocols and chosen is None:
            self.transport.write(wsp.reject_response(400, f"subprotocol must be {SUBPROTOCOL}"))
            self.transport.close()
            return b""
        self.transport.write(wsp.accept_response(request.key, chosen))
        self.reader = wsp.WsReader(self.rules.max_frame)
        return leftover

    def _ws_error(self, exc: wsp.WsError) -> None:
        code = ErrorCode.TOO_LARGE if exc.close_code == 1009 else ErrorCode.BAD_FRAME
        self.protocol_error(ProtocolError(code, exc.reason))

    def _closed_by_peer(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            try:
                code, _ = wsp.parse_close(payload)
            except wsp.WsError:
                code = 1002
            self.transport.write(wsp.encode_close(code if code != 1005 else 1000))
            self.reader = None  # nothing more is sent after the close frame
        self.apply(self.close())
