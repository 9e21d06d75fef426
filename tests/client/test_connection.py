"""The Client against a fake gateway and control API, over TCP and WebSocket."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import httpx
import msgspec
import pytest

from longlink.client import (
    AuthError,
    Client,
    ClientEvent,
    ConnectFailed,
    ConnectionClosed,
    ControlError,
    Disconnected,
    ErrorEvent,
    Kicked,
    Reconnected,
    ServerError,
    ServerEvent,
)
from longlink.protocol import Codec, Flag, Op, encode_batch, encode_frame
from longlink.protocol.messages import decode_ack
from tests.client.conftest import ClientFactory
from tests.client.fake_gateway import FakeConn, FakeControl, FakeGateway, body_of
from tests.conftest import WAIT

E = TypeVar("E", bound=ClientEvent)


async def next_event_of(client: Client, kind: type[E]) -> E:
    """The next event of ``kind``, skipping others."""
    while True:
        event = await client.next_event(timeout=WAIT)
        if isinstance(event, kind):
            return event


def json_of(body: bytes) -> Any:
    return msgspec.json.decode(body)


async def test_connect_sends_credentials_and_auth(
    make_client: ClientFactory, control: FakeControl, gateway: FakeGateway
) -> None:
    client = await make_client(device="d1", region="eu", rooms=["r2", "r1"], heartbeat_s=20)
    assert control.requests == [
        {"user": "u1", "device": "d1", "region": "eu", "transports": [gateway.kind]}
    ]
    conn = await gateway.next_connection()
    assert conn.auth == {
        "token": "tok-1",
        "rooms": ["r1", "r2"],
        "codecs": ["br", "zlib"],
        "heartbeat_s": 20,
    }
    assert client.connected
    assert client.auth_ok is not None
    assert (client.auth_ok.conn_id, client.auth_ok.node) == ("c1", "g1")
    assert client.rooms == {"r1", "r2"}


async def test_ticket_is_sent_instead_of_user(control: FakeControl, gateway: FakeGateway) -> None:
    async with (
        control.http_client() as http,
        Client(
            "http://control.test",
            ticket="jwt",
            transport="ws" if gateway.kind == "ws" else "tcp",
            http_client=http,
        ) as client,
    ):
        assert client.connected
    assert control.requests == [{"ticket": "jwt", "transports": [gateway.kind]}]


async def test_heartbeats_at_the_auth_ok_interval(
    make_client: ClientFactory, gateway: FakeGateway
) -> None:
    gateway.heartbeat_s = 1
    gateway.online = {"r1": 5}
    client = await make_client(rooms=["r1"])
    conn = await gateway.next_connection()
    beat = await conn.next_frame(Op.HEARTBEAT)
    assert beat.body == b""
    # JOIN_OK comes after HEARTBEAT_OK on the same connection: both are applied by now.
    assert await client.join("r2") == 3
    assert client.online == {"r1": 5, "r2": 3}


async def test_requests_carry_seq_and_get_their_replies(
    make_client: ClientFactory, gateway: FakeGateway
) -> None:
    gateway.join_errors["full"] = "room_limit"
    client = await make_client()
    conn = await gateway.next_connection()
    assert await client.join("r9") == 3
    join = await conn.next_frame(Op.JOIN)
    assert (join.seq, json_of(join.body)) == (1, {"room": "r9"})
    assert client.rooms == {"r9"} and client.online["r9"] == 3

    await client.leave("r9")
    leave = await conn.next_frame(Op.LEAVE)
    assert (leave.seq, json_of(leave.body)) == (2, {"room": "r9"})
    assert client.rooms == set()

    await client.upstream(b"\x00hello")
    up = await conn.next_frame(Op.UPSTREAM)
    assert (up.seq, up.body) == (3, b"\x00hello")

    with pytest.raises(ServerError) as caught:
        await client.join("full")
    assert caught.value.code == "room_limit"
    assert "full" not in client.rooms


async def test_duplicate_guaranteed_push_is_delivered_once_and_acked(
    make_client: ClientFactory, gateway: FakeGateway
) -> None:
    client = await make_client()
    conn = await gateway.next_connection()
    guaranteed = int(Flag.ACK_REQUIRED)
    await conn.send(Op.PUSH, b'{"a": 1}', flags=guaranteed, msg_id=42)
    await conn.send(Op.PUSH, b'{"a": 1}', flags=guaranteed, msg_id=42)  # a retry
    await conn.send(Op.PUSH, b'"plain"', msg_id=43)

    first = await client.next_message(timeout=WAIT)
    assert (first.msg_id, first.json(), first.guaranteed) == (42, {"a": 1}, True)
    ack = await conn.next_frame(Op.ACK)  # sent once the app has taken it
    assert decode_ack(ack.body, ack.msg_id) == [42]
    second = await client.next_message(timeout=WAIT)
    assert (second.msg_id, second.guaranteed) == (43, False)

    # A redelivery after the ack is dropped again, and acked again at once.
    await conn.send(Op.PUSH, b'{"a": 1}', flags=guaranteed, msg_id=42)
    ack = await conn.next_frame(Op.ACK)
    assert decode_ack(ack.body, ack.msg_id) == [42]
    await conn.send(Op.PUSH, b'"marker"', msg_id=44)
    assert (await client.next_message(timeout=WAIT)).msg_id == 44


@pytest.mark.parametrize("codec", list(Codec))
async def test_batch_pushes_arrive_in_order_without_duplicates(
    make_client: ClientFactory, gateway: FakeGateway, codec: Codec
) -> None:
    client = await make_client()
    conn = await gateway.next_connection()
    await conn.send(Op.PUSH, b"0", msg_id=10)
    inner = [
        encode_frame(Op.PUSH, b"1", msg_id=11),
        encode_frame(Op.PUSH, b"0", msg_id=10),  # already delivered
        encode_frame(Op.PUSH, b"2", msg_id=12, flags=Flag.HIGH_PRIORITY),
    ]
    await conn.send_raw(encode_batch(inner, codec))
    got = [await client.next_message(timeout=WAIT) for _ in range(3)]
    assert [(m.msg_id, m.data) for m in got] == [(10, b"0"), (11, b"1"), (12, b"2")]
    assert [m.high_priority for m in got] == [False, False, True]


async def test_manual_ack(make_client: ClientFactory, gateway: FakeGateway) -> None:
    client = await make_client(auto_ack=False)
    conn = await gateway.next_connection()
    await conn.send(Op.PUSH, b"x", flags=Flag.ACK_REQUIRED, msg_id=7)
    assert (await client.next_message(timeout=WAIT)).msg_id == 7
    await client.ack([8, 9])
    many = await conn.next_frame(Op.ACK)  # the first ACK: taking 7 sent none
    assert (many.msg_id, json_of(many.body)) == (0, {"msg_ids": [8, 9]})
    await client.ack(7)
    one = await conn.next_frame(Op.ACK)
    assert (one.msg_id, one.body) == (7, b"")


async def test_events_and_unanswered_errors(
    make_client: ClientFactory, gateway: FakeGateway
) -> None:
    client = await make_client()
    conn = await gateway.next_connection()
    await conn.send(Op.EVENT, body_of(type="enter", room="r1", user="u2"))
    await conn.send(Op.ERROR, body_of(code="rate_limited", message="slow down"))
    event = await client.next_event(timeout=WAIT)
    assert isinstance(event, ServerEvent)
    assert (event.type, event.room, event.user) == ("enter", "r1", "u2")
    assert await client.next_event(timeout=WAIT) == ErrorEvent("rate_limited", "slow down", 0)


async def test_reconnects_after_a_drop_with_its_rooms(
    make_client: ClientFactory, control: FakeControl, gateway: FakeGateway
) -> None:
    client = await make_client(rooms=["r1"])
    first = await gateway.next_connection()
    await client.join("r2")
    first.drop()

    lost = await next_event_of(client, Disconnected)
    assert lost.will_reconnect
    back = await next_event_of(client, Reconnected)
    assert back.auth_ok.conn_id == "c2" and back.attempts >= 1
    second = await gateway.next_connection()
    assert second.auth["token"] == "tok-2"
    assert second.auth["rooms"] == ["r1", "r2"]
    assert control.requests[1] == {"user": "u1", "device": "d1", "transports": [gateway.kind]}

    await second.send(Op.PUSH, b"after", msg_id=5)
    assert (await client.next_message(timeout=WAIT)).data == b"after"
    assert client.auth_ok is back.auth_ok


async def test_request_in_flight_fails_when_the_connection_drops(
    make_client: ClientFactory, gateway: FakeGateway
) -> None:
    gateway.silent_rooms.add("void")
    client = await make_client()
    conn = await gateway.next_connection()
    join = asyncio.create_task(client.join("void"))
    await conn.next_frame(Op.JOIN)
    conn.drop()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(join, WAIT)
    await next_event_of(client, Reconnected)
    assert "void" not in client.rooms


async def test_kick_drain_reconnects(make_client: ClientFactory, gateway: FakeGateway) -> None:
    client = await make_client()
    conn = await gateway.next_connection()
    await conn.send(Op.KICK, body_of(reason="drain"))
    assert await client.next_event(timeout=WAIT) == Kicked("drain")
    assert await client.next_event(timeout=WAIT) == Disconnected("kicked: drain", True)
    await next_event_of(client, Reconnected)
    await gateway.next_connection()


async def test_other_kick_stops_the_client(
    make_client: ClientFactory, control: FakeControl, gateway: FakeGateway
) -> None:
    client = await make_client()
    conn = await gateway.next_connection()
    await conn.send(Op.PUSH, b"last", msg_id=1)
    await conn.send(Op.KICK, body_of(reason="banned"))
    assert await client.next_event(timeout=WAIT) == Kicked("banned")
    assert await client.next_event(timeout=WAIT) == Disconnected("kicked: banned", False)
    # What arrived before the kick is still handed out, then the end.
    assert (await client.next_message(timeout=WAIT)).data == b"last"
    with pytest.raises(ConnectionClosed, match="banned"):
        await client.next_message(timeout=WAIT)
    with pytest.raises(ConnectionClosed):
        await client.join("r")
    assert not client.connected and len(control.requests) == 1


async def test_no_reconnect_when_disabled(make_client: ClientFactory, gateway: FakeGateway) -> None:
    client = await make_client(reconnect=False)
    (await gateway.next_connection()).drop()
    event = await next_event_of(client, Disconnected)
    assert not event.will_reconnect
    with pytest.raises(ConnectionClosed):
        async for _ in client:
            pass


async def test_auth_failed_raises_auth_error(
    make_client: ClientFactory, gateway: FakeGateway
) -> None:
    gateway.auth_errors.append("auth_failed")
    with pytest.raises(AuthError) as caught:
        await make_client()
    assert caught.value.code == "auth_failed"


async def test_token_expired_at_auth_fetches_a_new_token(
    make_client: ClientFactory, control: FakeControl, gateway: FakeGateway
) -> None:
    gateway.auth_errors.append("token_expired")
    client = await make_client()
    assert client.connected and len(control.requests) == 2
    assert (await gateway.next_connection()).auth["token"] == "tok-2"


async def test_control_errors(make_client: ClientFactory, control: FakeControl) -> None:
    control.failures.append(
        httpx.Response(401, json={"error": {"code": "bad_ticket", "message": "expired"}})
    )
    with pytest.raises(AuthError) as refused:
        await make_client()
    assert (refused.value.code, refused.value.message) == ("bad_ticket", "expired")

    control.failures.append(
        httpx.Response(
            503, json={"error": {"code": "overloaded", "message": ""}}, headers={"Retry-After": "2"}
        )
    )
    with pytest.raises(ControlError) as busy:
        await make_client()
    assert (busy.value.code, busy.value.status, busy.value.retry_after) == ("overloaded", 503, 2.0)
    assert busy.value.retryable


async def test_endpoints_are_tried_in_order(
    make_client: ClientFactory, control: FakeControl, gateway: FakeGateway
) -> None:
    dead = "ws://127.0.0.1:9/ws" if gateway.kind == "ws" else "127.0.0.1:9"
    control.extra_endpoints.append({"node": "dead", gateway.kind: dead})
    client = await make_client()
    assert client.auth_ok is not None and client.auth_ok.node == "g1"


async def test_no_reachable_endpoint_raises_connect_failed(
    make_client: ClientFactory, control: FakeControl, gateway: FakeGateway
) -> None:
    control.gateways.clear()
    control.extra_endpoints.append({"node": "other", "tcp" if gateway.kind == "ws" else "ws": "x"})
    with pytest.raises(ConnectFailed, match="no endpoint serves"):
        await make_client()


async def test_close_is_idempotent_and_leaves_no_task(
    make_client: ClientFactory, gateway: FakeGateway
) -> None:
    client = await make_client()
    conn = await gateway.next_connection()
    waiting = asyncio.create_task(client.next_message())
    await asyncio.gather(client.close(), client.close())
    await client.close()
    with pytest.raises(ConnectionClosed, match="client closed"):
        await asyncio.wait_for(waiting, WAIT)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("longlink-client")]
    await asyncio.wait_for(conn.closed.wait(), WAIT)
    with pytest.raises(ConnectionClosed):
        await client.next_event()
    with pytest.raises(ConnectionClosed):
        await client.connect()


@pytest.mark.parametrize("gateway", ["tcp"], indirect=True)  # transport-independent
async def test_silent_connection_is_dropped_and_replaced(
    make_client: ClientFactory, gateway: FakeGateway
) -> None:
    gateway.heartbeat_s = 1
    gateway.answer_heartbeats = False
    client = await make_client()
    first: FakeConn = await gateway.next_connection()
    lost = await next_event_of(client, Disconnected)  # after 2.5 silent intervals
    assert lost.will_reconnect
    await asyncio.wait_for(first.closed.wait(), WAIT)
    await next_event_of(client, Reconnected)
