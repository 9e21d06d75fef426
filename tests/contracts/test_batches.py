"""The push path's batched I/O (issue #7), for every backend: the same results as one at a time.

The API publishes a push batch at once, dispatch resolves a whole step's
targets at once and writes each node once per step. On Redis each is one
command (or one pipelined round trip) instead of one per message; what a
caller sees must not change: same nodes, same order, the same refusals, and
nothing acked before the node streams hold it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import pytest

from longlink.api.app import build_app
from longlink.api.services import Services
from longlink.bus import keys
from longlink.bus.base import MessageQueue, NodeChannel
from longlink.bus.memory import MemoryNodeChannel, MemoryQueue
from longlink.bus.redis import RedisNodeChannel, RedisQueue, node_key, queue_key
from longlink.control.tokens import TokenIssuer
from longlink.dispatch import Dispatcher
from longlink.history.base import Kept
from longlink.logic.base import NodeInfo, Registry, SessionInfo
from longlink.logic.memory import MemoryRegistry
from longlink.logic.redis import RedisRegistry
from longlink.model import Envelope, Message, MsgIdGenerator, Priority, Target
from longlink.settings import Settings
from tests.conftest import WAIT

KEY = "batch-contract-key-with-every-scope"


class Backend:
    """One backend's queue, registry and node channel (Redis: on an empty database)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @property
    def redis(self) -> bool:
        return self.client is not None

    def queue(self, maxsize: int = 1_000, consumer: str = "w1") -> MessageQueue:
        if self.client is None:
            return MemoryQueue(maxsize)
        return RedisQueue(self.client, maxsize=maxsize, consumer=consumer, block_ms=100)

    def registry(self) -> Registry:
        return MemoryRegistry() if self.client is None else RedisRegistry(self.client)

    def channel(self) -> NodeChannel:
        return MemoryNodeChannel() if self.client is None else RedisNodeChannel(self.client)


@pytest.fixture
def setup(client: Any) -> Backend:
    return Backend(client)


async def report(registry: Registry, *nodes: str) -> None:
    for node in nodes:
        await registry.report_node(NodeInfo(node=node, region="r", ws=None, tcp=f"{node}:1"))


async def connect(registry: Registry, conn: str, node: str, user: str, *rooms: str) -> None:
    await registry.add_session(SessionInfo(conn, node, user, f"dev-{conn}", list(rooms)))


def message(msg_id: int, user: str, priority: Priority = Priority.LOW) -> Message:
    return Message(
        msg_id=msg_id,
        target=Target(users=[user]),
        payload=b"p%d" % msg_id,
        priority=priority,
        accepted_ms=int(time.time() * 1000),
    )


# ---------------------------------------------------------------- registry


async def test_nodes_for_many_is_nodes_for_of_each_target(setup: Backend) -> None:
    registry = setup.registry()
    await report(registry, "n1", "n2", "n3")
    await connect(registry, "c1", "n1", "alice", "r1")
    await connect(registry, "c2", "n2", "alice", "r2")
    await connect(registry, "c3", "n2", "bob")
    await connect(registry, "c4", "n3", "carol", "r2")
    await registry.set_room_area("r1", "area")
    targets = [
        Target(users=["alice"]),
        Target(users=["bob"]),
        Target(users=["alice"]),  # twice in one step
        Target(users=["nobody"]),
        Target(users=["bob", "carol"]),
        Target(devices=["dev-c3"]),
        Target(devices=["dev-c1", "dev-none"]),
        Target(rooms=["r1"]),
        Target(rooms=["r2", "r-empty"]),
        Target(areas=["area"]),
        Target(all=True),
    ]
    resolved = await registry.nodes_for_many(targets)
    assert resolved == [await registry.nodes_for(t) for t in targets]
    assert resolved == [
        {"n1", "n2"},
        {"n2"},
        {"n1", "n2"},
        set(),
        {"n2", "n3"},
        {"n2"},
        {"n1"},
        {"n1"},
        {"n2", "n3"},
        {"n1"},
        {"n1", "n2", "n3"},
    ]
    assert await registry.nodes_for_many([]) == []


async def test_nodes_for_many_follows_a_user_to_a_new_node_at_once(setup: Backend) -> None:
    """Nothing is cached between steps: a user who moved is routed to the new node."""
    registry = setup.registry()
    await report(registry, "n1", "n2", "n3")
    await connect(registry, "c1", "n1", "alice")
    assert await registry.nodes_for_many([Target(users=["alice"])]) == [{"n1"}]
    await registry.remove_session("c1")
    await connect(registry, "c2", "n2", "alice")
    assert await registry.nodes_for_many([Target(users=["alice"])]) == [{"n2"}]
    await connect(registry, "c3", "n3", "alice")
    assert await registry.nodes_for_many([Target(users=["alice"])]) == [{"n2", "n3"}]


