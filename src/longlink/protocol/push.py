"""PUSH frames and room batches (PROTOCOL.md §1.1, §1.2 ops 5 and 16, §1.4 rule 1), pure.

The only place where a message becomes bytes for a client:

* :func:`push_frame`: one plain PUSH frame (user, device and broadcast
  pushes, guaranteed messages);
* :func:`room_tag` + :func:`batch_body` + :func:`batch_frame`: a room's
  messages as one BATCH frame whose first inner frame is ROOM. Every message
  that reaches a connection through a room (or an area) travels this way,
  aggregated or not: a single message is a BATCH of two inner frames.

Dispatch decides when and how hard to compress (its policy); it builds the
body here, compresses it with :func:`~longlink.protocol.frames.compress` and
frames the result with :func:`batch_frame`. The same bytes then go to every
connection of the room.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from longlink.protocol.errors import ErrorCode, ProtocolError
from longlink.protocol.frames import Codec, Flag, Frame, Op, compress, encode_frame, split_batch

__all__ = [
    "RoomTag",
    "batch_body",
    "batch_frame",
    "push_flags",
    "push_frame",
    "room_batch",
    "room_of",
    "room_tag",
    "split_room_batch",
]


class RoomTag(msgspec.Struct, frozen=True, omit_defaults=True):
    """Body of ROOM (op 16): the room, or the area, the batch's messages were sent to."""

    room: str | None = None
    area: str | None = None


_tag_encoder = msgspec.json.Encoder()
_tag_decoder = msgspec.json.Decoder(RoomTag)


def push_flags(*, high: bool = False, guaranteed: bool = False) -> int:
    """Header flags of a PUSH frame."""
    flags = 0
    if high:
        flags |= Flag.HIGH_PRIORITY
    if guaranteed:
        flags |= Flag.ACK_REQUIRED
    return flags


def push_frame(payload: bytes, msg_id: int, flags: int = 0) -> bytes:
    """A plain PUSH frame (codec 0) carrying ``payload`` as message ``msg_id``."""
    return encode_frame(Op.PUSH, payload, flags=flags, msg_id=msg_id)


def room_tag(room: str | None = None, *, area: str | None = None) -> bytes:
    """The ROOM frame that opens a room's (or an area's) batch."""
    if (room is None) == (area is None):
        raise ValueError("a ROOM tag names a room or an area")
    return encode_frame(Op.ROOM, _tag_encoder.encode(RoomTag(room=room, area=area)))


def batch_body(tag: bytes, pushes: Iterable[bytes]) -> bytes:
    """The uncompressed body of a room batch: the ROOM tag, then the PUSH frames."""
    return b"".join([tag, *pushes])


def batch_frame(body: bytes, codec: int = Codec.NONE, *, high: bool = False) -> bytes:
    """Frame a batch ``body`` already encoded with ``codec`` as one BATCH PUSH frame."""
    flags = Flag.BATCH | (Flag.HIGH_PRIORITY if high else 0)
    return encode_frame(Op.PUSH, body, flags=flags, codec=codec)


def room_batch(
    tag: bytes, pushes: Sequence[bytes], codec: int = Codec.NONE, *, high: bool = False
) -> bytes:
    """A complete room batch frame: tag and pushes, encoded with ``codec`` (default levels)."""
    return batch_frame(compress(codec, batch_body(tag, pushes)), codec, high=high)


def room_of(tag: Frame) -> str:
    """The room (or area) named by a ROOM frame; raises ``bad_frame`` when unreadable."""
    try:
        value = _tag_decoder.decode(tag.body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"bad ROOM body: {exc}") from exc
    name = value.room if value.room is not None else value.area
    if name is None:
        raise ProtocolError(ErrorCode.BAD_FRAME, "ROOM names neither a room nor an area")
    return name


def split_room_batch(body: bytes) -> tuple[str | None, list[Frame]]:
    """A decoded BATCH body as ``(room, inner PUSH frames)``; room None when untagged.

    ROOM may only be the first inner frame (§1.2 op 16); anywhere else it is
    ``bad_frame``.
    """
    frames = split_batch(body)
    room = None
    if frames and frames[0].op == Op.ROOM:
        room = room_of(frames[0])
        frames = frames[1:]
    for frame in frames:
        if frame.op == Op.ROOM:
            raise ProtocolError(ErrorCode.BAD_FRAME, "ROOM inside a batch, not first")
    return room, frames
