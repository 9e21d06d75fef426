"""Server side of WebSocket (RFC 6455), sans-I/O: bytes in, values and bytes out.

longlink frames WebSocket itself so that an idle connection costs a bare uvloop
transport plus the two small objects of this module (docs/websocket.md has the
measurements). Nothing here touches a socket or an event loop; the gateway's
bridge moves bytes between its transport and these objects.

Connection life, as the bridge drives it:

1. ``HandshakeParser.feed`` with every chunk until it returns an
   ``UpgradeRequest``. On ``HandshakeError`` write ``reject_response(e.status,
   e.reason)`` and close. On success write ``accept_response(request.key,
   subprotocol)`` and hand ``parser.leftover`` to the ``WsReader``: a client
   may send its first frame in the same packet as the handshake.
2. ``WsReader.feed`` with every chunk; it returns complete messages as
   ``(opcode, payload)``. On ``WsError`` write ``encode_close(e.close_code,
   e.reason)`` and close the transport; do not feed that reader again.
3. Outgoing messages: ``encode_frame`` once, write the same ``bytes`` to every
   recipient (PROTOCOL §1.4: one binary message carries one longlink frame).

Rules enforced by ``WsReader`` (RFC 6455 §5), each failing with close code
1002 unless stated:

=============================================  ==========================
client frame not masked (``require_mask``)      1002 (§5.1)
RSV1-3 set (no extension is negotiated)         1002 (§5.2)
reserved opcode (3-7, 11-15)                    1002 (§5.2)
control frame longer than 125 bytes or not FIN  1002 (§5.5)
CONT with no message open                       1002 (§5.4)
TEXT/BINARY while a fragmented message is open  1002 (§5.4)
64-bit length with the top bit set              1002 (§5.2)
message longer than ``max_message``             1009, from the header, before
                                                the payload is buffered
TEXT message not valid UTF-8                    1007 (§8.1)
CLOSE payload of 1 byte or a reserved code      1002 (§7.4)
CLOSE reason not valid UTF-8                    1007 (§8.1)
=============================================  ==========================

Errors (both under ``longlink.protocol.errors.LonglinkError``)::

    LonglinkError
     ├── HttpRefusal
     │    └── HandshakeError   (status, reason)      answer reject_response(), close
     └── WsError               (close_code, reason)  send encode_close(), close

Not supported, on purpose: extensions (permessage-deflate is never negotiated;
longlink compresses its batches itself, PROTOCOL §1.1 ``codec``), TLS (the
gateway wraps the transport), the client side of the handshake.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

import httptools

from longlink.protocol.errors import HttpRefusal, LonglinkError

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_INVALID_DATA",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_NORMAL",
    "CLOSE_NO_STATUS",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_UNSUPPORTED_DATA",
    "MAX_HANDSHAKE_SIZE",
    "HandshakeError",
    "HandshakeParser",
    "UpgradeRequest",
    "WsError",
    "WsOpcode",
    "WsReader",
    "accept_key",
    "accept_response",
    "encode_close",
    "encode_frame",
    "encode_masked_frame",
    "parse_close",
    "reject_response",
]

# --------------------------------------------------------------------------- constants

#: Largest request head (request line + headers + blank line) accepted, in bytes.
MAX_HANDSHAKE_SIZE: Final = 8 * 1024

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_UNSUPPORTED_DATA: Final = 1003
#: Reported by ``parse_close`` for an empty CLOSE payload; never sent on the wire.
CLOSE_NO_STATUS: Final = 1005
CLOSE_INVALID_DATA: Final = 1007
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_MESSAGE_TOO_BIG: Final = 1009
CLOSE_INTERNAL_ERROR: Final = 1011

# Codes a peer may put in a CLOSE frame (RFC 6455 §7.4.1, IANA registry; 3000-4999 are
# for libraries and applications).
_SENDABLE_CLOSE_CODES: Final = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})
_MAX_CONTROL_PAYLOAD: Final = 125


class WsOpcode(IntEnum):
    """Frame opcodes (RFC 6455 §5.2). Values below 8 are data, 8 and above control."""

    CONT = 0
    TEXT = 1
    BINARY = 2
    CLOSE = 8
    PING = 9
    PONG = 10


_CONT: Final = 0
_TEXT: Final = 1
_BINARY: Final = 2
_CLOSE: Final = 8
_PING: Final = 9
_PONG: Final = 10
_OPCODES: Final = frozenset(int(op) for op in WsOpcode)


def _close_code_allowed(code: int) -> bool:
    return code in _SENDABLE_CLOSE_CODES or 3000 <= code <= 4999


# --------------------------------------------------------------------------- handshake


class HandshakeError(HttpRefusal):
    """The upgrade request is refused: answer ``reject_response(status, reason)``, then close."""


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """A valid WebSocket upgrade request.

    ``path`` is the request target without its query string (``/ws``), ``query`` the part
    after ``?`` (empty when absent). ``headers`` has lower-cased names; repeated headers are
    joined with ``", "``. ``subprotocols`` is the client's ``Sec-WebSocket-Protocol`` list
    in its order of preference: pick one (or none) and pass it to ``accept_response``.
    """

    path: str
    headers: dict[str, str]
    key: str
    subprotocols: list[str]
    query: str = ""


class _HeadCollector:
    """Callback target for httptools: collects the request target and the headers."""

    __slots__ = ("complete", "headers", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_url(self, url: bytes) -> None:
        # httptools may deliver the target in pieces when it straddles two feeds.
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


def _tokens(value: str) -> list[str]:
    """Split a comma-separated header (RFC 9110 §5.6.1) into lower-cased tokens."""
    return [t.strip().lower() for t in value.split(",") if t.strip()]


class HandshakeParser:
    """Reads the client's HTTP upgrade request (RFC 6455 §4.2.1).

    Call ``feed`` with each chunk received until it returns an ``UpgradeRequest``; the
    bytes that followed the request head are then in ``leftover`` (give them to the
    ``WsReader``). ``feed`` raises ``HandshakeError`` for a request to refuse; the parser
    is single-use and must not be fed after it returned a request or raised.
    """

    __slots__ = ("_collector", "_done", "_parser", "_size", "leftover")

    def __init__(self) -> None:
        self._collector = _HeadCollector()
        self._parser = httptools.HttpRequestParser(self._collector)
        self._size = 0
        self._done = False
        #: Bytes received after the request head; valid once ``feed`` returned a request.
        self.leftover = b""

    def feed(self, data: bytes) -> UpgradeRequest | None:
        """Parse more of the request; return it once the head is complete, else ``None``."""
        if self._done:
            raise RuntimeError("HandshakeParser is single-use: the handshake is over")
        room = MAX_HANDSHAKE_SIZE - self._size
        # Never parse past the size limit: a head that is not complete within it is refused.
        chunk = data if len(data) <= room else data[:room]
        head_end = -1  # offset in ``data`` where the head ends, once known
        try:
            self._parser.feed_data(chunk)
        except httptools.HttpParserUpgrade as upgrade:
            head_end = int(upgrade.args[0])
        except httptools.HttpParserError as exc:
            if not self._collector.complete:
                self._done = True
                raise HandshakeError(400, "malformed HTTP request") from exc
            # A complete head that was not an upgrade, followed by bytes that are not HTTP:
            # the checks below give the precise reason.
        self._size += len(chunk)
        if head_end < 0 and not self._collector.complete:
            if self._size >= MAX_HANDSHAKE_SIZE:
                self._done = True
                raise HandshakeError(431, "request header fields too large")
            return None
        self._done = True
        request = self._validate()
        if head_end < 0:
            # httptools saw no upgrade although the headers ask for one; refuse rather than
            # guess where the head ended.
            raise HandshakeError(400, "not a WebSocket upgrade request")
        self.leftover = data[head_end:]
        return request

    def _validate(self) -> UpgradeRequest:
        parser = self._parser
        if parser.get_method() != b"GET":
            raise HandshakeError(400, "WebSocket upgrade requires GET")
        if parser.get_http_version() != "1.1":
            raise HandshakeError(400, "WebSocket upgrade requires HTTP/1.1")
        headers: dict[str, str] = {}
        for raw_name, raw_value in self._collector.headers:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1").strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if "host" not in headers:
            raise HandshakeError(400, "missing Host header")
        if "websocket" not in _tokens(headers.get("upgrade", "")):
            raise HandshakeError(400, "missing or invalid Upgrade: websocket header")
        if "upgrade" not in _tokens(headers.get("connection", "")):
            raise HandshakeError(400, "missing or invalid Connection: upgrade header")
        if headers.get("sec-websocket-version") != "13":
            raise HandshakeError(400, "unsupported Sec-WebSocket-Version (expected 13)")
        key = headers.get("sec-websocket-key", "")
        try:
            raw_key = base64.b64decode(key.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raw_key = b""
        if len(raw_key) != 16:
            raise HandshakeError(400, "missing or invalid Sec-WebSocket-Key header")
        if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
            raise HandshakeError(400, "a WebSocket upgrade request has no body")
        target = self._collector.url.decode("latin-1")
        path, _, query = target.partition("?")
        return UpgradeRequest(
            path=path,
            headers=headers,
            key=key,
            subprotocols=[
                p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()
            ],
            query=query,
        )


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2 step 5.4)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


_TOKEN_CHARS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def accept_response(key: str, subprotocol: str | None) -> bytes:
    """The ``101 Switching Protocols`` answer to a request with ``Sec-WebSocket-Key`` ``key``.

    ``subprotocol`` must be one the client offered (``UpgradeRequest.subprotocols``), or
    ``None`` to select none. Raises ``ValueError`` if it is not an HTTP token.
    """
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    if subprotocol is not None:
        if not subprotocol or not _TOKEN_CHARS.issuperset(subprotocol):
            raise ValueError(f"subprotocol is not an HTTP token: {subprotocol!r}")
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def reject_response(status: int, reason: str) -> bytes:
    """A complete HTTP/1.1 error response with ``reason`` as its text body; close after it.

    It also names the one WebSocket version understood (RFC 6455 §4.4).
    """
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body = (reason + "\n").encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


# --------------------------------------------------------------------------- frames


class WsError(LonglinkError):
    """The peer broke the protocol: send ``encode_close(close_code, reason)`` and close."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(close_code, reason)
        self.close_code = close_code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.close_code} {self.reason}"


