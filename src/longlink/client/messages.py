"""What the client hands to the application: pushed messages and events.

:class:`Message` is one PUSH (PROTOCOL.md §1.2 op 5). :class:`ClientEvent` and
its subclasses are everything else worth telling the application: EVENT
frames, ERROR frames not answering a request, KICK, and the client's own
disconnects and reconnects. All are frozen dataclasses with slots.

:func:`unpack_pushes` is pure: it turns a PUSH frame, plain or BATCH with any
codec, into its messages in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from longlink.protocol import ErrorCode, Flag, Frame, Op, ProtocolError
from longlink.protocol.messages import AuthOk, ErrorBody, KickBody, decode_body

#: Largest decoded body accepted from the server (a BATCH inflates to at most this).
MAX_SERVER_FRAME = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Message:
    """One pushed message.

    ``data`` is the business payload as sent (for a push made with JSON
    ``data``, its UTF-8 JSON encoding). ``guaranteed`` is set for messages the
    server wants acknowledged (``ACK_REQUIRED``); with ``auto_ack`` the client
    acks them when the application takes them.
    """

    msg_id: int
    data: bytes
    guaranteed: bool = False
    high_priority: bool = False

    def json(self) -> Any:
        """The payload decoded as JSON (raises ``msgspec.DecodeError`` if it is not)."""
        return msgspec.json.decode(self.data)


def message_from_frame(frame: Frame, max_size: int = MAX_SERVER_FRAME) -> Message:
    """The :class:`Message` a plain (non-BATCH) PUSH frame carries."""
    return Message(
        msg_id=frame.msg_id,
        data=frame.payload(max_size),
        guaranteed=bool(frame.flags & Flag.ACK_REQUIRED),
        high_priority=bool(frame.flags & Flag.HIGH_PRIORITY),
    )


def unpack_pushes(frame: Frame, max_size: int = MAX_SERVER_FRAME) -> list[Message]:
    """The messages of a PUSH frame in wire order: itself, or a BATCH's inner PUSH frames.

    The BATCH body is decoded with the frame's codec (none, zlib or brotli)
    and split into inner frames (PROTOCOL.md §1.1); inner frames that are not
    PUSH are skipped. Raises :class:`~longlink.protocol.ProtocolError` on a
    malformed batch.
    """
    return [
        message_from_frame(inner, max_size)
        for inner in frame.inner_frames(max_size)
        if inner.op == Op.PUSH
    ]


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """Base of everything :meth:`Client.next_event` returns; match on the subclass."""


@dataclass(frozen=True, slots=True)
class ServerEvent(ClientEvent):
    """An EVENT frame (PROTOCOL.md §1.2 op 13), e.g. someone entered a room.

    ``data`` is the whole JSON object; ``type``, ``room`` and ``user`` are
    copied out of it for convenience (empty / ``None`` when absent).
    """

    type: str
    room: str | None
    user: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorEvent(ClientEvent):
    """An ERROR frame that answers no pending request (PROTOCOL.md §1.2 op 14).

    Errors answering JOIN, LEAVE or UPSTREAM are raised from those calls as
    :class:`~longlink.client.ServerError` instead. A fatal code is followed by
    the server closing the connection; a :class:`Disconnected` event follows.
    """

    code: str
    message: str
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Kicked(ClientEvent):
    """The server sent KICK (PROTOCOL.md §1.2 op 15).

    Reason ``drain`` makes the client reconnect elsewhere (when ``reconnect``
    is on); any other reason stops the client for good.
    """

    reason: str


@dataclass(frozen=True, slots=True)
class Disconnected(ClientEvent):
    """The connection was lost or dropped.

    ``will_reconnect`` tells whether the client is now reconnecting; when it is
    false, the client has stopped and its iterators raise ``ConnectionClosed``
    once drained.
    """

    reason: str
    will_reconnect: bool


@dataclass(frozen=True, slots=True)
class Reconnected(ClientEvent):
    """The client is connected again after a loss; ``attempts`` counts the tries it took.

    Rooms in :attr:`Client.rooms` were sent in the new AUTH; messages pushed
    while disconnected are redelivered by the server if they were guaranteed.
    """

    auth_ok: AuthOk
    attempts: int


def event_from_body(body: bytes) -> ServerEvent:
    """A :class:`ServerEvent` from an EVENT body; a non-object body gives type ``""``."""
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        value = None
    data: dict[str, Any] = value if isinstance(value, dict) else {}
    kind = data.get("type")
    room = data.get("room")
    user = data.get("user")
    return ServerEvent(
        type=kind if isinstance(kind, str) else "",
        room=room if isinstance(room, str) else None,
        user=user if isinstance(user, str) else None,
        data=data,
    )


def error_of(body: bytes) -> ErrorBody:
    """The ERROR body; an unreadable one becomes code ``bad_frame`` with the raw text."""
    try:
        return decode_body(body, ErrorBody)
    except ProtocolError:
        return ErrorBody(ErrorCode.BAD_FRAME.value, body[:200].decode("utf-8", "replace"))


def kick_reason(body: bytes) -> str:
    """The reason of a KICK body (``""`` if unreadable)."""
    try:
        return decode_body(body, KickBody).reason
    except ProtocolError:
        return ""
