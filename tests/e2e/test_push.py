"""End to end: a real node on free ports, the project's SDK over WebSocket and TCP.

Each test waits for events with timeouts, never with sleeps. "Nothing else
arrived" is shown with a marker: a final push to everyone is the next
message each client must see once the pushes before it were delivered,
since a connection's pushes keep their order. Pushes to different targets
may pass each other on a sharded queue (Redis Cluster: each target's own
order holds, docs/deployment.md), so where several targets meet, what a
client gets is compared as a whole, and a marker follows only pushes already
seen delivered.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import msgspec
import pytest

from longlink.client import Client, Message
from longlink.node import Node
from tests.conftest import WAIT

TRANSPORTS = ["ws", "tcp"]


async def push(api: httpx.AsyncClient, to: dict[str, Any], data: Any = None, **extra: Any) -> int:
    body: dict[str, Any] = {"to": to, **extra}
    if "data_b64" not in extra:
        body["data"] = data
    response = await api.post("/v1/push", json=body)
    assert response.status_code == 202, response.text
    return int(response.json()["msg_id"])


async def received_until_marker(client: Client, marker: str) -> list[Any]:
    """Every message's JSON up to (not including) the marker push."""
    seen: list[Any] = []
    while True:
        message = await client.next_message(timeout=WAIT)
        value = message.json()
        if value == {"marker": marker}:
            return seen
        seen.append(value)


@pytest.fixture
async def clients(node: Node) -> AsyncIterator[dict[str, Any]]:
    stack = AsyncExitStack()

    async def open_client(**kwargs: Any) -> Client:
        client = Client(node.http_url, **kwargs)
        await stack.enter_async_context(client)
        return client

    async with stack:
        yield {"open": open_client}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_each_target_reaches_exactly_its_connections(
    node: Node, api: httpx.AsyncClient, clients: dict[str, Any], transport: str
) -> None:
    open_client = clients["open"]
    alice1 = await open_client(user="alice", device="a-phone", rooms=["r1"], transport=transport)
    alice2 = await open_client(user="alice", device="a-laptop", transport=transport)
    bob = await open_client(user="bob", device="b-phone", rooms=["r1", "r2"], transport=transport)
    carol = await open_client(user="carol", device="c-phone", rooms=["r2"], transport=transport)

    await push(api, {"users": ["alice"]}, {"n": "users"})
    await push(api, {"devices": ["a-laptop", "c-phone"]}, {"n": "devices"})
    await push(api, {"rooms": ["r1"]}, {"n": "room r1"})
    await push(api, {"rooms": ["r1", "r2"]}, {"n": "rooms r1+r2"})
    await push(api, {"users": ["nobody"]}, {"n": "nobody"})
    await push(api, {"all": True}, {"n": "all"})
    await push(api, {"all": True}, {"marker": "end"})
    # Each gets its pushes and the marker (targets may pass each other), and nothing else:
    # a stray push would take the place of one of these.

    expected = {
        "alice1": ["users", "room r1", "rooms r1+r2", "all"],
        "alice2": ["users", "devices", "all"],
        "bob": ["room r1", "rooms r1+r2", "all"],
        "carol": ["devices", "rooms r1+r2", "all"],
    }
    for name, client in (("alice1", alice1), ("alice2", alice2), ("bob", bob), ("carol", carol)):
        got = [
            (await client.next_message(timeout=WAIT)).json() for _ in range(1 + len(expected[name]))
        ]
        assert {"marker": "end"} in got, name
        got.remove({"marker": "end"})
        assert sorted(value["n"] for value in got) == sorted(expected[name]), name


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_data_and_data_b64_arrive_byte_exact(
    node: Node, api: httpx.AsyncClient, clients: dict[str, Any], transport: str
) -> None:
    client = await clients["open"](user="dora", transport=transport)
    raw = bytes(range(256)) + os.urandom(1000)
    data = {"text": '弹幕 ✓ \u0000 "quoted"', "n": [1, 2.5, None, True], "nested": {"a": {}}}
    id1 = await push(api, {"users": ["dora"]}, data_b64=base64.b64encode(raw).decode())
    id2 = await push(api, {"users": ["dora"]}, data)
    first = await client.next_message(timeout=WAIT)
    second = await client.next_message(timeout=WAIT)
    assert (first.msg_id, first.data) == (id1, raw)
    assert second.msg_id == id2
    assert second.data == msgspec.json.encode(data)
    assert msgspec.json.decode(second.data) == data
    assert id2 > id1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_join_and_leave_change_what_a_connection_gets(
    node: Node, api: httpx.AsyncClient, clients: dict[str, Any], transport: str
) -> None:
    client = await clients["open"](user="erin", transport=transport)
    other = await clients["open"](user="frank", rooms=["news"], transport=transport)
    await push(api, {"rooms": ["news"]}, {"n": 1})
    assert await client.join("news") == 2
    await push(api, {"rooms": ["news"]}, {"n": 2})
    await client.leave("news")
    await push(api, {"rooms": ["news"]}, {"n": 3})
    # One room: its order holds. Once frank has 3, it went to the node before the marker.
    assert [(await other.next_message(timeout=WAIT)).json()["n"] for _ in range(3)] == [1, 2, 3]
    await push(api, {"all": True}, {"marker": "m"})
    assert [v["n"] for v in await received_until_marker(client, "m")] == [2]
    assert client.online.get("news") == 2


