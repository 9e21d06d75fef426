"""Two gateway nodes in different regions on one set of backends (PROTOCOL.md §2.1, §2.2).

Node ``ga`` (region ``eu``) runs every role; node ``gb`` (region ``us``) is a
gateway only. Clients reach either through ``ga``'s control API.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from longlink.client import Client, Kicked, Reconnected, ServerEvent
from longlink.logic.base import NodeInfo
from longlink.node import Backends, Node
from tests.conftest import API_KEY, SCALE, WAIT, eventually, fresh_bus, node_settings
from tests.e2e.raw_sessions import open_session

# Node reports and their staleness are time-driven: there is no event to await.
POLL_S = 0.05


class Cluster:
    def __init__(self, a: Node, b: Node, api: httpx.AsyncClient) -> None:
        self.a, self.b, self.api = a, b, api

    async def endpoints(self, region: str | None = None) -> list[str]:
        body: dict[str, Any] = {"user": "probe"}
        if region is not None:
            body["region"] = region
        response = await self.api.post("/v1/connect", json=body)
        assert response.status_code == 200, response.text
        return [e["node"] for e in response.json()["endpoints"]]

    async def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["node"]: n for n in (await self.api.get("/v1/nodes")).json()["nodes"]}

    async def push(self, to: dict[str, Any], data: Any) -> None:
        response = await self.api.post("/v1/push", json={"to": to, "data": data})
        assert response.status_code == 202, response.text


@pytest.fixture
async def cluster(tmp_path: Any, bus: str) -> AsyncIterator[Cluster]:
    await fresh_bus(bus)
    base = node_settings(tmp_path, bus=bus)  # one token secret for both nodes
    backends = Backends.from_settings(base)
    a = Node(base.replace(node_id="ga", region="eu"), backends)
    b = Node(base.replace(node_id="gb", region="us", roles=("gateway",)), backends)
    try:
        async with a, b:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(base_url=a.http_url, headers=headers, timeout=WAIT) as api:
                yield Cluster(a, b, api)
    finally:
        await backends.close()


async def test_endpoints_same_region_first_then_least_loaded(cluster: Cluster) -> None:
    assert await cluster.endpoints("eu") == ["ga", "gb"]
    assert await cluster.endpoints("us") == ["gb", "ga"]
    nodes = await cluster.nodes()
    assert set(nodes) == {"ga", "gb"}
    assert all(n["healthy"] and not n["draining"] for n in nodes.values())
    assert nodes["ga"]["region"] == "eu" and nodes["gb"]["region"] == "us"
    assert {"connections", "load", "reported_ms", "ws", "tcp"} <= set(nodes["ga"])
    # Load ga with two connections: without a region, gb (fewer connections) comes first.
    sessions = [await open_session(cluster.a, f"u{i}") for i in range(2)]

    async def ga_reported_two() -> bool:
        return (await cluster.nodes())["ga"]["connections"] == 2

    await eventually(ga_reported_two, what="ga to report two connections", interval=POLL_S)
    assert await cluster.endpoints() == ["gb", "ga"]
    assert await cluster.endpoints("eu") == ["ga", "gb"]  # the region still wins
    # At most three endpoints.
    registry = cluster.a.registry
    for name in ("gc", "gd"):
        await registry.report_node(NodeInfo(name, "eu", f"ws://{name}/ws", f"{name}:1"))
    assert len(await cluster.endpoints("eu")) == 3
    for raw, _ in sessions:
        await raw.close()


async def test_a_node_that_stops_reporting_is_left_out_within_5s(cluster: Cluster) -> None:
    assert cluster.b.gateway is not None
    [reports] = [t for t in cluster.b.gateway._loops if t.get_name() == "gateway-report"]
    reports.cancel()
    last_ms = (await cluster.nodes())["gb"]["reported_ms"]

    async def gb_left_out() -> bool:
        return "gb" not in await cluster.endpoints("us")

    await eventually(gb_left_out, within=7.0, what="gb to be left out", interval=POLL_S)
    gone_after_ms = time.time() * 1000 - last_ms
    # 5 s after the last report, plus one poll and a request's latency.
    assert gone_after_ms <= 5000 + 1000 * POLL_S + 250 * SCALE, gone_after_ms
    assert await cluster.endpoints("us") == ["ga"]
    nodes = await cluster.nodes()
    assert not nodes["gb"]["healthy"] and nodes["ga"]["healthy"]


async def test_drain_moves_sdk_clients_to_the_other_node(cluster: Cluster) -> None:
    url = cluster.a.http_url
    async with (
        Client(url, user="ana", region="eu", rooms=["live"]) as ana,
        Client(url, user="ben", region="eu", rooms=["live"], transport="tcp") as ben,
        Client(url, user="cy", region="eu") as cy,
    ):
        clients = (ana, ben, cy)
        assert {c.auth_ok.node for c in clients} == {"ga"}  # type: ignore[union-attr]
        response = await cluster.api.post("/v1/nodes/ga/drain")
        assert response.json() == {"node": "ga", "draining": True}
        for client in clients:
            kicked = await client.next_event(timeout=WAIT)
            assert isinstance(kicked, Kicked) and kicked.reason == "drain"
            while not isinstance(event := await client.next_event(timeout=WAIT), Reconnected):
                pass
            assert event.auth_ok.node == "gb"
        assert await cluster.endpoints("eu") == ["gb"]
        nodes = await cluster.nodes()
        assert nodes["ga"]["draining"] and not nodes["ga"]["healthy"]
        online = (await cluster.api.get("/v1/online")).json()
        assert online["total"] == 3 and online["rooms"] == {"live": 2}
        # Pushes made after the move reach every client once, on the new node.
        await cluster.push({"rooms": ["live"]}, "room")
        await cluster.push({"all": True}, "all")
        # Two targets: a sharded queue (Redis Cluster) keeps each one's order, not theirs.
        assert sorted([(await ana.next_message(timeout=WAIT)).json() for _ in range(2)]) == [
            "all",
            "room",
        ]
        assert sorted([(await ben.next_message(timeout=WAIT)).json() for _ in range(2)]) == [
            "all",
            "room",
        ]
        assert (await cy.next_message(timeout=WAIT)).json() == "all"
        users = (await cluster.api.get("/v1/users/ana")).json()["connections"]
        assert [(c["node"], c["rooms"]) for c in users] == [("gb", ["live"])]


async def test_presence_and_area_push_across_nodes(cluster: Cluster) -> None:
    api = cluster.api
    for room, area in (("north-1", "north"), ("north-2", "north"), ("south-1", "south")):
        assert (await api.put(f"/v1/rooms/{room}", json={"area": area})).status_code == 200
    url = cluster.a.http_url
    async with (
        # dee sits in two rooms of the area, on each node one connection of hers.
        Client(url, user="dee", device="dee-a", region="eu", rooms=["north-1", "north-2"]) as d1,
        Client(url, user="dee", device="dee-b", region="us", rooms=["north-2"]) as d2,
        Client(url, user="eli", region="us", rooms=["north-1", "south-1"], transport="tcp") as eli,
        Client(url, user="fay", region="eu", rooms=["south-1"]) as fay,
    ):
        assert d1.auth_ok.node == "ga" and d2.auth_ok.node == "gb"  # type: ignore[union-attr]
        online = (await api.get("/v1/online")).json()
        assert online == {
            "total": 4,
            "rooms": {"north-1": 2, "north-2": 2, "south-1": 2},
            "areas": {"north": 4, "south": 2},
        }
        assert (await api.get("/v1/rooms/north-2")).json() == {
            "room": "north-2",
            "area": "north",
            "online": 2,
        }
        assert await fay.join("north-2") == 3  # JOIN_OK counts the connections of both nodes
        dee = (await api.get("/v1/users/dee")).json()["connections"]
        assert sorted((c["node"], c["device"], sorted(c["rooms"])) for c in dee) == [
            ("ga", "dee-a", ["north-1", "north-2"]),
            ("gb", "dee-b", ["north-2"]),
        ]
        await cluster.push({"areas": ["north"]}, "north")
        await cluster.push({"areas": ["south", "north"]}, "both")
        await cluster.push({"all": True}, "end")
        for client, expected in (
            (d1, ["north", "both", "end"]),
            (d2, ["north", "both", "end"]),
            (eli, ["north", "both", "end"]),
            (fay, ["north", "both", "end"]),
        ):
            got = [(await client.next_message(timeout=WAIT)).json() for _ in expected]
            # Once each, though some sit in two rooms of the area (in any order: three
            # targets, and a sharded queue keeps only each one's own order).
            assert sorted(got) == sorted(expected)
        await fay.leave("north-2")
        await cluster.push({"areas": ["north"]}, "north again")
        # Once eli has it, it went to every node; then fay's next message is the next push.
        assert (await eli.next_message(timeout=WAIT)).json() == "north again"
        await cluster.push({"all": True}, "end")
        assert (await fay.next_message(timeout=WAIT)).json() == "end"


async def test_device_replaced_and_room_announced_across_nodes(cluster: Cluster) -> None:
    url = cluster.a.http_url
    await cluster.api.put("/v1/rooms/stage", json={"announce": True})
    async with Client(url, user="gus", device="gus-tv", region="eu", rooms=["stage"]) as old:
        assert old.auth_ok.node == "ga"  # type: ignore[union-attr]
        entered = await old.next_event(timeout=WAIT)
        assert isinstance(entered, ServerEvent) and entered.user == "gus"
        async with Client(url, user="hal", region="us", rooms=["stage"]) as hal:
            assert hal.auth_ok.node == "gb"  # type: ignore[union-attr]
            seen = await old.next_event(timeout=WAIT)  # from the other node
            assert isinstance(seen, ServerEvent)
            assert seen.data == {"type": "enter", "room": "stage", "user": "hal"}
            async with Client(url, user="gus", device="gus-tv", region="us") as new:
                assert new.auth_ok.node == "gb"  # type: ignore[union-attr]
                while not isinstance(event := await old.next_event(timeout=WAIT), Kicked):
                    pass
                assert event.reason == "replaced"
                seen = await hal.next_event(timeout=WAIT)  # hal's own entrance first
                while not (isinstance(seen, ServerEvent) and seen.type == "exit"):
                    seen = await hal.next_event(timeout=WAIT)
                assert seen.data == {"type": "exit", "room": "stage", "user": "gus"}

                async def only_on_gb() -> bool:  # the old session leaves the registry soon after
                    answer = (await cluster.api.get("/v1/users/gus")).json()["connections"]
                    return [s["node"] for s in answer] == ["gb"]

                await eventually(only_on_gb, what="gus only on gb", interval=POLL_S)
