"""``LONGLINK_BUS=redis+sentinel://…``: a primary killed with SIGKILL, service after promotion.

A real set-up (tests/redis_server.py): a primary, one replica, one Sentinel
(quorum 1, ``down-after-milliseconds`` 1000). The node finds the primary
through the Sentinel; guaranteed pushes wait for the replica (``WAIT 1``)
before their 202, so every one accepted before the kill is on the replica
that Sentinel promotes, and is delivered after it. While the promoted
primary has no replica of its own, guaranteed pushes are refused (503):
that is the price of the promise (docs/deployment.md).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from longlink.client import Client
from longlink.node import Node
from tests.conftest import API_KEY, WAIT, eventually, node_settings
from tests.redis_server import RedisSentinelSet, redis_sentinel_set

FAILOVER_WAIT = 30.0  # detection (1 s) + election + promotion, on a busy 2-core machine


@pytest.fixture
def sentinel_set() -> Iterator[RedisSentinelSet]:
    with redis_sentinel_set() as servers:
        yield servers


async def test_service_resumes_after_the_primary_is_killed(
    tmp_path: Path, sentinel_set: RedisSentinelSet
) -> None:
    settings = node_settings(tmp_path, bus=sentinel_set.url, node_ttl_ms=3_000)
    async with (
        Node(settings) as node,
        httpx.AsyncClient(
            base_url=node.http_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=WAIT
        ) as api,
    ):
        guaranteed = {"to": {"users": ["ann"]}, "guaranteed": True, "ttl_s": 300}
        accepted: list[int] = []
        for n in range(20):  # ann is offline: they wait in the store (and on the replica)
            reply = await api.post("/v1/push", json={**guaranteed, "data": {"n": n}})
            assert reply.status_code == 202, reply.text
            accepted.append(int(reply.json()["msg_id"]))
        old = sentinel_set.primary.port
        assert sentinel_set.primary_port() == old
        sentinel_set.primary.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        killed = time.monotonic()

        await eventually(
            lambda: sentinel_set.primary_port() == sentinel_set.replica.port,
            within=FAILOVER_WAIT,
            what="the Sentinel to promote the replica",
            interval=0.1,
        )
        promoted = time.monotonic() - killed

        async def accepted_again() -> bool:
            reply = await api.post("/v1/push", json={"to": {"users": ["bob"]}, "data": "x"})
            return reply.status_code == 202

        await eventually(accepted_again, within=WAIT, what="a push accepted", interval=0.1)
        resumed = time.monotonic() - killed

        # Every guaranteed message accepted before the kill, after the failover, in order.
        async with Client(node.http_url, user="ann") as ann:
            got = [await ann.next_message(timeout=WAIT) for _ in accepted]
            assert [m.msg_id for m in got] == accepted
            assert [m.json()["n"] for m in got] == list(range(20))

            # Live pushes reach a connection made after the failover.
            async def live() -> bool:
                reply = await api.post("/v1/push", json={"to": {"users": ["ann"]}, "data": "live"})
                assert reply.status_code == 202, reply.text
                try:
                    message: Any = await ann.next_message(timeout=0.5)
                except TimeoutError:
                    return False
                return bool(message.json() == "live")

            await eventually(live, within=WAIT, what="a live push delivered", interval=0)

        # No replica is left to WAIT for: a guaranteed push is refused, not half-promised.
        reply = await api.post("/v1/push", json={**guaranteed, "data": "no replica"})
        assert reply.status_code == 503, reply.text
    print(f"\nsentinel failover: promoted after {promoted:.1f} s, pushes after {resumed:.1f} s")
