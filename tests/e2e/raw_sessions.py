"""Authenticated raw connections for tests that drive the session frame by frame."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from longlink.client.raw import RawConnection
from longlink.node import Node
from longlink.protocol import Frame, Op
from longlink.protocol.messages import Auth, AuthOk, RoomBody, decode_body, encode_body
from tests.conftest import WAIT

_seqs = itertools.count(1)


async def token_for(node: Node, user: str, device: str | None = None) -> str:
    """A connection token from the node's ``/v1/connect`` (demo mode)."""
    body: dict[str, Any] = {"user": user}
    if device is not None:
        body["device"] = device
    async with httpx.AsyncClient(base_url=node.http_url, timeout=WAIT) as http:
        response = await http.post("/v1/connect", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def address(node: Node, transport: str) -> str:
    assert node.gateway is not None
    ws, tcp = node.gateway.endpoints
    return ws if transport == "ws" else tcp


async def request(raw: RawConnection, op: int, body: bytes = b"") -> Frame:
    """Send a request with a fresh seq; the reply with that seq (other frames are skipped)."""
    seq = next(_seqs)
    await raw.send_frame(op, body, seq=seq)
    while True:
        frame = await raw.recv_frame(timeout=WAIT)
        if frame.seq == seq:
            return frame


async def open_session(
    gateway_node: Node,
    user: str,
    *,
    device: str | None = None,
    rooms: list[str] | None = None,
    heartbeat_s: int | None = None,
    transport: str = "tcp",
    control: Node | None = None,
) -> tuple[RawConnection, AuthOk]:
    """A raw connection to ``gateway_node``, authenticated (token from ``control`` or the node)."""
    token = await token_for(control or gateway_node, user, device)
    raw = await RawConnection.open(transport, address(gateway_node, transport))
    auth = Auth(token=token, rooms=rooms or [], heartbeat_s=heartbeat_s)
    reply = await request(raw, Op.AUTH, encode_body(auth))
    assert reply.op == Op.AUTH_OK, reply
    return raw, decode_body(reply.body, AuthOk)


async def join(raw: RawConnection, room: str) -> Frame:
    return await request(raw, Op.JOIN, encode_body(RoomBody(room)))


async def leave(raw: RawConnection, room: str) -> Frame:
    return await request(raw, Op.LEAVE, encode_body(RoomBody(room)))
