"""Query and operations routes: online, rooms, users, kick, nodes, drain, health, errors."""

from __future__ import annotations

import time

import pytest

from longlink.logic.base import SessionInfo

from .conftest import Harness, bearer, error_of, gateway_node, open_harness

KEYED = [
    ("GET", "/v1/online"),
    ("GET", "/v1/rooms/r1"),
    ("PUT", "/v1/rooms/r1"),
    ("GET", "/v1/users/u1"),
    ("POST", "/v1/users/u1/kick"),
    ("GET", "/v1/nodes"),
    ("POST", "/v1/nodes/g1/drain"),
]


@pytest.mark.parametrize(("method", "path"), KEYED)
async def test_api_key_is_required(h: Harness, method: str, path: str) -> None:
    for headers in ({}, bearer("wrong")):
        response = await h.client.request(method, path, json={"area": None}, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert error_of(response)["code"] == "unauthorized"


async def add_sessions(h: Harness) -> None:
    await h.registry.add_session(
        SessionInfo(conn_id="c1", node="g1", user="u1", device="d1", rooms=["r1"])
    )
    await h.registry.add_session(
        SessionInfo(conn_id="c2", node="g2", user="u1", device="d2", rooms=["r1", "r2"])
    )
    await h.registry.add_session(SessionInfo(conn_id="c3", node="g1", user="u2", device="d3"))


async def test_online(h: Harness) -> None:
    await add_sessions(h)
    await h.registry.set_room_area("r1", "eu")
    response = await h.client.get("/v1/online", headers=bearer())
    assert response.status_code == 200
    assert response.json() == {"total": 3, "rooms": {"r1": 2, "r2": 1}, "areas": {"eu": 2}}


async def test_room_get_and_put(h: Harness) -> None:
    await add_sessions(h)
    response = await h.client.get("/v1/rooms/r1", headers=bearer())
    assert response.json() == {"room": "r1", "area": None, "online": 2}
    response = await h.client.put("/v1/rooms/r1", json={"area": "eu"}, headers=bearer())
    assert response.status_code == 200
    assert response.json() == {"room": "r1", "area": "eu", "online": 2}
    assert (await h.client.get("/v1/rooms/r1", headers=bearer())).json()["area"] == "eu"
    assert (await h.registry.online()).areas == {"eu": 2}
    response = await h.client.put("/v1/rooms/r1", json={"area": None}, headers=bearer())
    assert response.json()["area"] is None
    response = await h.client.get("/v1/rooms/empty", headers=bearer())
    assert response.json() == {"room": "empty", "area": None, "online": 0}


async def test_room_with_slash_and_escapes(h: Harness) -> None:
    await h.client.put("/v1/rooms/live%2F1", json={"area": "a"}, headers=bearer())
    assert await h.registry.room_area("live/1") == "a"
    response = await h.client.get("/v1/rooms/live/1", headers=bearer())
    assert response.json()["area"] == "a"


@pytest.mark.parametrize("body", [{}, {"area": ""}, {"area": 1}, {"area": "a", "x": 1}])
async def test_room_put_invalid(h: Harness, body: object) -> None:
    response = await h.client.put("/v1/rooms/r1", json=body, headers=bearer())
    assert response.status_code == 400


async def test_room_id_is_checked(h: Harness) -> None:
    response = await h.client.get("/v1/rooms/" + "r" * 129, headers=bearer())
    assert response.status_code == 400
    assert error_of(response)["message"].startswith("room:")


async def test_user(h: Harness) -> None:
    await add_sessions(h)
    response = await h.client.get("/v1/users/u1", headers=bearer())
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == "u1"
    conns = [{k: c[k] for k in ("conn_id", "node", "device", "rooms")} for c in body["connections"]]
    assert conns == [
        {"conn_id": "c1", "node": "g1", "device": "d1", "rooms": ["r1"]},
        {"conn_id": "c2", "node": "g2", "device": "d2", "rooms": ["r1", "r2"]},
    ]
    response = await h.client.get("/v1/users/nobody", headers=bearer())
    assert response.json() == {"user": "nobody", "connections": []}


async def test_kick_without_gateway(h: Harness) -> None:
    response = await h.client.post("/v1/users/u1/kick", headers=bearer())
    assert response.status_code == 501
    assert error_of(response)["code"] == "not_supported"


async def test_kick() -> None:
    calls: list[tuple[str, str]] = []

    async def kick(user: str, reason: str) -> int:
        calls.append((user, reason))
        return 2

    async with open_harness(kick=kick) as h:
        response = await h.client.post("/v1/users/u1/kick", headers=bearer())
        assert response.status_code == 200
        assert response.json() == {"kicked": 2}
        response = await h.client.post(
            "/v1/users/u1/kick", json={"reason": "banned"}, headers=bearer()
        )
        assert response.json() == {"kicked": 2}
        response = await h.client.post("/v1/users/u1/kick", json={"why": 1}, headers=bearer())
        assert response.status_code == 400
    assert calls == [("u1", "kicked"), ("u1", "banned")]


async def test_nodes_and_drain(h: Harness) -> None:
    now_ms = int(time.time() * 1000)
    await h.registry.report_node(gateway_node("g1", connections=3, load=0.5))
    await h.registry.report_node(gateway_node("old", reported_ms=now_ms - 6000))
    response = await h.client.get("/v1/nodes", headers=bearer())
    assert response.status_code == 200
    nodes = {n["node"]: n for n in response.json()["nodes"]}
    assert nodes["g1"]["healthy"] is True and nodes["g1"]["draining"] is False
    assert nodes["g1"]["connections"] == 3 and nodes["g1"]["load"] == 0.5
    assert nodes["g1"]["ws"] == "ws://127.0.0.1:7000/ws?g1"
    assert nodes["old"]["healthy"] is False

    response = await h.client.post("/v1/nodes/g1/drain", headers=bearer())
    assert response.status_code == 200
    assert response.json() == {"node": "g1", "draining": True}
    nodes = {
        n["node"]: n for n in (await h.client.get("/v1/nodes", headers=bearer())).json()["nodes"]
    }
    assert nodes["g1"]["draining"] is True and nodes["g1"]["healthy"] is False
    # Drained nodes are not offered to clients.
    assert (await h.client.post("/v1/connect", json={"user": "a"})).status_code == 503

    response = await h.client.post("/v1/nodes/g1/drain", json={"draining": False}, headers=bearer())
    assert response.json() == {"node": "g1", "draining": False}
    assert (await h.client.post("/v1/connect", json={"user": "a"})).status_code == 200


async def test_drain_unknown_node(h: Harness) -> None:
    response = await h.client.post("/v1/nodes/nope/drain", headers=bearer())
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


async def test_healthz(h: Harness) -> None:
    response = await h.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_metrics_text(h: Harness) -> None:
    response = await h.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE longlink_push_accepted_total counter" in response.text
    assert "# TYPE longlink_push_refused_total counter" in response.text


async def test_unknown_route(h: Harness) -> None:
    response = await h.client.get("/v1/nothing", headers=bearer())
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found" and "/v1/nothing" in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v1/push", "POST"),
        ("DELETE", "/v1/rooms/r1", "GET"),
        ("POST", "/v1/online", "GET"),
        ("POST", "/healthz", "GET"),
    ],
)
async def test_wrong_method(h: Harness, method: str, path: str, allowed: str) -> None:
    response = await h.client.request(method, path, headers=bearer())
    assert response.status_code == 405
    assert allowed in response.headers["Allow"]
    error = error_of(response)
    assert error["code"] == "method_not_allowed" and allowed in error["message"]


async def test_other_bodies_are_limited(h: Harness) -> None:
    response = await h.client.put(
        "/v1/rooms/r1", content=b'{"area": "' + b"a" * (70 << 10) + b'"}', headers=bearer()
    )
    assert response.status_code == 413