async def test_every_pushed_message_is_received_in_order(
    node: Node, api: httpx.AsyncClient, clients: dict[str, Any]
) -> None:
    ws = await clients["open"](user="gil", rooms=["live"], transport="ws")
    tcp = await clients["open"](user="hal", rooms=["live"], transport="tcp")
    sent = [await push(api, {"rooms": ["live"]}, {"i": i}) for i in range(200)]
    for client in (ws, tcp):
        got: list[Message] = [await client.next_message(timeout=WAIT) for _ in sent]
        assert [m.msg_id for m in got] == sent
        assert [m.json()["i"] for m in got] == list(range(200))


async def test_batch_push_and_online_count(
    node: Node, api: httpx.AsyncClient, clients: dict[str, Any]
) -> None:
    a = await clients["open"](user="ivy", rooms=["hall"])
    await clients["open"](user="jo", rooms=["hall"], transport="tcp")
    response = await api.post(
        "/v1/push/batch",
        json={"messages": [{"to": {"users": ["ivy"]}, "data": i} for i in range(3)]},
    )
    assert response.status_code == 202
    ids = [int(x) for x in response.json()["msg_ids"]]
    got = [await a.next_message(timeout=WAIT) for _ in ids]
    assert [m.msg_id for m in got] == ids
    online = (await api.get("/v1/online")).json()
    assert online["total"] == 2 and online["rooms"] == {"hall": 2}
    room = (await api.get("/v1/rooms/hall")).json()
    assert room["online"] == 2


async def test_kick_closes_the_users_connections(
    node: Node, api: httpx.AsyncClient, clients: dict[str, Any]
) -> None:
    client = Client(node.http_url, user="kim", reconnect=False)
    async with client:
        response = await api.post("/v1/users/kim/kick", json={"reason": "banned"})
        assert response.status_code == 200 and response.json()["kicked"] == 1
        event = await client.next_event(timeout=WAIT)
        while getattr(event, "reason", None) is None:
            event = await client.next_event(timeout=WAIT)
        assert event.reason == "banned"  # type: ignore[attr-defined]


async def test_high_priority_flag_is_set(
    node: Node, api: httpx.AsyncClient, clients: dict[str, Any]
) -> None:
    client = await clients["open"](user="lea")
    await push(api, {"users": ["lea"]}, "urgent", priority="high")
    message = await asyncio.wait_for(client.next_message(), WAIT)
    assert message.high_priority and message.json() == "urgent"
