"""The HTTP stream transport (PROTOCOL.md §1.5), sans-I/O: requests in, bytes out.

For networks that break WebSocket upgrades, a client speaks longlink over
plain HTTP/1.1 on the gateway's WebSocket port:

==========================================  ==========================================
request                                     answer
==========================================  ==========================================
``POST /v1/stream``, body: the AUTH frame   200 ``application/octet-stream``, chunked,
                                            open while the session lives: the
                                            server's frames back to back, as on TCP
``POST /v1/stream/{conn_id}``, header       204 once the frames were handed to the
``Authorization: Bearer <token>``, body:    session (404 when the session is gone,
one or more frames back to back             401 when the token is not the session's)
``OPTIONS /v1/stream`` or ``…/{conn_id}``   the CORS preflight (204)
==========================================  ==========================================

Nothing here touches a socket: :class:`RequestReader` turns the bytes of
one connection into :class:`Request` values (keep-alive: one after the
other, bodies by ``Content-Length``), :func:`route` says which of the rows
above a request is, and the functions below build every answer. The
gateway's bridge (``gateway/stream.py``) moves the bytes.

Limits (each answered with its status, then the connection is closed):
a request head over :data:`MAX_HEAD` bytes (431), a body over the reader's
``max_body`` (413), a body without ``Content-Length`` (411: no chunked
uploads; browsers send the length of an ``ArrayBuffer`` body), a request
that asks for a protocol upgrade (400), a body that is not whole frames
(400, :func:`body_frames`).

Errors (under ``longlink.protocol.errors.LonglinkError``)::

    LonglinkError
     └── HttpRefusal
          └── RequestError   (status, reason)   answer response(status, reason), close
"""

from __future__ import annotations

import http
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final
from urllib.parse import unquote

import httptools

from longlink.protocol.errors import HttpRefusal, ProtocolError
from longlink.protocol.frames import Frame, FrameDecoder

__all__ = [
    "LAST_CHUNK",
    "MAX_HEAD",
    "STREAM_PATH",
    "Request",
    "RequestError",
    "RequestReader",
    "Route",
    "body_frames",
    "chunk",
    "cors_headers",
    "frame_error",
    "preflight_headers",
    "response",
    "route",
    "stream_head",
]

#: Where the HTTP stream lives on the gateway's WebSocket port.
STREAM_PATH: Final = "/v1/stream"
#: Largest request head (request line and headers), in bytes.
MAX_HEAD: Final = 8 * 1024
#: The end of a chunked body: the stream is over.
LAST_CHUNK: Final = b"0\r\n\r\n"
#: Seconds a browser may keep a preflight answer.
PREFLIGHT_MAX_AGE_S: Final = 600


class RequestError(HttpRefusal):
    """A request to refuse: answer ``response(status, reason)``, then close the connection."""


