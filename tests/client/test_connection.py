"""The Client's asyncio bridge against a real node, over TCP and WebSocket.

What a frame means is the session's (tests/protocol/test_pair.py); here:
connecting, requests and their futures, the pump (heartbeats, ACKs), losses,
reconnects with the rooms and their ``since``, stopping, closing.
"""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar

import httpx
import pytest

from longlink.client import (
    AuthError,
    Client,
    ClientEvent,
    ConnectFailed,
    ConnectionClosed,
    ControlError,
    Disconnected,
    Kicked,
    Reconnected,
    ServerError,
)
from longlink.logic.base import NodeInfo
from longlink.node import Node
from tests.client.conftest import ClientFactory, server_conn
from tests.conftest import WAIT, eventually, node_settings

E = TypeVar("E", bound=ClientEvent)


async def next_event_of(client: Client, kind: type[E]) -> E:
    """The next event of ``kind``, skipping others."""
    while True:
        event = await client.next_event(timeout=WAIT)
        if isinstance(event, kind):
            return event


async def push(api: httpx.AsyncClient, to: dict[str, object], data: object, **extra: object) -> int:
    response = await api.post("/v1/push", json={"to": to, "data": data, **extra})
    assert response.status_code == 202, response.text
    return int(response.json()["msg_id"])


async def test_connect_authenticates_with_rooms_codecs_and_interval(
    make_client: ClientFactory, server: Node, transport: str
) -> None:
    client = await make_client(device="d1", rooms=["r2", "r1"], heartbeat_s=20, codecs=["zlib"])
    assert client.connected and client.auth_ok is not None
    auth_ok = client.auth_ok
    assert (auth_ok.user, auth_ok.device, auth_ok.node) == ("u1", "d1", "g1")
    assert (sorted(auth_ok.rooms), auth_ok.heartbeat_s, auth_ok.codec) == (["r1", "r2"], 20, "zlib")
    conn = server_conn(server, "u1")
    assert conn.conn_id == auth_ok.conn_id and set(conn.rooms) == {"r1", "r2"}
    assert client.rooms == {"r1", "r2"}


async def test_requests_get_their_replies_and_errors(make_client: ClientFactory) -> None:
    client = await make_client()
    assert await client.join("r9") == 1
    assert client.rooms == {"r9"} and client.online["r9"] == 1
    await client.leave("r9")
    assert client.rooms == set()
    with pytest.raises(ServerError) as caught:
        await client.upstream(b"\x00hello")  # no webhook on this server
    assert caught.value.code == "not_allowed"
    for room in "abcdefgh":
        await client.join(room)
    with pytest.raises(ServerError) as caught:
        await client.join("ninth")
    assert caught.value.code == "room_limit"
    assert "ninth" not in client.rooms and client.connected


async def test_pushes_arrive_tagged_and_guaranteed_ones_are_acked(
    make_client: ClientFactory, api: httpx.AsyncClient, server: Node
) -> None:
    client = await make_client(rooms=["stage"])
    to_room = await push(api, {"rooms": ["stage"]}, {"n": 1})
    to_user = await push(api, {"users": ["u1"]}, {"n": 2}, guaranteed=True)
    first = await client.next_message(timeout=WAIT)
    second = await client.next_message(timeout=WAIT)
    assert (first.msg_id, first.room, first.json()) == (to_room, "stage", {"n": 1})
    assert (second.msg_id, second.room, second.guaranteed) == (to_user, None, True)
    assert client.last_ids == {"stage": to_room}
    deadline = time.monotonic() + WAIT
    while server.tracer.reach().acked < 1:  # the ACK left when the app took the message
        assert time.monotonic() < deadline, "no ACK reached the server"
        await asyncio.sleep(0.01)


async def test_manual_ack(make_client: ClientFactory, api: httpx.AsyncClient, server: Node) -> None:
    client = await make_client(auto_ack=False)
    msg_id = await push(api, {"users": ["u1"]}, "x", guaranteed=True)
    message = await client.next_message(timeout=WAIT)
    assert message.msg_id == msg_id and server.tracer.reach().acked == 0
    await client.ack(msg_id)
    deadline = time.monotonic() + WAIT
    while server.tracer.reach().acked < 1:
        assert time.monotonic() < deadline, "no ACK reached the server"
        await asyncio.sleep(0.01)


async def test_reconnects_after_a_drop_with_its_rooms(
    make_client: ClientFactory, api: httpx.AsyncClient, server: Node
) -> None:
    client = await make_client(rooms=["r1"])
    await client.join("r2")
    first = server_conn(server, "u1")
    assert first.transport is not None
    first.transport.abort()

    lost = await next_event_of(client, Disconnected)
    assert lost.will_reconnect
    back = await next_event_of(client, Reconnected)
    assert back.attempts >= 1 and back.auth_ok.conn_id != first.conn_id
    assert back.auth_ok.device == first.device  # the demo device id is asked for again
    assert set(server_conn(server, "u1").rooms) == {"r1", "r2"}
    msg_id = await push(api, {"rooms": ["r2"]}, "after")
    assert (await client.next_message(timeout=WAIT)).msg_id == msg_id
    assert client.auth_ok is back.auth_ok


