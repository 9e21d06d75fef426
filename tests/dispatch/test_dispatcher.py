"""The dispatcher on the embedded queue and registry, with a channel that records sends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest

from longlink.bus.base import DeliveryHandler
from longlink.bus.memory import MemoryQueue
from longlink.dispatch import Dispatcher
from longlink.history.base import Kept
from longlink.logic.base import SessionInfo
from longlink.logic.memory import MemoryRegistry
from longlink.model import Envelope, Message, Priority, RoomBatch, Target
from longlink.settings import Settings
from tests.conftest import WAIT


class RecordingChannel:
    """A node channel that keeps what each node was sent and wakes waiters."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Envelope]] = []
        self.kept: list[Kept] = []  # the room history appends, in order
        self.changed = asyncio.Event()

    async def send(self, node_id: str, envelopes: Sequence[Envelope]) -> None:
        self.sent.extend((node_id, envelope) for envelope in envelopes)
        self.changed.set()

    async def send_many(
        self, batches: Mapping[str, Sequence[Envelope]], history: Sequence[Kept] = ()
    ) -> None:
        self.kept.extend(history)
        for node_id, envelopes in batches.items():
            await self.send(node_id, envelopes)
        if history:
            self.changed.set()

    async def attach(self, node_id: str, handler: DeliveryHandler) -> None:
        pass

    async def detach(self, node_id: str) -> None:
        pass

    def ids(self) -> list[list[int]]:
        """Msg ids per envelope sent, in order."""
        return [
            list(e.msg_ids) if isinstance(e, RoomBatch) else [e.msg_id]  # type: ignore[union-attr]
            for _, e in self.sent
        ]

    async def until(self, count: int) -> None:
        """Wait until ``count`` messages were sent."""
        async with asyncio.timeout(WAIT):
            while sum(len(i) for i in self.ids()) < count:
                self.changed.clear()
                await self.changed.wait()


class Harness:
    def __init__(self, queue: MemoryQueue, channel: RecordingChannel, dispatcher: Dispatcher):
        self.queue = queue
        self.channel = channel
        self.dispatcher = dispatcher
        self.next_id = 1

    async def publish(self, target: Target, **extra: Any) -> int:
        msg_id = self.next_id
        self.next_id += 1
        await self.queue.publish(
            Message(
                msg_id=msg_id,
                target=target,
                payload=b"m%d" % msg_id,
                accepted_ms=int(time.time() * 1000),
                **extra,
            )
        )
        return msg_id


async def make(**changes: Any) -> tuple[MemoryQueue, MemoryRegistry, RecordingChannel, Settings]:
    registry = MemoryRegistry()
    for conn, node, user, rooms in [("c1", "g1", "u1", ["r"]), ("c2", "g2", "u2", ["r", "s"])]:
        await registry.add_session(SessionInfo(conn, node, user, f"d-{user}", rooms))
    await registry.set_room_area("s", "area-s")
    return MemoryQueue(), registry, RecordingChannel(), Settings().replace(**changes)


@pytest.fixture
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    changes = getattr(request, "param", {})
    queue, registry, channel, settings = await make(**changes)
    async with Dispatcher(queue, registry, channel, settings=settings) as dispatcher:
        yield Harness(queue, channel, dispatcher)


ROOM = Target(rooms=["r"])


async def test_a_room_burst_becomes_one_cold_message_then_one_batch(harness: Harness) -> None:
    ids = [await harness.publish(ROOM) for _ in range(20)]
    await harness.channel.until(2 * len(ids))  # r is on two nodes
    per_node = {node: [e for n, e in harness.channel.sent if n == node] for node in ("g1", "g2")}
    for envelopes in per_node.values():
        assert [e.msg_ids for e in envelopes] == [ids[:1], ids[1:]]  # type: ignore[union-attr]
        assert all(isinstance(e, RoomBatch) for e in envelopes)
    metrics = harness.dispatcher.metrics
    assert metrics.batches._value.get() == 2
    assert metrics.dispatched.labels("low")._value.get() == len(ids)


