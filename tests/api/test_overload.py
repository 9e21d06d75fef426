"""Overload protection: past the mark low priority gets 503, high priority still passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from longlink.api.app import reload_app
from longlink.bus.memory import MemoryQueue
from longlink.model import Priority
from longlink.node import Node
from longlink.settings import ApiKeyConfig
from tests.conftest import API_KEY, WAIT, node_settings

from .conftest import Harness, error_of, make_settings, open_harness

LOW: dict[str, Any] = {"to": {"users": ["u1"]}, "data": 1}
HIGH: dict[str, Any] = {**LOW, "priority": "high"}


async def fill(h: Harness, count: int, body: dict[str, Any] = LOW) -> None:
    for _ in range(count):
        assert (await h.push(body)).status_code == 202


def metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {line_start} in metrics")


async def test_low_priority_is_shed_past_the_mark_high_passes_until_full() -> None:
    async with open_harness(make_settings(overload_depth=3), queue=MemoryQueue(maxsize=5)) as h:
        await fill(h, 3)
        response = await h.push(LOW)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        error = error_of(response)
        assert error["code"] == "overloaded"
        assert error["message"].startswith("priority: low priority pushes are refused")
        assert "overload mark 3" in error["message"]
        await fill(h, 5, HIGH)  # its own queue, up to queue_size
        response = await h.push(HIGH)
        assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
        assert "high priority queue is full" in error_of(response)["message"]
        assert (h.queue.depth(Priority.LOW), h.queue.depth(Priority.HIGH)) == (3, 5)

        await h.queue.fetch(Priority.LOW, 10)
        await h.queue.fetch(Priority.HIGH, 10)
        assert (await h.push(LOW)).status_code == 202  # drained: accepted again


async def test_a_backed_up_high_queue_sheds_low_too() -> None:
    async with open_harness(make_settings(overload_depth=2)) as h:
        await fill(h, 2, HIGH)
        assert (await h.push(LOW)).status_code == 503
        assert (await h.push(HIGH)).status_code == 202


async def test_batch_is_refused_whole_when_it_holds_a_low_push() -> None:
    async with open_harness(make_settings(overload_depth=1)) as h:
        await fill(h, 1)
        response = await h.batch([HIGH, HIGH, LOW])
        assert response.status_code == 503
        assert error_of(response)["message"].startswith("messages[2].priority: low priority")
        assert h.queue.depth(Priority.HIGH) == 0  # all or nothing
        assert (await h.batch([HIGH, HIGH])).status_code == 202


async def test_shedding_does_not_spend_the_rate() -> None:
    key = ApiKeyConfig(name="k", key="k-secret", rate=1, burst=1)
    now = [0.0]
    settings = make_settings(overload_depth=1, api_keys=(key,))
    async with open_harness(settings, clock=lambda: now[0]) as h:
        await fill(h, 1)
        assert (await h.push(LOW, key="k-secret")).status_code == 503
        await h.queue.fetch(Priority.LOW, 10)
        assert (await h.push(LOW, key="k-secret")).status_code == 202


async def test_overload_metrics() -> None:
    async with open_harness(make_settings(overload_depth=2), queue=MemoryQueue(maxsize=3)) as h:
        await fill(h, 2)
        await fill(h, 3, HIGH)
        await h.push(LOW)
        await h.batch([LOW, LOW])
        await h.push(HIGH)
        text = (await h.client.get("/metrics")).text
        assert metric(text, 'longlink_queue_depth{priority="low"}') == 2
        assert metric(text, 'longlink_queue_depth{priority="high"}') == 3
        assert metric(text, "longlink_queue_overload_mark") == 2
        assert metric(text, "longlink_overloaded") == 1
        name = "longlink_push_overloaded_total"
        assert metric(text, f'{name}{{key="default",priority="low"}}') == 3
        assert metric(text, f'{name}{{key="default",priority="high"}}') == 1
        refused = 'longlink_push_refused_total{code="overloaded",key="default",status="503"}'
        assert metric(text, refused) == 3
        await h.queue.fetch(Priority.LOW, 10)
        await h.queue.fetch(Priority.HIGH, 10)
        assert metric((await h.client.get("/metrics")).text, "longlink_overloaded") == 0


async def test_the_mark_is_reloadable() -> None:
    async with open_harness(make_settings(overload_depth=1)) as h:
        await fill(h, 1)
        assert (await h.push(LOW)).status_code == 503
        reload_app(h.app, h.services.settings.replace(overload_depth=10))
        await fill(h, 9)
        assert (await h.push(LOW)).status_code == 503


async def test_a_node_without_dispatch_fills_up_and_sheds_low(tmp_path: Path) -> None:
    """A real node whose queue nobody consumes: the default mark is 80% of queue_size."""
    settings = node_settings(tmp_path, roles=("api", "control"), queue_size=10)
    async with (
        Node(settings) as node,
        httpx.AsyncClient(
            base_url=node.http_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=WAIT
        ) as api,
    ):
        for _ in range(8):
            assert (await api.post("/v1/push", json=LOW)).status_code == 202
        response = await api.post("/v1/push", json=LOW)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert response.json()["error"]["code"] == "overloaded"
        for _ in range(10):
            assert (await api.post("/v1/push", json=HIGH)).status_code == 202
        response = await api.post("/v1/push", json=HIGH)
        assert response.status_code == 503
        text = (await api.get("/metrics")).text
        assert metric(text, "longlink_queue_overload_mark") == 8
        assert metric(text, 'longlink_queue_depth{priority="high"}') == 10
