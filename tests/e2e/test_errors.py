"""Bad input gets a clear error and loses nothing; the server serves on afterwards."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from longlink.client import Client
from longlink.client.raw import RawConnection
from longlink.control.tokens import TokenIssuer
from longlink.node import Node
from longlink.protocol import Op, encode_frame
from longlink.protocol.messages import Auth, encode_body
from tests.conftest import API_KEY, WAIT, fresh_bus, node_settings

TRANSPORTS = ["ws", "tcp"]


def address(node: Node, transport: str) -> str:
    assert node.gateway is not None
    ws, tcp = node.gateway.endpoints
    return ws if transport == "ws" else tcp


async def token_for(node: Node, user: str) -> str:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        response = await http.post("/v1/connect", json={"user": user})
        assert response.status_code == 200, response.text
        return str(response.json()["token"])


async def expect_error(raw: RawConnection, code: str, *, closed: bool) -> None:
    frame = await raw.recv_frame(timeout=WAIT)
    assert frame.op == Op.ERROR, frame
    assert json.loads(frame.body)["code"] == code
    if closed:
        assert await raw.wait_closed(timeout=WAIT)


@pytest.fixture
async def raw_open(node: Node) -> AsyncIterator[Any]:
    opened: list[RawConnection] = []

    async def open_raw(transport: str) -> RawConnection:
        raw = await RawConnection.open(transport, address(node, transport))
        opened.append(raw)
        return raw

    yield open_raw
    for raw in opened:
        await raw.close()


async def still_serves(node: Node, api: httpx.AsyncClient) -> None:
    async with Client(node.http_url, user="after", transport="tcp") as client:
        response = await api.post("/v1/push", json={"to": {"users": ["after"]}, "data": "ok"})
        assert response.status_code == 202
        assert (await client.next_message(timeout=WAIT)).json() == "ok"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_bad_token_gets_auth_failed_and_close(
    node: Node, api: httpx.AsyncClient, raw_open: Any, transport: str
) -> None:
    raw = await raw_open(transport)
    await raw.send_frame(Op.AUTH, encode_body(Auth(token="not-a-token")))
    await expect_error(raw, "auth_failed", closed=True)
    await still_serves(node, api)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_expired_token_gets_token_expired(node: Node, raw_open: Any, transport: str) -> None:
    issuer = TokenIssuer(node.settings.token_secret, ttl_s=60)
    expired, _ = issuer.issue("old", "dev-old", now=time.time() - 120)
    raw = await raw_open(transport)
    await raw.send_frame(Op.AUTH, encode_body(Auth(token=expired)))
    await expect_error(raw, "token_expired", closed=True)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_frame_before_auth_gets_auth_required(
    node: Node, raw_open: Any, transport: str
) -> None:
    raw = await raw_open(transport)
    await raw.send_frame(Op.JOIN, b'{"room": "r"}')
    await expect_error(raw, "auth_required", closed=True)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_auth_in_time_gets_auth_required_and_close(
    tmp_path: Any, transport: str, bus: str
) -> None:
    await fresh_bus(bus)
    async with Node(node_settings(tmp_path, bus=bus, auth_timeout_s=0.3)) as node:
        raw = await RawConnection.open(transport, address(node, transport))
        try:
            await expect_error(raw, "auth_required", closed=True)
        finally:
            await raw.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_70_kib_frame_gets_too_large(
    node: Node, api: httpx.AsyncClient, raw_open: Any, transport: str
) -> None:
    raw = await raw_open(transport)
    await raw.send_frame(Op.AUTH, encode_body(Auth(token=await token_for(node, "big"))))
    assert (await raw.recv_frame(timeout=WAIT)).op == Op.AUTH_OK
    await raw.send_bytes(encode_frame(Op.UPSTREAM, os.urandom(70 * 1024)))
    await expect_error(raw, "too_large", closed=True)
    await still_serves(node, api)


async def test_garbage_on_tcp_gets_bad_frame(
    node: Node, api: httpx.AsyncClient, raw_open: Any
) -> None:
    raw = await raw_open("tcp")
    await raw.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(64))
    await expect_error(raw, "bad_frame", closed=True)
    await still_serves(node, api)


async def test_server_op_from_client_gets_bad_frame(node: Node, raw_open: Any) -> None:
    raw = await raw_open("ws")
    await raw.send_frame(Op.PUSH, b"x")
    await expect_error(raw, "bad_frame", closed=True)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_room_limit(node: Node, raw_open: Any, transport: str) -> None:
    raw = await raw_open(transport)
    rooms = [f"r{i}" for i in range(8)]
    await raw.send_frame(Op.AUTH, encode_body(Auth(token=await token_for(node, "r"), rooms=rooms)))
    ok = await raw.recv_frame(timeout=WAIT)
    assert ok.op == Op.AUTH_OK and json.loads(ok.body)["rooms"] == rooms
    await raw.send_frame(Op.JOIN, b'{"room": "one-too-many"}', seq=9)
    error = await raw.recv_frame(timeout=WAIT)
    assert error.op == Op.ERROR and error.seq == 9
    assert json.loads(error.body)["code"] == "room_limit"
    await raw.send_frame(Op.HEARTBEAT, seq=10)  # not fatal: the session goes on
    reply = await raw.recv_frame(timeout=WAIT)
    assert reply.op == Op.HEARTBEAT_OK and reply.seq == 10
    assert json.loads(reply.body)["online"] == {room: 1 for room in rooms}


async def test_heartbeat_loss_closes_the_connection(tmp_path: Any, bus: str) -> None:
    await fresh_bus(bus)
    async with Node(node_settings(tmp_path, bus=bus, min_heartbeat_s=1)) as node:
        raw = await RawConnection.open("tcp", address(node, "tcp"))
        try:
            auth = Auth(token=await token_for(node, "quiet"), heartbeat_s=1, rooms=["q"])
            await raw.send_frame(Op.AUTH, encode_body(auth))
            ok = await raw.recv_frame(timeout=WAIT)
            assert json.loads(ok.body)["heartbeat_s"] == 1
            # 2.5 intervals of silence close it (PROTOCOL §1.3 rule 3); rooms are left.
            assert await raw.wait_closed(timeout=WAIT)
            assert (await node.registry.online()).total == 0
        finally:
            await raw.close()


async def test_websocket_upgrade_on_wrong_path_is_refused(node: Node) -> None:
    assert node.gateway is not None
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"http://127.0.0.1:{node.gateway.ws_port}/nope",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
            },
        )
    assert response.status_code == 404


async def test_wrong_api_key_401_and_bad_target_400(node: Node, api: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        body = {"to": {"users": ["u"]}, "data": 1}
        wrong = await http.post("/v1/push", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"]
        missing = await http.post("/v1/push", json=body)
        assert missing.status_code == 401
    auth = {"Authorization": f"Bearer {API_KEY}"}
    for bad in (
        {"to": {}, "data": 1},
        {"to": {"users": []}, "data": 1},
        {"to": {"users": ["u"], "rooms": ["r"]}, "data": 1},
        {"to": {"planets": ["mars"]}, "data": 1},
        {"to": {"users": ["u"]}},
    ):
        response = await api.post("/v1/push", json=bad, headers=auth)
        assert response.status_code == 400, (bad, response.text)
        assert set(response.json()["error"]) == {"code", "message"}
    await still_serves(node, api)
