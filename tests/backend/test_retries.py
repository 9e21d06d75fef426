"""Both clients over a scripted transport: retries, Retry-After, partial batches, errors.

The sleeps are recorded, not slept: the answers are scripted, so nothing is
waited for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from longlink.backend import (
    NO_RETRY,
    BackendError,
    ConnectionFailed,
    LonglinkBackend,
    LonglinkBackendSync,
    Overloaded,
    Push,
    RateLimited,
    RetryPolicy,
    TooLarge,
)

Step = httpx.Response | Exception


def error(status: int, code: str, retry_after: str | None = None, **extra: Any) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"error": {"code": code, "message": "scripted", **extra}}
    return httpx.Response(status, json=body, headers=headers)


class Script:
    """A transport handler answering with ``steps`` in order, recording the requests."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


class Runner:
    """Runs one backend method on the async or the sync client, same arguments."""

    def __init__(self, kind: str, script: Script, retry: RetryPolicy | None) -> None:
        self.kind, self.script, self.retry = kind, script, retry
        self.sleeps: list[float] = []

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        transport = httpx.MockTransport(self.script)
        if self.kind == "async":

            async def sleep(seconds: float) -> None:
                self.sleeps.append(seconds)

            async with LonglinkBackend(
                "http://ll.test/", "k", retry=self.retry, transport=transport, sleep=sleep
            ) as client:
                return await getattr(client, method)(*args, **kwargs)
        with LonglinkBackendSync(
            "http://ll.test", "k", retry=self.retry, transport=transport, sleep=self.sleeps.append
        ) as sync_client:
            return getattr(sync_client, method)(*args, **kwargs)


MakeRunner = Callable[..., Runner]


@pytest.fixture(params=["async", "sync"])
def run(request: pytest.FixtureRequest) -> MakeRunner:
    def make(*steps: Step, retry: RetryPolicy | None = None) -> Runner:
        return Runner(request.param, Script(*steps), retry)

    return make


def accepted() -> httpx.Response:
    return httpx.Response(202, json={"msg_id": "42"})


async def test_push_sends_the_key_and_the_body(run: MakeRunner) -> None:
    runner = run(accepted())
    assert await runner("push", {"users": ["a"]}, {"x": 1}, priority="high", ttl_s=9) == 42
    [request] = runner.script.requests
    assert request.method == "POST" and request.url == "http://ll.test/v1/push"
    assert request.headers["Authorization"] == "Bearer k"
    assert runner.script.bodies() == [
        {"to": {"users": ["a"]}, "data": {"x": 1}, "priority": "high", "ttl_s": 9}
    ]


async def test_429_and_503_are_retried_after_retry_after(run: MakeRunner) -> None:
    runner = run(error(429, "rate_limited", "2"), error(503, "overloaded", "1"), accepted())
    assert await runner("push", {"all": True}, raw=b"hi") == 42
    assert runner.sleeps == [2.0, 1.0]
    assert len(runner.script.requests) == 3


async def test_gives_up_after_the_attempts(run: MakeRunner) -> None:
    runner = run(*[error(429, "rate_limited", "1")] * 3, retry=RetryPolicy(attempts=3))
    with pytest.raises(RateLimited) as info:
        await runner("push", {"all": True}, 1)
    assert info.value.retry_after == 1.0
    assert runner.sleeps == [1.0, 1.0]


async def test_a_retry_after_beyond_the_budget_is_not_waited_for(run: MakeRunner) -> None:
    runner = run(error(503, "overloaded", "60"), retry=RetryPolicy(max_wait_s=10))
    with pytest.raises(Overloaded):
        await runner("push", {"all": True}, 1)
    assert runner.sleeps == []


async def test_no_retry(run: MakeRunner) -> None:
    runner = run(error(429, "rate_limited", "1"), retry=NO_RETRY)
    with pytest.raises(RateLimited):
        await runner("push", {"all": True}, 1)


async def test_other_errors_are_raised_at_once(run: MakeRunner) -> None:
    runner = run(error(413, "too_large", None))
    with pytest.raises(TooLarge):
        await runner("push", {"all": True}, "x")
    assert len(runner.script.requests) == 1


async def test_partial_batch_is_finished_without_duplicates(run: MakeRunner) -> None:
    runner = run(
        error(503, "overloaded", "1", msg_ids=["1"]),
        httpx.Response(202, json={"msg_ids": ["2", "3"]}),
    )
    pushes = [Push({"all": True}, i) for i in range(3)]
    assert await runner("push_batch", pushes) == [1, 2, 3]
    first, second = runner.script.bodies()
    assert [m["data"] for m in first["messages"]] == [0, 1, 2]
    assert [m["data"] for m in second["messages"]] == [1, 2]


async def test_unopened_connection_is_retried_even_for_a_push(run: MakeRunner) -> None:
    runner = run(httpx.ConnectError("refused"), accepted())
    assert await runner("push", {"all": True}, 1) == 42
    assert len(runner.sleeps) == 1


async def test_a_push_is_not_repeated_after_the_request_may_have_arrived(run: MakeRunner) -> None:
    runner = run(httpx.ReadTimeout("slow"), accepted())
    with pytest.raises(ConnectionFailed) as info:
        await runner("push", {"all": True}, 1)
    assert info.value.sent is True
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert len(runner.script.requests) == 1


async def test_queries_are_repeated_after_a_broken_connection(run: MakeRunner) -> None:
    online = {"total": 3, "rooms": {"r": 3}, "areas": {}}
    runner = run(httpx.RemoteProtocolError("reset"), httpx.Response(200, json=online))
    assert await runner("online") == online
    assert [r.url.path for r in runner.script.requests] == ["/v1/online"] * 2


async def test_query_methods(run: MakeRunner) -> None:
    runner = run(
        httpx.Response(200, json={"room": "a/b", "area": None, "online": 0}),
        httpx.Response(200, json={"room": "a/b", "area": "eu", "online": 0}),
        httpx.Response(200, json={"user": "u", "connections": []}),
        httpx.Response(200, json={"kicked": 1}),
        httpx.Response(200, json={"nodes": [{"node": "g1"}]}),
        httpx.Response(200, json={"msg_id": "7", "events": []}),
    )
    assert (await runner("room", "a/b"))["online"] == 0
    assert (await runner("set_room_area", "a/b", "eu"))["area"] == "eu"
    assert (await runner("user", "u"))["connections"] == []
    assert await runner("kick", "u", "bye") == 1
    assert await runner("nodes") == [{"node": "g1"}]
    assert (await runner("message_trace", 7))["msg_id"] == "7"
    requests = runner.script.requests
    assert [(r.method, r.url.raw_path) for r in requests] == [
        ("GET", b"/v1/rooms/a%2Fb"),
        ("PUT", b"/v1/rooms/a%2Fb"),
        ("GET", b"/v1/users/u"),
        ("POST", b"/v1/users/u/kick"),
        ("GET", b"/v1/nodes"),
        ("GET", b"/v1/messages/7"),
    ]
    assert runner.script.bodies()[1:4] == [{"area": "eu"}, None, {"reason": "bye"}]


async def test_an_answer_that_is_not_an_object_is_an_error(run: MakeRunner) -> None:
    runner = run(httpx.Response(200, json=[1, 2]))
    with pytest.raises(BackendError):
        await runner("online")


def test_sign_ticket_needs_the_secret() -> None:
    with LonglinkBackendSync("http://ll.test", "k") as client, pytest.raises(BackendError):
        client.sign_ticket("alice")
