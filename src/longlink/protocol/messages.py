"""JSON bodies of the long connection (PROTOCOL.md §1.2) as typed structs.

``decode_body`` turns a frame body into its struct or raises
:class:`ProtocolError` with ``bad_frame``; ``encode_body`` is the inverse.
Unknown fields are ignored so clients may send extensions.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from longlink.protocol.errors import ErrorCode, ProtocolError


class Auth(msgspec.Struct, frozen=True, omit_defaults=True):
    """AUTH (op 1). ``since`` names, per room, the last msg id the client got (§1.4 rule 3)."""

    token: str
    rooms: list[str] = []
    codecs: list[str] = []
    heartbeat_s: int | None = None
    since: dict[str, str] = {}


class AuthOk(msgspec.Struct, frozen=True, omit_defaults=True):
    """AUTH_OK (op 2). ``recovered`` answers AUTH's ``since``, room by room (§1.4 rule 3)."""

    conn_id: str
    user: str
    device: str
    node: str
    heartbeat_s: int
    codec: str
    rooms: list[str]
    recovered: dict[str, bool] | None = None


class HeartbeatBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """HEARTBEAT (op 3): empty, or the interval the client asks for from now on (§1.6 rule 2)."""

    heartbeat_s: int | None = None


class HeartbeatOk(msgspec.Struct, frozen=True):
    """HEARTBEAT_OK (op 4); ``heartbeat_s`` answers a HEARTBEAT that asked for one.

    Encode it with :func:`encode_heartbeat_ok` (``online`` always present,
    ``heartbeat_s`` only when asked for).
    """

    online: dict[str, int] = {}
    heartbeat_s: int | None = None


class AckBody(msgspec.Struct, frozen=True):
    msg_ids: list[int]

    def __post_init__(self) -> None:
        # msg ids are unsigned 64-bit like the header's (PROTOCOL.md §1.1);
        # msgspec cannot bound an int past int64, so check here.
        for msg_id in self.msg_ids:
            if not 0 <= msg_id <= 0xFFFFFFFFFFFFFFFF:
                raise ValueError(f"msg_id {msg_id} is not an unsigned 64-bit integer")


class RoomBody(msgspec.Struct, frozen=True):
    """Body of LEAVE and LEAVE_OK."""

    room: str


class JoinBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """JOIN (op 7); ``since`` is the last msg id the client got from the room (§1.4 rule 3)."""

    room: str
    since: str | None = None


class JoinOk(msgspec.Struct, frozen=True, omit_defaults=True):
    """JOIN_OK (op 8); ``recovered`` answers JOIN's ``since``."""

    room: str
    online: int
    recovered: bool | None = None


class Report(msgspec.Struct, frozen=True, omit_defaults=True):
    """REPORT (op 17): a connection-quality report (§1.6 rule 1); bounded by the session."""

    transport: str
    rtt_ms: list[int] = []
    connect_ms: int | None = None
    reconnects: int = 0
    failed: list[str] = []
    network: str | None = None
    #: Extension: milliseconds of each step of the connect (``control``, ``transport``, ``auth``).
    connect_steps: dict[str, int] | None = None


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


def encode_heartbeat_ok(online: dict[str, int], heartbeat_s: int | None = None) -> bytes:
    """The HEARTBEAT_OK body: ``{"online": {...}}``, plus ``"heartbeat_s"`` when given."""
    if heartbeat_s is None:
        return _encoder.encode({"online": online})
    return _encoder.encode({"online": online, "heartbeat_s": heartbeat_s})


def parse_msg_id(text: str) -> int:
    """A msg id written as a decimal string (JSON bodies carry them so: they exceed 2^53)."""
    if not text.isascii() or not text.isdigit() or len(text) > 20 or int(text) > MAX_MSG_ID:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"{text[:24]!r} is not a msg id")
    return int(text)


MAX_MSG_ID = 0xFFFFFFFFFFFFFFFF


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
