"""What a client receives, decoded: messages, events and the frames they come in (PROTOCOL.md §1.2).

The application-facing values of the client session (:mod:`longlink.protocol.client`):
:class:`Message` (a PUSH, tagged with its room, §1.4 rule 1) and the
:class:`ClientEvent` family; the pure decoders that turn server frames into
them; and :class:`RecentIds`, the bounded window that drops duplicates.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgspec

from longlink.protocol.errors import ErrorCode, ProtocolError
from longlink.protocol.frames import Flag, Frame, Op
from longlink.protocol.messages import ErrorBody, KickBody, decode_body
from longlink.protocol.push import split_room_batch

__all__ = [
    "MAX_SERVER_FRAME",
    "ClientEvent",
    "ErrorEvent",
    "Kicked",
    "Message",
    "RecentIds",
    "Recovery",
    "ServerEvent",
    "error_of",
    "event_from_body",
    "kick_reason",
    "message_from_frame",
    "unpack_pushes",
]

#: Largest decoded body accepted from the server (a BATCH inflates to at most this).
MAX_SERVER_FRAME = 16 * 1024 * 1024


# ---------------------------------------------------------------- what the application gets


@dataclass(frozen=True, slots=True)
class Message:
    """One pushed message.

    ``data`` is the business payload as sent (for a push made with JSON
    ``data``, its UTF-8 JSON encoding). ``room`` is the room (or area) it was
    pushed to (§1.4 rule 1), None for user, device and broadcast pushes.
    ``guaranteed`` marks messages the server wants acknowledged
    (``ACK_REQUIRED``).
    """

    msg_id: int
    data: bytes
    guaranteed: bool = False
    high_priority: bool = False
    room: str | None = None

    def json(self) -> Any:
        """The payload decoded as JSON (raises ``msgspec.DecodeError`` if it is not)."""
        return msgspec.json.decode(self.data)

    def text(self) -> str:
        """The payload decoded as UTF-8."""
        return self.data.decode("utf-8")


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """Base of every event the client hands the application; match on the subclass."""


@dataclass(frozen=True, slots=True)
class ServerEvent(ClientEvent):
    """An EVENT frame (§1.2 op 13), e.g. someone entered a room.

    ``data`` is the whole JSON object; ``type``, ``room`` and ``user`` are
    copied out of it for convenience (empty / ``None`` when absent).
    """

    type: str
    room: str | None
    user: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorEvent(ClientEvent):
    """An ERROR frame that answers no pending request (§1.2 op 14).

    A fatal code is followed by the server closing the connection.
    """

    code: str
    message: str
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Kicked(ClientEvent):
    """The server sent KICK (§1.2 op 15); ``drain`` means reconnect elsewhere."""

    reason: str


@dataclass(frozen=True, slots=True)
class Recovery(ClientEvent):
    """Whether the messages ``room`` sent while the client was away were recovered.

    ``recovered`` False: the server's history no longer held the last message
    the client had; it sent what it keeps, and the application should refresh
    the room's state from its backend (§1.4 rule 3).
    """

    room: str
    recovered: bool


# ---------------------------------------------------------------- decoding


def message_from_frame(
    frame: Frame, max_size: int = MAX_SERVER_FRAME, room: str | None = None
) -> Message:
    """The :class:`Message` a plain (non-BATCH) PUSH frame carries."""
    return Message(
        msg_id=frame.msg_id,
        data=frame.payload(max_size),
        guaranteed=bool(frame.flags & Flag.ACK_REQUIRED),
        high_priority=bool(frame.flags & Flag.HIGH_PRIORITY),
        room=room,
    )


def unpack_pushes(frame: Frame, max_size: int = MAX_SERVER_FRAME) -> list[Message]:
    """The messages of a PUSH frame in wire order: itself, or a BATCH's inner PUSH frames.

    A BATCH body is decoded with the frame's codec and split into inner
    frames; a ROOM first frame names the room of the others (§1.4 rule 1).
    Raises :class:`ProtocolError` on a malformed batch.
    """
    if not frame.flags & Flag.BATCH:
        return [message_from_frame(frame, max_size)]
    room, inner = split_room_batch(frame.payload(max_size))
    return [message_from_frame(f, max_size, room) for f in inner if f.op == Op.PUSH]


def event_from_body(body: bytes) -> ServerEvent:
    """A :class:`ServerEvent` from an EVENT body; a non-object body gives type ``""``."""
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        value = None
    data: dict[str, Any] = value if isinstance(value, dict) else {}
    kind, room, user = data.get("type"), data.get("room"), data.get("user")
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


class RecentIds:
    """The last ``size`` distinct message ids seen (``size`` 0 remembers nothing).

    Older ids are forgotten first, and seeing an id again makes it recent
    again, so a message the server keeps resending is never forgotten while
    it is being resent.

    >>> seen = RecentIds(2)
    >>> seen.add(1), seen.add(1), seen.add(2), seen.add(3), seen.add(1)
    (True, False, True, True, True)
    """

    __slots__ = ("_ids", "size")

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, not {size}")
        self.size = size
        self._ids: OrderedDict[int, None] = OrderedDict()

    def add(self, msg_id: int) -> bool:
        """Record ``msg_id``; True if it is new, False if it was seen recently."""
        ids = self._ids
        if msg_id in ids:
            ids.move_to_end(msg_id)
            return False
        if self.size == 0:
            return True
        ids[msg_id] = None
        if len(ids) > self.size:
            ids.popitem(last=False)
        return True

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
