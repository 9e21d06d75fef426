"""The Redis node channel across a Redis restart (issue 14, failure 5): nothing sent after
Redis is back is skipped, with AOF or without persistence.

The loss the issue saw (pushes accepted right after a restart never reaching
connected clients) was the node channel's reader starting again from the
stream's tail after an error: what was sent between Redis coming back and
that read was skipped. Here entries are sent the moment Redis is back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from longlink.bus.redis import RedisNodeChannel
from longlink.bus.redis import connect as redis_connect
from tests.conftest import WAIT
from tests.contracts.test_bus import Collector, message
from tests.redis_server import RedisServer, require_redis

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("appendonly", [True, False], ids=["aof", "empty"])
async def test_entries_sent_right_after_a_restart_arrive(tmp_path: Path, appendonly: bool) -> None:
    require_redis()
    server = RedisServer(str(tmp_path), appendonly=appendonly)
    server.start()
    client = redis_connect(server.url)
    try:
        channel = RedisNodeChannel(client, block_ms=100)
        collector = Collector(6)
        await channel.attach("n1", collector)
        await channel.send("n1", [message(1)])
        for _ in range(500):  # (what Redis held unread is gone with an empty restart)
            if collector.received:
                break
            await asyncio.sleep(0.01)
        for n in (2, 4):
            server.stop(kill=True)
            # The reader notices (its blocking read fails) before Redis is back.
            await asyncio.sleep(0.3)
            server.start()
            for attempt in range(100):  # the first commands may meet the dead connections
                try:
                    await channel.send("n1", [message(n), message(n + 1)])
                    break
                except Exception:
                    await asyncio.sleep(0.01 * attempt)
            # Read before the next kill: without persistence an unread entry dies with Redis.
            for _ in range(500):
                if len(collector.received) >= n + 1:
                    break
                await asyncio.sleep(0.01)
        await channel.send("n1", [message(6)])
        try:
            await asyncio.wait_for(collector.done.wait(), WAIT)
        except TimeoutError:
            raise AssertionError(f"got {[m.msg_id for m in collector.received]}") from None  # type: ignore[union-attr]
        assert [m.msg_id for m in collector.received] == [1, 2, 3, 4, 5, 6]  # type: ignore[union-attr]
        await channel.detach("n1")
    finally:
        await client.aclose()
        server.stop()