def parse_close(payload: bytes) -> tuple[int, str]:
    """Code and reason of a CLOSE payload; ``(1005, "")`` when it is empty.

    Raises ``WsError`` (1002) for a 1-byte payload or a code a peer may not send, and
    ``WsError`` (1007) for a reason that is not UTF-8.
    """
    if not payload:
        return CLOSE_NO_STATUS, ""
    if len(payload) == 1:
        raise WsError(CLOSE_PROTOCOL_ERROR, "close payload of 1 byte")
    code = int.from_bytes(payload[:2], "big")
    if not _close_code_allowed(code):
        raise WsError(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WsError(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason


def _unmask(data: bytes | bytearray, start: int, end: int, mask: bytes) -> bytes:
    # XOR the payload with the repeated mask as two little-endian ints. Measured on the
    # project machine (CPython 3.11): 100 B ≈ 0.6 µs, 1 KiB ≈ 2.6 µs, 64 KiB ≈ 120-230 µs,
    # against 6 µs / 64 µs / 4.2 ms for a per-byte generator. Slicing ``data`` beats a
    # memoryview below a few KiB (the view costs more than the copy) and is on a par above,
    # so the simple slice stays. Building the mask int by shift-doubling was slower too.
    n = end - start
    if n == 0:
        return b""
    payload = int.from_bytes(data[start:end], "little")
    key = int.from_bytes((mask * ((n >> 2) + 1))[:n], "little")
    return (payload ^ key).to_bytes(n, "little")


class WsReader:
    """Turns the client's byte stream into complete WebSocket messages (RFC 6455 §5).

    ``feed`` returns ``(opcode, payload)`` pairs: whole TEXT/BINARY messages (fragments
    reassembled, payload unmasked) and control frames (PING, PONG, CLOSE) as they arrive,
    also between the fragments of a message. The caller answers PING with PONG and CLOSE
    with CLOSE; the reader only parses. A CLOSE payload returned is valid for
    ``parse_close``.

    Memory: six slots; the partial-frame buffer and the fragment list exist only while
    something is pending, so an idle reader holds no buffer.
    """

    __slots__ = ("_buf", "_frag_opcode", "_frag_size", "_frags", "_max_message", "_require_mask")

    def __init__(self, max_message: int, require_mask: bool = True) -> None:
        """``max_message``: largest message payload accepted (bytes, after reassembly).

        ``require_mask``: refuse unmasked frames, as a server must (RFC 6455 §5.1). With
        ``False`` both masked and unmasked frames are read.
        """
        self._max_message = max_message
        self._require_mask = require_mask
        self._buf: bytearray | None = None
        self._frags: list[bytes] | None = None
        self._frag_opcode = 0
        self._frag_size = 0

    @property
    def buffered(self) -> int:
        """Bytes held for a message not complete yet (partial frame plus fragments)."""
        return (len(self._buf) if self._buf is not None else 0) + self._frag_size

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Consume ``data``; return the messages it completed, in order (often none)."""
        buf = self._buf
        view: bytes | bytearray
        if buf is None:
            view = data
        else:
            buf += data
            view = buf
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(view)
        while end - pos >= 2:
            b0 = view[pos]
            b1 = view[pos + 1]
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            # ---- header checks: all made from the first bytes, before any payload is held
            if b0 & 0x70:
                raise WsError(CLOSE_PROTOCOL_ERROR, "RSV bits set without a negotiated extension")
            masked = b1 & 0x80
            if not masked and self._require_mask:
                raise WsError(CLOSE_PROTOCOL_ERROR, "client frame is not masked")
            length = b1 & 0x7F
            if opcode >= 8:
                if opcode > _PONG:
                    raise WsError(CLOSE_PROTOCOL_ERROR, f"reserved opcode {opcode}")
                if length > _MAX_CONTROL_PAYLOAD or not fin:
                    raise WsError(CLOSE_PROTOCOL_ERROR, "control frame too long or fragmented")
            elif opcode > _BINARY:
                raise WsError(CLOSE_PROTOCOL_ERROR, f"reserved opcode {opcode}")
            elif opcode == _CONT:
                if self._frags is None:
                    raise WsError(CLOSE_PROTOCOL_ERROR, "continuation frame with no message")
            elif self._frags is not None:
                raise WsError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = (view[pos + 2] << 8) | view[pos + 3]
                head = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(view[pos + 2 : pos + 10], "big")
                if length >> 63:
                    raise WsError(CLOSE_PROTOCOL_ERROR, "frame length with the top bit set")
                head = 10
            if opcode < 8 and length + self._frag_size > self._max_message:
                raise WsError(CLOSE_MESSAGE_TOO_BIG, f"message over {self._max_message} bytes")
            if masked:
                head += 4
            frame_end = pos + head + length
            if frame_end > end:
                break
            # ---- the whole frame is here
            start = pos + head
            if masked:
                payload = _unmask(view, start, frame_end, bytes(view[start - 4 : start]))
            else:
                payload = bytes(view[start:frame_end])
            pos = frame_end
            if opcode >= 8:
                if opcode == _CLOSE:
                    parse_close(payload)
                out.append((opcode, payload))
            elif fin and opcode != _CONT:
                out.append((opcode, _checked(opcode, payload)))
            elif opcode != _CONT:  # first fragment
                self._frags = [payload]
                self._frag_opcode = opcode
                self._frag_size = length
            else:
                frags = self._frags
                assert frags is not None  # checked in the header
                frags.append(payload)
                self._frag_size += length
                if fin:
                    message = b"".join(frags)
                    self._frags = None
                    self._frag_size = 0
                    out.append((self._frag_opcode, _checked(self._frag_opcode, message)))
        # ---- keep what belongs to a frame not complete yet
        if pos == end:
            self._buf = None
        elif buf is None:
            self._buf = bytearray(data[pos:] if pos else data)
        elif pos:
            del buf[:pos]
        return out


def _checked(opcode: int, payload: bytes) -> bytes:
    if opcode == _TEXT:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise WsError(CLOSE_INVALID_DATA, "text message is not UTF-8") from None
    return payload


def _header(b0: int, n: int, mask_bit: int) -> bytes:
    if n < 126:
        return bytes((b0, mask_bit | n))
    if n < 0x10000:
        return bytes((b0, mask_bit | 126)) + n.to_bytes(2, "big")
    return bytes((b0, mask_bit | 127)) + n.to_bytes(8, "big")


def _first_byte(opcode: int, payload: bytes, fin: bool) -> int:
    if opcode >= 8 and (len(payload) > _MAX_CONTROL_PAYLOAD or not fin):
        raise ValueError("control frames carry at most 125 bytes and are not fragmented")
    if opcode not in _OPCODES:
        raise ValueError(f"unknown opcode {opcode}")
    return (0x80 if fin else 0) | opcode


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """An unmasked server frame. Encode once and write the same bytes to every recipient."""
    return _header(_first_byte(opcode, payload, fin), len(payload), 0) + payload


def encode_masked_frame(opcode: int, payload: bytes, mask: bytes, *, fin: bool = True) -> bytes:
    """A masked frame, as a client sends it (tests, load generators, the Python SDK)."""
    if len(mask) != 4:
        raise ValueError("the mask is 4 bytes")
    head = _header(_first_byte(opcode, payload, fin), len(payload), 0x80) + mask
    return head + _unmask(payload, 0, len(payload), mask)


def encode_close(code: int, reason: str = "") -> bytes:
    """A server CLOSE frame. ``reason`` is cut (on a character boundary) to fit 123 bytes.

    ``CLOSE_NO_STATUS`` (1005) gives a CLOSE with an empty payload; other codes a peer may
    not send raise ``ValueError``.
    """
    if code == CLOSE_NO_STATUS:
        return encode_frame(_CLOSE, b"")
    if not _close_code_allowed(code):
        raise ValueError(f"close code {code} may not be sent")
    raw = reason.encode("utf-8")[: _MAX_CONTROL_PAYLOAD - 2]
    raw = raw.decode("utf-8", "ignore").encode("utf-8")  # drop a cut multi-byte character
    return encode_frame(_CLOSE, code.to_bytes(2, "big") + raw)
