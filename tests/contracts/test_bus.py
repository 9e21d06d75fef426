"""The MessageQueue and NodeChannel contracts, for every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from redis.asyncio import RedisCluster

from longlink.bus.base import MessageQueue, NodeChannel, QueueFull
from longlink.bus.memory import MemoryNodeChannel, MemoryQueue
from longlink.bus.redis import (
    RedisNodeChannel,
    RedisQueue,
    high_first,
    node_key,
    queue_key,
    split_by_priority,
)
from longlink.bus.redis import connect as redis_connect
from longlink.model import Envelope, Message, NodeCommand, Priority, Target
from tests.conftest import WAIT


def message(msg_id: int, priority: Priority = Priority.LOW) -> Message:
    return Message(
        msg_id=msg_id, target=Target(users=["u"]), payload=b"p%d" % msg_id, priority=priority
    )


def make_queue(client: Any, maxsize: int = 100, consumer: str = "w1", **kw: Any) -> MessageQueue:
    """The backend's queue; on a Redis Cluster: 4 shards per priority (over the primaries)."""
    if client is None:
        return MemoryQueue(maxsize)
    if isinstance(client, RedisCluster):
        kw.setdefault("shards", 4)
    return RedisQueue(client, maxsize=maxsize, consumer=consumer, block_ms=100, **kw)


def make_channel(client: Any) -> NodeChannel:
    return MemoryNodeChannel() if client is None else RedisNodeChannel(client, block_ms=100)


async def test_sharded_queue_keeps_each_targets_order(client: Any) -> None:
    """Pushes to many rooms and users, interleaved, over 4 shards: each target's in order."""
    kw = {} if client is None else {"shards": 4}
    queue = make_queue(client, maxsize=10_000, **kw)
    targets = [Target(rooms=[f"r{i}"]) for i in range(6)] + [
        Target(users=[f"u{i}"]) for i in range(6)
    ]
    sent: list[Message] = []
    for msg_id in range(1, 601):
        target = targets[(msg_id * 7) % len(targets)]
        sent.append(Message(msg_id=msg_id, target=target, payload=b"x"))
    for start in range(0, len(sent), 50):  # push requests of 50, as the API does
        assert await queue.publish_many(sent[start : start + 50]) == 50
    got: list[Message] = []
    async with asyncio.timeout(WAIT):
        while len(got) < len(sent):
            batch = await queue.fetch(Priority.LOW, 64)
            got.extend(batch)
            await queue.ack(Priority.LOW, batch)
    assert sorted(m.msg_id for m in got) == [m.msg_id for m in sent]  # each once
    for target in targets:
        mine = [m.msg_id for m in got if m.target == target]
        assert mine == sorted(mine), target
    if client is not None and not isinstance(client, RedisCluster):
        assert len({k for k in await client.keys("ll:q:*") if not k.endswith(b"epoch")}) == 4
    await queue.close()


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
    assert await client.xpending(queue_key(Priority.LOW), "dispatch") is not None
    pending = await client.xpending(queue_key(Priority.LOW), "dispatch")
    assert pending["pending"] == 0
    await client.aclose()


class Collector:
    """A delivery handler that keeps what arrives; ``done`` once ``count`` envelopes came."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.received: list[Envelope] = []
        self.done = asyncio.Event()

    def __call__(self, envelopes: Sequence[Envelope]) -> None:
        self.received.extend(envelopes)
        if len(self.received) >= self.count:
            self.done.set()


async def test_channel_delivers_in_order_to_the_attached_node(client: Any) -> None:
    channel = make_channel(client)
    collector = Collector(4)
    received, done = collector.received, collector.done
    await channel.attach("n1", collector)
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


async def test_channel_delivers_high_priority_and_keeps_the_rest_in_order(client: Any) -> None:
    channel = make_channel(client)
    collector = Collector(4)
    received, done = collector.received, collector.done
    await channel.attach("n1", collector)
    kick = NodeCommand("kick_user", user="u", reason="r")
    await channel.send("n1", [message(1), message(2, Priority.HIGH), kick, message(3)])
    await asyncio.wait_for(done.wait(), WAIT)
    assert message(2, Priority.HIGH) in received and len(received) == 4
    rest = [e for e in received if not (isinstance(e, Message) and e.priority == Priority.HIGH)]
    assert rest == [message(1), kick, message(3)]  # a command keeps its place among the rest
    await channel.detach("n1")


async def test_redis_node_high_priority_never_waits_behind_a_low_backlog(
    redis_client: Any,
) -> None:
    client = redis_client
    channel = RedisNodeChannel(client, block_ms=100)
    await channel.send("n1", [message(i) for i in range(1, 601)])  # one entry: a batch
    for i in range(601, 1201):  # and 600 entries of one message each
        await channel.send("n1", [message(i)])
    await channel.send("n1", [message(5000, Priority.HIGH)])  # the last one written
    assert await client.xlen(node_key("n1")) == 601
    assert await client.xlen(node_key("n1", Priority.HIGH)) == 1
    calls: list[list[int]] = []
    done = asyncio.Event()

    def handler(envelopes: Sequence[Envelope]) -> None:
        calls.append([e.msg_id for e in envelopes if isinstance(e, Message)])
        if sum(map(len, calls)) == 1201:
            done.set()

    # Read the backlog as a node that was behind: from the start of both streams.
    start = {node_key("n1", Priority.HIGH): b"0-0", node_key("n1"): b"0-0"}
    reader = asyncio.create_task(channel._read("n1", handler, start))
    await asyncio.wait_for(done.wait(), WAIT)
    channel._stopping.add(reader)
    await asyncio.wait_for(reader, WAIT)
    assert calls[0] == [5000], "the high-priority entry is handled before the low backlog"
    assert [i for call in calls[1:] for i in call] == list(range(1, 1201))


def test_split_by_priority_and_high_first_are_pure_orderings() -> None:
    kick = NodeCommand("kick_user", user="u", reason="r")
    high, rest = split_by_priority([message(1), message(2, Priority.HIGH), kick, message(3)])
    assert high == [message(2, Priority.HIGH)] and rest == [message(1), kick, message(3)]
    reply = [[b"lo", [(b"1-0", "a"), (b"2-0", "b")]], [b"hi", [(b"1-1", "c")]]]
    assert high_first(reply, "hi") == [
        (b"hi", b"1-1", "c"),
        (b"lo", b"1-0", "a"),
        (b"lo", b"2-0", "b"),
    ]
