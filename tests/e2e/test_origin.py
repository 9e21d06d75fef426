"""The gateway refuses a WebSocket upgrade from a browser origin not allowed (PROTOCOL.md §1.5).

The policy is the one of ``/v1/connect`` (``LONGLINK_ALLOWED_ORIGINS``,
control/origins.py); the gateway's handshake asks it through its session host.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin, Subprotocol

from longlink.node import Node
from longlink.protocol import Op, decode_frame, encode_frame
from longlink.protocol.messages import Auth, encode_body
from tests.conftest import WAIT, eventually, node_settings
from tests.e2e.raw_sessions import token_for

GOOD = "https://app.example.com"
EVIL = "https://evil.example.net"
SUBPROTOCOLS = [Subprotocol("longlink.v1")]


@pytest.fixture
async def listed(tmp_path: Path) -> AsyncIterator[Node]:
    async with Node(node_settings(tmp_path, allowed_origins=GOOD)) as node:
        yield node


def ws_url(node: Node) -> str:
    assert node.gateway is not None
    return node.gateway.endpoints[0]


async def handshake(node: Node, origin: str | None) -> int:
    """The HTTP status answering an upgrade with ``origin`` (101: upgraded)."""
    options: dict[str, Any] = {"subprotocols": SUBPROTOCOLS, "open_timeout": WAIT}
    if origin is not None:
        options["origin"] = Origin(origin)
    try:
        async with connect(ws_url(node), **options):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_allowed_origin_is_upgraded_and_served(listed: Node) -> None:
    token = await token_for(listed, "alice")
    async with connect(
        ws_url(listed), origin=Origin(GOOD), subprotocols=SUBPROTOCOLS, open_timeout=WAIT
    ) as ws:
        await ws.send(encode_frame(Op.AUTH, encode_body(Auth(token=token, rooms=["lobby"]))))
        reply = decode_frame(await ws.recv(decode=False))
        assert reply.op == Op.AUTH_OK


async def test_foreign_origin_gets_403_and_no_connection(listed: Node) -> None:
    assert listed.gateway is not None
    assert await handshake(listed, EVIL) == 403
    assert await handshake(listed, "null") == 403  # a sandboxed page, a file: URL
    # The transports were accepted (counted), but no session outlives a refused upgrade.
    accepted = listed.metrics.get_sample_value(
        "longlink_connections_accepted_total", {"transport": "ws"}
    )
    assert accepted == 2
    sessions = listed.gateway.sessions
    await eventually(lambda: not sessions.transports, what="the refused transports closed")
    assert not sessions.unauthenticated


async def test_absent_origin_is_not_subject_to_the_policy(listed: Node) -> None:
    # Native apps, servers, the Python SDK: no Origin header.
    assert await handshake(listed, None) == 101


async def test_listed_origin_matches_without_case_or_trailing_slash(tmp_path: Path) -> None:
    settings = node_settings(tmp_path, allowed_origins="HTTPS://App.Example.com/, https://b.io")
    async with Node(settings) as node:
        assert await handshake(node, GOOD) == 101
        assert await handshake(node, "https://b.io") == 101
        assert await handshake(node, "https://c.io") == 403


async def test_demo_mode_allows_any_origin_by_default(tmp_path: Path) -> None:
    async with Node(node_settings(tmp_path, demo=True, allowed_origins=None)) as node:
        assert await handshake(node, EVIL) == 101


async def test_no_origin_allowed_by_default_outside_demo_mode(tmp_path: Path) -> None:
    async with Node(node_settings(tmp_path, demo=False, allowed_origins=None)) as node:
        assert await handshake(node, GOOD) == 403
        assert await handshake(node, None) == 101
