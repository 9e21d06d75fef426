"""The SessionRegistry contract, for every backend."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from longlink.bus.redis import connect as redis_connect
from longlink.logic.base import NodeInfo, SessionInfo, SessionRegistry
from longlink.logic.memory import MemoryRegistry
from longlink.logic.redis import RedisRegistry
from longlink.model import Target
from tests.conftest import WAIT


@pytest.fixture
async def registry(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[SessionRegistry]:
    if backend == "memory":
        yield MemoryRegistry()
        return
    client = redis_connect(request.getfixturevalue("redis_server_url"))
    await client.flushdb()
    yield RedisRegistry(client, live_cache_s=0.0)
    await client.aclose()


async def report(registry: SessionRegistry, *nodes: str) -> None:
    for node in nodes:
        await registry.report_node(
            NodeInfo(node=node, region="r", ws=f"ws://{node}/ws", tcp=f"{node}:1")
        )


def session(conn: str, node: str, user: str, device: str, rooms: list[str]) -> SessionInfo:
    return SessionInfo(conn_id=conn, node=node, user=user, device=device, rooms=list(rooms))


async def test_sessions_rooms_and_counts(registry: SessionRegistry) -> None:
    await report(registry, "n1", "n2")
    await registry.add_session(session("c1", "n1", "alice", "a1", ["r1", "r2"]))
    await registry.add_session(session("c2", "n2", "alice", "a2", ["r1"]))
    await registry.add_session(session("c3", "n2", "bob", "b1", []))
    assert await registry.room_online(["r1", "r2", "r3"]) == {"r1": 2, "r2": 1, "r3": 0}
    assert await registry.join("c3", "r2") == 2
    assert await registry.join("c3", "r2") == 2  # idempotent
    assert await registry.leave("c1", "r2") == 1
    online = await registry.online()
    assert online.total == 3 and online.rooms == {"r1": 2, "r2": 1}
    sessions = await registry.user_sessions("alice")
    assert [(s.conn_id, s.node, s.device) for s in sessions] == [
        ("c1", "n1", "a1"),
        ("c2", "n2", "a2"),
    ]
    removed = await registry.remove_session("c2")
    assert removed is not None and removed.user == "alice"
    assert await registry.remove_session("c2") is None
    assert await registry.room_online(["r1"]) == {"r1": 1}


async def test_nodes_for_each_target_kind(registry: SessionRegistry) -> None:
    await report(registry, "n1", "n2", "n3")
    await registry.add_session(session("c1", "n1", "alice", "a1", ["r1"]))
    await registry.add_session(session("c2", "n2", "bob", "b1", ["r2"]))
    await registry.set_room_area("r2", "area")
    assert await registry.nodes_for(Target(users=["alice"])) == {"n1"}
    assert await registry.nodes_for(Target(devices=["b1"])) == {"n2"}
    assert await registry.nodes_for(Target(rooms=["r1", "r2"])) == {"n1", "n2"}
    assert await registry.nodes_for(Target(areas=["area"])) == {"n2"}
    assert await registry.nodes_for(Target(all=True)) == {"n1", "n2"}
    assert await registry.nodes_for(Target(users=["nobody"])) == set()


async def test_areas(registry: SessionRegistry) -> None:
    await report(registry, "n1")
    await registry.add_session(session("c1", "n1", "u", "d", ["r1", "r2"]))
    await registry.set_room_area("r1", "a")
    await registry.set_room_area("r2", "a")
    assert await registry.room_area("r1") == "a"
    assert sorted(await registry.rooms_in_areas(["a"])) == ["r1", "r2"]
    assert (await registry.online()).areas == {"a": 2}
    await registry.set_room_area("r2", None)
    assert await registry.rooms_in_areas(["a"]) == ["r1"]
    assert (await registry.online()).areas == {"a": 1}


async def test_nodes_draining_and_forget(registry: SessionRegistry) -> None:
    await report(registry, "n1")
    await registry.add_session(session("c1", "n1", "u", "d", ["r"]))
    assert await registry.set_draining("n1", True)
    assert not await registry.set_draining("ghost", True)
    await report(registry, "n1")  # a report keeps the draining mark
    [info] = await registry.nodes()
    assert info.node == "n1" and info.draining
    await registry.forget_node("n1")
    assert await registry.nodes() == []
    assert (await registry.online()).total == 0
    assert await registry.user_sessions("u") == []


async def test_counts_match_a_model_through_random_operations(registry: SessionRegistry) -> None:
    """1,000 random adds, joins, leaves and removals: counts equal a plain model's."""
    rng = random.Random(1234)
    await report(registry, "n1", "n2")
    model: dict[str, tuple[str, set[str]]] = {}
    rooms = [f"r{i}" for i in range(6)]
    next_id = 0
    for _ in range(1000):
        op = rng.random()
        if op < 0.25 or not model:
            next_id += 1
            conn, node = f"c{next_id}", rng.choice(["n1", "n2"])
            start = set(rng.sample(rooms, rng.randint(0, 3)))
            await registry.add_session(session(conn, node, f"u{next_id % 7}", conn, sorted(start)))
            model[conn] = (node, start)
        elif op < 0.55:
            conn = rng.choice(sorted(model))
            room = rng.choice(rooms)
            await registry.join(conn, room)
            model[conn][1].add(room)
        elif op < 0.85:
            conn = rng.choice(sorted(model))
            room = rng.choice(rooms)
            await registry.leave(conn, room)
            model[conn][1].discard(room)
        else:
            conn = rng.choice(sorted(model))
            await registry.remove_session(conn)
            del model[conn]
    expected = Counter(room for _, joined in model.values() for room in joined)
    online = await registry.online()
    assert online.total == len(model)
    assert online.rooms == dict(expected)
    assert await registry.room_online(rooms) == {r: expected.get(r, 0) for r in rooms}