async def test_other_targets_keep_their_place_behind_open_windows(harness: Harness) -> None:
    first = await harness.publish(ROOM)  # cold: out at once
    await harness.channel.until(2)
    pending = [await harness.publish(ROOM) for _ in range(3)]  # waiting for the window
    user = await harness.publish(Target(users=["u1"]))  # passes through, after them
    await harness.channel.until(2 + 2 * 3 + 1)
    g1 = [
        ids
        for (node, _), ids in zip(harness.channel.sent, harness.channel.ids(), strict=True)
        if node == "g1"
    ]
    assert g1 == [[first], pending, [user]]


async def test_an_area_of_one_room_is_aggregated_as_that_room(harness: Harness) -> None:
    ids = [await harness.publish(Target(areas=["area-s"])) for _ in range(5)]
    await harness.channel.until(len(ids))
    assert [node for node, _ in harness.channel.sent] == ["g2", "g2"]
    assert harness.channel.ids() == [ids[:1], ids[1:]]
    batch = harness.channel.sent[0][1]
    assert isinstance(batch, RoomBatch) and batch.room == "s"


async def test_high_priority_goes_out_at_once_on_two_paths(harness: Harness) -> None:
    msg_id = await harness.publish(Target(users=["u2"]), priority=Priority.HIGH)
    await harness.channel.until(2)
    assert harness.channel.sent == [(node, harness.channel.sent[0][1]) for node in ("g2", "g2")]
    message = harness.channel.sent[0][1]
    assert isinstance(message, Message) and message.msg_id == msg_id
    copies = harness.dispatcher.metrics.high_copies
    assert (copies.labels("a")._value.get(), copies.labels("b")._value.get()) == (1, 1)


@pytest.mark.parametrize("harness", [{"high_copies": 1}], indirect=True)
async def test_one_high_path_when_asked(harness: Harness) -> None:
    await harness.publish(Target(users=["u1"]), priority=Priority.HIGH)
    marker = await harness.publish(Target(users=["u1"]))
    await harness.channel.until(2)
    assert harness.channel.ids() == [[1], [marker]]


@pytest.mark.parametrize("harness", [{"aggregate_ms": 0}], indirect=True)
async def test_without_aggregation_every_message_goes_alone(harness: Harness) -> None:
    ids = [await harness.publish(ROOM) for _ in range(5)]
    await harness.channel.until(2 * len(ids))
    assert all(isinstance(e, Message) for _, e in harness.channel.sent)
    assert [
        i
        for (node, _), i in zip(harness.channel.sent, harness.channel.ids(), strict=True)
        if node == "g1"
    ] == [[i] for i in ids]


async def test_close_sends_what_the_windows_hold() -> None:
    queue, registry, channel, settings = await make(aggregate_ms=60_000)
    async with Dispatcher(queue, registry, channel, settings=settings):
        harness = Harness(queue, channel, None)  # type: ignore[arg-type]
        first = await harness.publish(ROOM)
        await channel.until(2)
        held = [await harness.publish(ROOM) for _ in range(3)]
        await asyncio.sleep(0.05)  # nothing more comes before the (minute-long) window ends
        assert channel.ids() == [[first], [first]]
    assert channel.ids()[2:] == [held, held]


async def test_a_low_backlog_does_not_hold_up_high_priority() -> None:
    queue, registry, channel, settings = await make()
    for i in range(20_000):
        await queue.publish(Message(msg_id=i + 1, target=ROOM, payload=b"x" * 100))
    async with Dispatcher(queue, registry, channel, settings=settings):
        await queue.publish(
            Message(msg_id=10**9, target=Target(users=["u1"]), payload=b"!", priority=Priority.HIGH)
        )
        async with asyncio.timeout(WAIT):
            while not any(isinstance(e, Message) and e.msg_id == 10**9 for _, e in channel.sent):
                channel.changed.clear()
                await channel.changed.wait()
        assert queue.depth(Priority.LOW) > 0  # most of the backlog is still queued


