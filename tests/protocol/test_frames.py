"""Frame codec, stream decoder and batches (PROTOCOL.md §1.1).

Malformed headers are built here with an explicit ``struct`` format rather
than the module's own ``HEADER`` so the layout is checked, not assumed; the
golden test pins it byte for byte.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
import tracemalloc
import zlib
from collections.abc import Iterable

import brotli
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longlink.protocol import (
    DEFAULT_MAX_FRAME,
    HEADER_SIZE,
    Codec,
    ErrorCode,
    Flag,
    Frame,
    FrameDecoder,
    Op,
    ProtocolError,
    compress,
    decode_frame,
    decompress,
    encode_batch,
    encode_frame,
    split_batch,
)

MAX_U32 = 2**32 - 1
MAX_U64 = 2**64 - 1

fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def raw_header(
    length: int = HEADER_SIZE,
    version: int = 1,
    op: int = Op.PUSH,
    flags: int = 0,
    codec: int = 0,
    seq: int = 0,
    msg_id: int = 0,
) -> bytes:
    """A header packed independently of the code under test (§1.1 table)."""
    return struct.pack(">IBBBBIQ", length, version, op, flags, codec, seq, msg_id)


def encode(frame: Frame) -> bytes:
    return encode_frame(
        frame.op,
        frame.body,
        flags=frame.flags,
        codec=frame.codec,
        seq=frame.seq,
        msg_id=frame.msg_id,
    )


def chunked(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` split at the given offsets (any order, duplicates allowed)."""
    points = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


def feed_all(decoder: FrameDecoder, chunks: Iterable[bytes]) -> list[Frame]:
    frames: list[Frame] = []
    for chunk in chunks:
        frames.extend(decoder.feed(chunk))
    return frames


def assert_code(exc_info: pytest.ExceptionInfo[ProtocolError], code: ErrorCode) -> None:
    assert exc_info.value.code is code, exc_info.value


# ------------------------------------------------------------------ strategies


@st.composite
def frames(draw: st.DrawFn, *, max_body: int = 512, batch: bool = True) -> Frame:
    """Any valid frame: the body is opaque to the frame layer."""
    op = draw(st.sampled_from(list(Op)))
    flags = draw(st.sampled_from([0, 1, 4, 5]))
    if batch and op == Op.PUSH and draw(st.booleans()):
        flags |= Flag.BATCH
    return Frame(
        op=op,
        body=draw(st.binary(max_size=max_body)),
        flags=flags,
        codec=draw(st.sampled_from(list(Codec))),
        seq=draw(st.integers(0, MAX_U32)),
        msg_id=draw(st.integers(0, MAX_U64)),
    )


@st.composite
def inner_frames(draw: st.DrawFn) -> Frame:
    """A frame that may sit inside a batch: codec 0, no BATCH flag."""
    frame = draw(frames(max_body=200, batch=False))
    return frame._replace(codec=Codec.NONE)


cut_points = st.lists(st.integers(0, 20_000), max_size=40)


# ------------------------------------------------------------------ (f) golden layout


def test_header_layout_golden() -> None:
    wire = encode_frame(Op.PUSH, b"hi", flags=1, codec=0, seq=7, msg_id=2**63 + 5)
    assert wire == (
        b"\x00\x00\x00\x16"  # length 22, header included
        b"\x01"  # version
        b"\x05"  # op PUSH
        b"\x01"  # flags ACK_REQUIRED
        b"\x00"  # codec none
        b"\x00\x00\x00\x07"  # seq
        b"\x80\x00\x00\x00\x00\x00\x00\x05"  # msg_id, unsigned
        b"hi"
    )
    assert HEADER_SIZE == 20
    assert decode_frame(wire) == Frame(Op.PUSH, b"hi", 1, 0, 7, 2**63 + 5)


def test_enum_values_match_contract() -> None:
    assert [int(op) for op in Op] == list(range(1, 18))
    assert (Flag.ACK_REQUIRED, Flag.BATCH, Flag.HIGH_PRIORITY) == (1, 2, 4)
    assert (Codec.NONE, Codec.ZLIB, Codec.BROTLI) == (0, 1, 2)
    assert [c.label for c in Codec] == ["none", "zlib", "br"]
    assert all(Codec.from_label(c.label) is c for c in Codec)
    with pytest.raises(ValueError):
        Codec.from_label("gzip")


# ------------------------------------------------------------------ (a) round trip


