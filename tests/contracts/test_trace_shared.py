"""The TraceView contract: one message's path as the whole deployment saw it, every backend.

A deployment here is three processes, api, dispatch and gateway, each with
its own tracer. On the memory backend they are one process with one tracer
(``LocalTraceView``); on Redis each has its own tracer and its own
responder on the real Redis (``RedisTraceView``), and the api's view gathers
the others' parts. Either way the answers are the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from longlink.bus.redis import connect as redis_connect
from longlink.model import MsgIdGenerator
from longlink.trace import LocalTraceView, Tracer, TraceView
from longlink.trace.redis import CHANNEL, RedisTraceView
from tests.conftest import WAIT, eventually
from tests.contracts.conftest import bus_url
from tests.redis_server import RedisServer, require_redis

#: The views' deadline in these tests (production: 1 s).
TIMEOUT_S = 0.3
ROLES = ("api", "dispatch", "gateway")


@dataclass
class Deployment:
    tracers: dict[str, Tracer]  # by role
    view: TraceView  # the api's
    views: list[RedisTraceView] = field(default_factory=list)  # Redis: one per process
    clients: list[Any] = field(default_factory=list)


@contextlib.asynccontextmanager
async def on_redis(url: str) -> AsyncIterator[Deployment]:
    """Three processes, each with its own client, tracer and responder on ``url``."""
    async with contextlib.AsyncExitStack() as stack:
        views: list[RedisTraceView] = []
        clients: list[Any] = []
        for role in ROLES:
            client = redis_connect(url)
            stack.push_async_callback(client.aclose)
            clients.append(client)
            view = RedisTraceView(client, Tracer(), name=role, timeout_s=TIMEOUT_S, retry_s=0.1)
            views.append(await stack.enter_async_context(view))
        tracers = {role: view.tracer for role, view in zip(ROLES, views, strict=True)}
        yield Deployment(tracers, views[0], views, clients)


@pytest.fixture
async def deployment(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[Deployment]:
    if backend == "memory":
        tracer = Tracer()
        yield Deployment(dict.fromkeys(ROLES, tracer), LocalTraceView(tracer))
        return
    async with on_redis(bus_url(backend, request)) as running:
        yield running


def record_a_delivery(tracers: dict[str, Tracer], msg_id: int, t: int) -> None:
    """The path of a guaranteed message, each event recorded by the role that sees it."""
    api, dispatch, gateway = (tracers[role] for role in ROLES)
    api.record(msg_id, "accepted", ("users", "high", True, 30), at_ms=t)
    api.record(msg_id, "stored", at_ms=t)
    # The same millisecond on three processes: the merge follows the path.
    api.record(msg_id, "queued", at_ms=t + 1)
    dispatch.record(msg_id, "dispatched", (("g1",),), at_ms=t + 1)
    gateway.record(msg_id, "written", ("g1", 1, 1), at_ms=t + 1)
    gateway.record(msg_id, "acked", ("g1-c-1", 0), at_ms=t + 3)


async def test_the_trace_holds_every_process_part_in_time_order(deployment: Deployment) -> None:
    msg_id = MsgIdGenerator(1).next_id()
    t = int(time.time() * 1000)
    record_a_delivery(deployment.tracers, msg_id, t)
    trace = await deployment.view.trace(msg_id)
    assert trace is not None
    assert trace.to_json() == {
        "msg_id": str(msg_id),
        "events": [
            {"at_ms": t, "event": "accepted", "target": "users", "priority": "high",
             "guaranteed": True, "ttl_s": 30},
            {"at_ms": t, "event": "stored"},
            {"at_ms": t + 1, "event": "queued"},
            {"at_ms": t + 1, "event": "dispatched", "nodes": ["g1"]},
            {"at_ms": t + 1, "event": "written", "node": "g1", "targeted": 1, "written": 1},
            {"at_ms": t + 3, "event": "acked", "conn": "g1-c-1", "retries": 0},
        ],
        "dropped_events": 0,
    }  # fmt: skip


async def test_a_message_no_process_knows_has_no_trace(deployment: Deployment) -> None:
    deployment.tracers["gateway"].record(1, "written")
    assert await deployment.view.trace(2) is None


async def test_a_message_only_another_process_saw_is_found(deployment: Deployment) -> None:
    deployment.tracers["gateway"].record(5, "from_store", ("g1-c-1",))
    trace = await deployment.view.trace(5)
    assert trace is not None and [e.event for e in trace.events] == ["from_store"]


async def test_reach_sums_every_process(deployment: Deployment) -> None:
    deployment.tracers["gateway"].outcome(0, True)
    deployment.tracers["gateway"].outcome(2, False)
    deployment.tracers["dispatch"].outcome(1, True, from_store=True)  # as a second gateway
    reach = await deployment.view.reach()
    assert (reach.deliveries, reach.acked, reach.first_try_acked) == (3, 2, 1)
    assert (reach.retries, reach.from_store) == (3, 1)
    assert reach.final_reach == pytest.approx(2 / 3) and reach.mean_retries == 1.0
    assert (await deployment.view.reach(window_s=5)).deliveries == 3


# ---------------------------------------------------------------------- Redis only


@pytest.fixture
async def redis_deployment(redis_server_url: str) -> AsyncIterator[Deployment]:
    async with on_redis(redis_server_url) as running:
        yield running


async def test_a_stopped_responder_is_not_waited_for(redis_deployment: Deployment) -> None:
    msg_id = MsgIdGenerator(1).next_id()
    record_a_delivery(redis_deployment.tracers, msg_id, int(time.time() * 1000))
    await redis_deployment.views[2].close()  # the gateway process is gone, and its part
    started = time.monotonic()
    trace = await redis_deployment.view.trace(msg_id)
    assert time.monotonic() - started < TIMEOUT_S  # the api did not wait for the deadline
    assert trace is not None
    assert [e.event for e in trace.events] == ["accepted", "stored", "queued", "dispatched"]
    await redis_deployment.views[2].close()  # idempotent


async def test_a_silent_process_delays_the_answer_to_the_deadline_only(
    redis_deployment: Deployment,
) -> None:
    msg_id = MsgIdGenerator(1).next_id()
    record_a_delivery(redis_deployment.tracers, msg_id, int(time.time() * 1000))
    silent = redis_deployment.clients[1].pubsub()  # subscribed, never answers (a hung process)
    await silent.subscribe(CHANNEL)
    try:
        while (await silent.get_message(timeout=WAIT)) is None:
            pass  # the subscription is confirmed: PUBLISH counts it from now on
        started = time.monotonic()
        trace = await redis_deployment.view.trace(msg_id)
        elapsed = time.monotonic() - started
        assert TIMEOUT_S <= elapsed < TIMEOUT_S + 0.5
        assert trace is not None and len(trace.events) == 6  # the others' parts are all there
        reach = await redis_deployment.view.reach()
        assert reach.deliveries == 0
    finally:
        await silent.aclose()


async def test_responders_come_back_after_a_redis_restart(tmp_path: Path) -> None:
    require_redis()
    server = RedisServer(str(tmp_path))
    server.start()
    try:
        async with on_redis(server.url) as deployment:
            msg_id = MsgIdGenerator(1).next_id()
            record_a_delivery(deployment.tracers, msg_id, int(time.time() * 1000))
            server.stop(kill=True)
            # Redis down: the api answers with its own part, in time.
            started = time.monotonic()
            trace = await deployment.view.trace(msg_id)
            assert time.monotonic() - started < TIMEOUT_S + 1.0
            assert trace is not None and [e.event for e in trace.events] == [
                "accepted", "stored", "queued"
            ]  # fmt: skip
            await asyncio.wait_for(deployment.views[1].close(), WAIT)  # stops with Redis down
            server.start()  # same port

            async def acked() -> bool:  # the gateway's responder subscribes again by itself
                trace = await deployment.view.trace(msg_id)
                return trace is not None and "acked" in [e.event for e in trace.events]

            await eventually(acked, what="the gateway's responder to come back", interval=0.05)
            trace = await deployment.view.trace(msg_id)
            assert trace is not None and [e.event for e in trace.events] == [
                "accepted", "stored", "queued", "written", "acked"
            ]  # fmt: skip
    finally:
        server.stop()
