"""Connection quality end to end (PROTOCOL.md §1.6): REPORTs, TCP_INFO samples, ranking.

On both backends: SDK clients report after connecting; the gateway samples
the kernel's view of its real sockets; ``GET /v1/quality`` shows both, per
node and transport, through the registry. With two nodes, a node whose
clients report bad round trips is ranked after a healthy one within the
next node report (well within the minute the issue asks for).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from longlink.client import Client
from longlink.node import Backends, Node
from longlink.protocol import Op
from tests.conftest import API_KEY, WAIT, eventually, fresh_bus, node_settings
from tests.e2e.raw_sessions import open_session


async def quality_rows(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await api.get("/v1/quality")
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["rows"]
    return rows


@pytest.mark.parametrize("transport", ["ws", "tcp"])
async def test_reports_and_kernel_samples_reach_the_quality_endpoint(
    node: Node, api: httpx.AsyncClient, transport: str
) -> None:
    clients = [
        Client(node.http_url, user=f"q{i}", transport=transport)  # type: ignore[arg-type]
        for i in range(3)
    ]
    try:
        for client in clients:
            await client.connect()  # each sends a REPORT right after AUTH_OK
        assert node.gateway is not None
        quality = node.gateway.quality

        def reported() -> bool:
            value = node.metrics.get_sample_value(
                "longlink_quality_reports_total", {"outcome": "accepted"}
            )
            return value is not None and value >= 3

        await eventually(reported, what="three REPORTs counted")
        assert quality.sample(time.monotonic(), 100) == 3  # TCP_INFO of the real sockets

        async def row_ready() -> bool:
            rows = [r for r in await quality_rows(api) if r["transport"] == transport]
            return bool(rows) and rows[0]["kernel_samples"] >= 3 and rows[0]["connections"] == 3

        await eventually(row_ready, what="the quality row in the next node report")
        [row] = [r for r in await quality_rows(api) if r["transport"] == transport]
        assert row["node"] == node.settings.node_id and row["region"] == "local"
        assert row["connect_ms"]["p50"] is not None  # the clients' connect times
        # The distributions behind the quantiles (the dashboard draws them).
        bounds = (await api.get("/v1/quality")).json()
        assert len(row["connect_counts"]) == len(bounds["connect_bounds_ms"]) + 1
        assert len(row["rtt_counts"]) == len(bounds["rtt_bounds_ms"]) + 1
        assert sum(row["connect_counts"]) == 3
        assert row["kernel_rtt_ms"]["p50"] is not None
        samples = node.metrics.get_sample_value("longlink_quality_kernel_samples_total")
        assert samples is not None and samples >= 3
    finally:
        for client in clients:
            await client.close()


async def test_malformed_reports_are_counted_and_the_connection_goes_on(node: Node) -> None:
    raw, _ = await open_session(node, "noisy")
    try:
        await raw.send_frame(Op.REPORT, b"{not json")
        await raw.send_frame(Op.REPORT, msgspec.json.encode({"transport": "x" * 500}))

        def dropped() -> bool:
            value = node.metrics.get_sample_value(
                "longlink_quality_reports_total", {"outcome": "dropped"}
            )
            return value == 2

        await eventually(dropped, what="two dropped REPORTs")
        await raw.send_frame(Op.HEARTBEAT, seq=9)
        reply = await raw.recv_frame(timeout=WAIT)
        assert reply.op == Op.HEARTBEAT_OK and reply.seq == 9
    finally:
        await raw.close()


@pytest.fixture
async def pair_of_nodes(tmp_path: Any, bus: str) -> AsyncIterator[tuple[Node, Node]]:
    await fresh_bus(bus)
    base = node_settings(tmp_path, bus=bus)
    backends = Backends.from_settings(base)
    a = Node(base.replace(node_id="qa"), backends)
    b = Node(base.replace(node_id="qb", roles=("gateway",)), backends)
    try:
        async with a, b:
            yield a, b
    finally:
        await backends.close()


async def test_a_node_whose_clients_report_bad_rtt_is_ranked_after_a_healthy_one(
    pair_of_nodes: tuple[Node, Node],
) -> None:
    a, b = pair_of_nodes
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=a.http_url, headers=headers, timeout=WAIT) as api:

        async def order() -> list[str]:
            response = await api.post("/v1/connect", json={"user": "probe"})
            assert response.status_code == 200, response.text
            return [e["node"] for e in response.json()["endpoints"]]

        # a holds more connections, so b (empty) ranks first while nothing is measured.
        held = [await open_session(a, f"held{i}") for i in range(3)]
        await eventually(lambda: _first(order, "qb"), what="qb first by load", interval=0.1)
        # b's clients suffer: their REPORTs carry 900 ms round trips (injected).
        sick = [await open_session(b, f"sick{i}", control=a) for i in range(2)]
        began = time.monotonic()
        bad = msgspec.json.encode({"rtt_ms": [900] * 10, "transport": "tcp", "reconnects": 0})
        for raw, _ in sick:
            await raw.send_frame(Op.REPORT, bad)
        await eventually(
            lambda: _first(order, "qa"), what="qa ranked first", within=15 * WAIT, interval=0.1
        )
        assert time.monotonic() - began < 60
        rows = {r["node"]: r for r in await quality_rows(api)}
        assert rows["qb"]["rtt_ms"]["p90"] >= 750
        for raw, _ in [*held, *sick]:
            await raw.close()


async def _first(order: Any, name: str) -> bool:
    got: list[str] = await order()
    return bool(got) and got[0] == name
