"""The HTTP port's guard: the limits uvicorn does not enforce, in its protocol class.

uvicorn (httptools) bounds neither the request head (an unfinished header
line grows without end), nor the time to receive a head or a body (a
connection that sends nothing, or a byte a minute, stays open), nor the
number of connections (idle sockets exhaust the descriptors the gateways
need). Its own ``limit_concurrency`` answers plain-text 503s only once a
request head is complete. These limits belong where the bytes arrive, before
any request exists, so :class:`GuardedHttpProtocol` subclasses uvicorn's
protocol; every refusal it writes is a PROTOCOL.md §2 JSON error with
``Connection: close``, and nothing is logged above debug level (an attacker
must not fill the log):

==========================  ======  =====================================
limit (settings)            answer  when
==========================  ======  =====================================
``http_max_connections``    503     a connection past the total (closed)
``http_max_conns_per_ip``   429     a connection past its address's share
``http_max_header_bytes``   431     the request line and headers are longer
``http_header_timeout_s``   408     the head is not complete in time (a
                                    connection that sent nothing is closed)
``http_body_timeout_s``     408     the body is not complete in time
``http_keepalive_s``        —       an idle keep-alive connection is closed
(malformed request)         400     httptools cannot parse it
(``Upgrade`` request)       —       answered, then closed (no WebSocket here)
==========================  ======  =====================================

Addresses in ``trusted_proxies`` (load balancers) are not held to the
per-address share: their clients are told apart by ``X-Forwarded-For`` at
the request level (:mod:`longlink.clientip`).
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import TimerHandle
from dataclasses import dataclass, field
from typing import Any

import httptools
import msgspec
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from longlink.clientip import ProxyRule
from longlink.settings import Settings

__all__ = ["ConnectionCounts", "GuardedHttpProtocol", "HttpLimits", "guarded_protocol"]

log = logging.getLogger("longlink.api.guard")

_encoder = msgspec.json.Encoder()

#: Seconds a refused connection's further bytes are read and dropped before it closes.
LINGER_S = 2.0


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The limits of one HTTP listener (see the module docstring for each)."""

    max_header_bytes: int = 32 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_s: float = 5.0
    max_connections: int = 1024
    max_conns_per_ip: int = 128
    proxies: ProxyRule = field(default_factory=ProxyRule)

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        """The limits ``settings`` configure (``http_*``, ``trusted_proxies``)."""
        return cls(
            max_header_bytes=settings.http_max_header_bytes,
            header_timeout_s=settings.http_header_timeout_s,
            body_timeout_s=settings.http_body_timeout_s,
            keepalive_s=settings.http_keepalive_s,
            max_connections=settings.http_max_connections,
            max_conns_per_ip=settings.http_max_conns_per_ip,
            proxies=ProxyRule(settings.trusted_proxies),
        )


