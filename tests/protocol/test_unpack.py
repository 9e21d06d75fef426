"""Unpacking PUSH frames (plain and BATCH, every codec) and reading event bodies."""

from __future__ import annotations

import pytest

from longlink.protocol import (
    Codec,
    Flag,
    Op,
    ProtocolError,
    compress,
    decode_frame,
    encode_batch,
    encode_frame,
)
from longlink.protocol.client import Message, event_from_body, unpack_pushes


@pytest.mark.parametrize("codec", list(Codec))
def test_batch_unpacks_in_order_for_every_codec(codec: Codec) -> None:
    inner = [
        encode_frame(Op.PUSH, b'{"n": 1}', msg_id=1),
        encode_frame(Op.PUSH, b"", msg_id=2, flags=Flag.ACK_REQUIRED),
        encode_frame(Op.PUSH, b"\xff" * 3000, msg_id=3, flags=Flag.HIGH_PRIORITY),
    ]
    frame = decode_frame(encode_batch(inner, codec), max_size=1 << 24)
    assert frame.codec == codec and frame.flags & Flag.BATCH
    assert unpack_pushes(frame) == [
        Message(1, b'{"n": 1}'),
        Message(2, b"", guaranteed=True),
        Message(3, b"\xff" * 3000, high_priority=True),
    ]


@pytest.mark.parametrize("codec", list(Codec))
def test_plain_push_body_is_decoded_by_its_codec(codec: Codec) -> None:
    body = b"[" + b'"hello",' * 100 + b'"world"]'
    wire = encode_frame(
        Op.PUSH, compress(codec, body), codec=codec, msg_id=9, flags=Flag.ACK_REQUIRED
    )
    [message] = unpack_pushes(decode_frame(wire))
    assert (message.msg_id, message.data, message.guaranteed) == (9, body, True)
    assert message.json()[-1] == "world"


def test_inner_frames_that_are_not_push_are_skipped() -> None:
    inner = [
        encode_frame(Op.PUSH, b"a", msg_id=1),
        encode_frame(Op.EVENT, b'{"type": "enter"}'),
        encode_frame(Op.PUSH, b"b", msg_id=2),
    ]
    frame = decode_frame(encode_batch(inner, Codec.ZLIB))
    assert [m.data for m in unpack_pushes(frame)] == [b"a", b"b"]


def test_malformed_batch_raises_protocol_error() -> None:
    truncated = encode_frame(Op.PUSH, b"abc", msg_id=1)[:-1]
    frame = decode_frame(encode_frame(Op.PUSH, truncated, flags=Flag.BATCH))
    with pytest.raises(ProtocolError):
        unpack_pushes(frame)


def test_corrupt_compressed_batch_raises_protocol_error() -> None:
    frame = decode_frame(encode_frame(Op.PUSH, b"not brotli", flags=Flag.BATCH, codec=2))
    with pytest.raises(ProtocolError):
        unpack_pushes(frame)


def test_message_json_and_immutability() -> None:
    message = Message(5, b'[1, "two"]')
    assert message.json() == [1, "two"]
    with pytest.raises(AttributeError):
        message.msg_id = 6  # type: ignore[misc]


def test_event_bodies() -> None:
    event = event_from_body(b'{"type": "exit", "room": "r", "user": "u", "extra": 1}')
    assert (event.type, event.room, event.user) == ("exit", "r", "u")
    assert event.data["extra"] == 1
    odd = event_from_body(b"[1, 2]")
    assert (odd.type, odd.room, odd.data) == ("", None, {})
    assert event_from_body(b"not json").type == ""
