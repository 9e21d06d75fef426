"""Fuzz targets: every parser of untrusted bytes, with the exceptions it documents.

Each target takes bytes and must either return or raise one of its
documented errors (:data:`ALLOWED`); anything else — another exception, a
hang, a runaway allocation — is a bug. Used by the coverage-guided fuzzer
(``fuzz/run.py``, atheris, ``make fuzz``) and by the hypothesis tests in
``make test`` (``tests/fuzz/``).

=================  ==============================================  ===============
target             what                                            may raise
=================  ==============================================  ===============
``frame``          ``decode_frame`` (one frame, body decoded)      ProtocolError
``stream``         ``FrameDecoder.feed`` over chunks               ProtocolError
``batch``          ``split_room_batch`` / ``iter_messages``        ProtocolError
``ws``             ``WsReader.feed`` (server side, masked)         WsError
``upgrade``        ``HandshakeParser.feed`` (HTTP upgrade)         HandshakeError
``session``        the client bodies (AUTH, JOIN, ACK, REPORT, …)  ProtocolError
``json``           the HTTP request bodies (push, batch, connect)  ApiError
``http``           the HTTP stream's requests (``RequestReader``,   RequestError,
                   ``route``, ``body_frames``) over chunks          ProtocolError
=================  ==============================================  ===============
"""

from __future__ import annotations

from collections.abc import Callable

from longlink.api.errors import ApiError
from longlink.api.schemas import Limits, parse_connect, parse_push, parse_push_batch
from longlink.protocol import FrameDecoder, ProtocolError, decode_frame
from longlink.protocol import websocket as wsp
from longlink.protocol.frames import Flag, Frame, iter_messages
from longlink.protocol.messages import (
    Auth,
    HeartbeatBody,
    JoinBody,
    Report,
    RoomBody,
    decode_ack,
    decode_body,
    parse_msg_id,
)
from longlink.protocol.push import split_room_batch
from longlink.protocol.stream import RequestError, RequestReader, body_frames, route

MAX = 64 * 1024
_LIMITS = Limits()


def frame(data: bytes) -> None:
    decoded = decode_frame(data, MAX)
    decoded.payload(MAX)


def stream(data: bytes) -> None:
    decoder = FrameDecoder(MAX)
    # Chunk boundaries from the first byte: the same input is read in pieces.
    step = (data[0] % 17 + 1) if data else 1
    for start in range(1, len(data), step):
        for got in decoder.feed(data[start : start + step]):
            got.payload(MAX)


def batch(data: bytes) -> None:
    split_room_batch(data)
    outer = Frame(5, data[1:], Flag.BATCH, data[0] % 3 if data else 0)
    for _ in iter_messages(outer, MAX):
        pass


def ws(data: bytes) -> None:
    reader = wsp.WsReader(MAX)
    step = (data[0] % 31 + 1) if data else 1
    for start in range(1, len(data), step):
        reader.feed(data[start : start + step])


def upgrade(data: bytes) -> None:
    parser = wsp.HandshakeParser()
    step = (data[0] % 64 + 1) if data else 1
    for start in range(1, len(data), step):
        if parser.feed(data[start : start + step]) is not None:
            return


def http(data: bytes) -> None:
    reader = RequestReader(4 * MAX)
    step = (data[0] % 64 + 1) if data else 1
    for start in range(1, len(data), step):
        for request in reader.feed(data[start : start + step]):
            route(request)
            if request.body:
                body_frames(request.body, MAX)


_BODIES = (Auth, HeartbeatBody, JoinBody, Report, RoomBody)


def session(data: bytes) -> None:
    kind = data[0] % (len(_BODIES) + 2) if data else 0
    body = data[1:]
    if kind == len(_BODIES):
        decode_ack(body, 0)
    elif kind == len(_BODIES) + 1:
        parse_msg_id(body.decode("utf-8", "replace"))
    else:
        decode_body(body, _BODIES[kind])


def json(data: bytes) -> None:
    kind = data[0] % 3 if data else 0
    body = data[1:]
    if kind == 0:
        parse_push(body, _LIMITS)
    elif kind == 1:
        parse_push_batch(body, _LIMITS)
    else:
        parse_connect(body)


TARGETS: dict[str, tuple[Callable[[bytes], None], tuple[type[Exception], ...]]] = {
    "frame": (frame, (ProtocolError,)),
    "stream": (stream, (ProtocolError,)),
    "batch": (batch, (ProtocolError,)),
    "ws": (ws, (wsp.WsError,)),
    "upgrade": (upgrade, (wsp.HandshakeError,)),
    "session": (session, (ProtocolError,)),
    "json": (json, (ApiError,)),
    "http": (http, (RequestError, ProtocolError)),
}


def check(name: str, data: bytes) -> None:
    """Run target ``name`` on ``data``; only its documented errors may come out."""
    target, allowed = TARGETS[name]
    try:
        target(data)
    except allowed:
        pass
