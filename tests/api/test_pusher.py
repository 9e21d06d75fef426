"""The push use case without HTTP: ids, store before queue, order, partial queueing, trace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from longlink.api.push import Pusher, QueueFilled, StoreUnavailable
from longlink.api.schemas import PushRequest
from longlink.bus.memory import MemoryQueue
from longlink.model import MsgIdGenerator, Priority, Target
from longlink.store.base import user_recipient
from longlink.store.sqlite import SqliteStore
from longlink.trace import Tracer

NOW_NS = 1_790_000_000_123_456_789


def request(
    user: str = "u1", *, guaranteed: bool = False, priority: Priority = Priority.LOW
) -> PushRequest:
    return PushRequest(Target(users=[user]), b'"hi"', priority, guaranteed, 60)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "offline.db")
    yield store
    await store.close()


def pusher(queue: MemoryQueue, store: SqliteStore | None = None) -> Pusher:
    return Pusher(
        queue=queue,
        ids=MsgIdGenerator(1),
        tracer=Tracer(),
        store=store,
        clock_ns=lambda: NOW_NS,
    )


async def test_queues_in_order_with_increasing_ids_and_one_instant() -> None:
    queue = MemoryQueue()
    p = pusher(queue)
    ids = await p.push([request("a"), request("b", priority=Priority.HIGH), request("c")])
    assert ids == sorted(ids) and len(set(ids)) == 3
    low = await queue.fetch(Priority.LOW, 10)
    [high] = await queue.fetch(Priority.HIGH, 10)
    assert [m.msg_id for m in low] == [ids[0], ids[2]] and high.msg_id == ids[1]
    assert {(m.accepted_ms, m.accepted_us) for m in [*low, high]} == {
        (NOW_NS // 1_000_000, NOW_NS // 1000)
    }
    trace = p.tracer.trace(ids[1])
    assert trace is not None
    assert [e.event for e in trace.events] == ["accepted", "queued"]


async def test_guaranteed_messages_are_stored_before_they_are_queued(store: SqliteStore) -> None:
    queue = MemoryQueue()
    p = pusher(queue, store)
    [kept, plain] = await p.push([request("a", guaranteed=True), request("a")])
    pending = await store.pending([user_recipient("a")], NOW_NS // 1_000_000)
    assert [m.msg_id for m in pending] == [kept]
    trace = p.tracer.trace(kept)
    assert trace is not None
    assert [e.event for e in trace.events] == ["accepted", "stored", "queued"]
    assert len(await queue.fetch(Priority.LOW, 10)) == 2 and plain > kept


async def test_a_full_queue_stops_the_rest_and_unkeeps_them(store: SqliteStore) -> None:
    queue = MemoryQueue(maxsize=2)
    p = pusher(queue, store)
    pushes = [request(u, guaranteed=True) for u in ("a", "b", "c", "d")]
    with pytest.raises(QueueFilled) as caught:
        await p.push(pushes)
    error = caught.value
    assert len(error.queued) == 2 and error.refused == 2 and error.priority is Priority.LOW
    assert (
        error.message == "the low priority queue is full; 2 of 4 were queued (msg_ids); retry later"
    )
    assert [m.msg_id for m in await queue.fetch(Priority.LOW, 10)] == error.queued
    now_ms = NOW_NS // 1_000_000
    for user, kept in (("a", 1), ("b", 1), ("c", 0), ("d", 0)):
        assert len(await store.pending([user_recipient(user)], now_ms)) == kept, user


async def test_a_full_queue_before_anything_names_no_ids() -> None:
    queue = MemoryQueue(maxsize=1)
    p = pusher(queue)
    await p.push([request(priority=Priority.HIGH)])
    with pytest.raises(QueueFilled) as caught:
        await p.push([request(priority=Priority.HIGH)])
    assert caught.value.queued == [] and caught.value.priority is Priority.HIGH
    assert caught.value.message == "the high priority queue is full; retry later"


async def test_a_failing_store_queues_nothing(store: SqliteStore) -> None:
    queue = MemoryQueue()
    p = pusher(queue, store)
    await store.close()  # every later call raises StoreError
    with pytest.raises(StoreUnavailable) as caught:
        await p.push([request("a"), request("b", guaranteed=True, priority=Priority.HIGH)])
    assert caught.value.queued == [] and caught.value.refused == 2
    assert caught.value.priority is Priority.HIGH
    assert queue.depth(Priority.LOW) == queue.depth(Priority.HIGH) == 0


async def test_without_a_store_guaranteed_messages_are_queued() -> None:
    queue = MemoryQueue()
    [msg_id] = await pusher(queue).push([request(guaranteed=True)])
    [message] = await queue.fetch(Priority.LOW, 1)
    assert message.msg_id == msg_id and message.guaranteed
