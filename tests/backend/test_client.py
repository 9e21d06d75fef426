"""The backend client against a real node on free ports (and a real end-user client)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from longlink.backend import (
    NO_RETRY,
    BadRequest,
    Forbidden,
    LonglinkBackend,
    LonglinkBackendSync,
    NotFound,
    Overloaded,
    Push,
    RateLimited,
    TooLarge,
    Unauthorized,
)
from longlink.client import Client, Kicked
from longlink.model import Priority
from longlink.node import Node
from longlink.settings import ApiKeyConfig
from tests.conftest import API_KEY, WAIT, node_settings


@pytest.fixture
async def backend(node: Node) -> AsyncIterator[LonglinkBackend]:
    async with LonglinkBackend(
        node.http_url, API_KEY, ticket_secret=node.settings.ticket_secret, timeout=WAIT
    ) as client:
        yield client


async def test_ticket_push_batch_and_queries(node: Node, backend: LonglinkBackend) -> None:
    ticket = backend.sign_ticket("alice", "alice-phone")
    async with Client(node.http_url, ticket=ticket, rooms=["lobby"]) as alice:
        msg_id = await backend.push({"users": ["alice"]}, {"text": "hi"})
        message = await alice.next_message(timeout=WAIT)
        assert (message.msg_id, message.json()) == (msg_id, {"text": "hi"})
        trace = await backend.message_trace(msg_id)
        assert trace["msg_id"] == str(msg_id)
        assert trace["events"][0]["event"] == "accepted"
        with pytest.raises(NotFound):
            await backend.message_trace(1)

        ids = await backend.push_batch(
            [
                Push({"rooms": ["lobby"]}, raw=b"\x00raw"),
                {"to": {"devices": ["alice-phone"]}, "data": "device"},
            ]
        )
        got = [await alice.next_message(timeout=WAIT) for _ in ids]
        # Two targets: a sharded queue (Redis Cluster) keeps each one's order, not theirs.
        first, second = sorted(got, key=lambda m: ids.index(m.msg_id))
        assert [first.msg_id, second.msg_id] == ids
        assert (first.data, second.json()) == (b"\x00raw", "device")

        online = await backend.online()
        assert online["total"] == 1 and online["rooms"] == {"lobby": 1}
        assert await backend.set_room_area("lobby", "eu") == {
            "room": "lobby",
            "area": "eu",
            "online": 1,
        }
        assert (await backend.room("lobby"))["area"] == "eu"
        [connection] = (await backend.user("alice"))["connections"]
        assert connection["device"] == "alice-phone" and connection["rooms"] == ["lobby"]
        assert [n["node"] for n in await backend.nodes()] == [node.settings.node_id]
        g1 = node.settings.node_id
        assert await backend.drain(g1, False) == {"node": g1, "draining": False}
        with pytest.raises(NotFound):
            await backend.drain("no-such-node")

        assert await backend.kick("alice", "bye") == 1
        while not isinstance(event := await alice.next_event(timeout=WAIT), Kicked):
            pass
        assert event.reason == "bye"


async def test_refusals_are_typed(node: Node, backend: LonglinkBackend) -> None:
    async with LonglinkBackend(node.http_url, "wrong-key", timeout=WAIT) as stranger:
        with pytest.raises(Unauthorized) as unauthorized:
            await stranger.push({"all": True}, 1)
    assert unauthorized.value.code == "unauthorized"
    with pytest.raises(BadRequest) as bad:
        await backend.push({"users": [""]}, 1)
    assert bad.value.message.startswith("to.users[0]")
    with pytest.raises(TooLarge):
        await backend.push({"all": True}, "x" * (node.settings.max_payload + 1))


async def test_scopes_and_rate_against_a_real_node(tmp_path: Path) -> None:
    keys = (
        ApiKeyConfig(name="rooms", key="rooms-key", targets=("rooms",), room_prefixes=("chat-",)),
        ApiKeyConfig(name="slow", key="slow-key", rate=0.001, burst=1),
    )
    async with Node(node_settings(tmp_path, api_keys=keys)) as node:
        async with LonglinkBackend(node.http_url, "rooms-key", timeout=WAIT) as rooms:
            await rooms.push({"rooms": ["chat-1"]}, 1)
            with pytest.raises(Forbidden) as forbidden:
                await rooms.push({"rooms": ["game-1"]}, 1)
            assert "room_prefixes" in forbidden.value.message
        async with LonglinkBackend(node.http_url, "slow-key", retry=NO_RETRY) as slow:
            await slow.push({"all": True}, 1)
            with pytest.raises(RateLimited) as limited:
                await slow.push({"all": True}, 2)
            assert limited.value.retry_after is not None and limited.value.retry_after >= 1


async def test_overloaded_push_is_retried_once_the_queue_drains(tmp_path: Path) -> None:
    """No dispatch role: the queue only drains when the test says so (in the sleep hook)."""
    settings = node_settings(tmp_path, roles=("api", "control"), queue_size=5, overload_depth=2)
    async with Node(settings) as node:
        slept: list[float] = []

        async def drain_then_sleep(seconds: float) -> None:
            slept.append(seconds)
            await node.queue.fetch(Priority.LOW, 100)

        async with LonglinkBackend(node.http_url, API_KEY, sleep=drain_then_sleep) as backend:
            await backend.push_batch([Push({"all": True}, i) for i in range(2)])
            assert await backend.push({"all": True}, "urgent", priority="high") > 0
            msg_id = await backend.push({"all": True}, "after the drain")
            assert slept == [1.0]
            [message] = await node.queue.fetch(Priority.LOW, 100)
            assert message.msg_id == msg_id
        async with LonglinkBackend(node.http_url, API_KEY, retry=NO_RETRY) as impatient:
            await impatient.push_batch([Push({"all": True}, i) for i in range(2)])
            with pytest.raises(Overloaded) as overloaded:
                await impatient.push({"all": True}, 1)
            assert overloaded.value.retry_after == 1.0


async def test_sync_client_in_a_thread(node: Node) -> None:
    def work() -> tuple[int, dict[str, object]]:
        with LonglinkBackendSync(node.http_url, API_KEY, timeout=WAIT) as backend:
            msg_id = backend.push({"users": ["nobody"]}, {"sync": True}, guaranteed=True, ttl_s=5)
            return msg_id, backend.online()

    msg_id, online = await asyncio.wait_for(asyncio.to_thread(work), WAIT)
    assert msg_id > 0 and online["total"] == 0
