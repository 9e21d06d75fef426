"""Dispatch workers' liveness on Redis (longlink.bus.consumers): a dead worker's entries move
at once, a live one's never do.

Redis and Redis Cluster only: the embedded queue has one consumer. A "dead" worker is a
consumer that read entries with a plain ``XREADGROUP`` and keeps no liveness key, as a
worker killed with SIGKILL leaves it once its key expired.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from longlink.bus.consumers import ConsumerWatch
from longlink.bus.redis import GROUP, PREFIX, RedisQueue, queue_key
from longlink.bus.redis import connect as redis_connect
from longlink.model import Message, Priority, Target
from tests.conftest import WAIT, eventually
from tests.contracts.conftest import bus_url

STREAM = queue_key(Priority.LOW)
KEYS = f"{PREFIX}:consumer:"


@pytest.fixture(params=["redis", "cluster"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A client on an empty Redis, or an empty 3-primary cluster, with the group made."""
    redis = redis_connect(bus_url(request.param, request))
    await redis.flushdb()  # a cluster: on every primary
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    yield redis
    await redis.aclose()


def message(msg_id: int) -> Message:
    return Message(msg_id=msg_id, target=Target(users=["u"]), payload=b"p%d" % msg_id)


async def consumers(client: Any) -> dict[str, dict[str, Any]]:
    return {c["name"].decode(): c for c in await client.xinfo_consumers(STREAM, GROUP)}


async def idle_for(client: Any, name: str, ms: int) -> None:
    async def idle() -> bool:
        info = (await consumers(client)).get(name)
        return info is not None and int(info["idle"]) >= ms

    await eventually(idle, what=f"{name} idle for {ms} ms", interval=0.02)


def watch(client: Any, consumer: str, ttl_ms: int = 200) -> ConsumerWatch:
    return ConsumerWatch(
        client, group=GROUP, consumer=consumer, streams=[STREAM], key_prefix=KEYS, ttl_ms=ttl_ms
    )


async def test_a_dead_workers_entries_are_fetched_by_a_live_one_without_claim_idle(
    client: Any,
) -> None:
    alive = RedisQueue(
        client, consumer="alive", claim_idle_ms=600_000, consumer_ttl_ms=200, block_ms=100
    )
    await alive.publish_many([message(i) for i in (1, 2, 3)])
    await client.xreadgroup(GROUP, "dead", {STREAM: ">"}, count=10)  # ... and it dies
    got: list[Message] = []
    async with asyncio.timeout(WAIT):
        while len(got) < 3:
            got += await alive.fetch(Priority.LOW, 10)
    assert [m.msg_id for m in got] == [1, 2, 3]
    await alive.ack(Priority.LOW, got)
    assert (await client.xpending(STREAM, GROUP))["pending"] == 0

    async def removed() -> bool:
        return "dead" not in await consumers(client)

    await eventually(removed, what="the dead consumer to leave the group")
    assert await client.exists(KEYS + "alive") == 1
    await alive.close()
    assert await client.exists(KEYS + "alive") == 0  # a clean stop: gone at once


async def test_a_live_workers_entries_stay_until_its_key_is_gone(client: Any) -> None:
    owner, survivor, late = watch(client, "owner"), watch(client, "survivor"), watch(client, "late")
    await owner.start()
    queue = RedisQueue(client, consumer="api", consumer_ttl_ms=0)
    await queue.publish_many([message(i) for i in (1, 2, 3)])
    await client.xreadgroup(GROUP, "owner", {STREAM: ">"}, count=10)
    await idle_for(client, "owner", 200)  # idle past the TTL, but its key is renewed
    assert await survivor.check() == 0
    assert survivor.take(STREAM) == []
    assert (await consumers(client))["owner"]["pending"] == 3

    await owner.close()  # the key is dropped: the owner is gone
    assert await survivor.check() == 3
    assert [fields[b"m"] for _, fields in survivor.take(STREAM)] == [
        fields[b"m"] for _, fields in await client.xrange(STREAM)
    ]
    # A second survivor that saw the owner dead as well takes nothing: the entries
    # were claimed a moment ago (XCLAIM's min idle time).
    assert await late._claim(STREAM, "owner") == 0
    assert await late.check() == 0
    assert (await consumers(client))["survivor"]["pending"] == 3
    await survivor.close()
    await late.close()


async def test_a_consumer_that_reads_is_never_removed(client: Any) -> None:
    """No key (an older worker, or Redis lost it) but not idle: neither robbed nor removed."""
    survivor = watch(client, "survivor", ttl_ms=400)
    queue = RedisQueue(client, consumer="api", consumer_ttl_ms=0)
    await queue.publish_many([message(1)])
    await client.xreadgroup(GROUP, "reader", {STREAM: ">"}, count=10)
    assert await survivor.check() == 0
    assert "reader" in await consumers(client)
    await survivor.close()


async def test_the_watch_stops_when_cancelled_even_if_redis_py_swallows_it(client: Any) -> None:
    """redis-py may turn a cancellation into a connection error: the task ends all the same
    (else a loop's shutdown, which cancels every task and waits, would wait for ever)."""
    survivor = watch(client, "survivor")
    in_check = asyncio.Event()

    async def check() -> int:
        in_check.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionError("Connection closed by server.") from None
        return 0

    survivor.check = check  # type: ignore[method-assign]
    await survivor.start()
    task = survivor._task
    assert task is not None
    await asyncio.wait_for(in_check.wait(), WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)