async def test_pace_holds_low_priority_fetches() -> None:
    queue, registry, channel, settings = await make()
    gate = asyncio.Event()
    waited = 0

    async def pace() -> None:
        nonlocal waited
        waited += 1
        await gate.wait()

    async with Dispatcher(queue, registry, channel, settings=settings, pace=pace):
        await queue.publish(Message(msg_id=1, target=ROOM, payload=b"x"))
        await queue.publish(
            Message(msg_id=2, target=Target(users=["u1"]), payload=b"!", priority=Priority.HIGH)
        )
        await channel.until(2)  # high priority is not paced
        assert queue.depth(Priority.LOW) == 1 and waited == 1
        gate.set()
        await channel.until(2 + 2)


async def test_an_area_push_keeps_the_instant_it_was_accepted(harness: Harness) -> None:
    # Gateways write a room push to the members of the moment it was accepted (accepted_us).
    msg_id = await harness.publish(
        Target(areas=["area-s"]), priority=Priority.HIGH, accepted_us=1_700_000_000_123_456
    )
    await harness.channel.until(2)
    message = harness.channel.sent[0][1]
    assert isinstance(message, Message) and message.msg_id == msg_id
    assert message.target == Target(rooms=["s"])
    assert message.accepted_us == 1_700_000_000_123_456


# ------------------------------------------------------------------ room history


async def until_kept(channel: RecordingChannel, count: int) -> None:
    async with asyncio.timeout(WAIT):
        while len(channel.kept) < count:
            channel.changed.clear()
            await channel.changed.wait()


async def test_room_messages_are_kept_in_the_order_the_nodes_get_them(harness: Harness) -> None:
    ids = [await harness.publish(ROOM) for _ in range(6)]
    await until_kept(harness.channel, len(ids))
    assert [(room, entry.msg_id) for room, entry in harness.channel.kept] == [("r", i) for i in ids]
    entry = harness.channel.kept[0][1]
    assert entry.payload == b"m%d" % ids[0] and entry.at_ms > 0 and not entry.json


async def test_a_room_nobody_listens_to_is_kept_all_the_same(harness: Harness) -> None:
    msg_id = await harness.publish(Target(rooms=["empty"]), data_json=True)
    await until_kept(harness.channel, 1)
    assert [(room, e.msg_id, e.json) for room, e in harness.channel.kept] == [
        ("empty", msg_id, True)
    ]
    assert harness.channel.sent == []


async def test_what_is_not_kept(harness: Harness) -> None:
    await harness.publish(Target(rooms=["r"]), history=False)
    await harness.publish(Target(areas=["area-s"]))
    await harness.publish(Target(users=["u1"]))
    await harness.publish(Target(all=True))
    last = await harness.publish(Target(rooms=["r", "s"]), priority=Priority.HIGH)
    await harness.channel.until(2 + 1 + 1 + 2 + 2 * 2)  # high: twice (two paths) per node
    await until_kept(harness.channel, 2)
    # Only the high room push, once per room (the second path's copy is not kept again).
    assert [(room, e.msg_id) for room, e in harness.channel.kept] == [("r", last), ("s", last)]


@pytest.mark.parametrize("harness", [{"aggregate_ms": 0}], indirect=True)
async def test_kept_without_aggregation_too(harness: Harness) -> None:
    ids = [await harness.publish(ROOM) for _ in range(3)]
    await until_kept(harness.channel, 3)
    assert [e.msg_id for _, e in harness.channel.kept] == ids


@pytest.mark.parametrize("harness", [{"history_size": 0}], indirect=True)
async def test_nothing_is_kept_with_history_off(harness: Harness) -> None:
    ids = [await harness.publish(ROOM) for _ in range(3)]
    await harness.channel.until(2 * len(ids))
    assert harness.channel.kept == []
