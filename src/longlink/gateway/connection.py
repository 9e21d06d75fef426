"""One client connection: the session rules shared by every transport.

A :class:`Connection` is the asyncio protocol object itself (no task, no
timer per connection: memory per idle connection is a tracked figure). The
transport bridges (:mod:`~longlink.gateway.tcp`, :mod:`~longlink.gateway.websocket`)
turn bytes into frames and call :meth:`Connection.handle_frame`; everything
else — AUTH, heartbeats, JOIN/LEAVE, errors — lives here once.

Frames are handled strictly in order. While an asynchronous step is in
flight (registering the session, joining a room in the registry) later
frames wait in ``deferred`` and are handled when it completes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, ClassVar, cast

from longlink.control.tokens import TokenExpired, TokenInvalid
from longlink.logic.presence import Liveness
from longlink.protocol import ErrorCode, Frame, Op, ProtocolError, encode_frame
from longlink.protocol.messages import (
    Auth,
    AuthOk,
    ErrorBody,
    HeartbeatOk,
    JoinOk,
    KickBody,
    RoomBody,
    decode_ack,
    decode_body,
    encode_body,
)
from longlink.protocol.session import (
    Action,
    SessionState,
    admit,
    choose_codec,
    clamp_heartbeat,
    valid_name,
)

if TYPE_CHECKING:
    from longlink.gateway.guarantee import Unacked
    from longlink.gateway.server import Gateway

log = logging.getLogger("longlink.gateway")

TCP = 0
WS = 1
MAX_DEFERRED = 256  # frames held while an async step runs; more is a flood


class Connection(asyncio.Protocol):
    """Session state of one client, shared by the TCP and WebSocket bridges."""

    __slots__ = (
        "codec",
        "conn_id",
        "deferred",
        "device",
        "dropped",
        "entered",
        "gateway",
        "heartbeat_s",
        "last_seen",
        "liveness",
        "rooms",
        "state",
        "transport",
        "unacked",
        "upstream_tat",
        "user",
        "wheel_slot",
    )

    kind: ClassVar[int] = TCP

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.transport: asyncio.Transport | None = None
        self.conn_id = ""
        self.state = SessionState.AWAIT_AUTH
        self.user = ""
        self.device = ""
        self.rooms: tuple[str, ...] = ()
        self.codec = 0
        self.heartbeat_s = 0
        self.last_seen = gateway.clock
        self.wheel_slot = -1
        self.deferred: deque[Frame] | None = None
        self.dropped = 0  # low-priority messages dropped: the client read too slowly
        # Presence (gateway/events.py): rooms whose ENTER fired, alive/suspect/gone,
        # and the upstream rate limit's state (logic/upstream.py).
        self.entered: tuple[str, ...] = ()
        self.liveness = Liveness.ALIVE
        self.upstream_tat = 0.0
        # Guaranteed messages written and not acked (gateway/guarantee.py); None while
        # there are none, so an idle connection holds no dict.
        self.unacked: dict[int, Unacked] | None = None

    @property
    def closed(self) -> bool:
        """True once the session is over (checked again after every await)."""
        return self.state == SessionState.CLOSED

    # -------------------------------------------------------------- transport side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        # The outbox's soft limit (gateway/delivery.py) is the transport's high-water mark.
        self.transport.set_write_buffer_limits(high=self.gateway.delivery.soft_limit)
        self.gateway.accepted(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gateway.lost(self)
        self.gateway.released(self)
        self.gateway.delivery.resume(self)
        self.transport = None

    def pause_writing(self) -> None:
        """The transport buffers more than the soft limit: a slow client (gateway/delivery.py)."""
        self.gateway.delivery.pause(self)

    def resume_writing(self) -> None:
        self.gateway.delivery.resume(self)

    def send(self, frame: bytes) -> None:
        """Write one encoded frame (the bridge adds its own framing)."""
        if self.transport is not None:
            self.transport.write(frame)

    def send_many(self, frames: list[bytes]) -> None:
        """Write encoded frames in order with one transport write (one system call)."""
        self.send(frames[0] if len(frames) == 1 else b"".join(frames))

    def shutdown(self) -> None:
        """Close the transport after what was written has been flushed."""
        if self.transport is not None:
            self.transport.close()

    # -------------------------------------------------------------- session side

    def handle_frame(self, frame: Frame) -> None:
        """Apply one client frame; errors become ERROR frames (and a close when fatal)."""
        if self.deferred is not None:
            if len(self.deferred) >= MAX_DEFERRED:
                self.fail(ProtocolError(ErrorCode.RATE_LIMITED, "too many frames in flight"))
            else:
                self.deferred.append(frame)
            return
        try:
            action = admit(self.state, frame.op)
            if action == Action.HANDLE:
                self.last_seen = self.gateway.clock
                self._handle(frame)
            elif action == Action.DEFER:
                self.deferred = deque([frame])
        except ProtocolError as exc:
            self.fail(exc, frame.seq)

    def _handle(self, frame: Frame) -> None:
        op = frame.op
        if op == Op.HEARTBEAT:
            # PROTOCOL §1.3 rule 3: answer with the online counts of the rooms.
            counts = self.gateway.room_counts(self.rooms)
            body = encode_body(HeartbeatOk(counts))
            self.send(encode_frame(Op.HEARTBEAT_OK, body, seq=frame.seq))
            self.gateway.presence.heartbeat(self)  # re-asserts the rooms (idempotent enter)
        elif op == Op.AUTH:
            self._auth(frame)
        elif op == Op.JOIN:
            room = decode_body(frame.body, RoomBody).room
            if room not in self.rooms:
                self._check_room(room)
                if len(self.rooms) >= self.gateway.settings.max_rooms:
                    raise ProtocolError(
                        ErrorCode.ROOM_LIMIT, f"at most {self.gateway.settings.max_rooms} rooms"
                    )
            # A room already joined goes through the registry too (idempotent there),
            # so its JOIN_OK carries the current count, not a cached one.
            self._run(self._join(room, frame.seq))
        elif op == Op.LEAVE:
            room = decode_body(frame.body, RoomBody).room
            if room not in self.rooms:
                self.send(encode_frame(Op.LEAVE_OK, encode_body(RoomBody(room)), seq=frame.seq))
                return
            self._run(self._leave(room, frame.seq))
        elif op == Op.ACK:
            self.gateway.acked(self, decode_ack(frame.body, frame.msg_id))
        elif op == Op.UPSTREAM:
            self.gateway.upstream(self, frame)

    def _check_room(self, room: str) -> None:
        if not valid_name(room):
            raise ProtocolError(ErrorCode.NOT_ALLOWED, f"invalid room name {room[:40]!r}")

    def _auth(self, frame: Frame) -> None:
        gateway = self.gateway
        settings = gateway.settings
        auth = decode_body(frame.body, Auth)
        try:
            claims = gateway.tokens.verify(auth.token)
        except TokenExpired as exc:
            raise ProtocolError(ErrorCode.TOKEN_EXPIRED, "connection token expired") from exc
        except TokenInvalid as exc:
            raise ProtocolError(ErrorCode.AUTH_FAILED, "invalid connection token") from exc
        rooms = list(dict.fromkeys(auth.rooms))
        for room in rooms:
            self._check_room(room)
        if len(rooms) > settings.max_rooms:
            raise ProtocolError(ErrorCode.ROOM_LIMIT, f"at most {settings.max_rooms} rooms")
        self.user = claims.user
        self.device = claims.device
        self.codec = choose_codec(auth.codecs)
        self.heartbeat_s = clamp_heartbeat(
            auth.heartbeat_s,
            settings.heartbeat_s,
            settings.min_heartbeat_s,
            settings.max_heartbeat_s,
        )
        self.state = SessionState.AUTHENTICATING
        self._run(self._open(rooms, frame.seq))

    async def _open(self, rooms: list[str], seq: int) -> None:
        await self.gateway.open_session(self, rooms)
        if self.closed:
            return
        self.state = SessionState.OPEN
        body = AuthOk(
            conn_id=self.conn_id,
            user=self.user,
            device=self.device,
            node=self.gateway.settings.node_id,
            heartbeat_s=self.heartbeat_s,
            codec=_CODEC_NAMES[self.codec],
            rooms=list(self.rooms),
        )
        self.send(encode_frame(Op.AUTH_OK, encode_body(body), seq=seq))
        self.gateway.opened(self)

    async def _join(self, room: str, seq: int) -> None:
        online = await self.gateway.join(self, room)
        self.send(encode_frame(Op.JOIN_OK, encode_body(JoinOk(room, online)), seq=seq))

    async def _leave(self, room: str, seq: int) -> None:
        await self.gateway.leave(self, room)
        self.send(encode_frame(Op.LEAVE_OK, encode_body(RoomBody(room)), seq=seq))

    def _run(self, step: Awaitable[None]) -> None:
        """Run an async step; frames arriving meanwhile wait in ``deferred``."""
        if self.deferred is None:
            self.deferred = deque()
        self.gateway.spawn(self._step(step))

    async def _step(self, step: Awaitable[None]) -> None:
        try:
            await step
        except ProtocolError as exc:
            self.fail(exc)
        except Exception:
            log.exception("conn %s: step failed", self.conn_id)
            self.fail(ProtocolError(ErrorCode.SERVER_BUSY, "internal error, try again"))
        if self.closed:
            self.deferred = None
            return
        waiting = self.deferred
        self.deferred = None
        while waiting:
            self.handle_frame(waiting.popleft())
            if self.deferred is not None:  # another async step started: keep the rest
                self.deferred.extend(waiting)
                return

    # -------------------------------------------------------------- errors and close

    def fail(self, error: ProtocolError, seq: int = 0) -> None:
        """Send ERROR; close after it when the error is fatal (PROTOCOL §1.3)."""
        if self.state == SessionState.CLOSED:
            return
        body = encode_body(ErrorBody(error.code.value, error.message))
        self.send(encode_frame(Op.ERROR, body, seq=seq))
        if error.fatal:
            log.info("conn %s closed: %s", self.conn_id or "-", error)
            self.close_session()

    def kick(self, reason: str) -> None:
        """Send KICK with ``reason`` and close (PROTOCOL §1.2 op 15)."""
        if self.state == SessionState.CLOSED:
            return
        self.send(encode_frame(Op.KICK, encode_body(KickBody(reason))))
        self.close_session()

    def close_session(self) -> None:
        """Stop the session now and close the transport once flushed; idempotent."""
        if self.state == SessionState.CLOSED:
            return
        self.gateway.lost(self)
        self.shutdown()


_CODEC_NAMES = {0: "none", 1: "zlib", 2: "br"}