@fast
@given(frames())
def test_round_trip_decode_frame(frame: Frame) -> None:
    wire = encode(frame)
    assert len(wire) == HEADER_SIZE + len(frame.body)
    assert struct.unpack_from(">I", wire)[0] == len(wire)
    assert decode_frame(wire) == frame


@fast
@given(frames())
def test_round_trip_frame_decoder(frame: Frame) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode(frame)) == [frame]
    assert decoder.buffered == 0


def test_empty_body_and_extreme_fields() -> None:
    frame = Frame(Op.HEARTBEAT, b"", 0, 0, MAX_U32, MAX_U64)
    wire = encode(frame)
    assert len(wire) == HEADER_SIZE
    assert decode_frame(wire) == frame
    assert FrameDecoder().feed(wire) == [frame]


def test_frame_of_exactly_max_size_is_accepted() -> None:
    wire = encode_frame(Op.UPSTREAM, b"x" * (DEFAULT_MAX_FRAME - HEADER_SIZE))
    assert len(wire) == DEFAULT_MAX_FRAME
    assert decode_frame(wire).body == b"x" * (DEFAULT_MAX_FRAME - HEADER_SIZE)
    assert len(FrameDecoder().feed(wire)) == 1
    small = encode_frame(Op.UPSTREAM, b"y" * 80)
    assert FrameDecoder(max_size=100).feed(small)[0].body == b"y" * 80


# ------------------------------------------------------------------ (b) stream splits


@fast
@given(st.lists(frames(max_body=300), min_size=1, max_size=20), cut_points)
def test_any_chunking_yields_the_same_frames(batch: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode(f) for f in batch)
    decoder = FrameDecoder()
    assert feed_all(decoder, chunked(stream, cuts)) == batch
    assert decoder.buffered == 0


@settings(max_examples=30, deadline=None)
@given(st.lists(frames(max_body=64), min_size=1, max_size=8))
def test_one_byte_chunks_yield_the_same_frames(batch: list[Frame]) -> None:
    stream = b"".join(encode(f) for f in batch)
    decoder = FrameDecoder()
    got = feed_all(decoder, (stream[i : i + 1] for i in range(len(stream))))
    assert got == batch
    assert decoder.buffered == 0


def test_partial_frame_is_buffered_until_complete() -> None:
    wire = encode_frame(Op.JOIN, b'{"room":"r1"}', seq=3)
    decoder = FrameDecoder()
    assert decoder.feed(wire[:5]) == []
    assert decoder.buffered == 5
    assert decoder.feed(wire[5:-1]) == []
    assert decoder.buffered == len(wire) - 1
    assert decoder.feed(wire[-1:]) == [Frame(Op.JOIN, b'{"room":"r1"}', seq=3)]
    assert decoder.buffered == 0
    assert decoder.feed(b"") == []


def test_coalesced_frames_and_a_trailing_partial() -> None:
    a = encode_frame(Op.HEARTBEAT)
    b = encode_frame(Op.ACK, msg_id=9)
    decoder = FrameDecoder()
    assert decoder.feed(a + b + a[:7]) == [Frame(Op.HEARTBEAT), Frame(Op.ACK, msg_id=9)]
    assert decoder.buffered == 7
    assert decoder.feed(a[7:]) == [Frame(Op.HEARTBEAT)]


# ------------------------------------------------------------------ (c) garbage


def decode_stream_or_protocol_error(data: bytes, cuts: list[int]) -> list[Frame]:
    decoder = FrameDecoder()
    got: list[Frame] = []
    try:
        for chunk in chunked(data, cuts):
            got.extend(decoder.feed(chunk))
    except ProtocolError as exc:
        assert exc.code in (ErrorCode.BAD_FRAME, ErrorCode.TOO_LARGE)
    # Whatever was yielded is exactly a prefix of the input, re-encoded.
    assert data.startswith(b"".join(encode(f) for f in got))
    return got


@fast
@given(st.binary(max_size=300), cut_points)
def test_random_bytes_to_decoder_only_raise_protocol_error(data: bytes, cuts: list[int]) -> None:
    decode_stream_or_protocol_error(data, cuts)


