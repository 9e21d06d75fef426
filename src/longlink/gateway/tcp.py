"""TCP bridge: frames back to back on the stream (PROTOCOL.md §1.5)."""

from __future__ import annotations

from typing import ClassVar

from longlink.gateway.connection import TCP, Connection, SessionHost
from longlink.protocol import FrameDecoder, ProtocolError


class TcpConnection(Connection):
    """A connection over raw TCP; the decoder buffers only a partial frame."""

    __slots__ = ("decoder",)

    kind: ClassVar[int] = TCP

    def __init__(self, host: SessionHost) -> None:
        super().__init__(host)
        self.decoder = FrameDecoder(host.rules.max_frame)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            self.protocol_error(exc)
            return
        for frame in frames:
            self.frame_received(frame)
