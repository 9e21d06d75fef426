"""The webhook sender: signed POSTs, retries with backoff, bounded queue, order per connection."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from prometheus_client import CollectorRegistry

from longlink.logic.events import SIGNATURE_HEADER, WebhookEvent, decode_event, verify_signature
from longlink.logic.webhook import WebhookSender
from tests.conftest import WAIT

SECRET = "whsec-test"
URL = "http://business.test/hook"


def event(n: int, conn: str = "c1", kind: str = "enter") -> WebhookEvent:
    return WebhookEvent(
        id=f"ev-{conn}-{n}",
        type=kind,
        user="alice",
        device="d1",
        room="lobby",
        conn_id=conn,
        node="g1",
        at=n,
    )


class Receiver:
    """A mock webhook: answers with ``script`` statuses in turn (then 200), records requests."""

    def __init__(self, script: list[int] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[httpx.Request] = []
        self.accepted: list[WebhookEvent] = []
        self.changed = asyncio.Event()

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.changed.set()
        status = self.script.pop(0) if self.script else 200
        if status == 200:
            assert verify_signature(SECRET, request.headers[SIGNATURE_HEADER], request.content)
            self.accepted.append(decode_event(request.content))
        return httpx.Response(status)

    async def wait_accepted(self, n: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.accepted) < n:
                self.changed.clear()
                await self.changed.wait()


def sender(receiver: Receiver, **kwargs: object) -> WebhookSender:
    options: dict[str, object] = {"retry_s": 0.01, "metrics": CollectorRegistry()}
    options.update(kwargs)
    return WebhookSender(
        URL,
        SECRET,
        transport=httpx.MockTransport(receiver.handle),
        **options,  # type: ignore[arg-type]
    )


def outcomes(s: WebhookSender) -> Counter[str]:
    counts: Counter[str] = Counter()
    for metric in s.metrics.events.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["outcome"]] += int(sample.value)
    return counts


async def test_delivers_signed_json_with_event_id_header() -> None:
    receiver = Receiver()
    async with sender(receiver) as s:
        assert s.offer(event(1))
        await receiver.wait_accepted(1)
    [request] = receiver.requests
    assert request.method == "POST" and str(request.url) == URL
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-longlink-event-id"] == "ev-c1-1"
    assert receiver.accepted == [event(1)]


async def test_fails_twice_then_delivered_once_with_the_same_id() -> None:
    receiver = Receiver([500, 503])
    async with sender(receiver) as s:
        s.offer(event(1))
        await receiver.wait_accepted(1)
        assert outcomes(s)["delivered"] == 1
    assert [r.headers["x-longlink-attempt"] for r in receiver.requests] == ["1", "2", "3"]
    assert {r.content for r in receiver.requests} == {receiver.requests[0].content}
    assert len(receiver.accepted) == 1


async def test_network_errors_are_retried() -> None:
    calls = 0
    accepted = asyncio.Event()

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise httpx.ConnectError("refused", request=request)
        accepted.set()
        return httpx.Response(204)

    s = WebhookSender(URL, SECRET, retry_s=0.01, transport=httpx.MockTransport(handle))
    async with s:
        s.offer(event(1))
        await asyncio.wait_for(accepted.wait(), WAIT)
    assert calls == 3


async def test_a_4xx_refusal_is_not_retried() -> None:
    receiver = Receiver([400])
    async with sender(receiver) as s:
        s.offer(event(1))
        s.offer(event(2))
        await receiver.wait_accepted(1)
        assert outcomes(s)["rejected"] == 1
    assert len(receiver.requests) == 2 and receiver.accepted == [event(2)]


async def test_attempts_run_out() -> None:
    receiver = Receiver([500] * 3)
    async with sender(receiver, max_attempts=3) as s:
        s.offer(event(1))
        s.offer(event(2))
        await receiver.wait_accepted(1)
        assert outcomes(s)["failed"] == 1
    assert receiver.accepted == [event(2)]


async def test_a_full_queue_drops_instead_of_blocking() -> None:
    gate, started = asyncio.Event(), asyncio.Event()
    seen: list[str] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(decode_event(request.content).id)
        started.set()
        await gate.wait()
        return httpx.Response(200)

    s = WebhookSender(
        URL,
        SECRET,
        queue_size=4,
        concurrency=1,
        transport=httpx.MockTransport(handle),
        metrics=CollectorRegistry(),
    )
    async with s:
        assert s.offer(event(0))
        await asyncio.wait_for(started.wait(), WAIT)  # the lane holds event 0 in flight
        assert all(s.offer(event(n)) for n in range(1, 5))
        assert not s.offer(event(5))
        assert outcomes(s)["dropped"] == 1
        gate.set()
    assert seen == [f"ev-c1-{n}" for n in range(5)]  # close() delivered what was queued
    assert not s.offer(event(6))  # closed


async def test_one_connections_events_keep_their_order() -> None:
    receiver = Receiver([500, 200, 500])
    async with sender(receiver, concurrency=4) as s:
        for n in range(20):
            for conn in ("c1", "c2", "c3"):
                s.offer(event(n, conn))
        await receiver.wait_accepted(60)
    for conn in ("c1", "c2", "c3"):
        assert [e.at for e in receiver.accepted if e.conn_id == conn] == list(range(20))


async def test_unsigned_without_a_secret(caplog: pytest.LogCaptureFixture) -> None:
    requests: list[httpx.Request] = []
    done = asyncio.Event()

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        done.set()
        return httpx.Response(200)

    async with WebhookSender(URL, None, transport=httpx.MockTransport(handle)) as s:
        s.offer(event(1))
        await asyncio.wait_for(done.wait(), WAIT)
    assert SIGNATURE_HEADER.lower() not in requests[0].headers
    assert "unsigned" in caplog.text