@fast
@given(st.binary(max_size=300))
def test_random_bytes_to_decode_frame_only_raise_protocol_error(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except ProtocolError as exc:
        assert exc.code in (ErrorCode.BAD_FRAME, ErrorCode.TOO_LARGE)
    else:
        assert encode(frame) == data


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    """Valid streams with a few bytes overwritten: garbage that gets past a header."""
    batch = draw(st.lists(frames(max_body=100), min_size=1, max_size=6))
    data = bytearray(b"".join(encode(f) for f in batch))
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@fast
@given(mutated_streams(), cut_points)
def test_mutated_streams_only_raise_protocol_error(data: bytes, cuts: list[int]) -> None:
    decode_stream_or_protocol_error(data, cuts)
    with contextlib.suppress(ProtocolError):
        decode_frame(data)


@fast
@given(st.sampled_from(list(Codec)), st.binary(max_size=300), st.integers(0, 1000))
def test_random_bodies_only_raise_protocol_error_on_decompress(
    codec: Codec, body: bytes, max_size: int
) -> None:
    frame = Frame(Op.PUSH, body, Flag.BATCH, codec)
    try:
        out = frame.payload(max_size)
    except ProtocolError as exc:
        assert exc.code in (ErrorCode.BAD_FRAME, ErrorCode.TOO_LARGE)
    else:
        assert len(out) <= max_size or codec == Codec.NONE
    with contextlib.suppress(ProtocolError):
        frame.inner_frames(max_size)


# ------------------------------------------------------------------ (d) batches


@fast
@given(st.lists(inner_frames(), max_size=15), st.sampled_from(list(Codec)))
def test_batch_round_trip(inner: list[Frame], codec: Codec) -> None:
    wire = encode_batch([encode(f) for f in inner], codec)
    outer = decode_frame(wire, max_size=1 << 20)
    assert outer.op == Op.PUSH
    assert outer.flags & Flag.BATCH
    assert outer.codec == codec
    assert outer.seq == 0
    assert outer.msg_id == 0
    assert outer.inner_frames() == inner
    assert split_batch(outer.payload()) == inner
    assert FrameDecoder(max_size=1 << 20).feed(wire)[0].inner_frames() == inner


def test_batch_keeps_outer_flags_and_plain_frame_is_its_own_batch() -> None:
    inner = [encode_frame(Op.PUSH, b"a", msg_id=1), encode_frame(Op.EVENT, b"{}")]
    outer = decode_frame(encode_batch(inner, Codec.ZLIB, flags=Flag.HIGH_PRIORITY))
    assert outer.flags == Flag.BATCH | Flag.HIGH_PRIORITY
    assert [f.op for f in outer.inner_frames()] == [Op.PUSH, Op.EVENT]
    plain = Frame(Op.PUSH, b"x", msg_id=3)
    assert plain.inner_frames() == [plain]


def test_batch_is_identical_bytes_every_time() -> None:
    # Encode once, write many (STYLE habit 8): the encoding is deterministic.
    inner = [encode_frame(Op.PUSH, b"m%d" % i, msg_id=i) for i in range(1, 50)]
    for codec in Codec:
        assert encode_batch(inner, codec) == encode_batch(inner, codec)


@fast
@given(st.binary(max_size=300))
def test_split_batch_on_garbage_only_raises_protocol_error(body: bytes) -> None:
    try:
        got = split_batch(body)
    except ProtocolError as exc:
        assert exc.code is ErrorCode.BAD_FRAME
    else:
        assert b"".join(encode(f) for f in got) == body


@fast
@given(st.lists(inner_frames(), min_size=1, max_size=6), st.data())
def test_split_batch_on_mutated_batch_only_raises_protocol_error(
    inner: list[Frame], data: st.DataObject
) -> None:
    body = bytearray(b"".join(encode(f) for f in inner))
    body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    for candidate in (bytes(body), bytes(body[:cut])):
        try:
            split_batch(candidate)
        except ProtocolError as exc:
            assert exc.code is ErrorCode.BAD_FRAME


def test_split_batch_rejects_nested_batch() -> None:
    nested = encode_batch([encode_frame(Op.PUSH, b"x")])
    with pytest.raises(ProtocolError) as exc_info:
        split_batch(encode_frame(Op.PUSH, b"ok") + nested)
    assert_code(exc_info, ErrorCode.BAD_FRAME)
    outer = decode_frame(encode_batch([nested], Codec.ZLIB))
    with pytest.raises(ProtocolError) as exc_info:
        outer.inner_frames()
    assert_code(exc_info, ErrorCode.BAD_FRAME)


@pytest.mark.parametrize("codec", [Codec.ZLIB, Codec.BROTLI])
def test_split_batch_rejects_encoded_inner_frame(codec: Codec) -> None:
    inner = encode_frame(Op.PUSH, compress(codec, b"payload"), codec=codec)
    with pytest.raises(ProtocolError) as exc_info:
        split_batch(inner)
    assert_code(exc_info, ErrorCode.BAD_FRAME)


@pytest.mark.parametrize(
    "body",
    [
        encode_frame(Op.PUSH, b"abc")[:10],  # ends inside a header
        encode_frame(Op.PUSH, b"abc")[:-1],  # ends inside a body
        encode_frame(Op.PUSH) + b"\x00",  # stray byte
        raw_header(length=19) + b"\x00" * 20,  # length < 20 would never advance
        raw_header(version=2),
        raw_header(op=0),
        raw_header(flags=0x10),
        raw_header(codec=7),
        raw_header(op=Op.EVENT, flags=Flag.BATCH),
    ],
)
def test_split_batch_malformed_examples(body: bytes) -> None:
    with pytest.raises(ProtocolError) as exc_info:
        split_batch(body)
    assert_code(exc_info, ErrorCode.BAD_FRAME)


def test_split_batch_of_empty_body_is_empty() -> None:
    assert split_batch(b"") == []
    assert decode_frame(encode_batch([], Codec.BROTLI)).inner_frames() == []


# ------------------------------------------------------------------ (e) malformed headers


def both_decoders_raise(wire: bytes, code: ErrorCode, max_size: int = DEFAULT_MAX_FRAME) -> None:
    with pytest.raises(ProtocolError) as exc_info:
        decode_frame(wire, max_size)
    assert_code(exc_info, code)
    assert exc_info.value.fatal
    with pytest.raises(ProtocolError) as exc_info:
        FrameDecoder(max_size).feed(wire)
    assert_code(exc_info, code)


@pytest.mark.parametrize("length", [0, 1, 19])
def test_length_below_header_is_bad_frame(length: int) -> None:
    both_decoders_raise(raw_header(length=length), ErrorCode.BAD_FRAME)


@pytest.mark.parametrize("size", [0, 1, 19])
def test_message_shorter_than_header_is_bad_frame(size: int) -> None:
    with pytest.raises(ProtocolError) as exc_info:
        decode_frame(encode_frame(Op.HEARTBEAT)[:size])
    assert_code(exc_info, ErrorCode.BAD_FRAME)


def test_oversize_frame_is_refused_from_its_header_alone() -> None:
    header = raw_header(length=1 << 20, op=Op.UPSTREAM)  # a 1 MB frame, body not sent
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError) as exc_info:
        decoder.feed(header)
    assert_code(exc_info, ErrorCode.TOO_LARGE)
    # Even the first 8 bytes of the header are enough.
    with pytest.raises(ProtocolError) as exc_info:
        FrameDecoder().feed(header[:8])
    assert_code(exc_info, ErrorCode.TOO_LARGE)
    both_decoders_raise(header, ErrorCode.TOO_LARGE)


