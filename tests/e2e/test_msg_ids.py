"""Message ids are unique across processes by construction (docs/message-ids.md).

Several ``longlink serve --role api`` processes with default settings (so
one node id, ``g1``, for all) share one Redis; each leases its own id node
number there, so however many pushes they accept at once, no two ids are
equal. Two processes configured with one ``id_node`` cannot both run.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from longlink.model import MAX_NODE, SEQ_BITS
from tests.conftest import API_KEY, WAIT
from tests.e2e.cluster import Cluster, push
from tests.redis_server import require_redis

pytestmark = pytest.mark.redis

PROCESSES = 4
REQUESTS = 20  # concurrent batch requests per process
BATCH = 200  # messages per request


def node_of(msg_id: int) -> int:
    return (msg_id >> SEQ_BITS) & MAX_NODE


async def test_api_processes_with_default_settings_never_mint_one_id_twice(
    tmp_path: Path,
) -> None:
    require_redis()
    async with Cluster(tmp_path) as cluster:
        apis = await asyncio.gather(
            *(cluster.start(f"api{i}", "api", own_node_id=False) for i in range(PROCESSES))
        )
        body = {"messages": [{"to": {"rooms": ["r"]}, "data": i} for i in range(BATCH)]}
        headers = {"Authorization": f"Bearer {API_KEY}"}
        limits = httpx.Limits(max_connections=PROCESSES * REQUESTS)
        async with httpx.AsyncClient(headers=headers, timeout=WAIT * 3, limits=limits) as http:

            async def batch(url: str) -> list[int]:
                response = await http.post(f"{url}/v1/push/batch", json=body)
                assert response.status_code == 202, response.text
                return [int(i) for i in response.json()["msg_ids"]]

            replies = await asyncio.gather(
                *(batch(api.http_url) for _ in range(REQUESTS) for api in apis)
            )
    ids = [msg_id for reply in replies for msg_id in reply]
    assert len(ids) == PROCESSES * REQUESTS * BATCH
    assert len(set(ids)) == len(ids), "a message id was minted twice"
    # One node number per process, none shared.
    per_process = [
        {node_of(i) for reply in replies[p::PROCESSES] for i in reply} for p in range(PROCESSES)
    ]
    assert all(len(nodes) == 1 for nodes in per_process)
    assert len(set.union(*per_process)) == PROCESSES


async def test_two_processes_configured_with_one_id_node_cannot_both_run(tmp_path: Path) -> None:
    require_redis()
    async with Cluster(tmp_path) as cluster:
        first = await cluster.start("first", "api", LONGLINK_ID_NODE="7")
        log = await cluster.refused("second", "api", LONGLINK_ID_NODE="7")
        assert "id_node 7 is held by another live process (first pid" in log
        assert node_of(await push(first.http_url, {"to": {"rooms": ["r"]}, "data": 1})) == 7
        # Stopped, the first gives its number back: now the second may have it.
        await cluster.kill("first", signal.SIGTERM)
        second = await cluster.start("second", "api", LONGLINK_ID_NODE="7")
        assert node_of(await push(second.http_url, {"to": {"rooms": ["r"]}, "data": 2})) == 7
