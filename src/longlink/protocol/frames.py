"""Frame codec of the long connection (PROTOCOL.md §1.1), pure and sans-I/O.

A frame is a 20-byte big-endian header followed by a body::

    length u32 | version u8 | op u8 | flags u8 | codec u8 | seq u32 | msg_id u64 | body

The header is packed in exactly one place, :func:`encode_frame`. Decoding
validates the header before the body arrives, so a stream of garbage or an
announced oversize frame fails at once instead of being buffered.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from enum import IntEnum, IntFlag
from typing import NamedTuple

import brotli

from longlink.protocol.errors import ErrorCode, ProtocolError

HEADER = struct.Struct(">IBBBBIQ")
HEADER_SIZE = HEADER.size  # 20
VERSION = 1
DEFAULT_MAX_FRAME = 64 * 1024
MAX_U32 = 0xFFFFFFFF
MAX_U64 = 0xFFFFFFFFFFFFFFFF


class Op(IntEnum):
    """Operations (PROTOCOL.md §1.2)."""

    AUTH = 1
    AUTH_OK = 2
    HEARTBEAT = 3
    HEARTBEAT_OK = 4
    PUSH = 5
    ACK = 6
    JOIN = 7
    JOIN_OK = 8
    LEAVE = 9
    LEAVE_OK = 10
    UPSTREAM = 11
    UPSTREAM_OK = 12
    EVENT = 13
    ERROR = 14
    KICK = 15
    ROOM = 16
    REPORT = 17


CLIENT_OPS = frozenset({Op.AUTH, Op.HEARTBEAT, Op.ACK, Op.JOIN, Op.LEAVE, Op.UPSTREAM, Op.REPORT})
SERVER_OPS = frozenset(Op) - CLIENT_OPS


class Flag(IntFlag):
    """Header flags; bits other than these must be 0."""

    NONE = 0
    ACK_REQUIRED = 1
    BATCH = 2
    HIGH_PRIORITY = 4


KNOWN_FLAGS = int(Flag.ACK_REQUIRED | Flag.BATCH | Flag.HIGH_PRIORITY)


class Codec(IntEnum):
    """Body codecs; the names are those negotiated in AUTH/AUTH_OK."""

    NONE = 0
    ZLIB = 1
    BROTLI = 2

    @property
    def label(self) -> str:
        return _CODEC_LABELS[self]

    @classmethod
    def from_label(cls, label: str) -> Codec:
        for codec, name in _CODEC_LABELS.items():
            if name == label:
                return codec
        raise ValueError(f"unknown codec {label!r}")


_CODEC_LABELS = {Codec.NONE: "none", Codec.ZLIB: "zlib", Codec.BROTLI: "br"}
_OPS = frozenset(int(op) for op in Op)
_CODECS = frozenset(int(c) for c in Codec)


class Frame(NamedTuple):
    """One decoded frame; ``body`` is as on the wire (still encoded by ``codec``)."""

    op: int
    body: bytes = b""
    flags: int = 0
    codec: int = 0
    seq: int = 0
    msg_id: int = 0

    def payload(self, max_size: int = 16 * 1024 * 1024) -> bytes:
        """The body decoded by its codec, refusing to inflate past ``max_size``."""
        return decompress(self.codec, self.body, max_size)

    def inner_frames(self, max_size: int = 16 * 1024 * 1024) -> list[Frame]:
        """The frames of a BATCH frame, or ``[self]`` for a plain frame."""
        if not self.flags & Flag.BATCH:
            return [self]
        return split_batch(self.payload(max_size))


def encode_frame(
    op: int,
    body: bytes = b"",
    *,
    flags: int = 0,
    codec: int = 0,
    seq: int = 0,
    msg_id: int = 0,
) -> bytes:
    """Frame ``body`` (already encoded by ``codec``) with its header."""
    return HEADER.pack(HEADER_SIZE + len(body), VERSION, op, flags, codec, seq, msg_id) + body


def check_header(length: int, version: int, op: int, flags: int, codec: int, max_size: int) -> None:
    """Raise :class:`ProtocolError` unless the header fields are valid.

    The version is checked first, so a stream of garbage (an HTTP request on
    the TCP port, say) gets ``bad_frame`` rather than ``too_large``.
    """
    if version != VERSION:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"unsupported version {version}")
    if length < HEADER_SIZE:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"frame length {length} < {HEADER_SIZE}")
    if length > max_size:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"frame of {length} bytes > limit {max_size}")
    if op not in _OPS:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"unknown op {op}")
    if flags & ~KNOWN_FLAGS:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"unknown flags {flags:#04x}")
    if codec not in _CODECS:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"unknown codec {codec}")
    if flags & Flag.BATCH and op != Op.PUSH:
        raise ProtocolError(ErrorCode.BAD_FRAME, "BATCH flag on a frame that is not PUSH")


def decode_frame(data: bytes, max_size: int = DEFAULT_MAX_FRAME) -> Frame:
    """Decode exactly one frame occupying all of ``data`` (a WebSocket message)."""
    if len(data) < HEADER_SIZE:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"{len(data)} bytes is shorter than a header")
    length, version, op, flags, codec, seq, msg_id = HEADER.unpack_from(data)
    check_header(length, version, op, flags, codec, max_size)
    if length != len(data):
        raise ProtocolError(
            ErrorCode.BAD_FRAME, f"frame says {length} bytes but the message has {len(data)}"
        )
    return Frame(op, bytes(data[HEADER_SIZE:]), flags, codec, seq, msg_id)


class FrameDecoder:
    """Incremental decoder for a byte stream (TCP): frames split or coalesced anywhere.

    ``feed`` returns the frames completed so far. After a :class:`ProtocolError`
    the stream is unusable; the caller sends ERROR and closes.
    """

    __slots__ = ("_buf", "max_size")

    def __init__(self, max_size: int = DEFAULT_MAX_FRAME) -> None:
        self.max_size = max_size
        self._buf: bytearray | None = None  # allocated only while a frame is partial

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buf) if self._buf else 0

    def feed(self, data: bytes) -> list[Frame]:
        if self._buf:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = data
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        max_size = self.max_size
        while end - pos >= HEADER_SIZE:
            length, version, op, flags, codec, seq, msg_id = HEADER.unpack_from(buf, pos)
            check_header(length, version, op, flags, codec, max_size)
            if end - pos < length:
                break
            frames.append(
                Frame(op, bytes(buf[pos + HEADER_SIZE : pos + length]), flags, codec, seq, msg_id)
            )
            pos += length
        if pos == end:
            self._buf = None
        elif end - pos >= 8:
            # Validate what we have of the header early: garbage fails at once.
            self._check_partial(buf, pos, end)
            self._buf = bytearray(buf[pos:])
        else:
            self._buf = bytearray(buf[pos:])
        return frames

    def _check_partial(self, buf: bytes | bytearray, pos: int, end: int) -> None:
        length, version, op, flags, codec = struct.unpack_from(">IBBBB", buf, pos)
        check_header(length, version, op, flags, codec, self.max_size)


# ---------------------------------------------------------------- codecs


#: Brotli window (2^18 = 256 KiB): larger than any batch, far less memory than the default 22.
BROTLI_WINDOW = 18


def compress(codec: int, data: bytes, *, level: int | None = None) -> bytes:
    """Encode ``data`` with ``codec`` (zlib level 6 / brotli quality 5 by default).

    The one encoder of every body: dispatch chooses the levels and whether
    compressing pays (its policy), this function does the encoding.
    """
    if codec == Codec.NONE:
        return data
    if codec == Codec.ZLIB:
        return zlib.compress(data, 6 if level is None else level)
    if codec == Codec.BROTLI:
        quality = 5 if level is None else level
        out: bytes = brotli.compress(data, quality=quality, lgwin=BROTLI_WINDOW)
        return out
    raise ProtocolError(ErrorCode.BAD_FRAME, f"unknown codec {codec}")


def decompress(codec: int, data: bytes, max_size: int) -> bytes:
    """Decode ``data`` encoded with ``codec``; refuses output over ``max_size``."""
    if codec == Codec.NONE:
        return data
    try:
        if codec == Codec.ZLIB:
            inflater = zlib.decompressobj()
            out = inflater.decompress(data, max_size + 1)
            if len(out) > max_size or inflater.unconsumed_tail:
                raise ProtocolError(ErrorCode.TOO_LARGE, f"body inflates past {max_size} bytes")
            if not inflater.eof:
                raise ProtocolError(ErrorCode.BAD_FRAME, "truncated zlib body")
            if inflater.unused_data:
                raise ProtocolError(ErrorCode.BAD_FRAME, "bytes after the end of the zlib body")
            return out
        if codec == Codec.BROTLI:
            return _brotli_decompress(data, max_size)
    except (zlib.error, brotli.error) as exc:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"corrupt {Codec(codec).label} body") from exc
    raise ProtocolError(ErrorCode.BAD_FRAME, f"unknown codec {codec}")


def _brotli_decompress(data: bytes, max_size: int) -> bytes:
    # A few dozen bytes of brotli can inflate to gigabytes: stop the output
    # buffer just past max_size instead of inflating everything and measuring.
    inflater = brotli.Decompressor()
    try:
        result: bytes = inflater.process(data, output_buffer_limit=max_size + 1)
    except TypeError:  # brotli < 1.2 has no output limit
        result = inflater.process(data)
    if len(result) > max_size:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"body inflates past {max_size} bytes")
    if not inflater.is_finished():
        raise ProtocolError(ErrorCode.BAD_FRAME, "truncated brotli body")
    return result


# ---------------------------------------------------------------- batches


def encode_batch(frames: Iterable[bytes], codec: int = Codec.NONE, *, flags: int = 0) -> bytes:
    """One PUSH frame with the BATCH flag carrying complete encoded ``frames``.

    The inner frames must be codec 0 and not batches themselves (§1.1). The
    result is the same for every recipient: build it once, write it many times.
    """
    body = compress(codec, b"".join(frames))
    return encode_frame(Op.PUSH, body, flags=flags | Flag.BATCH, codec=codec)


def split_batch(body: bytes) -> list[Frame]:
    """The inner frames of a decoded BATCH body; raises on anything malformed."""
    frames: list[Frame] = []
    pos = 0
    end = len(body)
    while pos < end:
        if end - pos < HEADER_SIZE:
            raise ProtocolError(ErrorCode.BAD_FRAME, "batch ends inside a frame header")
        length, version, op, flags, codec, seq, msg_id = HEADER.unpack_from(body, pos)
        check_header(length, version, op, flags, codec, MAX_U32)
        if flags & Flag.BATCH or codec != Codec.NONE:
            raise ProtocolError(ErrorCode.BAD_FRAME, "batch holds a nested batch or encoded frame")
        if end - pos < length:
            raise ProtocolError(ErrorCode.BAD_FRAME, "batch ends inside a frame body")
        frames.append(Frame(op, body[pos + HEADER_SIZE : pos + length], flags, codec, seq, msg_id))
        pos += length
    return frames


def iter_messages(frame: Frame, max_size: int = 16 * 1024 * 1024) -> Iterator[Frame]:
    """Plain frames of ``frame``: the frame itself, or the inner frames of a batch."""
    yield from frame.inner_frames(max_size)
