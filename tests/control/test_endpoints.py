"""Endpoint choice: healthy nodes only; region, quality, price until full, load (§2.1, §1.6)."""

from __future__ import annotations

from typing import Any

from longlink.control.endpoints import choose_endpoints, node_healthy
from longlink.logic.base import NodeInfo
from longlink.logic.quality import QualityWindow

NOW = 1_000_000


def node(name: str, **changes: Any) -> NodeInfo:
    values: dict[str, Any] = {
        "node": name,
        "region": "eu",
        "ws": f"ws://{name}:7000/ws",
        "tcp": f"{name}:7001",
        "reported_ms": NOW,
    }
    values.update(changes)
    return NodeInfo(**values)


def names(endpoints: list[dict[str, str]]) -> list[str]:
    return [e["node"] for e in endpoints]


def test_endpoint_shape() -> None:
    [endpoint] = choose_endpoints([node("g1")], region=None, now_ms=NOW, transports=None)
    assert endpoint == {"node": "g1", "region": "eu", "ws": "ws://g1:7000/ws", "tcp": "g1:7001"}


def test_same_region_first_then_connections_then_load() -> None:
    nodes = [
        node("far-idle", region="us", connections=0),
        node("busy", connections=50),
        node("light-hot", connections=10, load=0.5),
        node("light-cool", connections=10, load=0.1),
    ]
    got = choose_endpoints(nodes, region="eu", now_ms=NOW, transports=None, limit=10)
    assert names(got) == ["light-cool", "light-hot", "busy", "far-idle"]


def test_without_region_least_loaded_first() -> None:
    nodes = [node("a", connections=5), node("b", region="us", connections=1)]
    got = choose_endpoints(nodes, region=None, now_ms=NOW, transports=None)
    assert names(got) == ["b", "a"]


def test_ties_are_broken_by_node_id() -> None:
    nodes = [node("c"), node("a"), node("b")]
    assert names(choose_endpoints(nodes, region=None, now_ms=NOW, transports=None)) == [
        "a",
        "b",
        "c",
    ]


def test_limit() -> None:
    nodes = [node(f"g{i}", connections=i) for i in range(6)]
    assert names(choose_endpoints(nodes, region=None, now_ms=NOW, transports=None)) == [
        "g0",
        "g1",
        "g2",
    ]
    got = choose_endpoints(nodes, region=None, now_ms=NOW, transports=None, limit=1)
    assert names(got) == ["g0"]
    assert choose_endpoints(nodes, region=None, now_ms=NOW, transports=None, limit=0) == []


def test_stale_and_draining_nodes_are_left_out() -> None:
    nodes = [
        node("stale", reported_ms=NOW - 5001),
        node("edge", reported_ms=NOW - 5000),
        node("draining", draining=True),
        node("ok", connections=9),
    ]
    got = choose_endpoints(nodes, region=None, now_ms=NOW, transports=None)
    assert names(got) == ["edge", "ok"]
    got = choose_endpoints(nodes, region=None, now_ms=NOW, transports=None, stale_ms=100)
    assert names(got) == ["ok"]


def test_transports_filter_nodes_and_fields() -> None:
    nodes = [node("ws-only", tcp=None), node("tcp-only", ws=None, connections=1)]
    got = choose_endpoints(nodes, region=None, now_ms=NOW, transports=["tcp"])
    assert got == [{"node": "tcp-only", "region": "eu", "tcp": "tcp-only:7001"}]
    got = choose_endpoints(nodes, region=None, now_ms=NOW, transports=["ws"])
    assert got == [{"node": "ws-only", "region": "eu", "ws": "ws://ws-only:7000/ws"}]
    got = choose_endpoints(nodes, region=None, now_ms=NOW, transports=None)
    assert got == [
        {"node": "ws-only", "region": "eu", "ws": "ws://ws-only:7000/ws"},
        {"node": "tcp-only", "region": "eu", "tcp": "tcp-only:7001"},
    ]


def test_no_healthy_node_gives_empty_list() -> None:
    assert choose_endpoints([], region="eu", now_ms=NOW, transports=None) == []
    nodes = [node("x", ws=None, tcp=None)]
    assert choose_endpoints(nodes, region=None, now_ms=NOW, transports=None) == []


def test_node_healthy() -> None:
    assert node_healthy(node("a"), NOW)
    assert node_healthy(node("a", reported_ms=NOW - 5000), NOW)
    assert not node_healthy(node("a", reported_ms=NOW - 5001), NOW)
    assert not node_healthy(node("a", draining=True), NOW)


def test_nodes_sharing_a_port_are_listed_once_the_best_first() -> None:
    shared = {"ws": "ws://m1:7000/ws", "tcp": "m1:7001"}  # two gateways with reuse_port
    nodes = [node("g2", connections=5, **shared), node("g1", connections=1, **shared), node("g3")]
    got = choose_endpoints(nodes, region=None, now_ms=NOW, transports=None)
    assert names(got) == ["g3", "g1"]
    only_tcp = choose_endpoints(nodes, region=None, now_ms=NOW, transports=["tcp"])
    assert names(only_tcp) == ["g3", "g1"]


def window_with(rtts_ms: list[int]) -> dict[str, Any]:
    window = QualityWindow()
    window.report(100.0, rtts_ms, None, 0, 0)
    return {"ws": window.snapshot(100.0, connections=len(rtts_ms))}


def test_a_node_whose_clients_suffer_ranks_after_healthy_ones() -> None:
    nodes = [
        node("slow", connections=0, quality=window_with([900] * 20)),
        node("fine", connections=500, quality=window_with([20] * 20)),
        node("unmeasured", connections=900, quality=window_with([900] * 3)),  # too few samples
    ]
    got = choose_endpoints(nodes, region=None, now_ms=NOW, transports=None, limit=10)
    assert names(got) == ["fine", "unmeasured", "slow"]
    lenient = choose_endpoints(nodes, region=None, now_ms=NOW, transports=None, bad_rtt_ms=5000)
    assert names(lenient)[0] == "slow"  # within the limit it is the least loaded again


def test_cheaper_nodes_first_until_they_are_full() -> None:
    nodes = [
        node("cloud", cost=3.0, connections=0),
        node("own", cost=1.0, connections=800, load=0.5),
        node("own-full", cost=1.0, connections=100, load=0.85, full=0.8),
    ]
    got = choose_endpoints(nodes, region=None, now_ms=NOW, transports=None, limit=10)
    assert names(got) == ["own", "cloud", "own-full"]
