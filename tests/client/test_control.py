"""POST /v1/connect: request bodies, grants and the error mapping of PROTOCOL.md §2."""

from __future__ import annotations

import httpx
import pytest

from longlink.client import AuthError, ControlError, Endpoint
from longlink.client.control import connect_request, fetch_grant
from longlink.client.transport import split_host_port


def test_request_body_with_ticket_or_user() -> None:
    assert connect_request(
        ticket="jwt", user="ignored", device=None, region="eu", transports=["ws"]
    ) == {"ticket": "jwt", "region": "eu", "transports": ["ws"]}
    assert connect_request(
        ticket=None, user="u1", device="d1", region=None, transports=["ws", "stream"], failed=["ws"]
    ) == {"user": "u1", "device": "d1", "transports": ["ws", "stream"], "failed": ["ws"]}


async def answer(response: httpx.Response | Exception) -> object:
    def handle(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/v1/connect")
        if isinstance(response, Exception):
            raise response
        return response

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        return await fetch_grant(http, "http://ctl.test/", {"user": "u"}, timeout_s=5)


async def test_grant_is_decoded() -> None:
    grant = await answer(
        httpx.Response(
            200,
            json={
                "token": "t",
                "expires_at": 1_790_000_000,
                "heartbeat_s": 30,
                "endpoints": [
                    {"node": "g1", "region": "local", "ws": "ws://h:7000/ws", "tcp": "h:7001"},
                    {"node": "g2", "region": "eu", "tcp": "h2:7001"},
                ],
            },
        )
    )
    endpoints: list[Endpoint] = grant.endpoints  # type: ignore[attr-defined]
    assert [e.address("ws") for e in endpoints] == ["ws://h:7000/ws", None]
    assert [e.address("tcp") for e in endpoints] == ["h:7001", "h2:7001"]


@pytest.mark.parametrize("status", [401, 403])
async def test_credentials_refused_is_auth_error(status: int) -> None:
    body = {"error": {"code": "bad_ticket", "message": "signature"}}
    with pytest.raises(AuthError) as caught:
        await answer(httpx.Response(status, json=body))
    assert (caught.value.code, caught.value.message) == ("bad_ticket", "signature")


async def test_rate_limited_keeps_retry_after() -> None:
    body = {"error": {"code": "rate_limited", "message": "slow"}}
    with pytest.raises(ControlError) as caught:
        await answer(httpx.Response(429, json=body, headers={"Retry-After": "3"}))
    error = caught.value
    assert (error.code, error.status, error.retry_after, error.retryable) == (
        "rate_limited",
        429,
        3.0,
        True,
    )


async def test_bad_request_is_not_retryable() -> None:
    with pytest.raises(ControlError) as caught:
        await answer(httpx.Response(400, json={"error": {"code": "invalid", "message": "x"}}))
    assert not caught.value.retryable


async def test_non_json_error_and_bad_answer() -> None:
    with pytest.raises(ControlError) as caught:
        await answer(httpx.Response(502, text="<html>bad gateway</html>"))
    assert (caught.value.code, caught.value.status) == ("http_502", 502)
    with pytest.raises(ControlError) as bad:
        await answer(httpx.Response(200, json={"token": 1}))
    assert bad.value.code == "bad_response"


async def test_unreachable_control_api() -> None:
    with pytest.raises(ControlError) as caught:
        await answer(httpx.ConnectError("refused"))
    assert (caught.value.code, caught.value.status, caught.value.retryable) == (
        "unreachable",
        None,
        True,
    )


def test_split_host_port() -> None:
    assert split_host_port("127.0.0.1:7001") == ("127.0.0.1", 7001)
    assert split_host_port("[::1]:7001") == ("::1", 7001)
    for bad in ("nohost", ":7001", "h:port"):
        with pytest.raises(ValueError):
            split_host_port(bad)
