"""The HTTP port's guard (issue 14, failures 2, 6 and 8): limits before any key is checked.

Each test first reproduces a failure the issue found on a real node (raw
sockets on 127.0.0.1), then shows the refusal: a §2 JSON error, the
connection closed, nothing logged above warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from longlink.node import Node
from tests.conftest import API_KEY, WAIT, node_settings


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Any]:
    nodes: list[Node] = []

    async def start_node(**changes: Any) -> Node:
        node = Node(node_settings(tmp_path, **changes))
        await node.__aenter__()
        nodes.append(node)
        return node

    yield start_node
    for node in nodes:
        await node.close()


async def open_http(node: Node) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert node.http is not None
    return await asyncio.open_connection("127.0.0.1", node.http.port)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], Any]:
    """One HTTP response read until the server closes (the guard's answers close)."""
    raw = await asyncio.wait_for(reader.read(), WAIT)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body) if body else None


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server wrote before closing, which it must do within ``seconds``."""
    return await asyncio.wait_for(reader.read(), seconds)


async def test_an_endless_header_line_gets_431(start: Any) -> None:
    node = await start()
    reader, writer = await open_http(node)
    answer = asyncio.ensure_future(read_response(reader))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    chunk, sent = b"a" * 65536, 0
    # The attacker sent 136 MiB; the guard answers after 32 KiB.
    with contextlib.suppress(ConnectionError):
        while not answer.done() and sent < 136 << 20:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
    status, headers, body = await answer
    assert status == 431 and headers["connection"] == "close"
    assert body["error"]["code"] == "too_large"
    assert sent < 16 << 20
    writer.close()


async def test_a_one_megabyte_header_is_refused_and_a_small_one_served(start: Any) -> None:
    node = await start()
    async with httpx.AsyncClient(base_url=node.http_url, timeout=WAIT) as http:
        big = await http.get("/healthz", headers={"X-Big": "a" * (1 << 20)})
        assert big.status_code == 431 and big.json()["error"]["code"] == "too_large"
        assert (await http.get("/healthz", headers={"X-Ok": "a" * 8000})).status_code == 200


async def test_idle_partial_head_and_partial_body_connections_are_closed(start: Any) -> None:
    node = await start(http_header_timeout_s=0.3, http_body_timeout_s=0.3)
    idle_r, idle_w = await open_http(node)
    head_r, head_w = await open_http(node)
    head_w.write(b"POST /v1/connect HTTP/1.1\r\nHost: x\r\n")
    body_r, body_w = await open_http(node)
    body_w.write(b"POST /v1/connect HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    assert await closed_within(idle_r, WAIT) == b""  # nothing sent: closed without a word
    for reader in (head_r, body_r):
        status, _, body = await read_response(reader)
        assert status == 408 and body["error"]["code"] == "timeout"
    for writer in (idle_w, head_w, body_w):
        writer.close()


async def test_an_idle_keep_alive_connection_is_closed(start: Any) -> None:
    node = await start(http_keepalive_s=0.3)
    reader, writer = await open_http(node)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await closed_within(reader, WAIT)  # answered, then closed when idle
    assert answer.startswith(b"HTTP/1.1 200")
    writer.close()


async def test_connections_past_the_total_get_503(start: Any) -> None:
    node = await start(http_max_connections=4, http_max_conns_per_ip=0)
    held = [await open_http(node) for _ in range(4)]
    reader, writer = await open_http(node)
    status, headers, body = await read_response(reader)
    assert status == 503 and body["error"]["code"] == "overloaded"
    assert headers["retry-after"] == "1"
    for _, w in [*held, (reader, writer)]:
        w.close()


async def test_connections_past_an_address_share_get_429(start: Any) -> None:
    node = await start(http_max_conns_per_ip=3)
    held = [await open_http(node) for _ in range(3)]
    reader, writer = await open_http(node)
    status, _, body = await read_response(reader)
    assert status == 429 and body["error"]["code"] == "rate_limited"
    held[0][1].close()
    await closed_within(held[0][0], WAIT)

    async def served() -> bool:
        async with httpx.AsyncClient(base_url=node.http_url, timeout=WAIT) as http:
            return (await http.get("/healthz")).status_code == 200

    # The share frees as connections close.
    for _ in range(50):
        if await served():
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("a freed share was not given back")
    for _, w in [*held, (reader, writer)]:
        w.close()


async def test_a_malformed_request_gets_a_json_400(start: Any) -> None:
    node = await start()
    reader, writer = await open_http(node)
    writer.write(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
    status, _, body = await read_response(reader)
    assert status == 400 and body["error"]["code"] == "bad_request"
    writer.close()


async def test_data_nested_999_deep_gets_400_naming_the_field(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    node = await start()
    deep = "[" * 999 + "]" * 999
    body = '{"to": {"users": ["u"]}, "data": ' + deep + "}"
    batch = '{"messages": [{"to": {"users": ["u"]}, "data": 1}, ' + body + "]}"
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=node.http_url, headers=headers, timeout=WAIT) as http:
        with caplog.at_level(logging.WARNING):
            one = await http.post("/v1/push", content=body)
            many = await http.post("/v1/push/batch", content=batch)
            connect = await http.post("/v1/connect", content='{"user": ' + deep + "}")
    assert one.status_code == 400, one.text
    assert one.json()["error"]["message"].startswith("data: nested deeper than 64 levels")
    assert many.status_code == 400
    assert many.json()["error"]["message"].startswith("messages[1].data: nested deeper")
    assert connect.status_code == 400
    assert connect.json()["error"]["message"].startswith("user: nested deeper")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_connect_calls_are_limited_per_address(start: Any) -> None:
    node = await start(connect_rate=1, connect_burst=3)
    async with httpx.AsyncClient(base_url=node.http_url, timeout=WAIT) as http:
        answers = [(await http.post("/v1/connect", json={"user": "u"})) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[3].headers["retry-after"] == "1"
    assert answers[3].json()["error"]["code"] == "rate_limited"


async def test_behind_a_trusted_proxy_the_forwarded_address_is_limited(start: Any) -> None:
    node = await start(connect_rate=1, connect_burst=1, trusted_proxies=("127.0.0.0/8",))

    async def connect(forwarded: str) -> int:
        headers = {"X-Forwarded-For": forwarded}
        async with httpx.AsyncClient(base_url=node.http_url, timeout=WAIT) as http:
            response = await http.post("/v1/connect", json={"user": "u"}, headers=headers)
            return response.status_code

    # Each client behind the balancer has its own share; the rightmost untrusted hop counts.
    assert await connect("203.0.113.1") == 200
    assert await connect("203.0.113.2") == 200
    assert await connect("203.0.113.1") == 429
    assert await connect("198.51.100.7, 203.0.113.2") == 429  # a forged left part is ignored
    assert await connect("203.0.113.3, 127.0.0.1") == 200


async def test_an_untrusted_peer_cannot_pick_its_address(start: Any) -> None:
    node = await start(connect_rate=1, connect_burst=1)
    async with httpx.AsyncClient(base_url=node.http_url, timeout=WAIT) as http:
        codes = [
            (
                await http.post(
                    "/v1/connect", json={"user": "u"}, headers={"X-Forwarded-For": f"10.0.0.{i}"}
                )
            ).status_code
            for i in range(2)
        ]
    assert codes == [200, 429]


async def test_gateway_connections_past_an_address_share_are_closed(start: Any) -> None:
    node = await start(max_conns_per_ip=2)
    assert node.gateway is not None
    for port in (node.gateway.tcp_port, node.gateway.ws_port):  # each listener its own share
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_within(reader, WAIT) == b""  # closed on arrival
        writer.close()
        held[0][1].close()
        for _ in range(100):  # the share frees when a connection closes
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                await asyncio.wait_for(reader.read(1), 0.05)
            except TimeoutError:
                writer.close()
                break  # still open: admitted
            writer.close()
        else:
            raise AssertionError("a freed share was not given back")
        for _, w in held[1:]:
            w.close()
