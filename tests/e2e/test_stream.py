"""The HTTP stream transport end to end (PROTOCOL.md §1.5), on real sockets.

A node in demo mode; the SDK over the stream, raw requests for the HTTP
rules (CORS, tokens, limits, the front door's deadlines), the fallback from a
WebSocket that fails, and POSTs that land on another process sharing the
port.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from longlink.client import Client
from longlink.client.raw import RawConnection
from longlink.node import Backends, Node
from longlink.protocol import Op, encode_frame
from longlink.protocol.messages import Auth, AuthOk, decode_body, encode_body
from tests.conftest import API_KEY, WAIT, eventually, node_settings
from tests.e2e.raw_sessions import token_for

GOOD = "https://app.example.com"
EVIL = "https://evil.example.net"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    settings = node_settings(tmp_path, allowed_origins=GOOD, auth_timeout_s=1.0)
    async with Node(settings) as running:
        yield running


def stream_url(node: Node) -> str:
    assert node.gateway is not None
    return node.gateway.stream_endpoint


async def open_stream(node: Node, user: str, rooms: list[str]) -> tuple[RawConnection, AuthOk]:
    token = await token_for(node, user)
    raw = await RawConnection.open("stream", stream_url(node))
    await raw.send_frame(Op.AUTH, encode_body(Auth(token=token, rooms=rooms)), seq=1)
    reply = await raw.recv_frame(timeout=WAIT)
    assert reply.op == Op.AUTH_OK, reply
    return raw, decode_body(reply.body, AuthOk)


async def test_the_sdk_over_the_stream(node: Node, api: httpx.AsyncClient) -> None:
    assert node.gateway is not None
    async with Client(
        node.http_url, user="alice", rooms=["r1"], transport="stream", heartbeat_s=1
    ) as client:
        assert client.auth_ok is not None
        conn = node.gateway.hub.conns[client.auth_ok.conn_id]
        assert type(conn).__name__ == "StreamConnection"
        response = await api.post("/v1/push", json={"to": {"rooms": ["r1"]}, "data": {"n": 1}})
        assert response.status_code == 202
        message = await client.next_message(timeout=WAIT)
        assert (message.room, message.json()) == ("r1", {"n": 1})
        assert await client.join("r2") == 1  # JOIN goes as a POST, JOIN_OK on the stream
        await client.leave("r2")
        response = await api.post("/v1/push", json={"to": {"users": ["alice"]}, "data": 2})
        assert (await client.next_message(timeout=WAIT)).json() == 2
        # Heartbeats every second (POSTs) keep the session: the server answers each.
        heartbeats = node.gateway.metrics.heartbeats
        before = heartbeats._value.get()
        await eventually(lambda: heartbeats._value.get() >= before + 2, what="two heartbeats")
    await eventually(lambda: not node.gateway.hub.conns, what="the session to end")  # type: ignore[union-attr]


async def test_the_http_rules(node: Node) -> None:
    raw, ok = await open_stream(node, "bob", ["lobby"])
    url = f"{stream_url(node)}/{ok.conn_id}"
    token = await token_for(node, "bob")  # a valid token, but not this session's
    beat = encode_frame(Op.HEARTBEAT, seq=5)
    async with httpx.AsyncClient(timeout=WAIT) as http:
        wrong = await http.post(url, content=beat, headers={"Authorization": f"Bearer {token}"})
        assert wrong.status_code == 401
        none = await http.post(url, content=beat)
        assert none.status_code == 401
        gone = await http.post(
            f"{stream_url(node)}/g1-nobody-1", content=beat, headers={"Authorization": "Bearer x"}
        )
        assert gone.status_code == 404
        huge = await http.post(url, content=b"x" * (5 * 64 * 1024))
        assert huge.status_code == 413
        # CORS: the preflight names what the POSTs need; an origin not allowed gets 403.
        preflight = await http.options(
            url,
            headers={"Origin": GOOD, "Access-Control-Request-Headers": "authorization"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == GOOD
        assert "Authorization" in preflight.headers["access-control-allow-headers"]
        evil = await http.options(url, headers={"Origin": EVIL})
        assert evil.status_code == 403
        refused = await http.post(stream_url(node), content=beat, headers={"Origin": EVIL})
        assert refused.status_code == 403
        # The stream still works after all that: a HEARTBEAT by POST, its answer on the stream.
        await raw.send_frame(Op.HEARTBEAT, seq=9)
        reply = await raw.recv_frame(timeout=WAIT)
        assert (reply.op, reply.seq) == (Op.HEARTBEAT_OK, 9)
        # A body that is not frames closes the session with ERROR bad_frame.
        bad = await http.post(
            url, content=b"\x00" * 30, headers={"Authorization": f"Bearer {raw_token(raw)}"}
        )
        assert bad.status_code == 400
    error = await raw.recv_frame(timeout=WAIT)
    assert error.op == Op.ERROR and b"bad_frame" in error.body
    assert await raw.wait_closed(WAIT)
    await raw.close()


def raw_token(raw: RawConnection) -> str:
    return raw._transport._token  # type: ignore[union-attr]


async def test_the_front_door_closes_silent_and_idle_connections(node: Node) -> None:
    assert node.gateway is not None
    port = node.gateway.ws_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/stream HTTP/1.1\r\nHost: x\r\n")  # and never the rest
    async with asyncio.timeout(WAIT):
        assert await reader.read() == b""  # auth_timeout_s (1 s) and a sweep later: closed
    writer.close()
    # Keep-alive: answered, then idle past the door's keep-alive time: closed too.
    node.gateway.door.keepalive_s = 0.5
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"OPTIONS /v1/stream HTTP/1.1\r\nHost: x\r\nOrigin: " + GOOD.encode() + b"\r\n\r\n"
    )
    async with asyncio.timeout(WAIT):
        answer = await reader.read()  # the 204, then the end
    assert answer.startswith(b"HTTP/1.1 204") and b"Connection: keep-alive" in answer
    writer.close()
    await eventually(lambda: not node.gateway.door.deadlines, what="the door to be empty")  # type: ignore[union-attr]


async def test_websocket_blocked_the_sdk_falls_back_and_control_advises_the_stream(
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on: WebSocket fails there
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    settings = node_settings(tmp_path, advertise_ws=f"ws://127.0.0.1:{dead}/ws")
    async with (
        Node(settings) as node,
        httpx.AsyncClient(base_url=node.http_url, timeout=WAIT) as http,
    ):
        answer = (await http.post("/v1/connect", json={"user": "u"})).json()
        assert answer["transports"] == ["ws", "stream", "tcp"]
        assert answer["endpoints"][0]["stream"] == stream_url(node)
        advised = await http.post("/v1/connect", json={"user": "u", "failed": ["ws"]})
        assert advised.json()["transports"] == ["stream", "tcp", "ws"]
        async with Client(node.http_url, user="carol", rooms=["r"], backoff_max_s=0.2) as client:
            dialer = client._dialer
            assert (dialer.kind, dialer.failed) == ("stream", ["ws"])
            # The connection drops: the reconnect reports ws as failed, is told stream
            # first, and takes it.
            first = client.auth_ok
            assert node.gateway is not None and first is not None
            transport = node.gateway.hub.conns[first.conn_id].transport
            assert transport is not None
            transport.abort()
            await eventually(
                lambda: client.connected and client.auth_ok is not first, what="the reconnect"
            )
            assert dialer.kind == "stream"


async def test_posts_that_land_on_another_process_are_forwarded(tmp_path: Path) -> None:
    base = node_settings(tmp_path, reuse_port=True, stream_relay_dir=str(tmp_path / "relay"))
    backends = Backends.from_settings(base)
    try:
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(Node(base.replace(node_id="pa"), backends))
            assert a.gateway is not None
            ports = {"ws_port": a.gateway.ws_port, "tcp_port": a.gateway.tcp_port}
            second = base.replace(node_id="pb", roles=("gateway",), **ports)
            b = await stack.enter_async_context(Node(second, backends))
            assert b.gateway is not None
            raw, ok = await open_stream(a, "dave", [])
            url = f"{stream_url(a)}/{ok.conn_id}"
            auth = {"Authorization": f"Bearer {raw_token(raw)}", "Connection": "close"}
            posts = 12  # each on a new connection: the kernel spreads them over both
            for seq in range(1, posts + 1):
                async with httpx.AsyncClient(timeout=WAIT) as http:
                    beat = encode_frame(Op.HEARTBEAT, seq=100 + seq)
                    answer = await http.post(url, content=beat, headers=auth)
                    assert answer.status_code == 204
                reply = await raw.recv_frame(timeout=WAIT)
                assert (reply.op, reply.seq) == (Op.HEARTBEAT_OK, 100 + seq)
            landed = [
                node.gateway.metrics.stream_posts.labels("204")._value.get()
                for node in (a, b)
                if node.gateway is not None
            ]
            assert sum(landed) >= posts and min(landed) > 0, landed
            await raw.close()
    finally:
        await backends.close()


async def test_a_client_that_does_not_read_waits_for_its_post_answers(tmp_path: Path) -> None:
    settings = node_settings(tmp_path, outbox_soft_kib=16, outbox_hard_kib=64 * 1024)
    async with (
        Node(settings) as node,
        httpx.AsyncClient(
            base_url=node.http_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=WAIT
        ) as api,
    ):
        gateway = node.gateway
        assert gateway is not None
        token = await token_for(node, "slow")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", gateway.ws_port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        auth = encode_frame(Op.AUTH, encode_body(Auth(token=token)), seq=1)
        head = f"POST /v1/stream HTTP/1.1\r\nHost: x\r\nContent-Length: {len(auth)}\r\n\r\n"
        writer.write(head.encode() + auth)
        await eventually(lambda: any(c.user == "slow" for c in gateway.hub.conns.values()))
        (conn,) = [c for c in gateway.hub.conns.values() if c.user == "slow"]
        # Pushes it does not read: its buffer passes the soft limit, it is behind.
        while conn not in gateway.outbox.behind:
            body = {"to": {"users": ["slow"]}, "data_b64": "QUFB" * 7000}
            assert (await api.post("/v1/push", json=body)).status_code == 202
        async with httpx.AsyncClient(timeout=WAIT) as http:
            beat = encode_frame(Op.HEARTBEAT, seq=3)
            post = asyncio.create_task(
                http.post(
                    f"{stream_url(node)}/{conn.conn_id}",
                    content=beat,
                    headers={"Authorization": f"Bearer {token}"},
                )
            )
            held = lambda: getattr(conn, "waiters", None) is not None  # noqa: E731
            await eventually(held, what="the answer to be held")
            assert not post.done()
            drained = 0
            async with asyncio.timeout(WAIT):
                while not post.done():  # reading drains the buffer: the answer comes
                    drained += len(await reader.read(65536))
            assert (await post).status_code == 204 and drained > 16 * 1024
        writer.close()
