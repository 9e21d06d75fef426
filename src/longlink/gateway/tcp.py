"""TCP bridge: frames back to back on the stream (PROTOCOL.md §1.4)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from longlink.gateway.connection import TCP, Connection
from longlink.protocol import FrameDecoder, ProtocolError

if TYPE_CHECKING:
    from longlink.gateway.server import Gateway


class TcpConnection(Connection):
    """A connection over raw TCP; the decoder buffers only a partial frame."""

    __slots__ = ("decoder",)

    kind: ClassVar[int] = TCP

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway)
        self.decoder = FrameDecoder(gateway.settings.max_frame)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            self.fail(exc)
            return
        for frame in frames:
            self.handle_frame(frame)