def test_limit_is_configurable() -> None:
    wire = encode_frame(Op.UPSTREAM, b"y" * 81)  # 101 bytes
    both_decoders_raise(wire, ErrorCode.TOO_LARGE, max_size=100)
    assert decode_frame(wire, max_size=101).body == b"y" * 81


def test_oversize_after_a_good_frame_in_the_same_chunk() -> None:
    good = encode_frame(Op.HEARTBEAT)
    with pytest.raises(ProtocolError) as exc_info:
        FrameDecoder().feed(good + raw_header(length=DEFAULT_MAX_FRAME + 1))
    assert_code(exc_info, ErrorCode.TOO_LARGE)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version_is_bad_frame(version: int) -> None:
    both_decoders_raise(raw_header(version=version), ErrorCode.BAD_FRAME)


@pytest.mark.parametrize("op", [0, 18, 255])
def test_unknown_op_is_bad_frame(op: int) -> None:
    both_decoders_raise(raw_header(op=op), ErrorCode.BAD_FRAME)


@pytest.mark.parametrize("flags", [0x08, 0x10, 0x80, 0xFF, 0x09])
def test_unknown_flag_bits_are_bad_frame(flags: int) -> None:
    both_decoders_raise(raw_header(flags=flags), ErrorCode.BAD_FRAME)


@pytest.mark.parametrize("codec", [3, 4, 255])
def test_unknown_codec_is_bad_frame(codec: int) -> None:
    both_decoders_raise(raw_header(codec=codec), ErrorCode.BAD_FRAME)


