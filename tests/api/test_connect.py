"""POST /v1/connect in demo and ticket modes (PROTOCOL.md §2.1)."""

from __future__ import annotations

import re
import time
from typing import Any

import jwt
import pytest

from longlink.control.tokens import TokenIssuer

from .conftest import (
    TICKET_SECRET,
    TOKEN_SECRET,
    Harness,
    error_of,
    gateway_node,
    make_settings,
    open_harness,
)


def ticket(secret: str = TICKET_SECRET, **claims: Any) -> str:
    claims.setdefault("exp", int(time.time()) + 60)
    return jwt.encode(claims, secret, algorithm="HS256")


async def connect(h: Harness, body: Any) -> Any:
    return await h.client.post("/v1/connect", json=body)


@pytest.fixture
async def hn(h: Harness) -> Harness:
    """The harness with one healthy gateway node reported."""
    await h.registry.report_node(gateway_node("g1"))
    return h


async def test_demo_user(hn: Harness) -> None:
    response = await connect(hn, {"user": "alice"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expires_at", "heartbeat_s", "endpoints", "transports"}
    assert body["transports"] == ["ws", "stream", "tcp"]  # control's advice (§1.5)
    assert body["heartbeat_s"] == 30
    assert body["endpoints"] == [
        {
            "node": "g1",
            "region": "local",
            "ws": "ws://127.0.0.1:7000/ws?g1",
            "tcp": "127.0.0.1:7001",
            "stream": "http://127.0.0.1:7000/v1/stream?g1",
        }
    ]
    claims = TokenIssuer(TOKEN_SECRET, 1).verify(body["token"])
    assert claims.user == "alice"
    assert re.fullmatch(r"dev-[0-9a-f]{12}", claims.device)
    assert claims.expires_at == body["expires_at"]
    assert abs(body["expires_at"] - (time.time() + 600)) < 5


async def test_demo_user_with_device(hn: Harness) -> None:
    response = await connect(hn, {"user": "alice", "device": "phone"})
    assert TokenIssuer(TOKEN_SECRET, 1).verify(response.json()["token"]).device == "phone"


async def test_random_devices_differ(hn: Harness) -> None:
    tokens = [(await connect(hn, {"user": "alice"})).json()["token"] for _ in range(2)]
    devices = {TokenIssuer(TOKEN_SECRET, 1).verify(t).device for t in tokens}
    assert len(devices) == 2


async def test_heartbeat_from_settings() -> None:
    async with open_harness(make_settings(heartbeat_s=7)) as h:
        await h.registry.report_node(gateway_node())
        assert (await connect(h, {"user": "a"})).json()["heartbeat_s"] == 7


async def test_good_ticket(hn: Harness) -> None:
    response = await connect(hn, {"ticket": ticket(sub="bob", device="tv")})
    assert response.status_code == 200
    claims = TokenIssuer(TOKEN_SECRET, 1).verify(response.json()["token"])
    assert (claims.user, claims.device) == ("bob", "tv")


async def test_ticket_without_device_gets_a_random_one(hn: Harness) -> None:
    response = await connect(hn, {"ticket": ticket(sub="bob"), "device": "ignored"})
    claims = TokenIssuer(TOKEN_SECRET, 1).verify(response.json()["token"])
    assert claims.user == "bob" and claims.device.startswith("dev-")


async def test_ticket_works_without_demo_mode() -> None:
    async with open_harness(make_settings(demo=False)) as h:
        await h.registry.report_node(gateway_node())
        assert (await connect(h, {"ticket": ticket(sub="bob")})).status_code == 200


async def test_expired_ticket(hn: Harness) -> None:
    response = await connect(hn, {"ticket": ticket(sub="bob", exp=int(time.time()) - 1)})
    assert response.status_code == 401
    assert error_of(response)["code"] == "ticket_expired"


@pytest.mark.parametrize(
    "bad",
    [
        ticket("wrong-secret-" + "w" * 32, sub="bob"),
        "not-a-jwt",
        ticket(device="tv"),  # no sub
        TokenIssuer(TICKET_SECRET, 3600).issue("bob", "tv")[0],  # a connection token (made at
        # collection: valid long enough for the whole suite to get here)
    ],
)
async def test_bad_ticket(hn: Harness, bad: str) -> None:
    response = await connect(hn, {"ticket": bad})
    assert response.status_code == 401
    assert error_of(response)["code"] == "bad_ticket"


async def test_ticket_without_ticket_secret() -> None:
    async with open_harness(make_settings(ticket_secret=None)) as h:
        await h.registry.report_node(gateway_node())
        response = await connect(h, {"ticket": ticket(sub="bob")})
        assert response.status_code == 401
        assert "no ticket secret" in error_of(response)["message"]


async def test_neither_ticket_nor_user(hn: Harness) -> None:
    response = await connect(hn, {})
    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"


async def test_user_without_demo_mode() -> None:
    async with open_harness(make_settings(demo=False)) as h:
        await h.registry.report_node(gateway_node())
        response = await connect(h, {"user": "alice"})
        assert response.status_code == 400
        assert "ticket" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": "alice", "transports": ["udp"]}, "transports[0]"),
        ({"user": "alice", "transports": []}, "transports"),
        ({"user": "alice", "transports": "ws"}, "transports"),
        ({"user": ""}, "user"),
        ({"user": "a\nb"}, "user"),
        ({"user": "alice", "device": 5}, "device"),
        ({"user": "alice", "region": 1}, "region"),
        ([], "body"),
    ],
)
async def test_invalid_connect(hn: Harness, body: Any, field: str) -> None:
    response = await connect(hn, body)
    assert response.status_code == 400
    assert error_of(response)["message"].startswith(field)


