"""The RoomHistory contract (PROTOCOL.md §1.4 rule 2), for every backend.

Both histories are built the way a node builds them, and written the way
dispatch writes them: through the node channel's ``send_many`` (history
first, then the nodes) as well as with ``append``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from longlink.bus.base import NodeChannel
from longlink.bus.memory import MemoryNodeChannel
from longlink.bus.redis import RedisNodeChannel
from longlink.history.base import HistoryEntry, RoomHistory
from longlink.history.memory import MemoryHistory
from longlink.history.redis import RedisHistory, history_key
from longlink.model import Envelope, Message, Target
from tests.conftest import WAIT


def make_history(client: Any, size: int = 5, ttl_s: float = 300.0) -> RoomHistory:
    if client is None:
        return MemoryHistory(size, ttl_s)
    return RedisHistory(client, size, ttl_s)


def make_channel(client: Any, history: RoomHistory) -> NodeChannel:
    if client is None:
        assert isinstance(history, MemoryHistory)
        return MemoryNodeChannel(history=history)
    assert isinstance(history, RedisHistory)
    return RedisNodeChannel(client, block_ms=100, history=history)


def entry(msg_id: int, *, age_s: float = 0.0, json: bool = False) -> HistoryEntry:
    at_ms = int((time.time() - age_s) * 1000)
    return HistoryEntry(msg_id, at_ms, b"payload-%d" % msg_id, json)


def ids(entries: list[HistoryEntry]) -> list[int]:
    return [e.msg_id for e in entries]


async def test_rooms_keep_their_order_and_are_read_oldest_first(client: Any) -> None:
    history = make_history(client)
    # Ids are not in order: a room's order is the order of appends.
    await history.append([("a", entry(30)), ("b", entry(10)), ("a", entry(20))])
    await history.append([("a", entry(25, json=True))])
    read = await history.read(["a", "b", "nobody"])
    assert sorted(read) == ["a", "b", "nobody"] and read["nobody"] == []
    assert ids(read["a"]) == [30, 20, 25]
    assert ids(read["b"]) == [10]
    assert read["a"][2].json and not read["a"][0].json
    assert read["a"][0].payload == b"payload-30"


async def test_a_room_keeps_its_last_size_messages(client: Any) -> None:
    history = make_history(client, size=5)
    for i in range(1, 13):
        await history.append([("r", entry(i))])
    await history.append([("r", entry(i)) for i in range(13, 16)])
    assert ids((await history.read(["r"]))["r"]) == [11, 12, 13, 14, 15]


async def test_messages_older_than_the_ttl_are_not_read(client: Any) -> None:
    history = make_history(client, ttl_s=60)
    await history.append([("r", entry(1, age_s=120)), ("r", entry(2, age_s=30)), ("r", entry(3))])
    assert ids((await history.read(["r"]))["r"]) == [2, 3]


async def test_the_oldest_go_first_even_when_a_later_one_is_older(client: Any) -> None:
    """A room never keeps a message while dropping an older one of its own: recovery
    would otherwise skip it."""
    history = make_history(client, ttl_s=60)
    await history.append([("r", entry(1)), ("r", entry(2, age_s=120)), ("r", entry(3))])
    assert ids((await history.read(["r"]))["r"]) == [1, 2, 3]


async def test_size_zero_keeps_nothing(client: Any) -> None:
    history = make_history(client, size=0)
    await history.append([("r", entry(1))])
    assert await history.read(["r"]) == {"r": []}


async def test_reading_no_rooms(client: Any) -> None:
    assert await make_history(client).read([]) == {}


async def test_the_node_channel_keeps_history_before_the_nodes_get_the_messages(
    client: Any,
) -> None:
    history = make_history(client)
    channel = make_channel(client, history)
    got: list[Envelope] = []
    arrived = asyncio.Event()
    seen_in_history: list[bool] = []

    def handler(envelopes: Any) -> None:
        got.extend(envelopes)
        if isinstance(history, MemoryHistory):
            seen_in_history.append(history.entries == 2)  # kept before the handler ran
        arrived.set()

    await channel.attach("n1", handler)
    try:
        message = Message(msg_id=7, target=Target(rooms=["r", "s"]), payload=b"x")
        await channel.send_many({"n1": [message]}, [("r", entry(7)), ("s", entry(7))])
        read = await history.read(["r", "s"])  # send_many returned: a read sees them
        assert ids(read["r"]) == [7] and ids(read["s"]) == [7]
        await asyncio.wait_for(arrived.wait(), WAIT)
        assert got == [message]
        assert all(seen_in_history)
        # Only history, no node: kept all the same.
        await channel.send_many({}, [("r", entry(8))])
        assert ids((await history.read(["r"]))["r"]) == [7, 8]
    finally:
        await channel.detach("n1")


async def test_a_channel_without_history_keeps_nothing(client: Any) -> None:
    channel: NodeChannel = (
        MemoryNodeChannel() if client is None else RedisNodeChannel(client, block_ms=100)
    )
    await channel.send_many({}, [("r", entry(1))])
    if client is not None:
        assert await client.exists(history_key("r")) == 0


# ------------------------------------------------------------------ Redis only


async def test_redis_keys_carry_the_room_as_hash_tag(redis_client: Any) -> None:
    history = RedisHistory(redis_client, 5, 300)
    await history.append([("chat/1", entry(1))])
    assert history_key("chat/1") == "ll:room:{chat/1}:history"
    assert await redis_client.exists("ll:room:{chat/1}:history") == 1
    ttl_ms = await redis_client.pttl("ll:room:{chat/1}:history")
    assert 0 < ttl_ms <= 300_000  # an idle room's history goes by itself


async def test_redis_stream_stays_capped(redis_client: Any) -> None:
    history = RedisHistory(redis_client, 5, 300)
    for i in range(1000):
        await history.append([("r", entry(i))])
    # MAXLEN ~: Redis drops whole stream nodes (100 entries by default).
    assert await redis_client.xlen(history_key("r")) <= 5 + 100
    assert ids((await history.read(["r"]))["r"]) == [995, 996, 997, 998, 999]


async def test_redis_lost_scripts_are_loaded_again(redis_client: Any) -> None:
    history = RedisHistory(redis_client, 5, 300)
    channel = RedisNodeChannel(redis_client, block_ms=100, history=history)
    await redis_client.script_flush()
    await history.append([("r", entry(1))])
    await redis_client.script_flush()
    await channel.send_many({"n1": []}, [("r", entry(2))])
    assert ids((await history.read(["r"]))["r"]) == [1, 2]


@pytest.mark.parametrize("size", [1, 100])
async def test_redis_one_script_call_per_room_and_step(redis_client: Any, size: int) -> None:
    history = RedisHistory(redis_client, size, 300)
    commands = history.commands([("a", entry(1)), ("b", entry(2)), ("a", entry(3))])
    assert [c[3] for c in commands] == [history_key("a"), history_key("b")]
    assert [len(c) - 6 for c in commands] == [2, 1]  # entries of each call
