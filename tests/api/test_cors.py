"""CORS on /v1/connect for the allowed browser origins (PROTOCOL.md §1.5, api/cors.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from longlink.api.cors import PREFLIGHT_MAX_AGE_S

from .conftest import Harness, error_of, gateway_node, make_settings, open_harness

GOOD = "https://app.example.com"
OTHER = "https://other.example.com"
EVIL = "https://evil.example.net"


def preflight_headers(origin: str) -> dict[str, str]:
    """What a browser sends before POSTing JSON from ``origin``."""
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }


async def harness(**changes: Any) -> AsyncIterator[Harness]:
    async with open_harness(make_settings(**changes)) as h:
        await h.registry.report_node(gateway_node("g1"))
        yield h


@pytest.fixture
async def listed() -> AsyncIterator[Harness]:
    """Two origins listed (written as an operator might: case, spaces, a trailing slash)."""
    async for h in harness(allowed_origins=f" {GOOD.upper()}/ , {OTHER}"):
        yield h


@pytest.fixture
async def demo() -> AsyncIterator[Harness]:
    """Demo mode, no list: every origin."""
    async for h in harness(demo=True, allowed_origins=None):
        yield h


@pytest.fixture
async def closed() -> AsyncIterator[Harness]:
    """Not demo mode, no list: no browser origin (tickets only)."""
    async for h in harness(demo=False, allowed_origins=None):
        yield h


def connect(h: Harness, origin: str | None, body: Any = None) -> Any:
    headers = {"Origin": origin} if origin is not None else {}
    return h.client.post("/v1/connect", json=body or {"user": "alice"}, headers=headers)


def assert_no_cors(response: httpx.Response) -> None:
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]


async def test_preflight_of_a_listed_origin(listed: Harness) -> None:
    response = await listed.client.options("/v1/connect", headers=preflight_headers(GOOD))
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["access-control-allow-origin"] == GOOD
    assert response.headers["vary"] == "Origin"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"].lower()
    assert response.headers["access-control-max-age"] == str(PREFLIGHT_MAX_AGE_S)
    assert "access-control-allow-credentials" not in response.headers


async def test_connect_from_a_listed_origin_names_it(listed: Harness) -> None:
    for origin in (GOOD, OTHER):
        response = await connect(listed, origin)
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["vary"] == "Origin"
        assert response.json()["token"]


async def test_refusals_carry_cors_so_the_page_can_read_them(listed: Harness) -> None:
    response = await connect(listed, GOOD, {"ticket": "not-a-jwt"})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == GOOD
    response = await listed.client.post(
        "/v1/connect", content=b"{", headers={"Origin": GOOD, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["access-control-allow-origin"] == GOOD


async def test_an_origin_not_listed_is_refused(listed: Harness) -> None:
    response = await listed.client.options("/v1/connect", headers=preflight_headers(EVIL))
    assert response.status_code == 403
    assert_no_cors(response)
    error = error_of(response)
    assert error["code"] == "forbidden"
    assert EVIL in error["message"] and "LONGLINK_ALLOWED_ORIGINS" in error["message"]
    response = await connect(listed, EVIL)
    assert response.status_code == 403
    assert_no_cors(response)
    assert error_of(response)["code"] == "forbidden"


async def test_no_origin_header_is_not_subject_to_the_policy(closed: Harness) -> None:
    # Backends, SDKs outside browsers: no Origin, served as always (here with a ticket-less
    # server in demo mode off, so the refusal is the connect flow's, not CORS's).
    response = await connect(closed, None)
    assert response.status_code == 400  # demo mode is off: a user name alone is refused
    assert_no_cors(response)
    response = await closed.client.options("/v1/connect")
    assert response.status_code == 204
    assert response.headers["allow"] == "POST, OPTIONS"
    assert_no_cors(response)


async def test_no_browser_origin_by_default_outside_demo_mode(closed: Harness) -> None:
    response = await closed.client.options("/v1/connect", headers=preflight_headers(GOOD))
    assert response.status_code == 403
    assert_no_cors(response)


async def test_demo_mode_allows_every_origin(demo: Harness) -> None:
    response = await demo.client.options("/v1/connect", headers=preflight_headers(EVIL))
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "vary" not in response.headers
    response = await connect(demo, "http://127.0.0.1:8080")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"


async def test_star_in_the_list_allows_every_origin() -> None:
    async for h in harness(demo=False, allowed_origins="*"):
        response = await h.client.options("/v1/connect", headers=preflight_headers(EVIL))
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == "*"


async def test_other_methods_are_still_refused(listed: Harness) -> None:
    response = await listed.client.get("/v1/connect", headers={"Origin": GOOD})
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"POST", "OPTIONS"}
