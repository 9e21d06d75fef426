"""Demo mode end to end: the demo rooms echo UPSTREAM to the room and announce enters/exits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from longlink.client import Client, ServerError, ServerEvent
from longlink.node import Node
from longlink.web.echo import CONN_BURST, DEMO_ROOMS
from tests.conftest import API_KEY, WAIT, fresh_bus, node_settings

LOBBY, MUSIC = DEMO_ROOMS


@pytest.fixture
async def demo(tmp_path: Path, bus: str) -> AsyncIterator[Node]:
    await fresh_bus(bus)
    async with Node(node_settings(tmp_path, bus=bus, demo=True)) as node:
        yield node


async def next_event_of(client: Client, kind: str, user: str) -> ServerEvent:
    while True:
        event = await client.next_event(timeout=WAIT)
        if isinstance(event, ServerEvent) and event.type == kind and event.user == user:
            return event


async def test_upstream_in_a_demo_room_reaches_the_room_as_a_push(demo: Node) -> None:
    async with (
        Client(demo.http_url, user="ann", rooms=[LOBBY]) as ann,
        Client(demo.http_url, user="bob", rooms=[LOBBY]) as bob,
        httpx.AsyncClient(
            base_url=demo.http_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=WAIT
        ) as api,
    ):
        await ann.upstream("弹幕 hello".encode())
        got = await bob.next_message(timeout=WAIT)
        assert got.room == LOBBY
        assert got.json() == {"user": "ann", "text": "弹幕 hello"}
        mine = await ann.next_message(timeout=WAIT)  # the sender sees it too
        assert mine.msg_id == got.msg_id
        # A real message of the push path: traced by its id.
        trace = (await api.get(f"/v1/messages/{got.msg_id}")).json()
        assert {"accepted", "queued"} <= {step["event"] for step in trace["events"]}
        room = (await api.get(f"/v1/rooms/{LOBBY}")).json()
        assert room["announce"] is True and room["online"] == 2


async def test_demo_rooms_announce_enters_and_exits(demo: Node) -> None:
    async with Client(demo.http_url, user="cat", rooms=[MUSIC]) as cat:
        async with Client(demo.http_url, user="dan", rooms=[MUSIC]):
            entered = await next_event_of(cat, "enter", "dan")
            assert entered.room == MUSIC
        left = await next_event_of(cat, "exit", "dan")
        assert left.room == MUSIC


async def test_the_echo_has_a_per_connection_limit(demo: Node) -> None:
    async with Client(demo.http_url, user="eve", rooms=[LOBBY]) as eve:
        for i in range(CONN_BURST):
            await eve.upstream(f"m{i}".encode())
        with pytest.raises(ServerError) as refused:
            await eve.upstream(b"one too many")
        assert refused.value.code == "rate_limited"
        assert eve.connected  # not fatal
        texts = [json.loads((await eve.next_message(timeout=WAIT)).data)["text"] for _ in range(5)]
        assert texts == [f"m{i}" for i in range(CONN_BURST)]


async def test_other_rooms_get_no_echo(demo: Node) -> None:
    async with (
        Client(demo.http_url, user="fay", rooms=["elsewhere"]) as fay,
        httpx.AsyncClient(
            base_url=demo.http_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=WAIT
        ) as api,
    ):
        await fay.upstream(b"nobody hears this")  # accepted (demo mode), echoed nowhere
        response = await api.post("/v1/push", json={"to": {"rooms": ["elsewhere"]}, "data": 1})
        assert response.status_code == 202
        assert (await fay.next_message(timeout=WAIT)).json() == 1
        echoed = demo.metrics.get_sample_value("longlink_demo_echoes_total", {"outcome": "echoed"})
        assert not echoed