async def test_request_in_flight_fails_when_the_connection_drops(
    make_client: ClientFactory, server: Node
) -> None:
    client = await make_client()
    conn = server_conn(server, "u1")
    assert conn.transport is not None
    conn.transport.pause_reading()  # the JOIN is never read, so never answered
    join = asyncio.create_task(client.join("void"))
    await asyncio.sleep(0)
    conn.transport.abort()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(join, WAIT)
    await next_event_of(client, Reconnected)
    assert "void" not in client.rooms


async def test_kick_drain_reconnects(make_client: ClientFactory, server: Node) -> None:
    client = await make_client()
    assert server.gateway is not None
    server.gateway.commands.drain()
    assert await next_event_of(client, Kicked) == Kicked("drain")
    assert await client.next_event(timeout=WAIT) == Disconnected("kicked: drain", True)
    await next_event_of(client, Reconnected)
    assert client.connected


async def test_other_kick_stops_the_client(
    make_client: ClientFactory, api: httpx.AsyncClient
) -> None:
    client = await make_client()
    msg_id = await push(api, {"users": ["u1"]}, "last")
    response = await api.post("/v1/users/u1/kick", json={"reason": "banned"})
    assert response.status_code == 200, response.text
    assert await next_event_of(client, Kicked) == Kicked("banned")
    assert await client.next_event(timeout=WAIT) == Disconnected("kicked: banned", False)
    # What arrived before the kick is still handed out, then the end.
    assert (await client.next_message(timeout=WAIT)).msg_id == msg_id
    with pytest.raises(ConnectionClosed, match="banned"):
        await client.next_message(timeout=WAIT)
    with pytest.raises(ConnectionClosed):
        await client.join("r")
    assert not client.connected


async def test_no_reconnect_when_disabled(make_client: ClientFactory, server: Node) -> None:
    client = await make_client(reconnect=False)
    conn = server_conn(server, "u1")
    assert conn.transport is not None
    conn.transport.abort()
    event = await next_event_of(client, Disconnected)
    assert not event.will_reconnect
    with pytest.raises(ConnectionClosed):
        async for _ in client:
            pass


async def test_a_bad_ticket_raises_auth_error(server: Node, transport: str) -> None:
    client = Client(server.http_url, ticket="not-a-jwt", transport=transport)  # type: ignore[arg-type]
    with pytest.raises(AuthError) as caught:
        await client.connect()
    assert caught.value.code == "bad_ticket"
    await client.close()


async def test_no_gateway_is_a_retryable_control_error(tmp_path: object) -> None:
    settings = node_settings(tmp_path, roles=("api", "control"))
    async with Node(settings) as node:
        client = Client(node.http_url, user="u1")
        with pytest.raises(ControlError) as busy:
            await client.connect()
        assert (busy.value.status, busy.value.code) == (503, "no_nodes")
        assert busy.value.retryable and busy.value.retry_after
        await client.close()


def dead_node() -> NodeInfo:
    """A node that reported a moment ago with no load (it ranks first) but is not there."""
    return NodeInfo(
        node="dead",
        region="local",
        ws="ws://127.0.0.1:9/ws",
        tcp="127.0.0.1:9",
        reported_ms=int(time.time() * 1000),
    )


async def test_endpoints_are_tried_in_order(
    make_client: ClientFactory, server: Node, transport: str
) -> None:
    await server.registry.report_node(dead_node())
    client = await make_client()
    assert client.auth_ok is not None and client.auth_ok.node == "g1"

    # The REPORT right after AUTH_OK names the transport that failed (PROTOCOL §1.6 rule 1).
    def failed_counted() -> bool:
        value = server.metrics.get_sample_value(
            "longlink_quality_failed_transports_total", {"transport": transport}
        )
        return value == 1

    await eventually(failed_counted, what="the failed transport in the REPORT")


async def test_no_reachable_endpoint_raises_connect_failed(tmp_path: object) -> None:
    async with Node(node_settings(tmp_path, roles=("api", "control"))) as node:
        await node.registry.report_node(dead_node())
        client = Client(node.http_url, user="u1", connect_timeout_s=WAIT)
        with pytest.raises(ConnectFailed, match="no endpoint could be reached"):
            await client.connect()
        await client.close()


async def test_close_is_idempotent_and_leaves_no_task(
    make_client: ClientFactory, server: Node
) -> None:
    client = await make_client()
    assert server.gateway is not None
    waiting = asyncio.create_task(client.next_message())
    await asyncio.gather(client.close(), client.close())
    await client.close()
    with pytest.raises(ConnectionClosed, match="client closed"):
        await asyncio.wait_for(waiting, WAIT)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("longlink-client")]
    deadline = time.monotonic() + WAIT
    while server.gateway.hub.conns:
        assert time.monotonic() < deadline, "the server still holds the connection"
        await asyncio.sleep(0.01)
    with pytest.raises(ConnectionClosed):
        await client.next_event()
    with pytest.raises(ConnectionClosed):
        await client.connect()


@pytest.mark.parametrize("transport", ["tcp"], indirect=True)  # transport-independent
async def test_silent_connection_is_dropped_and_replaced(
    make_client: ClientFactory, server: Node
) -> None:
    client = await make_client(heartbeat_s=1)
    conn = server_conn(server, "u1")
    assert conn.transport is not None
    conn.transport.pause_reading()  # heartbeats are not read, so never answered
    # After 2.5 silent intervals one side or the other drops it (both watch the silence).
    lost = await next_event_of(client, Disconnected)
    assert lost.will_reconnect
    await next_event_of(client, Reconnected)
