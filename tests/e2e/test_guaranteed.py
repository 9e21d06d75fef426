"""Guaranteed delivery end to end (PROTOCOL §1.3 rule 5): a real node, raw and SDK clients.

Retries run at ``RETRY`` seconds here. Events are awaited with timeouts;
conditions on the node (its trace, its store) are awaited by checking them
until they hold (``eventually``). The one thing that cannot be awaited — that
a message is *not* sent again — is shown by waiting out the window in which
it would have come, and each such wait says so.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from longlink.client import Client, ConnectionClosed, RawConnection
from longlink.node import Node
from longlink.protocol import Flag, Frame, Op
from longlink.protocol.messages import AckBody, Auth, AuthOk, decode_body, encode_body
from tests.conftest import API_KEY, SCALE, WAIT, eventually, fresh_bus, node_settings

RETRY = 0.2
MAX_RETRIES = 2
TRANSPORTS = ["ws", "tcp"]


# ------------------------------------------------------------------ helpers


def events(node: Node, msg_id: int) -> list[str]:
    trace = node.tracer.trace(msg_id)
    return [e.event for e in trace.events] if trace is not None else []


async def wait_event(node: Node, msg_id: int, event: str, count: int = 1) -> None:
    async def seen() -> bool:
        return events(node, msg_id).count(event) >= count

    await eventually(seen, what=f"{count} x {event!r} in the trace of {msg_id}")


async def store_holds(node: Node, count: int) -> None:
    assert node.store is not None
    store = node.store

    async def holds() -> bool:
        return await store.count() == count

    await eventually(holds, what=f"{count} messages in the offline store")


async def push(api: httpx.AsyncClient, to: dict[str, Any], data: Any, **extra: Any) -> int:
    body = {"to": to, "data": data, "guaranteed": True, **extra}
    response = await api.post("/v1/push", json=body)
    assert response.status_code == 202, response.text
    return int(response.json()["msg_id"])


async def raw_session(
    node: Node, user: str, device: str, transport: str = "tcp"
) -> tuple[RawConnection, AuthOk]:
    """A rule-free connection that has sent AUTH and got AUTH_OK (it never acks by itself)."""
    async with httpx.AsyncClient(base_url=node.http_url, timeout=WAIT) as http:
        grant = (await http.post("/v1/connect", json={"user": user, "device": device})).json()
    raw = await RawConnection.open(transport, grant["endpoints"][0][transport])
    await raw.send_frame(Op.AUTH, encode_body(Auth(grant["token"])), seq=1)
    frame = await raw.recv_frame(WAIT)
    assert frame.op == Op.AUTH_OK, frame
    return raw, decode_body(frame.body, AuthOk)


async def next_push(raw: RawConnection) -> tuple[Frame, float]:
    """The next PUSH (heartbeat answers and events skipped) and when it arrived."""
    while True:
        frame = await raw.recv_frame(WAIT)
        if frame.op == Op.PUSH:
            return frame, time.monotonic()


@pytest.fixture
async def gnode(tmp_path: Path, bus: str) -> AsyncIterator[Node]:
    """A node on each backend (the offline store is SQLite or Redis with it)."""
    await fresh_bus(bus)
    settings = node_settings(tmp_path, bus=bus, retry_interval_s=RETRY, max_retries=MAX_RETRIES)
    async with Node(settings) as running:
        yield running


@pytest.fixture
async def api(gnode: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=gnode.http_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=WAIT
    ) as client:
        yield client


# ------------------------------------------------------------------ retries on a live connection


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unacked_is_resent_max_retries_times_at_the_interval_then_kept_and_redelivered(
    gnode: Node, api: httpx.AsyncClient, transport: str
) -> None:
    raw, _ = await raw_session(gnode, "ann", "ann-phone", transport)
    async with raw:
        msg_id = await push(api, {"users": ["ann"]}, {"invite": 1})
        arrivals: list[float] = []
        for _ in range(1 + MAX_RETRIES):
            frame, at = await next_push(raw)
            assert (frame.msg_id, frame.flags & Flag.ACK_REQUIRED) == (msg_id, Flag.ACK_REQUIRED)
            assert frame.body == b'{"invite":1}'
            arrivals.append(at)
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        # One interval plus at most one wheel tick (RETRY / 10), give or take the loop's
        # latency in reading them (tests/gateway/test_guarantee.py checks the exact rule).
        assert all(RETRY * 0.75 <= gap <= RETRY + 0.3 * SCALE for gap in gaps), gaps
        # No further retry: a third one would come one interval after the second; wait
        # two intervals (the only bounded wait here: an absence cannot be awaited).
        with pytest.raises(TimeoutError):
            await raw.recv_frame(timeout=2 * RETRY)
        await wait_event(gnode, msg_id, "unacked")
    assert events(gnode, msg_id)[:4] == ["accepted", "stored", "queued", "dispatched"]
    assert events(gnode, msg_id).count("retried") == MAX_RETRIES
    reach = (await api.get("/v1/stats/reach")).json()
    assert (reach["deliveries"], reach["acked"], reach["retries"]) == (1, 0, MAX_RETRIES)

    # Kept offline: delivered right after the next AUTH_OK, still ACK_REQUIRED.
    raw, _ = await raw_session(gnode, "ann", "ann-phone", transport)
    async with raw:
        frame, _ = await next_push(raw)
        assert (frame.msg_id, frame.flags & Flag.ACK_REQUIRED) == (msg_id, Flag.ACK_REQUIRED)
        await raw.send_frame(Op.ACK, msg_id=msg_id)
        await wait_event(gnode, msg_id, "acked")
        await store_holds(gnode, 0)
    assert "from_store" in events(gnode, msg_id)


async def test_an_acked_message_is_never_resent(gnode: Node, api: httpx.AsyncClient) -> None:
    raw, _ = await raw_session(gnode, "ben", "ben-phone")
    async with raw:
        first = await push(api, {"users": ["ben"]}, 1)
        second = await push(api, {"devices": ["ben-phone"]}, 2)
        # A user and a device: two targets, which a sharded queue may deliver either way.
        got = {(await next_push(raw))[0].msg_id for _ in range(2)}
        assert got == {first, second}
        # ACK takes one id in the header or a list in the body (PROTOCOL §1.2 op 6).
        await raw.send_frame(Op.ACK, encode_body(AckBody([first, second])))
        await wait_event(gnode, second, "acked")
        # Bounded wait: the first retry would come one interval after the write.
        with pytest.raises(TimeoutError):
            await raw.recv_frame(timeout=(MAX_RETRIES + 1) * RETRY)
        await store_holds(gnode, 0)
    for msg_id in (first, second):
        assert "retried" not in events(gnode, msg_id)
    # And it is not redelivered at the next connect: the next PUSH is the new one.
    raw, _ = await raw_session(gnode, "ben", "ben-phone")
    async with raw:
        marker = await push(api, {"users": ["ben"]}, "marker")
        assert (await next_push(raw))[0].msg_id == marker


# ------------------------------------------------------------------ offline users, SDK


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_pushes_to_an_offline_user_arrive_after_connect_oldest_first_once(
    gnode: Node, api: httpx.AsyncClient, transport: str
) -> None:
    sent = [await push(api, {"users": ["cleo"]}, {"n": n}) for n in range(3)]
    sent.append(await push(api, {"devices": ["cleo-tablet"]}, {"n": 3}))
    await push(api, {"users": ["someone-else"]}, {"n": -1})
    await store_holds(gnode, 5)
    await wait_event(gnode, sent[0], "dispatched")  # the store is written before the 202
    assert events(gnode, sent[0]) == ["accepted", "stored", "queued", "dispatched"]
    trace = gnode.tracer.trace(sent[0])
    assert trace is not None
    dispatched = [e for e in trace.events if e.event == "dispatched"]
    assert dispatched and dispatched[0].detail == {"nodes": []}  # nobody online: kept

    async with Client(
        gnode.http_url, user="cleo", device="cleo-tablet", transport=transport
    ) as client:
        got = [await client.next_message(timeout=WAIT) for _ in range(4)]
        assert [m.msg_id for m in got] == sent
        assert [m.json()["n"] for m in got] == [0, 1, 2, 3]
        assert all(m.guaranteed for m in got)
        for msg_id in sent:
            await wait_event(gnode, msg_id, "acked")
        await store_holds(gnode, 1)  # someone-else's is still kept
    for msg_id in sent:
        assert events(gnode, msg_id)[-2:] == ["from_store", "acked"]


async def test_every_connection_of_the_user_gets_it_and_one_ack_is_enough(
    gnode: Node, api: httpx.AsyncClient
) -> None:
    async with (
        Client(gnode.http_url, user="dan", device="dan-phone") as phone,
        Client(gnode.http_url, user="dan", device="dan-laptop", auto_ack=False) as laptop,
    ):
        msg_id = await push(api, {"users": ["dan"]}, "both")
        assert (await phone.next_message(timeout=WAIT)).msg_id == msg_id
        assert (await laptop.next_message(timeout=WAIT)).msg_id == msg_id
        await store_holds(gnode, 0)  # the phone's ACK took it out of the store
        trace = gnode.tracer.trace(msg_id)
        assert trace is not None
        written = [e.detail for e in trace.events if e.event == "written"]
        assert written == [{"node": "g1", "targeted": 2, "written": 2}]


# ------------------------------------------------------------------ SDK acks


async def test_auto_ack_fires_when_the_app_takes_the_message(
    gnode: Node, api: httpx.AsyncClient
) -> None:
    async with Client(gnode.http_url, user="eve") as client:
        msg_id = await push(api, {"users": ["eve"]}, "later")
        # The SDK holds it unacked until the app takes it, so the server retries.
        await wait_event(gnode, msg_id, "retried")
        assert "acked" not in events(gnode, msg_id)
        message = await client.next_message(timeout=WAIT)
        assert message.msg_id == msg_id
        await wait_event(gnode, msg_id, "acked")
        # The retries were dropped by the SDK: the next message the app sees is new.
        marker = await push(api, {"users": ["eve"]}, "marker")
        assert (await client.next_message(timeout=WAIT)).msg_id == marker


async def test_manual_ack_one_id_or_a_list(gnode: Node, api: httpx.AsyncClient) -> None:
    async with Client(gnode.http_url, user="fay", transport="tcp", auto_ack=False) as client:
        ids = [await push(api, {"users": ["fay"]}, n) for n in range(3)]
        got = [(await client.next_message(timeout=WAIT)).msg_id for _ in ids]
        assert got == ids
        for msg_id in ids:
            await wait_event(gnode, msg_id, "retried")  # nothing acks them yet
        await client.ack(ids[0])
        await client.ack(ids[1:])
        for msg_id in ids:
            await wait_event(gnode, msg_id, "acked")
        await store_holds(gnode, 0)
        marker = await push(api, {"users": ["fay"]}, "marker")
        assert (await client.next_message(timeout=WAIT)).msg_id == marker  # no duplicate


# ------------------------------------------------------------------ TTL, trace and stats API


async def test_ttl_expiry_removes_it_and_the_trace_says_expired(
    gnode: Node, api: httpx.AsyncClient
) -> None:
    msg_id = await push(api, {"users": ["gus"]}, "soon gone", ttl_s=1)
    await store_holds(gnode, 1)
    await wait_event(gnode, msg_id, "expired")  # the sweep runs once a second
    await store_holds(gnode, 0)
    trace = (await api.get(f"/v1/messages/{msg_id}")).json()
    assert trace["msg_id"] == str(msg_id)
    assert trace["events"][-1]["event"] == "expired"
    assert trace["events"][-1]["at_ms"] >= trace["events"][0]["at_ms"] + 1000
    async with Client(gnode.http_url, user="gus") as client:
        marker = await push(api, {"users": ["gus"]}, "marker")
        assert (await client.next_message(timeout=WAIT)).msg_id == marker


async def test_trace_and_reach_routes(gnode: Node, api: httpx.AsyncClient) -> None:
    assert (await api.get("/v1/messages/12345")).status_code == 404
    for bad in ("abc", "-1", str(1 << 64), "1" * 30):
        response = await api.get(f"/v1/messages/{bad}")
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "bad_request"
    assert (await api.get("/v1/stats/reach?window_s=0")).status_code == 400
    plain = (await api.post("/v1/push", json={"to": {"rooms": ["r"]}, "data": 1})).json()

    async def plain_events() -> list[str]:
        trace = (await api.get(f"/v1/messages/{plain['msg_id']}")).json()
        return [e["event"] for e in trace["events"]]

    async def dispatched() -> bool:  # dispatch runs on its own (a Redis bus is async)
        return len(await plain_events()) >= 3

    await eventually(dispatched, what="the plain push to be dispatched")
    assert await plain_events() == ["accepted", "queued", "dispatched"]
    reach = (await api.get("/v1/stats/reach?window_s=60")).json()
    assert reach["window_s"] == 60 and reach["deliveries"] == 0
    assert reach["max_retries"] == MAX_RETRIES and reach["final_reach"] is None
    async with httpx.AsyncClient(base_url=gnode.http_url) as anonymous:
        assert (await anonymous.get("/v1/stats/reach")).status_code == 401


@pytest.mark.parametrize("to", [{"rooms": ["r"]}, {"areas": ["a"]}, {"all": True}])
async def test_guaranteed_is_refused_for_rooms_areas_and_all(
    api: httpx.AsyncClient, to: dict[str, Any]
) -> None:
    response = await api.post("/v1/push", json={"to": to, "data": 1, "guaranteed": True})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert "guaranteed" in error["message"] and "users and devices" in error["message"]
    batch = {
        "messages": [{"to": {"users": ["u"]}, "data": 1}, {"to": to, "data": 2, "guaranteed": True}]
    }
    response = await api.post("/v1/push/batch", json=batch)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("messages[1].guaranteed")


async def test_a_stopped_client_leaves_unacked_messages_for_next_time(
    gnode: Node, api: httpx.AsyncClient
) -> None:
    client = Client(gnode.http_url, user="hal", device="hal-phone", auto_ack=False)
    async with client:
        msg_id = await push(api, {"users": ["hal"]}, "x")
        assert (await client.next_message(timeout=WAIT)).msg_id == msg_id
    with pytest.raises(ConnectionClosed):
        await client.next_message(timeout=WAIT)
    await wait_event(gnode, msg_id, "closed")
    await store_holds(gnode, 1)
    async with Client(gnode.http_url, user="hal", device="hal-phone") as again:
        assert (await again.next_message(timeout=WAIT)).msg_id == msg_id
        await store_holds(gnode, 0)
