"""Tests of the sans-I/O WebSocket layer: bytes in, values out, no sockets."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longlink.protocol.websocket import (
    CLOSE_INVALID_DATA,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NO_STATUS,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    MAX_HANDSHAKE_SIZE,
    HandshakeError,
    HandshakeParser,
    UpgradeRequest,
    WsError,
    WsOpcode,
    WsReader,
    accept_key,
    accept_response,
    encode_close,
    encode_frame,
    encode_masked_frame,
    parse_close,
    reject_response,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x37\xfa\x21\x3d"
MAX = 1 << 20


def request(
    *, method: str = "GET", target: str = "/ws", version: str = "1.1", **over: str
) -> bytes:
    """An upgrade request; keyword ``Header_Name=value`` overrides a header, ``""`` drops it."""
    headers = {
        "Host": "127.0.0.1:7000",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Protocol": "longlink.v1",
    }
    for name, value in over.items():
        headers[name.replace("_", "-")] = value
    lines = [f"{method} {target} HTTP/{version}"]
    lines += [f"{name}: {value}" for name, value in headers.items() if value]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def handshake(data: bytes) -> UpgradeRequest:
    parsed = HandshakeParser().feed(data)
    assert parsed is not None
    return parsed


def client(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    return encode_masked_frame(opcode, payload, MASK, fin=fin)


def raw(
    b0: int, b1: int, ext: bytes = b"", mask: bytes | None = MASK, payload: bytes = b""
) -> bytes:
    """A frame built by hand, for headers the encoders refuse to produce."""
    return bytes((b0, b1)) + ext + (mask or b"") + payload


def feed_all(reader: WsReader, chunks: list[bytes]) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    for chunk in chunks:
        out += reader.feed(chunk)
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


# --------------------------------------------------------------------------- handshake


def test_handshake_accepts_a_valid_request() -> None:
    parsed = handshake(request(target="/ws?token=abc", Sec_WebSocket_Protocol="longlink.v1, x"))
    assert parsed.path == "/ws"
    assert parsed.query == "token=abc"
    assert parsed.key == KEY
    assert parsed.subprotocols == ["longlink.v1", "x"]
    assert parsed.headers["host"] == "127.0.0.1:7000"
    assert all(name == name.lower() for name in parsed.headers)


def test_handshake_tokens_are_case_insensitive_lists() -> None:
    parsed = handshake(request(Upgrade="WebSocket", Connection="keep-alive, UPGRADE"))
    assert parsed.headers["connection"] == "keep-alive, UPGRADE"


def test_handshake_without_subprotocol() -> None:
    assert handshake(request(Sec_WebSocket_Protocol="")).subprotocols == []


def test_repeated_headers_are_joined() -> None:
    data = request().replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: b\r\n\r\n")
    assert handshake(data).subprotocols == ["longlink.v1", "b"]


def test_accept_key_matches_rfc_example() -> None:
    # RFC 6455 §1.3 (and §4.2.2): the example key and its accept value.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_response() -> None:
    response = accept_response(KEY, "longlink.v1")
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert response.endswith(b"\r\n\r\n")
    lines = response.split(b"\r\n")
    assert b"Upgrade: websocket" in lines
    assert b"Connection: Upgrade" in lines
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in lines
    assert b"Sec-WebSocket-Protocol: longlink.v1" in lines
    assert b"Sec-WebSocket-Protocol" not in accept_response(KEY, None)


@pytest.mark.parametrize("bad", ["", "a b", "x\r\nSet-Cookie: y", "é"])
def test_accept_response_refuses_a_subprotocol_that_is_not_a_token(bad: str) -> None:
    with pytest.raises(ValueError):
        accept_response(KEY, bad)


def test_reject_response() -> None:
    response = reject_response(431, "too big")
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert b"Connection: close" in lines
    assert f"Content-Length: {len(body)}".encode() in lines
    assert body == b"too big\n"
    assert reject_response(599, "x").startswith(b"HTTP/1.1 599 Error\r\n")


def test_leftover_bytes_after_the_head_are_kept() -> None:
    first = client(WsOpcode.BINARY, b"auth")
    parser = HandshakeParser()
    assert parser.feed(request() + first) is not None
    assert parser.leftover == first
    assert WsReader(MAX).feed(parser.leftover) == [(WsOpcode.BINARY, b"auth")]


def test_leftover_larger_than_the_head_limit_is_kept_whole() -> None:
    first = client(WsOpcode.BINARY, bytes(3 * MAX_HANDSHAKE_SIZE))
    parser = HandshakeParser()
    assert parser.feed(request() + first) is not None
    assert parser.leftover == first


def test_handshake_split_at_every_byte() -> None:
    frame = client(WsOpcode.BINARY, b"first frame")
    data = request() + frame
    for cut in range(1, len(data)):
        parser = HandshakeParser()
        first = parser.feed(data[:cut])
        if first is None:
            second = parser.feed(data[cut:])
            assert second is not None
            assert parser.leftover == frame
        else:  # the head ended within the first chunk
            assert parser.leftover + data[cut:] == frame


@given(cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_handshake_split_at_random_points(cuts: list[int]) -> None:
    frame = client(WsOpcode.TEXT, b"hi")
    chunks = split(request(target="/ws?q=1") + frame, cuts)
    parser = HandshakeParser()
    for i, chunk in enumerate(chunks):
        parsed = parser.feed(chunk)
        if parsed is not None:
            assert parsed.path == "/ws"
            assert parsed.query == "q=1"
            assert parser.leftover + b"".join(chunks[i + 1 :]) == frame
            return
    pytest.fail("the request was never completed")


def test_incomplete_head_returns_none() -> None:
    assert HandshakeParser().feed(request()[:-1]) is None


def test_parser_is_single_use() -> None:
    parser = HandshakeParser()
    parser.feed(request())
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"HELLO\r\n\r\n", id="not-http"),
        pytest.param(b"GET /ws HTTP/1.1\r\nHost x\r\n\r\n", id="bad-header-line"),
        pytest.param(request(method="POST"), id="post"),
        pytest.param(request(version="1.0"), id="http-1.0"),
        pytest.param(request(Host=""), id="no-host"),
        pytest.param(request(Upgrade=""), id="no-upgrade"),
        pytest.param(request(Upgrade="h2c"), id="upgrade-h2c"),
        pytest.param(request(Connection=""), id="no-connection"),
        pytest.param(request(Connection="keep-alive"), id="connection-keep-alive"),
        pytest.param(request(Connection="upgrades"), id="connection-not-a-token"),
        pytest.param(request(Sec_WebSocket_Version=""), id="no-version"),
        pytest.param(request(Sec_WebSocket_Version="8"), id="version-8"),
        pytest.param(request(Sec_WebSocket_Key=""), id="no-key"),
        pytest.param(request(Sec_WebSocket_Key="not base64!"), id="key-not-base64"),
        pytest.param(request(Sec_WebSocket_Key="AAAAAAAAAAAAAAAAAAAA"), id="key-15-bytes"),
        pytest.param(request(Sec_WebSocket_Key="AAAAAAAAAAAAAAAAAAAAAAA="), id="key-17-bytes"),
        pytest.param(request(Content_Length="4") + b"body", id="body"),
        pytest.param(request(Transfer_Encoding="chunked") + b"0\r\n\r\n", id="chunked"),
    ],
)
def test_handshake_rejects_with_400(data: bytes) -> None:
    with pytest.raises(HandshakeError) as caught:
        HandshakeParser().feed(data)
    assert caught.value.status == 400
    assert caught.value.reason


def test_handshake_rejects_a_head_over_8_kib() -> None:
    data = request(X_Padding="a" * MAX_HANDSHAKE_SIZE)
    with pytest.raises(HandshakeError) as caught:
        HandshakeParser().feed(data)
    assert caught.value.status == 431


def test_handshake_size_limit_is_exact_and_counts_across_feeds() -> None:
    base = len(request(X_Padding="a"))
    exact = request(X_Padding="a" * (MAX_HANDSHAKE_SIZE - base + 1))
    assert len(exact) == MAX_HANDSHAKE_SIZE
    assert handshake(exact + b"\x00" * 100).key == KEY
    over = request(X_Padding="a" * (MAX_HANDSHAKE_SIZE - base + 2))
    assert len(over) == MAX_HANDSHAKE_SIZE + 1
    with pytest.raises(HandshakeError) as caught:
        HandshakeParser().feed(over)
    assert caught.value.status == 431
    parser = HandshakeParser()
    for i in range(0, 8000, 1000):
        assert parser.feed(over[i : i + 1000]) is None
    with pytest.raises(HandshakeError) as caught:
        parser.feed(over[8000:])
    assert caught.value.status == 431


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, b"\x82\x00"),
        (125, b"\x82\x7d"),
        (126, b"\x82\x7e\x00\x7e"),
        (65535, b"\x82\x7e\xff\xff"),
        (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_encode_frame_lengths(size: int, header: bytes) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert encode_frame(WsOpcode.BINARY, payload) == header + payload
    assert WsReader(MAX, require_mask=False).feed(header + payload) == [(WsOpcode.BINARY, payload)]


def test_encode_frame_refuses_bad_control_frames_and_opcodes() -> None:
    with pytest.raises(ValueError):
        encode_frame(WsOpcode.PING, b"x" * 126)
    with pytest.raises(ValueError):
        encode_frame(WsOpcode.PING, b"", fin=False)
    with pytest.raises(ValueError):
        encode_frame(3, b"")
    with pytest.raises(ValueError):
        encode_masked_frame(WsOpcode.BINARY, b"", b"abc")


def test_masked_frame_layout() -> None:
    frame = encode_masked_frame(WsOpcode.TEXT, b"Hello", b"\x37\xfa\x21\x3d")
    assert frame == b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # RFC 6455 §5.7


def test_close_round_trip() -> None:
    frame = encode_close(CLOSE_NORMAL, "bye")
    assert frame == b"\x88\x05\x03\xe8bye"
    assert parse_close(frame[2:]) == (CLOSE_NORMAL, "bye")
    assert encode_close(CLOSE_NO_STATUS) == b"\x88\x00"
    assert parse_close(b"") == (CLOSE_NO_STATUS, "")
    assert parse_close(encode_close(4000)[2:]) == (4000, "")


def test_close_reason_is_cut_on_a_character_boundary() -> None:
    frame = encode_close(CLOSE_NORMAL, "é" * 100)
    assert len(frame) - 2 <= 125
    code, reason = parse_close(frame[2:])
    assert code == CLOSE_NORMAL
    assert reason == "é" * 61


@pytest.mark.parametrize("code", [0, 999, 1004, 1005 + 1, 1015, 2999, 5000])
def test_encode_close_refuses_codes_not_for_the_wire(code: int) -> None:
    with pytest.raises(ValueError):
        encode_close(code)


# --------------------------------------------------------------------------- reading


@settings(max_examples=200)
@given(
    frames=st.lists(
        st.tuples(st.sampled_from([WsOpcode.BINARY, WsOpcode.TEXT]), st.binary(max_size=300)),
        min_size=1,
        max_size=8,
    ),
    mask=st.binary(min_size=4, max_size=4),
    cuts=st.lists(st.integers(min_value=0), max_size=10),
)
def test_round_trip_split_at_random_points(
    frames: list[tuple[WsOpcode, bytes]], mask: bytes, cuts: list[int]
) -> None:
    messages = [(op, p if op == WsOpcode.BINARY else p.hex().encode()) for op, p in frames]
    stream = b"".join(encode_masked_frame(op, p, mask) for op, p in messages)
    assert feed_all(WsReader(MAX), split(stream, cuts)) == messages


@settings(max_examples=25)
@given(
    seed=st.binary(min_size=1, max_size=64),
    size=st.integers(min_value=60_000, max_value=70_000),
    cuts=st.lists(st.integers(), max_size=5),
)
def test_round_trip_large_payloads(seed: bytes, size: int, cuts: list[int]) -> None:
    payload = (seed * (size // len(seed) + 1))[:size]
    stream = client(WsOpcode.BINARY, payload)
    assert feed_all(WsReader(MAX), split(stream, cuts)) == [(WsOpcode.BINARY, payload)]


def test_every_byte_split_and_all_coalesced() -> None:
    messages: list[tuple[int, bytes]] = [
        (WsOpcode.BINARY, b""),
        (WsOpcode.TEXT, "héllo".encode()),
        (WsOpcode.PING, b"p"),
        (WsOpcode.BINARY, bytes(200)),
        (WsOpcode.BINARY, bytes(range(256)) * 300),
        (WsOpcode.CLOSE, encode_close(CLOSE_NORMAL, "done")[2:]),
    ]
    stream = b"".join(client(op, p) for op, p in messages)
    assert WsReader(MAX).feed(stream) == messages
    reader = WsReader(MAX)
    assert feed_all(reader, [stream[i : i + 1] for i in range(len(stream))]) == messages
    assert reader.buffered == 0


def test_fragmented_message_with_interleaved_control_frames() -> None:
    stream = [
        client(WsOpcode.TEXT, b"frag", fin=False),
        client(WsOpcode.PING, b"ping"),
        client(WsOpcode.CONT, b"ment", fin=False),
        client(WsOpcode.PONG, b""),
        client(WsOpcode.CONT, b"ed"),
        client(WsOpcode.BINARY, b"next"),
    ]
    expected = [
        (WsOpcode.PING, b"ping"),
        (WsOpcode.PONG, b""),
        (WsOpcode.TEXT, b"fragmented"),
        (WsOpcode.BINARY, b"next"),
    ]
    assert WsReader(MAX).feed(b"".join(stream)) == expected
    reader = WsReader(MAX)
    assert feed_all(reader, stream) == expected
    reader = WsReader(MAX)
    assert reader.feed(stream[0]) == []
    assert reader.buffered == 4  # the first fragment, held until the message ends


def test_idle_reader_holds_no_buffer() -> None:
    reader = WsReader(MAX)
    assert not hasattr(reader, "__dict__")
    frame = client(WsOpcode.BINARY, b"x" * 50)
    reader.feed(frame[:10])
    assert reader.buffered == 10
    reader.feed(frame[10:])
    assert reader.buffered == 0
    assert reader._buf is None
    assert reader._frags is None


def test_unmasked_frames_are_read_when_masks_are_not_required() -> None:
    reader = WsReader(MAX, require_mask=False)
    frames = encode_frame(WsOpcode.BINARY, b"a") + client(WsOpcode.BINARY, b"b")
    assert reader.feed(frames) == [(WsOpcode.BINARY, b"a"), (WsOpcode.BINARY, b"b")]


TOO_BIG = 1000


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(encode_frame(WsOpcode.BINARY, b"x"), CLOSE_PROTOCOL_ERROR, id="unmasked"),
        pytest.param(raw(0xC2, 0x80), CLOSE_PROTOCOL_ERROR, id="rsv1"),
        pytest.param(raw(0xA2, 0x80), CLOSE_PROTOCOL_ERROR, id="rsv2"),
        pytest.param(raw(0x92, 0x80), CLOSE_PROTOCOL_ERROR, id="rsv3"),
        *(
            pytest.param(raw(0x80 | op, 0x80), CLOSE_PROTOCOL_ERROR, id=f"opcode-{op}")
            for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)
        ),
        pytest.param(raw(0x89, 0xFE, b"\x00\x7e"), CLOSE_PROTOCOL_ERROR, id="ping-126-bytes"),
        pytest.param(raw(0x09, 0x80), CLOSE_PROTOCOL_ERROR, id="fragmented-ping"),
        pytest.param(raw(0x08, 0x80), CLOSE_PROTOCOL_ERROR, id="fragmented-close"),
        pytest.param(client(WsOpcode.CONT, b"x"), CLOSE_PROTOCOL_ERROR, id="cont-without-message"),
        pytest.param(
            client(WsOpcode.TEXT, b"a", fin=False) + client(WsOpcode.BINARY, b"b"),
            CLOSE_PROTOCOL_ERROR,
            id="new-message-inside-fragmented",
        ),
        pytest.param(
            client(WsOpcode.TEXT, b"a", fin=False) + client(WsOpcode.TEXT, b"b", fin=False),
            CLOSE_PROTOCOL_ERROR,
            id="new-fragmented-inside-fragmented",
        ),
        pytest.param(
            raw(0x82, 0xFF, b"\x80" + bytes(7)), CLOSE_PROTOCOL_ERROR, id="64-bit-top-bit"
        ),
        pytest.param(
            client(WsOpcode.BINARY, bytes(TOO_BIG + 1)), CLOSE_MESSAGE_TOO_BIG, id="too-big"
        ),
        pytest.param(
            client(WsOpcode.BINARY, bytes(600), fin=False) + client(WsOpcode.CONT, bytes(401)),
            CLOSE_MESSAGE_TOO_BIG,
            id="too-big-in-fragments",
        ),
        pytest.param(client(WsOpcode.TEXT, b"\xff"), CLOSE_INVALID_DATA, id="text-not-utf8"),
        pytest.param(
            client(WsOpcode.TEXT, b"\xc3", fin=False) + client(WsOpcode.CONT, b"\x28"),
            CLOSE_INVALID_DATA,
            id="text-not-utf8-fragmented",
        ),
        pytest.param(client(WsOpcode.CLOSE, b"\x03"), CLOSE_PROTOCOL_ERROR, id="close-1-byte"),
        pytest.param(client(WsOpcode.CLOSE, b"\x03\xed"), CLOSE_PROTOCOL_ERROR, id="close-1005"),
        pytest.param(
            client(WsOpcode.CLOSE, b"\x03\xe8\xff"), CLOSE_INVALID_DATA, id="close-reason-utf8"
        ),
    ],
)
def test_reader_errors(data: bytes, code: int) -> None:
    with pytest.raises(WsError) as caught:
        WsReader(TOO_BIG).feed(data)
    assert caught.value.close_code == code
    assert caught.value.reason
    # the same error when the bytes arrive one at a time
    with pytest.raises(WsError) as caught:
        feed_all(WsReader(TOO_BIG), [data[i : i + 1] for i in range(len(data))])
    assert caught.value.close_code == code


def test_utf8_split_across_fragments_is_valid() -> None:
    data = client(WsOpcode.TEXT, b"\xc3", fin=False) + client(WsOpcode.CONT, b"\xa9")
    assert WsReader(MAX).feed(data) == [(WsOpcode.TEXT, "é".encode())]


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(raw(0x82, 0xFE, (TOO_BIG + 1).to_bytes(2, "big"), mask=None), id="16-bit"),
        pytest.param(raw(0x82, 0xFF, (1 << 40).to_bytes(8, "big"), mask=None), id="64-bit"),
    ],
)
def test_size_limit_is_enforced_from_the_header_alone(header: bytes) -> None:
    with pytest.raises(WsError) as caught:
        WsReader(TOO_BIG).feed(header)  # no mask, no payload yet
    assert caught.value.close_code == CLOSE_MESSAGE_TOO_BIG


def test_size_limit_counts_fragments_from_the_header_alone() -> None:
    reader = WsReader(TOO_BIG)
    assert reader.feed(client(WsOpcode.BINARY, bytes(900), fin=False)) == []
    with pytest.raises(WsError) as caught:
        reader.feed(raw(0x80, 0xFE, (101).to_bytes(2, "big"), mask=None))
    assert caught.value.close_code == CLOSE_MESSAGE_TOO_BIG


def test_message_of_exactly_the_limit_is_accepted() -> None:
    data = client(WsOpcode.BINARY, bytes(500), fin=False) + client(WsOpcode.CONT, bytes(500))
    assert WsReader(TOO_BIG).feed(data) == [(WsOpcode.BINARY, bytes(TOO_BIG))]


def test_module_imports_no_io() -> None:
    code = (
        "import sys, longlink.protocol.websocket; "
        "bad = {'asyncio', 'socket', 'selectors', 'ssl'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
