"""Encode a room's window once: the PUSH frame for each codec (PROTOCOL.md §1.1).

:class:`BatchEncoder` turns the messages of one room flush into a
:class:`~longlink.model.RoomBatch`: one frame per codec, built here once and
written unchanged by every gateway to every connection that negotiated that
codec.

* Several messages become one BATCH frame whose body is their inner PUSH
  frames laid end to end; one message stays a plain PUSH frame.
* The body is compressed with zlib (level 6) and with brotli (quality
  ``brotli_quality``, 5 by default, window 2^18) when it is at least
  ``min_bytes`` long and the result saves at least 10 %; otherwise that
  codec's clients get the uncompressed frame (codec 0 is valid for every
  client). docs/dispatch.md has the measurements behind these numbers.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import brotli

from longlink.model import Message, Priority, RoomBatch
from longlink.protocol import Codec, Flag, Op, encode_frame

ZLIB_LEVEL = 6
BROTLI_WINDOW = 18  # 256 KiB: larger than any batch (aggregate_max_bytes), less memory than 22
MAX_RATIO = 0.9  # keep a compressed body only if it is at most this share of the raw one


def message_flags(message: Message) -> int:
    """Header flags of ``message``'s PUSH frame."""
    flags = 0
    if message.priority == Priority.HIGH:
        flags |= Flag.HIGH_PRIORITY
    if message.guaranteed:
        flags |= Flag.ACK_REQUIRED
    return flags


def push_frame(message: Message) -> bytes:
    """The plain PUSH frame of ``message`` (codec 0)."""
    return encode_frame(
        Op.PUSH, message.payload, flags=message_flags(message), msg_id=message.msg_id
    )


@dataclass(slots=True)
class EncodeStats:
    """What encoding one batch cost and gave (for metrics and docs)."""

    raw_bytes: int = 0  # the uncompressed body
    zlib_bytes: int = 0  # the zlib body (0: not compressed)
    brotli_bytes: int = 0
    zlib_s: float = 0.0  # CPU seconds spent compressing
    brotli_s: float = 0.0


class BatchEncoder:
    """Builds :class:`RoomBatch` values (see the module docstring)."""

    __slots__ = ("brotli_quality", "min_bytes")

    def __init__(self, min_bytes: int = 256, brotli_quality: int = 5) -> None:
        if not 0 <= brotli_quality <= 11:
            raise ValueError("brotli_quality must be in 0..11")
        self.min_bytes = min_bytes
        self.brotli_quality = brotli_quality

    def encode(self, room: str, messages: Sequence[Message]) -> tuple[RoomBatch, EncodeStats]:
        """The batch for ``messages`` (at least one, all to ``room``, in order)."""
        first = messages[0]
        if len(messages) == 1:
            body = first.payload
            flags = message_flags(first)
            msg_id = first.msg_id
        else:
            body = b"".join([push_frame(m) for m in messages])
            flags = Flag.BATCH | (Flag.HIGH_PRIORITY if first.priority == Priority.HIGH else 0)
            msg_id = 0
        stats = EncodeStats(raw_bytes=len(body))
        frames = [encode_frame(Op.PUSH, body, flags=flags, msg_id=msg_id), b"", b""]
        if len(body) >= self.min_bytes:
            limit = len(body) * MAX_RATIO
            start = time.perf_counter()
            packed = zlib.compress(body, ZLIB_LEVEL)
            middle = time.perf_counter()
            stats.zlib_s = middle - start
            if len(packed) <= limit:
                stats.zlib_bytes = len(packed)
                frames[Codec.ZLIB] = encode_frame(
                    Op.PUSH, packed, flags=flags, codec=Codec.ZLIB, msg_id=msg_id
                )
            packed = brotli.compress(body, quality=self.brotli_quality, lgwin=BROTLI_WINDOW)
            stats.brotli_s = time.perf_counter() - middle
            if len(packed) <= limit:
                stats.brotli_bytes = len(packed)
                frames[Codec.BROTLI] = encode_frame(
                    Op.PUSH, packed, flags=flags, codec=Codec.BROTLI, msg_id=msg_id
                )
        batch = RoomBatch(
            room=room,
            msg_ids=[m.msg_id for m in messages],
            frames=frames,
            priority=first.priority,
            accepted=[m.accepted_at_us for m in messages],
        )
        return batch, stats
