"""RawConnection: arbitrary bytes out, server frames in, over TCP and WebSocket (a real node)."""

from __future__ import annotations

import json

import pytest

from longlink.client import ConnectFailed, ConnectionClosed, RawConnection
from longlink.node import Node
from longlink.protocol import Op, encode_frame
from tests.conftest import WAIT
from tests.e2e.raw_sessions import address, token_for


async def test_frames_both_ways_then_server_close(server: Node, transport: str) -> None:
    async with await RawConnection.open(transport, address(server, transport)) as raw:
        await raw.send_frame(Op.AUTH, b'{"token": "forged"}', seq=4)
        assert await raw.wait_closed(timeout=WAIT)
        error = await raw.recv_frame(timeout=WAIT)  # kept by wait_closed
        assert (error.op, error.seq) == (Op.ERROR, 4)
        assert json.loads(error.body)["code"] == "auth_failed"
        with pytest.raises(ConnectionClosed):
            await raw.recv_frame(timeout=WAIT)


async def test_send_bytes_and_recv_frame(server: Node, transport: str) -> None:
    token = await token_for(server, "raw")
    async with await RawConnection.open(transport, address(server, transport)) as raw:
        await raw.send_bytes(encode_frame(Op.AUTH, json.dumps({"token": token}).encode()))
        ok = await raw.recv_frame(timeout=WAIT)
        assert ok.op == Op.AUTH_OK
        await raw.send_frame(Op.JOIN, b'{"room": "r"}', seq=2)
        reply = await raw.recv_frame(timeout=WAIT)
        assert (reply.op, reply.seq, json.loads(reply.body)) == (
            Op.JOIN_OK,
            2,
            {"room": "r", "online": 1},
        )
        with pytest.raises(TimeoutError):
            await raw.recv_frame(timeout=0.05)
        assert not await raw.wait_closed(timeout=0.05)
        assert raw.close_code is None


@pytest.mark.parametrize("transport", ["tcp"], indirect=True)
async def test_garbage_on_tcp(server: Node, transport: str) -> None:
    async with await RawConnection.open("tcp", address(server, "tcp")) as raw:
        await raw.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        error = await raw.recv_frame(timeout=WAIT)
        assert json.loads(error.body)["code"] == "bad_frame"
        assert await raw.wait_closed(timeout=WAIT)


async def test_unreachable_address() -> None:
    with pytest.raises(ConnectFailed):
        await RawConnection.open("tcp", "127.0.0.1:9", timeout_s=WAIT)
