"""The MessageQueue and NodeChannel contracts, for every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from longlink.bus.base import MessageQueue, NodeChannel, QueueFull
from longlink.bus.memory import MemoryNodeChannel, MemoryQueue
from longlink.bus.redis import RedisNodeChannel, RedisQueue
from longlink.bus.redis import connect as redis_connect
from longlink.model import Envelope, Message, NodeCommand, Priority, Target
from tests.conftest import WAIT


def message(msg_id: int, priority: Priority = Priority.LOW) -> Message:
    return Message(
        msg_id=msg_id, target=Target(users=["u"]), payload=b"p%d" % msg_id, priority=priority
    )


@pytest.fixture
async def client(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if backend == "memory":
        yield None
        return
    redis = redis_connect(request.getfixturevalue("redis_server_url"))
    await redis.flushdb()
    yield redis
    await redis.aclose()


def make_queue(client: Any, maxsize: int = 100, consumer: str = "w1", **kw: Any) -> MessageQueue:
    if client is None:
        return MemoryQueue(maxsize)
    return RedisQueue(client, maxsize=maxsize, consumer=consumer, block_ms=100, **kw)


def make_channel(client: Any) -> NodeChannel:
    return MemoryNodeChannel() if client is None else RedisNodeChannel(client, block_ms=100)


async def test_queue_is_fifo_per_priority_and_separate(client: Any) -> None:
    queue = make_queue(client)
    for i in range(1, 6):
        await queue.publish(message(i))
    await queue.publish(message(100, Priority.HIGH))
    high = await asyncio.wait_for(queue.fetch(Priority.HIGH, 10), WAIT)
    assert [m.msg_id for m in high] == [100]
    low = await asyncio.wait_for(queue.fetch(Priority.LOW, 3), WAIT)
    assert [m.msg_id for m in low] == [1, 2, 3]
    await queue.ack(Priority.LOW, low)
    rest = await asyncio.wait_for(queue.fetch(Priority.LOW, 10), WAIT)
    assert [m.msg_id for m in rest] == [4, 5]
    assert rest[0] == message(4)
    await queue.close()


async def test_queue_refuses_past_its_bound(client: Any) -> None:
    queue = make_queue(client, maxsize=2)
    await queue.publish(message(1))
    await queue.publish(message(2))
    with pytest.raises(QueueFull):
        await queue.publish(message(3))
    await queue.publish(message(4, Priority.HIGH))  # the other priority has its own bound
    await queue.close()


async def test_fetch_waits_for_a_publish(client: Any) -> None:
    queue = make_queue(client)
    waiting = asyncio.create_task(queue.fetch(Priority.LOW, 10))
    await asyncio.sleep(0)
    await queue.publish(message(7))
    assert [m.msg_id for m in await asyncio.wait_for(waiting, WAIT)] == [7]
    await queue.close()


async def test_redis_unacked_messages_are_claimed_by_another_worker(
    redis_server_url: str,
) -> None:
    """Redis only: a memory queue has one consumer, so nothing is ever claimed."""
    client = redis_connect(redis_server_url)
    await client.flushdb()
    dead = make_queue(client, consumer="dead", claim_idle_ms=50)
    alive = make_queue(client, consumer="alive", claim_idle_ms=50)
    for i in range(1, 4):
        await dead.publish(message(i))
    taken = await asyncio.wait_for(dead.fetch(Priority.LOW, 10), WAIT)
    assert [m.msg_id for m in taken] == [1, 2, 3]  # ... and the worker dies without acking
    claimed: list[Message] = []
    while len(claimed) < 3:
        claimed += await asyncio.wait_for(alive.fetch(Priority.LOW, 10), WAIT)
    assert [m.msg_id for m in claimed] == [1, 2, 3]
    await alive.ack(Priority.LOW, claimed)
    assert await client.xpending("{ll}:q:low", "dispatch") is not None
    pending = await client.xpending("{ll}:q:low", "dispatch")
    assert pending["pending"] == 0
    await client.aclose()


async def test_channel_delivers_in_order_to_the_attached_node(client: Any) -> None:
    channel = make_channel(client)
    received: list[Envelope] = []
    done = asyncio.Event()

    def handler(envelopes: Sequence[Envelope]) -> None:
        received.extend(envelopes)
        if len(received) >= 4:
            done.set()

    await channel.attach("n1", handler)
    await channel.send("n2", [message(99)])  # another node's: not ours
    await channel.send("n1", [message(1), message(2)])
    await channel.send("n1", [NodeCommand("kick_user", user="u", reason="r")])
    await channel.send("n1", [message(3)])
    await asyncio.wait_for(done.wait(), WAIT)
    assert received == [
        message(1),
        message(2),
        NodeCommand("kick_user", user="u", reason="r"),
        message(3),
    ]
    await channel.detach("n1")
    await channel.detach("n1")  # idempotent
