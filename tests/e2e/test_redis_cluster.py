"""``LONGLINK_BUS=redis+cluster://…`` on the session's real 3-primary Redis Cluster.

* The keys spread: after some traffic every primary holds keys, and queue
  shards, registry and store keys of several families (tests/bus/test_keys.py
  has the slot rules themselves).
* A primary restarted (SIGKILL, then started again on its data) while
  guaranteed pushes flow: every push answered 202 reaches the user, live or
  from the offline store at the next connect. Pushes refused meanwhile (503)
  are sent again, as a business backend does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from longlink.bus import keys
from longlink.client import Client
from longlink.node import Node
from tests.conftest import API_KEY, WAIT, eventually, fresh_bus, node_settings
from tests.redis_server import RedisClusterServers


@pytest.fixture
def cluster(redis_cluster: RedisClusterServers | None) -> RedisClusterServers:
    if redis_cluster is None:
        pytest.fail("these tests restart primaries: they need the cluster the tests start")
    return redis_cluster


@pytest.fixture
async def cnode(tmp_path: Path, cluster: RedisClusterServers) -> AsyncIterator[Node]:
    await fresh_bus(cluster.url)
    async with Node(node_settings(tmp_path, bus=cluster.url, node_ttl_ms=3_000)) as node:
        yield node


@pytest.fixture
async def api(cnode: Node) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=cnode.http_url, headers=headers, timeout=WAIT) as c:
        yield c


async def test_keys_are_found_on_every_primary(
    cnode: Node, api: httpx.AsyncClient, cluster: RedisClusterServers
) -> None:
    users = [f"user-{i}" for i in range(40)]  # a primary misses a family: p < 1e-6
    async with Client(cnode.http_url, user="ada", rooms=["lobby"]) as ada:
        for user in users:  # offline: kept in the store under each user's tag
            body = {"to": {"users": [user]}, "data": "x", "guaranteed": True}
            assert (await api.post("/v1/push", json=body)).status_code == 202
        body = {"to": {"rooms": ["lobby", *(f"room-{i}" for i in range(12))]}, "data": "r"}
        assert (await api.post("/v1/push", json=body)).status_code == 202
        assert (await ada.next_message(timeout=WAIT)).json() == "r"  # through g1's stream
        per_primary: list[set[str]] = []
        for server in cluster.servers:
            client = aioredis.Redis(port=server.port)
            try:
                found = {k.decode() async for k in client.scan_iter(match="*", count=1000)}
            finally:
                await client.aclose()
            per_primary.append(found)
    for found in per_primary:
        families = {key.split(":")[1] if key.startswith("ll:") else "{ll}" for key in found}
        assert {"q", "inbox", "gm"} <= families, families  # 8 queue shards: 3 + 3 + 2
    everywhere = set().union(*per_primary)
    assert keys.user_conns("ada") in everywhere
    assert keys.node_stream(cnode.settings.node_id) in everywhere
    assert sum(len(found) for found in per_primary) == len(everywhere)  # each key once


async def test_a_primary_restarted_under_traffic_loses_no_guaranteed_message(
    cnode: Node, api: httpx.AsyncClient, cluster: RedisClusterServers
) -> None:
    user = "zed"
    victim = cluster.owner(keys.inbox("u:" + user))  # the primary of zed's offline messages
    accepted: list[int] = []
    refused = 0
    received: set[int] = set()

    async def push_once(n: int) -> bool:
        nonlocal refused
        body = {"to": {"users": [user]}, "data": {"n": n}, "guaranteed": True, "ttl_s": 300}
        reply = await api.post("/v1/push", json=body)
        if reply.status_code == 202:
            accepted.append(int(reply.json()["msg_id"]))
            return True
        assert reply.status_code == 503, reply.text
        refused += 1
        return False

    async def push(n: int) -> None:
        # As a business backend does: a 503 is sent again after a pause (not an event wait).
        while not await push_once(n):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async with Client(cnode.http_url, user=user) as zed:

        async def receive() -> None:
            while True:
                received.add((await zed.next_message()).msg_id)

        reader = asyncio.create_task(receive())
        stop = asyncio.Event()

        async def traffic() -> None:  # one push after another, all along
            n = 0
            while not stop.is_set():
                await push(n)
                n += 1

        pusher = asyncio.create_task(traffic())
        try:
            await eventually(lambda: len(accepted) >= 40, what="40 pushes accepted")
            victim.stop(kill=True)
            started = time.monotonic()
            await eventually(lambda: refused > 0, what="a push refused (zed's store is down)")
            await asyncio.to_thread(victim.start)
            await asyncio.to_thread(cluster.wait_ok)
            down_s = time.monotonic() - started
            after = len(accepted)
            await eventually(lambda: len(accepted) >= after + 40, what="40 more pushes")
            stop.set()
            await asyncio.wait_for(pusher, WAIT)
            await eventually(
                lambda: set(accepted[-10:]) <= received, what="the last pushes delivered live"
            )
        finally:
            pusher.cancel()
            reader.cancel()
    # What did not reach zed live (in flight on the primary that went away) is in the
    # store: a new connection gets it.
    missing = set(accepted) - received
    if missing:
        async with Client(cnode.http_url, user=user) as again:
            async with asyncio.timeout(WAIT):
                while missing - received:
                    received.add((await again.next_message()).msg_id)
    assert set(accepted) <= received
    assert refused > 0
    print(
        f"\ncluster primary restart: down {down_s:.1f} s, {refused} pushes refused and sent again"
    )


async def test_trace_queries_reach_every_process(cnode: Node, api: Any) -> None:
    """Sharded pub/sub: SPUBLISH counts every subscriber wherever it connected."""
    body = {"to": {"users": ["nobody"]}, "data": "t"}
    msg_id = (await api.post("/v1/push", json=body)).json()["msg_id"]
    reply = await api.get(f"/v1/messages/{msg_id}")
    assert reply.status_code == 200
    assert [e["event"] for e in reply.json()["events"]][:2] == ["accepted", "queued"]
