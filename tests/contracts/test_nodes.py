"""The NodeDirectory contract for every backend, and NodeSweep where a backend offers it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from longlink.logic.base import NodeDirectory, NodeInfo, NodeSweep, Registry
from longlink.logic.redis import RedisRegistry
from longlink.model import Target
from longlink.node import Backends
from longlink.settings import Settings
from tests.conftest import WAIT, eventually
from tests.contracts.conftest import bus_url
from tests.contracts.registry_helpers import report, session


async def test_nodes_draining_and_forget(registry: Registry) -> None:
    await report(registry, "n1")
    await registry.add_session(session("c1", "n1", "u", "d", ["r"]))
    assert await registry.set_draining("n1", True)
    assert not await registry.set_draining("ghost", True)
    await report(registry, "n1")  # a report keeps the draining mark
    [info] = await registry.nodes()
    assert info.node == "n1" and info.draining and info.reported_ms > 0
    assert await registry.set_draining("n1", False)
    await report(registry, "n1")
    assert not (await registry.nodes())[0].draining
    await registry.forget_node("n1")
    await registry.forget_node("n1")  # idempotent
    assert await registry.nodes() == []
    assert (await registry.online()).total == 0
    assert await registry.user_sessions("u") == []


async def test_a_report_tells_whether_the_node_was_known(registry: NodeDirectory) -> None:
    info = NodeInfo(node="n1", region="r", ws=None, tcp=None)
    assert await registry.report_node(info) is False  # first report: unknown
    assert await registry.report_node(info) is True
    await registry.forget_node("n1")
    assert await registry.report_node(info) is False


async def test_backends_declare_a_sweep_where_a_node_can_vanish(
    backend: str, tmp_path: Path, request: Any
) -> None:
    bus = "memory" if backend == "memory" else bus_url(backend, request)
    backends = Backends.from_settings(Settings(bus=bus, data_dir=str(tmp_path)))
    try:
        # The embedded registry dies with its one process; a shared one outlives its nodes.
        assert (backends.sweep is None) == (backend == "memory")
        assert backends.sweep is None or backends.sweep is backends.registry
    finally:
        await backends.close()


# ---------------------------------------------------------------- NodeSweep (Redis offers it)


async def test_counts_heal_when_a_node_dies_and_the_sweep_reports_its_sessions(
    redis_client: Any,
) -> None:
    registry = RedisRegistry(redis_client, node_ttl_ms=300, live_cache_s=0.0)
    sweep: NodeSweep = registry
    await report(registry, "n1", "n2")
    await registry.add_session(session("c1", "n1", "u1", "d1", ["r"]))
    await registry.add_session(session("c2", "n2", "u2", "d2", ["r"]))
    assert (await registry.online()).rooms == {"r": 2}

    async def n1_gone() -> bool:  # only n2 keeps reporting; n1's keys expire
        await report(registry, "n2")
        return (await registry.online()).rooms == {"r": 1}

    await eventually(n1_gone, what="n1's counts to vanish")
    online = await registry.online()
    assert online.rooms == {"r": 1} and online.total == 1
    assert await registry.nodes_for(Target(users=["u1"])) == set()
    assert [s.conn_id for s in await sweep.sweep(stale_after_ms=0)] == ["c1"]
    assert await sweep.sweep(stale_after_ms=0) == []  # exactly once
    assert await registry.user_sessions("u1") == []


async def test_concurrent_sweeps_report_a_lost_session_once(redis_client: Any) -> None:
    sweepers = [RedisRegistry(redis_client, node_ttl_ms=100, live_cache_s=0.0) for _ in range(4)]
    await report(sweepers[0], "dead")
    await sweepers[0].add_session(session("c1", "dead", "u", "d", ["r"]))
    await eventually(
        lambda: _not_live(sweepers[0], "dead"), what="the dead node's alive key to expire"
    )
    results = await asyncio.wait_for(
        asyncio.gather(*(s.sweep(stale_after_ms=0) for s in sweepers)), WAIT
    )
    assert sorted(s.conn_id for lost in results for s in lost) == ["c1"]


async def _not_live(registry: RedisRegistry, node: str) -> bool:
    return node not in await registry.live_nodes(fresh=True)


async def test_redis_report_tells_when_state_was_lost(redis_client: Any) -> None:
    registry = RedisRegistry(redis_client)
    info = NodeInfo(node="n1", region="r", ws=None, tcp=None)
    assert await registry.report_node(info) is False
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