@pytest.mark.parametrize("op", [op for op in Op if op != Op.PUSH])
def test_batch_flag_on_non_push_is_bad_frame(op: Op) -> None:
    both_decoders_raise(raw_header(op=op, flags=Flag.BATCH), ErrorCode.BAD_FRAME)


def test_garbage_fails_before_a_full_header_arrives() -> None:
    # Only 8 of the 20 header bytes, with a bad version: refused at once.
    with pytest.raises(ProtocolError) as exc_info:
        FrameDecoder().feed(b"\x00\x00\x00\x20\x09\x05\x00\x00")
    assert_code(exc_info, ErrorCode.BAD_FRAME)
    # Another protocol on the port (16 bytes, no full header) fails too.
    with pytest.raises(ProtocolError) as exc_info:
        FrameDecoder().feed(b"GET / HTTP/1.1\r\n")
    assert exc_info.value.fatal


@pytest.mark.parametrize("extra", [-1, 1, 50])
def test_decode_frame_length_must_match_message(extra: int) -> None:
    wire = encode_frame(Op.UPSTREAM, b"abcdef")
    wire = wire[:extra] if extra < 0 else wire + b"\x00" * extra
    with pytest.raises(ProtocolError) as exc_info:
        decode_frame(wire)
    assert_code(exc_info, ErrorCode.BAD_FRAME)


# ------------------------------------------------------------------ (e) codec bodies


@pytest.mark.parametrize(
    ("codec", "body"),
    [
        (Codec.ZLIB, b"not zlib at all"),
        (Codec.ZLIB, zlib.compress(b"hello world" * 10)[:-3]),  # truncated
        (Codec.ZLIB, zlib.compress(b"hello") + b"junk"),  # trailing bytes
        (Codec.ZLIB, b""),
        (Codec.BROTLI, b"\xff" * 12),
        (Codec.BROTLI, brotli.compress(b"hello world" * 10)[:-2]),  # truncated
        (Codec.BROTLI, brotli.compress(b"hello") + b"junk"),
        (Codec.BROTLI, b""),
    ],
)
def test_corrupt_compressed_body_is_bad_frame(codec: Codec, body: bytes) -> None:
    frame = decode_frame(encode_frame(Op.PUSH, body, codec=codec))
    with pytest.raises(ProtocolError) as exc_info:
        frame.payload()
    assert_code(exc_info, ErrorCode.BAD_FRAME)


@pytest.mark.parametrize("codec", list(Codec))
def test_compress_decompress_round_trip(codec: Codec) -> None:
    data = b"longlink " * 1000
    assert decompress(codec, compress(codec, data), len(data)) == data
    assert decompress(codec, compress(codec, b""), 0) == b""


@pytest.fixture(scope="module")
def bombs() -> dict[Codec, bytes]:
    plain = b"\x00" * (32 << 20)  # 32 MiB that compresses to almost nothing
    return {Codec.ZLIB: zlib.compress(plain), Codec.BROTLI: brotli.compress(plain, quality=5)}


@pytest.mark.parametrize("codec", [Codec.ZLIB, Codec.BROTLI])
def test_decompression_bomb_is_too_large_without_inflating(
    codec: Codec, bombs: dict[Codec, bytes]
) -> None:
    frame = Frame(Op.PUSH, bombs[codec], Flag.BATCH, codec)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as exc_info:
            frame.payload(max_size=64 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_code(exc_info, ErrorCode.TOO_LARGE)
    assert peak < 4 << 20, f"inflated {peak} bytes to refuse a 64 KiB limit"


@pytest.mark.parametrize("codec", [Codec.ZLIB, Codec.BROTLI])
def test_body_of_exactly_max_size_inflates(codec: Codec) -> None:
    data = b"z" * 1000
    assert decompress(codec, compress(codec, data), 1000) == data
    with pytest.raises(ProtocolError) as exc_info:
        decompress(codec, compress(codec, data), 999)
    assert_code(exc_info, ErrorCode.TOO_LARGE)


def test_unknown_codec_in_compress_and_decompress() -> None:
    with pytest.raises(ProtocolError) as exc_info:
        compress(9, b"x")
    assert_code(exc_info, ErrorCode.BAD_FRAME)
    with pytest.raises(ProtocolError) as exc_info:
        decompress(9, b"x", 10)
    assert_code(exc_info, ErrorCode.BAD_FRAME)
