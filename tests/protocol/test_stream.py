"""The HTTP stream's pure parts (protocol/stream.py): requests in, answers out, no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from longlink.protocol import FrameDecoder, Op, ProtocolError, encode_frame
from longlink.protocol.stream import (
    LAST_CHUNK,
    MAX_HEAD,
    RequestError,
    RequestReader,
    Route,
    body_frames,
    chunk,
    cors_headers,
    preflight_headers,
    response,
    route,
    stream_head,
)

AUTH = encode_frame(Op.AUTH, b'{"token": "t"}')
BEAT = encode_frame(Op.HEARTBEAT, seq=7)


def post(path: str, body: bytes, *headers: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: gw", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_a_request_in_any_pieces_is_read_once_complete() -> None:
    data = post("/v1/stream/g1-ab-1", BEAT, "Authorization: Bearer tok", "Origin: https://a.b")
    reader = RequestReader(1024)
    requests = [r for i in range(len(data)) for r in reader.feed(data[i : i + 1])]
    assert len(requests) == 1
    request = requests[0]
    assert (request.method, request.path, request.body) == ("POST", "/v1/stream/g1-ab-1", BEAT)
    assert request.bearer == "tok" and request.origin == "https://a.b" and request.keep_alive
    assert route(request) == (Route.SEND, "g1-ab-1")


def test_keep_alive_requests_follow_each_other() -> None:
    reader = RequestReader(1024)
    both = post("/v1/stream/c-1", BEAT) + post("/v1/stream?x=1", AUTH, "Connection: close")
    first, second = reader.feed(both)
    assert route(first) == (Route.SEND, "c-1")
    assert route(second) == (Route.OPEN, "") and second.body == AUTH
    assert not second.keep_alive


def test_routes() -> None:
    reader = RequestReader(1024)
    (options,) = reader.feed(b"OPTIONS /v1/stream/a%2Fb HTTP/1.1\r\nHost: gw\r\n\r\n")
    with pytest.raises(RequestError) as error:  # an id is one path segment
        route(options)
    assert error.value.status == 404
    (options,) = RequestReader(1024).feed(b"OPTIONS /v1/stream/a%20b HTTP/1.1\r\nHost: g\r\n\r\n")
    assert route(options) == (Route.PREFLIGHT, "a b")
    (other,) = RequestReader(1024).feed(post("/v1/other", b""))
    with pytest.raises(RequestError) as error:
        route(other)
    assert error.value.status == 404
    (put,) = RequestReader(1024).feed(b"PUT /v1/stream HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(RequestError) as error:
        route(put)
    assert error.value.status == 405


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (post("/v1/stream", b"x" * 2000), 413),
        (
            b"POST /v1/stream HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            411,
        ),
        (b"POST /v1/stream HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD + 10), 431),
        (b"\x00\x01garbage\r\n\r\n", 400),
        (
            b"POST /v1/stream HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
            b"Content-Length: 0\r\n\r\n",
            400,
        ),
    ],
)
def test_requests_refused(data: bytes, status: int) -> None:
    with pytest.raises(RequestError) as error:
        RequestReader(1024).feed(data)
    assert error.value.status == status


def test_a_slow_head_is_refused_past_the_limit() -> None:
    reader = RequestReader(1024)
    reader.feed(b"POST /v1/stream HTTP/1.1\r\nX-Slow: ")
    with pytest.raises(RequestError) as error:
        for _ in range(MAX_HEAD):
            reader.feed(b"a" * 64)
    assert error.value.status == 431


def test_body_frames() -> None:
    assert [f.op for f in body_frames(AUTH + BEAT, 1024)] == [Op.AUTH, Op.HEARTBEAT]
    for bad in (b"", AUTH[:-1]):
        with pytest.raises(RequestError):
            body_frames(bad, 1024)
    with pytest.raises(ProtocolError):
        body_frames(encode_frame(Op.UPSTREAM, b"x" * 2000), 1024)


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=8))
def test_chunks_carry_the_frames_back_to_back(bodies: list[bytes]) -> None:
    frames = [encode_frame(Op.PUSH, body, msg_id=i + 1) for i, body in enumerate(bodies)]
    wire = stream_head() + b"".join(chunk(f) for f in frames) + LAST_CHUNK
    head, _, rest = wire.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and head.startswith(b"HTTP/1.1 200 OK")
    payload = b""
    while True:  # a chunked decoder, as a client's
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert rest == b"\r\n"
            break
        payload += rest[:size]
        assert rest[size : size + 2] == b"\r\n"
        rest = rest[size + 2 :]
    assert [f.body for f in FrameDecoder(1 << 20).feed(payload)] == bodies


def test_answers() -> None:
    assert response(204, keep_alive=True).startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"Content-Length" not in response(204)
    refused = response(401, "no", cors_headers("https://a.b"))
    assert refused.endswith(b"\r\n\r\nno\n") and b"Content-Length: 3" in refused
    assert b"Access-Control-Allow-Origin: https://a.b\r\nVary: Origin" in refused
    assert cors_headers(None) == [] and cors_headers("*") == [("Access-Control-Allow-Origin", "*")]
    assert ("Access-Control-Allow-Headers", "Authorization, Content-Type") in preflight_headers("*")