async def test_bad_json(hn: Harness) -> None:
    response = await hn.client.post("/v1/connect", content=b"{")
    assert response.status_code == 400


async def test_unknown_fields_are_ignored(hn: Harness) -> None:
    response = await connect(hn, {"user": "alice", "sdk": "js/1.0"})
    assert response.status_code == 200


async def test_transports_shape_the_endpoints(hn: Harness) -> None:
    await hn.registry.report_node(gateway_node("g2", ws=None, connections=1))
    response = await connect(hn, {"user": "a", "transports": ["tcp"]})
    assert response.json()["endpoints"] == [
        {"node": "g1", "region": "local", "tcp": "127.0.0.1:7001"},
        {"node": "g2", "region": "local", "tcp": "127.0.0.1:7001"},
    ]
    response = await connect(hn, {"user": "a", "transports": ["ws"]})
    assert [e["node"] for e in response.json()["endpoints"]] == ["g1"]


async def test_region_first_then_least_loaded(h: Harness) -> None:
    await h.registry.report_node(gateway_node("eu-busy", region="eu", connections=90))
    await h.registry.report_node(gateway_node("eu-idle", region="eu", connections=10))
    await h.registry.report_node(gateway_node("us-idle", region="us", connections=0))
    response = await connect(h, {"user": "a", "region": "eu"})
    assert [e["node"] for e in response.json()["endpoints"]] == ["eu-idle", "eu-busy", "us-idle"]
    response = await connect(h, {"user": "a"})
    assert [e["node"] for e in response.json()["endpoints"]] == ["us-idle", "eu-idle", "eu-busy"]


async def test_no_nodes(h: Harness) -> None:
    response = await connect(h, {"user": "alice"})
    assert response.status_code == 503
    assert error_of(response)["code"] == "no_nodes"
    assert int(response.headers["Retry-After"]) >= 1


async def test_stale_and_draining_nodes_are_not_offered(h: Harness) -> None:
    stale_ms = int(time.time() * 1000) - 6000
    await h.registry.report_node(gateway_node("stale", reported_ms=stale_ms))
    await h.registry.report_node(gateway_node("drained"))
    await h.registry.set_draining("drained", True)
    response = await connect(h, {"user": "alice"})
    assert response.status_code == 503
    await h.registry.report_node(gateway_node("fresh"))
    response = await connect(h, {"user": "alice"})
    assert [e["node"] for e in response.json()["endpoints"]] == ["fresh"]


async def test_no_node_with_the_transport(hn: Harness) -> None:
    await hn.registry.report_node(gateway_node("g1", tcp=None))
    response = await connect(hn, {"user": "alice", "transports": ["tcp"]})
    assert response.status_code == 503


async def test_connect_needs_no_api_key(hn: Harness) -> None:
    response = await hn.client.post(
        "/v1/connect", json={"user": "a"}, headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize("field", ["user", "device", "region"])
async def test_an_id_ending_in_a_newline_is_refused(hn: Harness, field: str) -> None:
    """A regular expression's ``$`` lets a final newline through; the id rule does not."""
    response = await connect(hn, {"user": "alice", field: "bob\n"})
    assert response.status_code == 400
    message = error_of(response)["message"]
    assert message.startswith(f"{field}: ") and "control characters" in message
