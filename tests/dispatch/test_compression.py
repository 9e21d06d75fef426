"""Encoding a room flush once: frames per codec, what does not pay stays uncompressed."""

from __future__ import annotations

import os

from longlink.dispatch.compression import BatchEncoder
from longlink.model import Message, Priority, RoomBatch, Target, pack_envelope, unpack_envelope
from longlink.protocol import Codec, Flag, Op, decode_frame, split_batch
from longlink.protocol.client import unpack_pushes
from longlink.protocol.push import room_of

ROOM = Target(rooms=["r"])


def danmaku(n: int) -> list[Message]:
    return [
        Message(
            msg_id=1000 + i,
            target=ROOM,
            payload=b'{"cmd":"DANMU_MSG","uname":"\xe5\xb0\x8f\xe6\x98\x8e","text":"666","n":%d}'
            % i,
            accepted_ms=1_700_000_000_000 + i,
            accepted_us=1_700_000_000_000_000 + i * 1000,
        )
        for i in range(n)
    ]


def test_a_batch_decodes_to_its_messages_with_every_codec() -> None:
    messages = danmaku(40)
    batch, stats = BatchEncoder(min_bytes=256).encode("r", messages)
    assert batch.room == "r" and batch.msg_ids == [m.msg_id for m in messages]
    assert batch.accepted == [m.accepted_us for m in messages]
    assert batch.accepted_ms == messages[0].accepted_ms
    for codec in Codec:
        frame = decode_frame(batch.frame_for(codec), 1 << 20)
        assert frame.op == Op.PUSH and frame.flags & Flag.BATCH and frame.msg_id == 0
        assert frame.codec == codec
        got = unpack_pushes(frame)
        assert [(m.msg_id, m.data) for m in got] == [(m.msg_id, m.payload) for m in messages]
        assert {m.room for m in got} == {"r"}  # PROTOCOL §1.4 rule 1: tagged with the room
    # Compressed once per codec, and much smaller (danmaku-like JSON).
    assert 0 < stats.brotli_bytes < stats.raw_bytes / 2
    assert 0 < stats.zlib_bytes < stats.raw_bytes / 2
    assert stats.zlib_s > 0 and stats.brotli_s > 0


def test_one_small_message_is_a_tagged_uncompressed_batch() -> None:
    [message] = danmaku(1)
    batch, stats = BatchEncoder(min_bytes=256).encode("r", [message])
    assert batch.frames[1:] == [b"", b""]  # compression would not pay
    frame = decode_frame(batch.frame_for(Codec.BROTLI), 1 << 20)
    assert frame.codec == Codec.NONE and frame.flags & Flag.BATCH
    tag, push = split_batch(frame.body)  # a single message is a BATCH of two (§1.4 rule 1)
    assert (tag.op, room_of(tag)) == (Op.ROOM, "r")
    assert (push.op, push.msg_id, push.body) == (Op.PUSH, message.msg_id, message.payload)
    assert stats.zlib_s == 0 and stats.brotli_s == 0


def test_one_large_message_is_compressed_in_its_tagged_batch() -> None:
    big = Message(msg_id=7, target=ROOM, payload=b'{"text":"%s"}' % (b"ha" * 2000))
    batch, _ = BatchEncoder().encode("r", [big])
    frame = decode_frame(batch.frame_for(Codec.BROTLI), 1 << 20)
    assert frame.codec == Codec.BROTLI and frame.flags & Flag.BATCH and frame.msg_id == 0
    [message] = unpack_pushes(frame)
    assert (message.msg_id, message.data, message.room) == (7, big.payload, "r")


def test_incompressible_batches_fall_back_to_codec_none() -> None:
    messages = [Message(msg_id=i, target=ROOM, payload=os.urandom(200)) for i in range(1, 6)]
    batch, stats = BatchEncoder().encode("r", messages)
    assert stats.zlib_bytes == 0 and stats.brotli_bytes == 0
    assert batch.frame_for(Codec.ZLIB) == batch.frame_for(Codec.BROTLI) == batch.frames[0]
    assert decode_frame(batch.frames[0], 1 << 20).codec == Codec.NONE


def test_high_priority_batches_carry_the_flag() -> None:
    messages = [
        Message(msg_id=i, target=ROOM, payload=b"x", priority=Priority.HIGH) for i in (1, 2)
    ]
    batch, _ = BatchEncoder().encode("r", messages)
    frame = decode_frame(batch.frames[0], 1 << 20)
    assert frame.flags & Flag.HIGH_PRIORITY
    assert all(m.high_priority for m in unpack_pushes(frame))


def test_room_batch_travels_on_the_bus_as_msgpack() -> None:
    batch, _ = BatchEncoder().encode("r", danmaku(10))
    again = unpack_envelope(pack_envelope(batch))
    assert isinstance(again, RoomBatch) and again == batch
    assert again.frame_for(Codec.BROTLI) == batch.frame_for(Codec.BROTLI)
