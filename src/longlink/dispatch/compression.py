"""Encode a room's window once: the BATCH frame for each codec (PROTOCOL.md §1.1, §1.4).

:class:`BatchEncoder` turns the messages of one room flush into a
:class:`~longlink.model.RoomBatch`: one frame per codec, built here once and
written unchanged by every gateway to every connection that negotiated that
codec. The framing is the protocol's (:mod:`longlink.protocol.push`): a BATCH
whose first inner frame is ROOM, then the messages' PUSH frames — a single
message too (§1.4 rule 1). This module is the compression *policy*:

* the body is compressed with zlib (level 6) and with brotli (quality
  ``brotli_quality``, 5 by default) when it is at least ``min_bytes`` long
  and the result saves at least 10 %; otherwise that codec's clients get the
  uncompressed frame (codec 0 is valid for every client). docs/dispatch.md
  has the measurements behind these numbers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from longlink.model import Message, Priority, RoomBatch, message_push
from longlink.protocol import Codec, compress
from longlink.protocol.push import batch_body, batch_frame, room_tag

ZLIB_LEVEL = 6
MAX_RATIO = 0.9  # keep a compressed body only if it is at most this share of the raw one


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
        high = first.priority == Priority.HIGH
        body = batch_body(room_tag(room), [message_push(m) for m in messages])
        stats = EncodeStats(raw_bytes=len(body))
        frames = [batch_frame(body, high=high), b"", b""]
        if len(body) >= self.min_bytes:
            limit = len(body) * MAX_RATIO
            start = time.perf_counter()
            packed = compress(Codec.ZLIB, body, level=ZLIB_LEVEL)
            middle = time.perf_counter()
            stats.zlib_s = middle - start
            if len(packed) <= limit:
                stats.zlib_bytes = len(packed)
                frames[Codec.ZLIB] = batch_frame(packed, Codec.ZLIB, high=high)
            packed = compress(Codec.BROTLI, body, level=self.brotli_quality)
            stats.brotli_s = time.perf_counter() - middle
            if len(packed) <= limit:
                stats.brotli_bytes = len(packed)
                frames[Codec.BROTLI] = batch_frame(packed, Codec.BROTLI, high=high)
        batch = RoomBatch(
            room=room,
            msg_ids=[m.msg_id for m in messages],
            frames=frames,
            priority=first.priority,
            accepted=[m.accepted_at_us for m in messages],
        )
        return batch, stats
