"""One client connection: the bridge between an asyncio transport and the pure session.

A :class:`Connection` *is* its :class:`~longlink.protocol.server.ServerSession`
(a subclass, so an idle connection is one object: memory per connection is
a tracked figure) and the asyncio protocol of its transport. It does three
things and no more:

* frames in: the transport bridges (:mod:`~longlink.gateway.tcp`,
  :mod:`~longlink.gateway.websocket`, :mod:`~longlink.gateway.stream`)
  decode bytes into frames and call
  :meth:`Connection.frame_received`, which hands them to the session;
* outputs out: :meth:`Connection.apply` writes the frames the session
  returns (with the transport's own framing, through the outbox policy) and
  hands every other output to the gateway's :class:`SessionHost`, which
  carries out AUTH, JOIN, LEAVE, ACK, … and reports back to the session;
* the transport's life: ``connection_made``, ``connection_lost`` and the
  flow-control callbacks, told to the host and the outbox.

No task and no timer per connection.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar, Protocol, cast

from longlink.control.origins import Origins
from longlink.protocol import Frame, ProtocolError
from longlink.protocol.server import Event, Output, ServerSession, SessionRules

if TYPE_CHECKING:
    from longlink.gateway.guarantee import Unacked
    from longlink.gateway.outbox import Outbox

TCP = 0
WS = 1
STREAM = 2
#: Transport names by kind (metrics labels, REPORT windows); gateway/fanout.py frames each.
KINDS = ("tcp", "ws", "stream")


class SessionHost(Protocol):
    """What a connection needs from its gateway (the sessions part implements it)."""

    rules: SessionRules
    outbox: Outbox
    #: Browser origins allowed to open a WebSocket (PROTOCOL §1.5).
    origins: Origins

    @property
    def clock(self) -> float:
        """The gateway's monotonic time, refreshed every tick and on every read."""
        ...

    def accepted(self, conn: Connection) -> None:
        """A transport connected: give the connection its id and an AUTH deadline."""
        ...

    def handle(self, conn: Connection, event: Event) -> None:
        """Carry out one session output that is not a frame to write."""
        ...

    def released(self, conn: Connection) -> None:
        """The transport is gone (its ``connection_lost`` ran)."""
        ...


class Connection(ServerSession, asyncio.Protocol):
    """One client's session and transport (see the module docstring)."""

    __slots__ = (
        "conn_id",
        "dropped",
        "entered",
        "host",
        "peer",
        "transport",
        "unacked",
        "wheel_slot",
    )

    kind: ClassVar[int] = TCP

    def __init__(self, host: SessionHost) -> None:
        ServerSession.__init__(self, host.rules, host.clock)
        self.host = host
        self.transport: asyncio.Transport | None = None
        self.conn_id = ""
        self.peer: str | None = None  # client address, while counted per address (sessions)
        self.wheel_slot = -1
        self.dropped = 0  # low-priority messages dropped: the client read too slowly
        # Presence (gateway/events.py): the rooms whose ENTER fired.
        self.entered: tuple[str, ...] = ()
        # Guaranteed messages written and not acked (gateway/guarantee.py); None while
        # there are none, so an idle connection holds no dict.
        self.unacked: dict[int, Unacked] | None = None

    # -------------------------------------------------------------- transport side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        # The outbox's soft limit is the transport's high-water mark (gateway/outbox.py).
        self.transport.set_write_buffer_limits(high=self.host.outbox.soft_limit)
        self.host.accepted(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.apply(self.close())
        self.host.outbox.resume(self)
        self.host.released(self)
        self.transport = None

    def pause_writing(self) -> None:
        """The transport buffers more than the soft limit: a slow client (gateway/outbox.py)."""
        self.host.outbox.pause(self)

    def resume_writing(self) -> None:
        self.host.outbox.resume(self)

    def write(self, frame: bytes) -> None:
        """Write one encoded frame as it is (the bridge adds its own framing)."""
        if self.transport is not None:
            self.transport.write(frame)

    def write_many(self, frames: list[bytes]) -> None:
        """Write encoded frames in order with one transport write (one system call)."""
        self.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def shutdown(self) -> None:
        """Close the transport after what was written has been flushed."""
        if self.transport is not None:
            self.transport.close()

    # -------------------------------------------------------------- session side

    def frame_received(self, frame: Frame) -> None:
        """Hand one decoded client frame to the session and carry out what it says."""
        self.apply(self.receive(frame, self.host.clock))

    def protocol_error(self, error: ProtocolError) -> None:
        """The bridge could not decode what the client sent (always fatal)."""
        self.apply(self.fail(error))

    def apply(self, out: Output) -> None:
        """Carry out session outputs in order: frames are written, the rest goes to the host.

        A reply that would take the buffer past the hard limit closes the
        connection instead (``server_busy``, gateway/outbox.py).
        """
        host = self.host
        for item in out:
            if type(item) is bytes:
                if self.closed or not host.outbox.over_hard(self, len(item)):
                    self.write(item)
            else:
                host.handle(self, item)  # type: ignore[arg-type]
