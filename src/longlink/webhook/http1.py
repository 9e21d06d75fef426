"""A small HTTP/1.1 client for webhook POSTs: one keep-alive connection, parsed by httptools.

Why not httpx (already a dependency): measured on the development machine
against a uvicorn receiver in another process, an httpx ``AsyncClient``
spends about 0.9 ms of CPU per POST (some 1,100 requests per second,
whatever the concurrency); with this client the webhook sender's four lanes
deliver some 24,000 events per second at about 36 µs of CPU each. The sender
runs inside the gateway process, so that CPU is taken from the connections
(docs/presence-and-events.md).

What it does: ``http://`` and ``https://`` URLs (TLS with the system's
default verification), one request at a time per connection, keep-alive
until the server says ``Connection: close``, a response body read (and
ignored) by Content-Length, chunked encoding or close. What it does not:
proxies, redirects, HTTP/2, compression. A reused connection that the
server closed while idle is replaced once, at no cost of an attempt.

Errors::

    LonglinkError
     └── HttpError        (connect, reset, timeout, malformed answer)
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

from longlink.protocol.errors import LonglinkError

__all__ = ["Http1Connection", "HttpAnswer", "HttpError"]

_READ = 64 * 1024


class HttpError(LonglinkError):
    """The request could not be sent or its answer not read (the event is retried)."""


class _Stale(Exception):
    """A reused connection was closed by the server before any byte of the answer."""


@dataclass
class HttpAnswer:
    """Status and headers (names in lower case) of a response; the body is not kept."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    headers_done: bool = False
    complete: bool = False
    keep_alive: bool = False


class _Parsing:
    """httptools callbacks filling an :class:`HttpAnswer`."""

    __slots__ = ("answer", "parser")

    def __init__(self, answer: HttpAnswer) -> None:
        self.answer = answer
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.answer.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.answer.headers_done = True
        self.answer.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        # Read it here: once the message is complete the parser forgets it.
        self.answer.keep_alive = self.parser.should_keep_alive()
        self.answer.complete = True


class Http1Connection:
    """POSTs to one URL over one keep-alive connection, one request at a time."""

    __slots__ = ("_host", "_port", "_reader", "_request_head", "_ssl", "_timeout_s", "_writer")

    def __init__(
        self, url: str, *, timeout_s: float, headers: Mapping[str, str] | None = None
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook URL must be http:// or https:// with a host: {url!r}")
        secure = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if secure else 80)
        self._ssl = ssl.create_default_context() if secure else None
        self._timeout_s = timeout_s
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default = 443 if secure else 80
        host = parts.hostname if self._port == default else f"{parts.hostname}:{self._port}"
        if ":" in parts.hostname:  # an IPv6 literal
            host = f"[{parts.hostname}]" + ("" if self._port == default else f":{self._port}")
        head = [f"POST {path} HTTP/1.1", f"Host: {host}"]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self._request_head = "\r\n".join(head).encode("latin-1")
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """POST ``body`` with ``headers``; the answer, or :class:`HttpError`."""
        reused = self._writer is not None
        try:
            async with asyncio.timeout(self._timeout_s):
                try:
                    return await self._exchange(body, headers)
                except _Stale:
                    await self.close()
                    if not reused:
                        raise HttpError(
                            "the server closed the connection without answering"
                        ) from None
                    return await self._exchange(body, headers)  # a fresh connection, once
        except HttpError:
            await self.close()
            raise
        except _Stale as exc:
            await self.close()
            raise HttpError("the server closed the connection without answering") from exc
        except TimeoutError as exc:
            await self.close()
            raise HttpError(f"no answer within {self._timeout_s:g}s") from exc
        except (OSError, httptools.HttpParserError, ValueError) as exc:
            await self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        """Close the connection (the next post opens a new one); idempotent."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _exchange(self, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self._host, self._port, ssl=self._ssl, limit=_READ
            )
        reader, writer = self._reader, self._writer
        assert reader is not None
        extra = "".join(f"\r\n{name}: {value}" for name, value in headers.items())
        writer.write(
            self._request_head
            + extra.encode("latin-1")
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        answer = HttpAnswer()
        parser = _Parsing(answer).parser
        received = False
        while not answer.complete:
            data = await reader.read(_READ)
            if not data:
                if not received:
                    raise _Stale
                if answer.headers_done:
                    break  # a body delimited by the close
                raise HttpError("the server closed the connection in the middle of its answer")
            received = True
            parser.feed_data(data)
        if not answer.complete or not answer.keep_alive:
            await self.close()
        return answer
