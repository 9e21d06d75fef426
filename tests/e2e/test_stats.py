"""``GET /v1/stats``: the process's counters as the admin dashboard reads them."""

from __future__ import annotations

import httpx

from longlink.client import Client
from longlink.node import Node
from tests.conftest import WAIT, eventually


async def test_stats_follow_a_room_push(node: Node, api: httpx.AsyncClient) -> None:
    before = (await api.get("/v1/stats")).json()
    assert before["node"] == node.settings.node_id
    assert set(before["roles"]) == {"gateway", "api", "control", "dispatch"}
    async with Client(node.http_url, user="sue", rooms=["hall"]) as sue:
        for n in range(3):
            response = await api.post("/v1/push", json={"to": {"rooms": ["hall"]}, "data": n})
            assert response.status_code == 202
        assert [(await sue.next_message(timeout=WAIT)).json() for _ in range(3)] == [0, 1, 2]

        async def counted() -> bool:
            stats = (await api.get("/v1/stats")).json()
            return bool(stats["deliveries"] - before["deliveries"] >= 3)

        await eventually(counted, what="the deliveries counted")
        after = (await api.get("/v1/stats")).json()
        assert after["accepted"] - before["accepted"] == 3
        assert after["messages_in"] - before["messages_in"] == 3
        assert after["connections"] == 1
        assert after["room_batches"] > before["room_batches"]
        assert after["batched_messages"] - before["batched_messages"] == 3
        assert after["frames_written"] > before["frames_written"]
        assert after["batch_bytes"]["none"] > before["batch_bytes"]["none"]
        assert set(after["queue_depth"]) == {"low", "high"}
        assert after["at_ms"] >= before["at_ms"]
        # sue's REPORT (PROTOCOL §1.6 rule 1), sent right after connecting.
        assert after["quality_reports"]["accepted"] - before["quality_reports"]["accepted"] == 1
        assert after["quality_reports"]["dropped"] == 0
        assert after["kernel_samples"] >= 0


async def test_stats_need_a_key(node: Node) -> None:
    async with httpx.AsyncClient(base_url=node.http_url, timeout=WAIT) as anonymous:
        response = await anonymous.get("/v1/stats")
    assert response.status_code == 401