@dataclass(frozen=True, slots=True)
class Request:
    """One complete HTTP request: ``headers`` with lower-cased names (repeats joined by
    ``", "``), ``path`` without its query, ``keep_alive`` whether the connection may
    carry another request after the answer."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool

    @property
    def origin(self) -> str | None:
        """The ``Origin`` header (a browser's cross-site request), or None."""
        return self.headers.get("origin")

    @property
    def bearer(self) -> str | None:
        """The token of ``Authorization: Bearer <token>``, or None."""
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token else None


class _Collector:
    """Callback target for httptools: one request at a time."""

    __slots__ = (
        "body",
        "complete",
        "error",
        "headers",
        "in_head",
        "in_message",
        "max_body",
        "parser",
        "url",
    )

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.in_head = False  # a request began and its head is not complete yet
        self.in_message = False  # a request began and is not complete yet
        self.complete: list[Request] = []
        self.error: RequestError | None = None
        self.parser: httptools.HttpRequestParser | None = None

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []
        self.in_head = True
        self.in_message = True

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        length: bytes | None = None
        for name, value in self.headers:
            lower = name.lower()
            if lower == b"transfer-encoding":
                self._refuse(411, "send the body with a Content-Length (no chunked uploads)")
                return
            if lower == b"content-length":
                length = value.strip()
        if length is not None and length.isdigit() and int(length) > self.max_body:
            self._refuse(413, f"request body over {self.max_body} bytes")

    def on_body(self, body: bytes) -> None:
        if self.error is None:
            self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        parser = self.parser
        if self.error is None and parser is not None:
            method = parser.get_method().decode("ascii", "replace")
            body = b"".join(self.body)
            keep = parser.should_keep_alive()
            self.complete.append(_request(method, self.url, self.headers, body, keep))
        self.body = []

    def _refuse(self, status: int, reason: str) -> None:
        if self.error is None:
            self.error = RequestError(status, reason)


class RequestReader:
    """The HTTP/1.1 requests of one connection, in order (keep-alive, no pipelining limit).

    ``feed`` every chunk received; it returns the requests it completed
    (often none) and raises :class:`RequestError` for a request to refuse,
    after which the reader must not be fed again. Memory: the partial
    request only (a head within :data:`MAX_HEAD`, a body within ``max_body``).
    """

    __slots__ = ("_collector", "_failed", "_head_bytes", "_parser")

    def __init__(self, max_body: int) -> None:
        self._collector = _Collector(max_body)
        self._parser = httptools.HttpRequestParser(self._collector)
        self._head_bytes = 0  # bytes fed since the current request's head began
        self._failed = False

    @property
    def idle(self) -> bool:
        """True between requests: nothing of a next one was fed (the reader may be
        dropped and a new one made for the next request, to keep idle connections small)."""
        return not self._collector.in_message

    def feed(self, data: bytes) -> list[Request]:
        """Parse ``data``; return the requests it completed, in order."""
        if self._failed:
            raise RuntimeError("RequestReader failed: the connection must be closed")
        collector = self._collector
        parser = self._parser
        in_head = collector.in_head
        collector.parser = parser  # only while feeding: no reference cycle between feeds
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._failed = True
            raise RequestError(400, "an upgrade is only served on /ws") from None
        except httptools.HttpParserError as exc:
            self._failed = True
            if collector.error is not None:
                raise collector.error from None
            raise RequestError(400, "malformed HTTP request") from exc
        finally:
            collector.parser = None
        if collector.error is not None:
            self._failed = True
            raise collector.error
        # Bytes since an incomplete head began, counted by chunk (a slow head, a header
        # that never ends); reset when no head is pending.
        if collector.in_head:
            self._head_bytes = (self._head_bytes if in_head else 0) + len(data)
        else:
            self._head_bytes = 0
        if self._head_bytes > MAX_HEAD:
            self._failed = True
            raise RequestError(431, "request header fields too large")
        if not collector.complete:
            return []
        done, collector.complete = collector.complete, []
        return done


def _request(
    method: str, url: bytes, raw: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool
) -> Request:
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1").strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    path = url.decode("latin-1").partition("?")[0]
    return Request(method, path, headers, body, keep_alive)


class Route(IntEnum):
    """What a request on the WebSocket port asks for (:func:`route`)."""

    OPEN = 1  # POST /v1/stream: a new session, the body is its AUTH frame
    SEND = 2  # POST /v1/stream/{conn_id}: frames for an open session
    PREFLIGHT = 3  # OPTIONS of either


def route(request: Request) -> tuple[Route, str]:
    """``(route, conn_id)`` of ``request`` (``conn_id`` is ``""`` for OPEN); raises
    :class:`RequestError` 404 for another path, 405 for another method."""
    path = request.path
    if path == STREAM_PATH or path == STREAM_PATH + "/":
        conn_id = ""
    elif path.startswith(STREAM_PATH + "/"):
        conn_id = unquote(path[len(STREAM_PATH) + 1 :])
        if not conn_id or "/" in conn_id:
            raise RequestError(404, f"no stream at {path[:100]}")
    else:
        raise RequestError(404, f"nothing at {path[:100]}: WebSocket is /ws, the stream /v1/stream")
    if request.method == "OPTIONS":
        return Route.PREFLIGHT, conn_id
    if request.method != "POST":
        raise RequestError(405, f"{request.method} {STREAM_PATH}: use POST")
    return (Route.SEND if conn_id else Route.OPEN), conn_id


def body_frames(body: bytes, max_frame: int) -> list[Frame]:
    """The frames of a request body, which must be whole frames back to back.

    Raises :class:`~longlink.protocol.errors.ProtocolError` for a frame that
    is not valid and :class:`RequestError` 400 for an empty body or a partial
    frame at its end.
    """
    decoder = FrameDecoder(max_frame)
    frames = decoder.feed(body)
    if decoder.buffered or not frames:
        raise RequestError(400, "the body must be one or more whole frames")
    return frames


def _head(status: int, headers: Iterable[tuple[str, str]]) -> list[str]:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return [f"HTTP/1.1 {status} {phrase}", *(f"{name}: {value}" for name, value in headers)]


def stream_head(headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """The head of the 200 answering ``POST /v1/stream``; chunks follow (:func:`chunk`).

    The stream ends with the connection (``Connection: close``); ``headers``
    adds CORS. Proxies are asked not to buffer it (``X-Accel-Buffering``).
    """
    lines = _head(
        200,
        [
            ("Content-Type", "application/octet-stream"),
            ("Transfer-Encoding", "chunked"),
            ("Cache-Control", "no-store"),
            ("X-Accel-Buffering", "no"),
            ("Connection", "close"),
            *headers,
        ],
    )
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    """``data`` (one or more whole frames) as one chunk of the stream's chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def response(
    status: int,
    reason: str = "",
    headers: Iterable[tuple[str, str]] = (),
    *,
    keep_alive: bool = False,
) -> bytes:
    """A complete short answer: ``reason`` as a text body (none for 204)."""
    body = b"" if status == 204 or not reason else (reason + "\n").encode("utf-8")
    extra = [("Connection", "keep-alive" if keep_alive else "close"), *headers]
    if body:
        extra.append(("Content-Type", "text/plain; charset=utf-8"))
    if status != 204:
        extra.append(("Content-Length", str(len(body))))
    return ("\r\n".join(_head(status, extra)) + "\r\n\r\n").encode("latin-1") + body


def cors_headers(allowed: str | None) -> list[tuple[str, str]]:
    """CORS headers of an answer, ``allowed`` being the policy's value for the request's
    origin (``*``, the origin, or None: no CORS headers)."""
    if allowed is None:
        return []
    if allowed == "*":
        return [("Access-Control-Allow-Origin", "*")]
    # One origin of several: caches must key the answer by Origin.
    return [("Access-Control-Allow-Origin", allowed), ("Vary", "Origin")]


def preflight_headers(allowed: str | None) -> list[tuple[str, str]]:
    """The headers of the 204 answering a preflight (``OPTIONS``) from an allowed origin."""
    return [
        *cors_headers(allowed),
        ("Access-Control-Allow-Methods", "POST"),
        ("Access-Control-Allow-Headers", "Authorization, Content-Type"),
        ("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE_S)),
    ]


def frame_error(error: ProtocolError) -> RequestError:
    """The 400 answering a body whose frames are not valid."""
    return RequestError(400, f"{error.code.value}: {error.message}")