async def test_redis_counts_heal_when_a_node_dies(redis_client: Any) -> None:
    registry = RedisRegistry(redis_client, node_ttl_ms=300, live_cache_s=0.0)
    await report(registry, "n1", "n2")
    await registry.add_session(session("c1", "n1", "u1", "d1", ["r"]))
    await registry.add_session(session("c2", "n2", "u2", "d2", ["r"]))
    assert (await registry.online()).rooms == {"r": 2}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # only n2 keeps reporting; n1's keys expire
        await report(registry, "n2")
        if (await registry.online()).rooms == {"r": 1}:
            break
    online = await registry.online()
    assert online.rooms == {"r": 1} and online.total == 1
    assert await registry.nodes_for(Target(users=["u1"])) == set()
    assert [s.conn_id for s in await registry.sweep(stale_after_ms=0)] == ["c1"]
    assert await registry.user_sessions("u1") == []


async def test_redis_report_tells_when_state_was_lost(redis_client: Any) -> None:
    registry = RedisRegistry(redis_client)
    info = NodeInfo(node="n1", region="r", ws=None, tcp=None)
    assert await registry.report_node(info) is False  # first report: unknown
    assert await registry.report_node(info) is True
    await redis_client.flushdb()  # Redis restarted empty
    assert await registry.report_node(info) is False


async def test_redis_a_node_that_comes_during_a_live_read_is_not_cached_away(
    redis_client: Any,
) -> None:
    registry = RedisRegistry(redis_client, live_cache_s=60.0)
    await report(registry, "n1")
    reading, go_on = asyncio.Event(), asyncio.Event()
    hkeys = redis_client.hkeys

    async def slow_hkeys(*args: Any) -> Any:
        names = await hkeys(*args)  # the node list as it was: n1 only
        reading.set()
        await go_on.wait()
        return names

    redis_client.hkeys = slow_hkeys
    read = asyncio.create_task(registry.live_nodes(fresh=True))
    await asyncio.wait_for(reading.wait(), WAIT)
    await report(registry, "n2")  # a new node, reported while the read is in flight
    go_on.set()
    assert await asyncio.wait_for(read, WAIT) == ["n1"]  # it read before n2 came
    redis_client.hkeys = hkeys
    assert await registry.live_nodes() == ["n1", "n2"]  # the stale list was not cached
