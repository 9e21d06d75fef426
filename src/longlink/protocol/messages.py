"""JSON bodies of the long connection (PROTOCOL.md §1.2) as typed structs.

``decode_body`` turns a frame body into its struct or raises
:class:`ProtocolError` with ``bad_frame``; ``encode_body`` is the inverse.
Unknown fields are ignored so clients may send extensions.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from longlink.protocol.errors import ErrorCode, ProtocolError


class Auth(msgspec.Struct, frozen=True):
    token: str
    rooms: list[str] = []
    codecs: list[str] = []
    heartbeat_s: int | None = None


class AuthOk(msgspec.Struct, frozen=True):
    conn_id: str
    user: str
    device: str
    node: str
    heartbeat_s: int
    codec: str
    rooms: list[str]


class HeartbeatOk(msgspec.Struct, frozen=True):
    online: dict[str, int] = {}


class AckBody(msgspec.Struct, frozen=True):
    msg_ids: list[int]

    def __post_init__(self) -> None:
        # msg ids are unsigned 64-bit like the header's (PROTOCOL.md §1.1);
        # msgspec cannot bound an int past int64, so check here.
        for msg_id in self.msg_ids:
            if not 0 <= msg_id <= 0xFFFFFFFFFFFFFFFF:
                raise ValueError(f"msg_id {msg_id} is not an unsigned 64-bit integer")


class RoomBody(msgspec.Struct, frozen=True):
    """Body of JOIN, LEAVE and LEAVE_OK."""

    room: str


class JoinOk(msgspec.Struct, frozen=True):
    room: str
    online: int


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    type: str
    room: str | None = None
    user: str | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    code: str
    message: str


class KickBody(msgspec.Struct, frozen=True):
    reason: str


T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def encode_body(value: msgspec.Struct) -> bytes:
    """JSON-encode a body struct."""
    return _encoder.encode(value)


def decode_body(body: bytes, kind: type[T]) -> T:
    """Decode a JSON body as ``kind``; malformed JSON raises ``bad_frame``."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        result: T = decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"bad {kind.__name__} body: {exc}") from exc
    return result


def decode_ack(body: bytes, header_msg_id: int) -> list[int]:
    """The msg ids an ACK acknowledges: the header's, or the body's list (§1.2 op 6)."""
    if not body:
        if header_msg_id == 0:
            raise ProtocolError(ErrorCode.BAD_FRAME, "ACK without msg_id")
        return [header_msg_id]
    ids = decode_body(body, AckBody).msg_ids
    if header_msg_id:
        ids = [header_msg_id, *ids]
    return ids