async def test_redis_nodes_for_many_skips_dead_nodes(redis_client: Any) -> None:
    client = redis_client
    registry = RedisRegistry(client, live_cache_s=0.0)
    await report(registry, "n1", "n2")
    await connect(registry, "c1", "n1", "alice", "r")
    await connect(registry, "c2", "n2", "alice", "r")
    await client.delete(keys.node_alive("n2"))  # n2 stopped reporting: its TTL ran out
    targets = [Target(users=["alice"]), Target(rooms=["r"]), Target(all=True)]
    assert await registry.nodes_for_many(targets) == [{"n1"}, {"n1"}, {"n1"}]
    await client.delete(keys.node_alive("n1"))
    assert await registry.nodes_for_many(targets) == [set(), set(), set()]


# ---------------------------------------------------------------- node channel


async def test_send_per_node_keeps_each_nodes_order(setup: Backend) -> None:
    channel = setup.channel()
    received: dict[str, list[Envelope]] = {"n1": [], "n2": []}
    done = asyncio.Event()

    def handler(node: str) -> Any:
        def deliver(envelopes: Sequence[Envelope]) -> None:
            received[node].extend(envelopes)
            if len(received["n1"]) == 3 and len(received["n2"]) == 2:
                done.set()

        return deliver

    await channel.attach("n1", handler("n1"))
    await channel.attach("n2", handler("n2"))
    try:
        await channel.send_many(
            {
                "n1": [message(1, "a"), message(2, "a")],
                "n2": [message(3, "b")],
                "n3": [message(9, "c")],
            },
        )
        await channel.send_many({})
        await channel.send_many({"n2": [message(4, "b")], "n1": [message(5, "a")]})
        await asyncio.wait_for(done.wait(), WAIT)
    finally:
        await channel.detach("n1")
        await channel.detach("n2")
    assert [m.msg_id for m in received["n1"]] == [1, 2, 5]  # type: ignore[union-attr]
    assert [m.msg_id for m in received["n2"]] == [3, 4]  # type: ignore[union-attr]


# ---------------------------------------------------------------- queue (Redis)


async def test_redis_publish_many_is_one_command_per_priority(redis_client: Any) -> None:
    client = redis_client
    queue = RedisQueue(client, consumer="w1", block_ms=100)
    await queue.start()  # sets the shards' epochs (else the first append to each sets its own)
    batch = [message(i, "u", Priority.HIGH if i in (3, 6) else Priority.LOW) for i in range(1, 9)]
    await queue.publish_many(batch[:1])  # reads the queue lengths once (cached for 100 ms)
    before = await client.info("commandstats")
    assert await queue.publish_many(batch[1:]) == 7
    after = await client.info("commandstats")
    assert _calls(after, "evalsha") - _calls(before, "evalsha") == 2  # low, high
    assert _calls(after, "xadd") - _calls(before, "xadd") == 7  # inside the two calls
    low = await asyncio.wait_for(queue.fetch(Priority.LOW, 100), WAIT)
    high = await asyncio.wait_for(queue.fetch(Priority.HIGH, 100), WAIT)
    assert [m.msg_id for m in low] == [1, 2, 4, 5, 7, 8]
    assert [m.msg_id for m in high] == [3, 6]
    assert low[1] == batch[1]
    await queue.close()


async def test_redis_publish_many_stops_at_the_bound(redis_client: Any) -> None:
    client = redis_client
    queue = RedisQueue(client, maxsize=3, consumer="w1", block_ms=100)
    assert await queue.publish_many([message(i, "u") for i in range(1, 6)]) == 3
    assert await queue.publish_many([message(9, "u")]) == 0
    assert await queue.publish_many([message(10, "u", Priority.HIGH)]) == 1  # its own bound
    assert await client.xlen(queue_key(Priority.LOW)) == 3
    fetched = await asyncio.wait_for(queue.fetch(Priority.LOW, 10), WAIT)
    assert [m.msg_id for m in fetched] == [1, 2, 3]
    await queue.close()


def _calls(commandstats: dict[str, Any], command: str) -> int:
    """Calls of ``command`` that ran (an EVALSHA refused with NOSCRIPT is a failed call)."""
    stats = commandstats.get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))


# ---------------------------------------------------------------- API


async def test_a_batch_past_the_bound_is_refused_after_the_queued_ones(setup: Backend) -> None:
    """503 names the msg_ids queued before the bound; the queue holds exactly those."""
    queue = setup.queue(maxsize=3)
    settings = Settings(api_key=KEY, token_secret="token-secret-" + "k" * 32, demo=True)
    services = Services(
        settings=settings.replace(overload_depth=100),
        queue=queue,
        registry=setup.registry(),
        ids=MsgIdGenerator(1),
        tokens=TokenIssuer(settings.token_secret, settings.token_ttl_s),
    )
    push = {"to": {"users": ["u"]}, "data": "x", "priority": "high"}
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        response = await client.post(
            "/v1/push/batch",
            json={"messages": [push] * 5},
            headers={"Authorization": f"Bearer {KEY}"},
        )
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "overloaded"
    assert "3 of 5 were queued" in error["message"]
    held = await asyncio.wait_for(queue.fetch(Priority.HIGH, 10), WAIT)
    assert [str(m.msg_id) for m in held] == error["msg_ids"]
    await queue.close()


# ---------------------------------------------------------------- dispatcher


