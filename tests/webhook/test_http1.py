"""The webhook HTTP client against real servers: uvicorn, and raw sockets for odd cases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from longlink.api.server import HttpServer
from longlink.webhook.http1 import Http1Connection, HttpError

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


@asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[tuple[str, list[int]]]:
    """A server running ``script(reader, writer, connection_number)`` per connection."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections) + 1)
        try:
            await script(reader, writer, len(connections))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook?x=1", connections
    finally:
        server.close()
        await server.wait_closed()


async def test_against_uvicorn_keeps_one_connection_and_reads_status_and_headers() -> None:
    seen: list[tuple[str, str, bytes, str]] = []

    async def hook(request: Request) -> Response:
        body = await request.body()
        seen.append((request.url.path, request.url.query, body, request.headers["x-id"]))
        status = 503 if body == b"busy" else 204
        return Response(status_code=status, headers={"Retry-After": "7"})

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    async with HttpServer(app, "127.0.0.1", 0) as server:
        conn = Http1Connection(
            f"http://127.0.0.1:{server.port}/hook?a=b", timeout_s=5, headers={"X-Fixed": "1"}
        )
        answers = [await conn.post(b"n%d" % i, {"X-Id": str(i)}) for i in range(20)]
        first = conn._writer
        busy = await conn.post(b"busy", {"X-Id": "b"})
        assert conn._writer is first  # one keep-alive connection throughout
        await conn.close()
        await conn.close()
    assert [a.status for a in answers] == [204] * 20
    assert busy.status == 503 and busy.headers["retry-after"] == "7"
    assert seen[0] == ("/hook", "a=b", b"n0", "0") and len(seen) == 21


async def test_chunked_answer_then_keep_alive() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            head, _ = await read_request(reader)
            assert head.startswith(b"POST /hook?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            )

    async with raw_server(script) as (url, connections):
        conn = Http1Connection(url, timeout_s=5)
        for _ in range(3):
            assert (await conn.post(b"{}", {})).status == 200
        await conn.close()
    assert connections == [1]


async def test_connection_close_and_a_stale_connection_are_replaced() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        else:  # answers once, then closes while idle without saying so
            writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async with raw_server(script) as (url, connections):
        conn = Http1Connection(url, timeout_s=5)
        assert (await conn.post(b"a", {})).status == 200  # then closed by us: Connection: close
        assert (await conn.post(b"b", {})).status == 201  # a new connection
        assert (await conn.post(b"c", {})).status == 201  # the idle one was stale: replaced
        await conn.close()
    assert connections == [1, 2, 3]


async def test_a_body_delimited_by_close() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 202 Accepted\r\n\r\nwhatever")
        await writer.drain()

    async with raw_server(script) as (url, _):
        conn = Http1Connection(url, timeout_s=5)
        assert (await conn.post(b"x", {})).status == 202
        await conn.close()


@pytest.mark.parametrize(
    "answer",
    [b"", b"HTTP/1.1 200 OK\r\nContent-Le", b"NOT HTTP AT ALL\r\n\r\n"],
    ids=["nothing", "cut", "garbage"],
)
async def test_a_broken_answer_is_an_http_error(answer: bytes) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    async with raw_server(script) as (url, _):
        conn = Http1Connection(url, timeout_s=5)
        with pytest.raises(HttpError):
            await conn.post(b"x", {})
        await conn.close()


async def test_no_answer_in_time_and_no_server() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        await asyncio.Event().wait()  # never answers

    async with raw_server(script) as (url, _):
        conn = Http1Connection(url, timeout_s=0.2)
        with pytest.raises(HttpError, match="no answer within"):
            await conn.post(b"x", {})
    conn = Http1Connection(url, timeout_s=2)  # the server is gone now
    with pytest.raises(HttpError):
        await conn.post(b"x", {})


def test_only_http_urls() -> None:
    with pytest.raises(ValueError):
        Http1Connection("ftp://example.com/x", timeout_s=1)
    Http1Connection("https://example.com", timeout_s=1)  # TLS is set up lazily, on connect
