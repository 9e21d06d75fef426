"""A dispatch worker killed with SIGKILL while it holds messages: the other takes them at once.

``LONGLINK_CLAIM_IDLE_MS`` is set far beyond the test's time, so only the
liveness keys (``longlink.bus.consumers``) can move the dead worker's
entries: the messages arrive, and the dead consumer leaves the group. How
fast (the ≤ 2 s of issue 15) is measured by ``make bench`` (bench/failover.py),
not here.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from longlink.bus.redis import GROUP, connect, queue_key
from longlink.client import Client
from longlink.model import Priority
from tests.conftest import WAIT, eventually
from tests.e2e.cluster import Cluster, push
from tests.redis_server import require_redis

pytestmark = pytest.mark.redis
STREAM = queue_key(Priority.LOW)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    require_redis()
    async with Cluster(tmp_path) as running:
        await running.start("api", "api,control")
        await running.start("g1", "gateway")
        for name in ("d1", "d2"):
            await running.start(name, "dispatch", LONGLINK_CLAIM_IDLE_MS="600000")
        yield running


async def test_kill_9_dispatch_worker_holding_messages_they_flow_again(cluster: Cluster) -> None:
    url = cluster.processes["api"].http_url
    proc = cluster.processes["d1"].proc
    assert proc is not None
    d1 = f"d1-{proc.pid}"  # the consumer name: node id and pid (node.py)
    redis = connect(cluster.redis.url)
    sent: list[int] = []
    try:
        async with Client(url, user="alice") as alice:

            async def d1_holds_some() -> bool:
                held = await redis.xpending_range(STREAM, GROUP, "-", "+", 10, consumername=d1)
                return bool(held)

            # d1 is stopped with a blocking read outstanding: Redis hands it entries it will
            # never ack. Push until it holds some (d2 takes the others); a stopped worker's
            # read lasts one block (0.5 s), so if it got none, let it read again and retry.
            # (Every push is awaited to its 202 and recorded: none may go unaccounted.)
            for _ in range(10):
                os.kill(proc.pid, signal.SIGSTOP)
                for _ in range(20):
                    sent.append(await push(url, {"to": {"users": ["alice"]}, "data": len(sent)}))
                    if await d1_holds_some():
                        break
                else:
                    os.kill(proc.pid, signal.SIGCONT)
                    continue
                break
            else:
                raise AssertionError("d1 never held a message")
            await cluster.kill("d1")  # SIGKILL
            for i in range(20):
                sent.append(await push(url, {"to": {"users": ["alice"]}, "data": f"after {i}"}))
            got = [await alice.next_message(timeout=WAIT * 2) for _ in sent]
            assert sorted(m.msg_id for m in got) == sorted(sent)

        async def d1_gone() -> bool:
            names = {c["name"].decode() for c in await redis.xinfo_consumers(STREAM, GROUP)}
            return d1 not in names

        await eventually(d1_gone, what="the dead worker to leave the consumer group")
    finally:
        await redis.aclose()