class ConnectionCounts:
    """Open connections of one listener by client address (bounded by the limits)."""

    __slots__ = ("by_ip",)

    def __init__(self) -> None:
        self.by_ip: dict[str, int] = {}

    def add(self, ip: str) -> int:
        count = self.by_ip.get(ip, 0) + 1
        self.by_ip[ip] = count
        return count

    def remove(self, ip: str) -> None:
        count = self.by_ip.get(ip, 0) - 1
        if count > 0:
            self.by_ip[ip] = count
        else:
            self.by_ip.pop(ip, None)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> bytes:
    """A whole HTTP/1.1 response carrying a §2 JSON error, closing the connection."""
    body = _encoder.encode({"error": {"code": code, "message": message}})
    lines = [
        STATUS_LINE[status],
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n",
    ]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guard's limits (module docstring).

    Use :func:`guarded_protocol` to get a class bound to one listener's
    limits and counts (uvicorn instantiates the class itself).
    """

    limits: HttpLimits = HttpLimits()
    counts: ConnectionCounts = ConnectionCounts()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard_timer: TimerHandle | None = None
        self._in_head = True  # between requests, or reading a request's head
        self._head_bytes = 0
        self._ip: str | None = None  # set while counted in ``counts``
        self._refused = False

    # -------------------------------------------------------------- connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self.limits
        if len(self.connections) > limits.max_connections:
            log.debug("HTTP connection refused: %d open", len(self.connections))
            self._refuse(503, "overloaded", "too many HTTP connections; retry later", retry=True)
            return
        ip = self.client[0] if self.client else None
        if ip is not None and not limits.proxies.trusted(ip):
            if limits.max_conns_per_ip and self.counts.by_ip.get(ip, 0) >= limits.max_conns_per_ip:
                log.debug("HTTP connection from %s refused: over its share", ip)
                self._refuse(
                    429,
                    "rate_limited",
                    f"at most {limits.max_conns_per_ip} HTTP connections per address",
                    retry=True,
                )
                return
            self.counts.add(ip)
            self._ip = ip
        self._arm(limits.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._ip is not None:
            self.counts.remove(self._ip)
            self._ip = None
        super().connection_lost(exc)

    def _refuse(self, status: int, code: str, message: str, *, retry: bool = False) -> None:
        """Answer ``status`` with a §2 error and close; later bytes are dropped."""
        self._refused = True
        self._disarm()
        headers = {"retry-after": "1"} if retry else None
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app's own answer, if any, goes nowhere
            if self.cycle.response_started:
                self.transport.close()
                return
        if not self.transport.is_closing():
            self.transport.write(error_response(status, code, message, headers))
            self._linger()

    def _linger(self) -> None:
        """Close once the answer is out: half-close, discard what still comes for
        :data:`LINGER_S`, then close (closing on unread bytes would reset the
        connection and lose the answer)."""
        transport = self.transport
        if transport.can_write_eof():
            transport.write_eof()
            self.flow.resume_reading()
            self._guard_timer = self.loop.call_later(LINGER_S, transport.close)
        else:
            transport.close()

    # -------------------------------------------------------------- bytes in

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            if self._guard_timer is None:
                self._arm(self.limits.header_timeout_s, self._head_timed_out)
            room = self.limits.max_header_bytes - self._head_bytes
            end = data.find(b"\r\n\r\n")
            if (end < 0 and len(data) > room) or (end >= 0 and end + 4 > room):
                self._refuse(
                    431,
                    "too_large",
                    f"request line and headers exceed {self.limits.max_header_bytes} bytes",
                )
                return
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            log.debug("malformed HTTP request from %s: %s", self.client, exc)
            self._refuse(400, "bad_request", "malformed HTTP request")
        except httptools.HttpParserUpgrade:
            # No protocol upgrade on this port: the request is answered, then the
            # connection closes; what follows the head is not read.
            self.flow.pause_reading()
            if self.cycle is not None:
                self.cycle.keep_alive = False

    # -------------------------------------------------------------- the parser's steps

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self.limits.body_timeout_s, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    # -------------------------------------------------------------- deadlines

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        if delay > 0:
            self._guard_timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._guard_timer is not None:
            self._guard_timer.cancel()
            self._guard_timer = None

    def _head_timed_out(self) -> None:
        self._guard_timer = None
        if self._refused or self.transport.is_closing():
            return
        if self._head_bytes == 0:
            self._refused = True
            self.transport.close()  # idle: nothing to answer
            return
        self._refuse(
            408, "timeout", f"request head not received within {self.limits.header_timeout_s:g} s"
        )

    def _body_timed_out(self) -> None:
        self._guard_timer = None
        if self._refused or self.transport.is_closing():
            return
        self._refuse(
            408, "timeout", f"request body not received within {self.limits.body_timeout_s:g} s"
        )


def guarded_protocol(limits: HttpLimits) -> type[GuardedHttpProtocol]:
    """A protocol class for one listener: its limits and its own connection counts."""
    return type(
        "GuardedHttpProtocol",
        (GuardedHttpProtocol,),
        {"limits": limits, "counts": ConnectionCounts()},
    )
