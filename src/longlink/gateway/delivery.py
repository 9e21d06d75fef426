"""Writing pushes to connections: frame once, write the same bytes to many.

:class:`Delivery` is the gateway's write path. It resolves a message's
target to local connections (the hub), encodes the PUSH frame once (and its
WebSocket message once), and writes it to each connection, applying the
outbox policy: a client whose write buffer is over the soft limit loses
low-priority pushes (counted); over the hard limit even a high-priority push
closes it with ``server_busy``. A slow client never slows its room.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from longlink.gateway.connection import Connection
from longlink.gateway.websocket import ws_message
from longlink.model import Message, Priority
from longlink.protocol import ErrorCode, Flag, Op, ProtocolError, encode_frame
from longlink.protocol.session import SessionState

if TYPE_CHECKING:
    from longlink.gateway.server import Gateway

OUTBOX_SOFT_LIMIT = 1 << 20  # bytes queued to a client before low-priority pushes are dropped
OUTBOX_HARD_LIMIT = 4 << 20  # past this even high priority does not fit: close server_busy


class Delivery:
    """The gateway's write path (see the module docstring)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.hub = gateway.hub
        self.metrics = gateway.metrics

    def deliver(self, messages: Sequence[Message]) -> None:
        """Write each message to every local connection it targets (frame once, write many)."""
        for message in messages:
            flags = 0
            if message.priority == Priority.HIGH:
                flags |= Flag.HIGH_PRIORITY
            if message.guaranteed:
                flags |= Flag.ACK_REQUIRED
            frame = encode_frame(Op.PUSH, message.payload, flags=flags, msg_id=message.msg_id)
            self.write_many(self.hub.resolve(message.target), frame, message.priority)

    def write_many(self, conns: Iterable[Connection], frame: bytes, priority: Priority) -> int:
        """Write one frame to many connections; the WebSocket message is built once."""
        encoded: list[bytes | None] = [frame, None]
        written = 0
        high = priority == Priority.HIGH
        for conn in conns:
            transport = conn.transport
            if transport is None or conn.state != SessionState.OPEN:
                continue
            queued = transport.get_write_buffer_size()
            if queued > OUTBOX_SOFT_LIMIT:
                # A slow client never slows its room: it loses low priority, then its connection.
                if not high:
                    self.metrics.slow_drops.labels("low").inc()
                    continue
                if queued > OUTBOX_HARD_LIMIT:
                    self.metrics.slow_drops.labels("high").inc()
                    conn.fail(ProtocolError(ErrorCode.SERVER_BUSY, "client reads too slowly"))
                    continue
            data = encoded[conn.kind]
            if data is None:
                data = encoded[conn.kind] = ws_message(frame)
            transport.write(data)
            written += 1
        self.metrics.pushes_written.inc(written)
        return written
