"""The demo echo: limits (pure), what is echoed, and the sink over a real push path."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from longlink.api.push import Pusher
from longlink.bus.memory import MemoryQueue
from longlink.logic.events import ENTER, UPSTREAM, WebhookEvent
from longlink.model import MsgIdGenerator, Priority, Target
from longlink.protocol.limits import RateLimit
from longlink.trace import Tracer
from longlink.web.echo import (
    CONN_BURST,
    DEMO_ROOMS,
    MAX_TEXT,
    DemoEcho,
    EchoLimits,
    echo_of,
)
from tests.conftest import WAIT, eventually

LOBBY, MUSIC = DEMO_ROOMS


def event(
    data: bytes = b"hello",
    *,
    conn_id: str = "c1",
    rooms: list[str] | None = None,
    kind: str = UPSTREAM,
    user: str = "alice",
) -> WebhookEvent:
    rooms = [LOBBY] if rooms is None else rooms
    return WebhookEvent(
        id=f"e-{conn_id}",
        type=kind,
        user=user,
        device="d1",
        room=rooms[0] if rooms else None,
        conn_id=conn_id,
        node="g1",
        at=1,
        rooms=rooms if kind == UPSTREAM else None,
        data_b64=base64.b64encode(data).decode() if kind == UPSTREAM else None,
    )


# ------------------------------------------------------------------ limits (pure)


def test_a_connection_gets_its_burst_then_its_rate() -> None:
    limits = EchoLimits(RateLimit(2, 3), RateLimit(1000, 1000))
    assert [limits.admit("c", 100.0) for _ in range(4)] == [True, True, True, False]
    assert limits.admit("c", 100.5)  # 2 per second: one more every 0.5 s
    assert not limits.admit("c", 100.5)
    assert limits.admit("other", 100.5)  # each connection has its own


def test_a_refused_echo_costs_nothing() -> None:
    limits = EchoLimits(RateLimit(1, 1), RateLimit(1000, 1000))
    assert limits.admit("c", 0.0)
    for _ in range(100):  # a noisy client digs no deeper: the next second serves it again
        assert not limits.admit("c", 0.5)
    assert limits.admit("c", 1.0)


def test_the_total_limit_holds_across_connections() -> None:
    limits = EchoLimits(RateLimit(10, 10), RateLimit(4, 4))
    allowed = [limits.admit(f"c{i}", 0.0) for i in range(6)]
    assert allowed == [True] * 4 + [False] * 2
    assert limits.tracked == 4  # refused connections are not charged, nor remembered


def test_the_tracked_connections_are_bounded() -> None:
    limits = EchoLimits(max_tracked=3)
    for i in range(10):
        assert limits.admit(f"c{i}", float(i))
    assert limits.tracked == 3


# ------------------------------------------------------------------ what is echoed


def test_echo_of_a_demo_room_upstream() -> None:
    push = echo_of(event("  弹幕 hi  ".encode(), rooms=["elsewhere", MUSIC]))
    assert push is not None
    assert push.target == Target(rooms=[MUSIC])  # demo rooms only
    assert push.priority == Priority.LOW and not push.guaranteed
    assert json.loads(push.payload) == {"user": "alice", "text": "弹幕 hi"}


@pytest.mark.parametrize(
    "data, rooms",
    [
        (b"hello", ["elsewhere"]),  # not a demo room
        (b"hello", []),  # no room
        (b"  \n ", [LOBBY]),  # blank
    ],
)
def test_nothing_to_echo(data: bytes, rooms: list[str]) -> None:
    assert echo_of(event(data, rooms=rooms)) is None


def test_long_text_is_cut_and_bad_utf8_replaced() -> None:
    push = echo_of(event(b"\xff" + b"x" * 1000))
    assert push is not None
    text = json.loads(push.payload)["text"]
    assert len(text) == MAX_TEXT and text.startswith("\ufffdxx")


# ------------------------------------------------------------------ the sink


class Recorder:
    """An EventSink that keeps what it is offered (the webhook sender's place)."""

    def __init__(self, accept: bool = True) -> None:
        self.events: list[WebhookEvent] = []
        self.accept = accept

    def offer(self, event: WebhookEvent) -> bool:
        self.events.append(event)
        return self.accept


@pytest.fixture
async def queue() -> AsyncIterator[MemoryQueue]:
    queue = MemoryQueue()
    yield queue
    await queue.close()


def make_echo(queue: MemoryQueue, **options: Any) -> DemoEcho:
    pusher = Pusher(queue=queue, ids=MsgIdGenerator(1), tracer=Tracer())
    options.setdefault("metrics", CollectorRegistry())
    return DemoEcho(pusher, **options)


def counted(registry: CollectorRegistry, outcome: str) -> float:
    value = registry.get_sample_value("longlink_demo_echoes_total", {"outcome": outcome})
    return value or 0.0


async def test_upstream_is_pushed_to_the_room_through_the_push_path(queue: MemoryQueue) -> None:
    registry = CollectorRegistry()
    async with make_echo(queue, metrics=registry) as echo:
        assert echo.offer(event(b"first", conn_id="a"))
        assert echo.offer(event(b"second", conn_id="b", user="bob"))
        messages = []
        while len(messages) < 2:
            messages += await asyncio.wait_for(queue.fetch(Priority.LOW, 10), WAIT)
        await eventually(lambda: counted(registry, "echoed") == 2, what="the echoes counted")
    assert [json.loads(m.payload) for m in messages] == [
        {"user": "alice", "text": "first"},
        {"user": "bob", "text": "second"},
    ]
    assert messages[0].msg_id < messages[1].msg_id  # real ids, in order
    assert all(m.target == Target(rooms=[LOBBY]) for m in messages)


async def test_over_the_limit_upstream_is_refused_and_not_forwarded(queue: MemoryQueue) -> None:
    registry, hook = CollectorRegistry(), Recorder()
    async with make_echo(queue, metrics=registry, forward=hook, clock=lambda: 5.0) as echo:
        verdicts = [echo.offer(event(b"x")) for _ in range(CONN_BURST + 1)]
        assert verdicts == [True] * CONN_BURST + [False]
        assert len(hook.events) == CONN_BURST
        assert counted(registry, "limited") == 1


async def test_other_events_pass_through_to_the_webhook(queue: MemoryQueue) -> None:
    hook = Recorder(accept=False)
    async with make_echo(queue, forward=hook) as echo:
        enter = event(kind=ENTER)
        assert echo.offer(enter) is False  # the webhook's answer
        assert hook.events == [enter]
        assert echo.offer(event(b"elsewhere", rooms=["r"])) is False  # not echoed, forwarded
    async with make_echo(queue) as alone:
        assert alone.offer(enter) is True  # no webhook: accepted (fired, not delivered)
        assert alone.offer(event(b"x", rooms=["r"])) is True


async def test_a_full_queue_or_a_closed_echo_refuses(queue: MemoryQueue) -> None:
    echo = make_echo(queue, queue_size=1)  # not started: nothing takes from its queue
    assert echo.offer(event(b"x", conn_id="a"))
    assert not echo.offer(event(b"x", conn_id="b"))
    await echo.close()
    await echo.close()  # idempotent
    assert not echo.offer(event(b"x", conn_id="c"))