class Receiver:
    """Collects the msg ids each node gets and wakes a waiter at a count."""

    def __init__(self, *nodes: str) -> None:
        self.got: dict[str, list[int]] = {node: [] for node in nodes}
        self.changed = asyncio.Event()

    def handler(self, node: str) -> Any:
        def deliver(envelopes: Sequence[Envelope]) -> None:
            self.got[node].extend(e.msg_id for e in envelopes if isinstance(e, Message))
            self.changed.set()

        return deliver

    async def attach(self, channel: NodeChannel) -> None:
        for node in self.got:
            await channel.attach(node, self.handler(node))

    async def detach(self, channel: NodeChannel) -> None:
        for node in self.got:
            await channel.detach(node)

    async def until(self, total: int) -> None:
        async with asyncio.timeout(WAIT):
            while sum(map(len, self.got.values())) < total:
                self.changed.clear()
                await self.changed.wait()


async def publish(queue: MessageQueue, messages: list[Message]) -> None:
    """As the API does: the whole request at once where the queue can."""
    if isinstance(queue, RedisQueue):
        assert await queue.publish_many(messages) == len(messages)
    else:
        for m in messages:
            await queue.publish(m)


async def test_dispatch_routes_steps_of_user_pushes(setup: Backend) -> None:
    """Each node gets its users' pushes in order, a step in one entry per node; moves are seen."""
    registry = setup.registry()
    await report(registry, "n1", "n2")
    for i in range(10):
        await connect(registry, f"c{i}", "n1" if i % 2 else "n2", f"u{i}")
    queue, channel = setup.queue(), setup.channel()
    # On Redis the nodes read their streams through a channel of their own.
    nodes = setup.channel() if setup.redis else channel
    receiver = Receiver("n1", "n2")
    await receiver.attach(nodes)
    batch = [message(100 + i, f"u{i % 10}") for i in range(60)]
    try:
        async with Dispatcher(queue, registry, channel, settings=Settings().replace(high_copies=1)):
            for start in range(0, 60, 20):  # three requests of 20
                await publish(queue, batch[start : start + 20])
            await receiver.until(60)
            odd = [m.msg_id for m in batch if int(m.target.users[0][1:]) % 2]
            assert receiver.got["n1"] == odd
            assert receiver.got["n2"] == [m.msg_id for m in batch if m.msg_id not in odd]

            # u0 moves from n2 to n1 between steps: the next push follows.
            await registry.remove_session("c0")
            await connect(registry, "c0b", "n1", "u0")
            await publish(queue, [message(500, "u0")])
            await receiver.until(61)
            assert receiver.got["n1"][-1] == 500 and 500 not in receiver.got["n2"]
    finally:
        await receiver.detach(nodes)
    if setup.client is not None:
        entries = [await setup.client.xlen(node_key(n)) for n in ("n1", "n2")]
        assert sum(entries) <= 2 * 4  # at most one entry per node per fetched list


class GatedChannel:
    """A real node channel whose writes wait until the test opens the gate."""

    def __init__(self, channel: NodeChannel) -> None:
        self.channel = channel
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def send(self, node_id: str, envelopes: Sequence[Envelope]) -> None:
        await self.send_many({node_id: envelopes})

    async def send_many(
        self, batches: Mapping[str, Sequence[Envelope]], history: Sequence[Kept] = ()
    ) -> None:
        self.waiting.set()
        await self.gate.wait()
        await self.channel.send_many(batches, history)

    async def attach(self, node_id: str, handler: Any) -> None:
        await self.channel.attach(node_id, handler)

    async def detach(self, node_id: str) -> None:
        await self.channel.detach(node_id)


async def test_redis_dispatch_acks_a_step_only_after_the_node_write(redis_client: Any) -> None:
    """Until the node streams hold a step, its queue entries stay pending (claimable)."""
    client = redis_client
    registry = RedisRegistry(client)
    await report(registry, "n1", "n2")
    for i in range(4):
        await connect(registry, f"c{i}", "n1" if i % 2 else "n2", f"u{i}")
    queue = RedisQueue(client, consumer="w1", block_ms=100)
    channel = GatedChannel(RedisNodeChannel(client))
    nodes = RedisNodeChannel(client)
    receiver = Receiver("n1", "n2")
    await receiver.attach(nodes)
    try:
        async with Dispatcher(queue, registry, channel, settings=Settings().replace(high_copies=1)):
            await queue.publish_many([message(i, f"u{i % 4}") for i in range(1, 21)])
            await asyncio.wait_for(channel.waiting.wait(), WAIT)  # the step is being written
            pending = await client.xpending(queue_key(Priority.LOW), "dispatch")
            assert pending["pending"] == 20  # fetched, none acked
            channel.gate.set()
            await receiver.until(20)
            await queue.publish_many([message(99, "u1")])  # a step is acked before the next
            await receiver.until(21)
            pending = await client.xpending(queue_key(Priority.LOW), "dispatch")
            assert pending["pending"] <= 1  # the last step's, at most
    finally:
        channel.gate.set()
        await receiver.detach(nodes)
        await queue.close()  # its consumer watch too: left running, it outlived the client
