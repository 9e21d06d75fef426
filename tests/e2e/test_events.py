"""Enter, exit and upstream events reach a real webhook exactly once (PROTOCOL.md §2.3).

The webhook here fails every event's first two attempts; each event must
still be accepted exactly once, carrying an id that stayed the same across
the retries. "Exactly once" is checked after the node has shut down: by then
the sender has delivered everything it was given.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from longlink.client import (
    Client,
    ConnectionClosed,
    Disconnected,
    Kicked,
    ServerError,
    ServerEvent,
)
from longlink.node import Node
from longlink.protocol import Op
from longlink.protocol.messages import HeartbeatOk, decode_body
from tests.conftest import API_KEY, WAIT, fresh_bus, node_settings
from tests.e2e.raw_sessions import join, leave, open_session, request
from tests.e2e.webhook_receiver import WebhookReceiver

SECRET = "webhook-secret-for-the-tests"


def hook_settings(tmp_path: Any, hook: WebhookReceiver, bus: str, **changes: Any) -> Any:
    return node_settings(
        tmp_path,
        bus=bus,
        webhook_url=hook.url,
        webhook_secret=SECRET,
        webhook_retry_s=0.02,
        min_heartbeat_s=1,
        **changes,
    )


def api_client(node: Node) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=node.http_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=WAIT
    )


def stays(hook: WebhookReceiver, conn_id: str) -> dict[str, list[tuple[str, str | None]]]:
    """Per room, the (type, reason) of the connection's enter/exit events in arrival order."""
    rooms: dict[str, list[tuple[str, str | None]]] = {}
    for event in hook.events(conn_id=conn_id):
        if event["type"] in ("enter", "exit"):
            rooms.setdefault(event["room"], []).append((event["type"], event.get("reason")))
    return rooms


ENTER = ("enter", None)


async def test_enter_and_exit_exactly_once_however_the_connection_goes(
    tmp_path: Any, bus: str
) -> None:
    await fresh_bus(bus)
    async with WebhookReceiver(SECRET, fail_first=2) as hook:
        async with Node(hook_settings(tmp_path, hook, bus)) as node, api_client(node) as api:
            # Heartbeats re-assert the rooms: no second enter. LEAVE exits one room.
            beats, beats_ok = await open_session(node, "ann", rooms=["r1", "r2"])
            for _ in range(5):
                reply = await request(beats, Op.HEARTBEAT)
                assert decode_body(reply.body, HeartbeatOk).online == {"r1": 1, "r2": 1}
            assert (await join(beats, "r1")).op == Op.JOIN_OK  # already in: no enter
            assert (await leave(beats, "r1")).op == Op.LEAVE_OK
            assert (await leave(beats, "r1")).op == Op.LEAVE_OK  # not in: no exit
            # A stay ended by LEAVE and a new one started by JOIN.
            again, again_ok = await open_session(node, "bob", transport="ws")
            for _ in range(2):
                assert (await join(again, "r4")).op == Op.JOIN_OK
                assert (await leave(again, "r4")).op == Op.LEAVE_OK
            assert (await join(again, "r4")).op == Op.JOIN_OK
            # Reset, heartbeat loss, kick.
            reset, reset_ok = await open_session(node, "cat", rooms=["r1"], transport="ws")
            silent, silent_ok = await open_session(node, "dan", rooms=["r3"], heartbeat_s=1)
            kicked, kicked_ok = await open_session(node, "eve", rooms=["r2"])
            await hook.wait_events(1, conn_id=kicked_ok.conn_id, type="enter")
            reset.abort()
            response = await api.post("/v1/users/eve/kick", json={"reason": "banned"})
            assert response.json() == {"kicked": 1}
            assert (await kicked.recv_frame(timeout=WAIT)).op == Op.KICK
            await hook.wait_events(1, conn_id=silent_ok.conn_id, type="exit")
            await hook.wait_events(1, conn_id=reset_ok.conn_id, type="exit")
            await beats.close()
            await again.close()
            await hook.wait_events(2, conn_id=beats_ok.conn_id, type="exit")
            await hook.wait_events(3, conn_id=again_ok.conn_id, type="exit")
            await kicked.close()
            await silent.close()
            suspect = node.metrics.get_sample_value("longlink_connections_suspect")
        # The node is down and its webhook sender drained: nothing more will come.
        assert stays(hook, beats_ok.conn_id) == {
            "r1": [ENTER, ("exit", "leave")],
            "r2": [ENTER, ("exit", "closed")],
        }
        assert stays(hook, again_ok.conn_id) == {
            "r4": [ENTER, ("exit", "leave"), ENTER, ("exit", "leave"), ENTER, ("exit", "closed")]
        }
        assert stays(hook, reset_ok.conn_id) == {"r1": [ENTER, ("exit", "closed")]}
        assert stays(hook, silent_ok.conn_id) == {"r3": [ENTER, ("exit", "timeout")]}
        assert stays(hook, kicked_ok.conn_id) == {"r2": [ENTER, ("exit", "kicked")]}
        ids = Counter(event["id"] for event in hook.accepted)
        assert set(ids.values()) == {1}  # each event accepted once ...
        assert set(hook.attempts.values()) == {3}  # ... on its third attempt, same id
        assert hook.bad_signatures == 0
        assert suspect == 0
        for event in hook.accepted:
            assert event["node"] == node.settings.node_id
            assert event["device"] and event["user"] in ("ann", "bob", "cat", "dan", "eve")
            assert isinstance(event["at"], int)


async def test_room_announces_enter_and_exit_when_set(tmp_path: Any, bus: str) -> None:
    await fresh_bus(bus)
    async with Node(node_settings(tmp_path, bus=bus)) as node, api_client(node) as api:
        response = await api.put("/v1/rooms/stage", json={"announce": True})
        assert response.status_code == 200
        assert response.json() == {"room": "stage", "area": None, "online": 0, "announce": True}
        assert (await api.get("/v1/rooms/quiet")).json() == {
            "room": "quiet",
            "area": None,
            "online": 0,
        }
        async with (
            Client(node.http_url, user="alice", rooms=["stage", "quiet"]) as alice,
            Client(node.http_url, user="bob", transport="tcp") as bob,
        ):
            seen = await alice.next_event(timeout=WAIT)  # her own entrance
            assert isinstance(seen, ServerEvent)
            assert (seen.type, seen.room, seen.user) == ("enter", "stage", "alice")
            await bob.join("quiet")  # not announced
            await bob.join("stage")
            seen = await alice.next_event(timeout=WAIT)
            assert isinstance(seen, ServerEvent)
            assert seen.data == {"type": "enter", "room": "stage", "user": "bob"}
            await bob.leave("stage")
            seen = await alice.next_event(timeout=WAIT)
            assert isinstance(seen, ServerEvent)
            assert seen.data == {"type": "exit", "room": "stage", "user": "bob"}
            await bob.join("stage")
            assert (await alice.next_event(timeout=WAIT)).type == "enter"  # type: ignore[union-attr]
        response = await api.put("/v1/rooms/stage", json={"announce": False})
        assert "announce" not in response.json()
        assert (await api.put("/v1/rooms/stage", json={})).status_code == 400


async def test_upstream_reaches_the_webhook_with_user_device_and_room(
    tmp_path: Any, bus: str
) -> None:
    await fresh_bus(bus)
    async with (
        WebhookReceiver(SECRET) as hook,
        Node(hook_settings(tmp_path, hook, bus)) as node,
        Client(node.http_url, user="uma", device="uma-phone", rooms=["g1", "g2"]) as client,
    ):
        data = b"\x00\xffhello upstream"
        await client.upstream(data)  # returns on UPSTREAM_OK: accepted for delivery
        [event] = await hook.wait_events(1, type="upstream")
    assert base64.b64decode(event["data_b64"]) == data
    assert event["user"] == "uma" and event["device"] == "uma-phone"
    assert event["room"] in ("g1", "g2") and sorted(event["rooms"]) == ["g1", "g2"]
    assert event["conn_id"] == client.auth_ok.conn_id  # type: ignore[union-attr]


async def test_upstream_rate_limit_then_close(tmp_path: Any, bus: str) -> None:
    await fresh_bus(bus)
    async with WebhookReceiver(SECRET) as hook:
        settings = hook_settings(tmp_path, hook, bus, upstream_rate=0.01, upstream_burst=2)
        async with Node(settings) as node:
            raw, _ = await open_session(node, "vic")
            async with raw:
                for _ in range(2):
                    assert (await request(raw, Op.UPSTREAM, b"x")).op == Op.UPSTREAM_OK
                reply = await request(raw, Op.UPSTREAM, b"x")
                assert json.loads(reply.body)["code"] == "rate_limited"  # refused, served on
                assert (await request(raw, Op.HEARTBEAT)).op == Op.HEARTBEAT_OK
                for _ in range(10):  # a client that keeps on: closed at 3x its burst
                    await raw.send_frame(Op.UPSTREAM, b"x", seq=7)
                assert await raw.wait_closed(timeout=WAIT)
                codes = []
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        codes.append(json.loads((await raw.recv_frame()).body)["code"])
                assert codes and set(codes) == {"rate_limited"} and len(codes) <= 4
            await hook.wait_events(2, type="upstream")
        assert len(hook.events(type="upstream")) == 2


async def test_upstream_without_a_webhook_is_not_allowed(tmp_path: Any, bus: str) -> None:
    await fresh_bus(bus)
    # (Nor a demo echo: in demo mode it would take upstream, web/echo.py.)
    async with Node(node_settings(tmp_path, bus=bus, demo_echo=False)) as node:
        raw, _ = await open_session(node, "wes")
        reply = await request(raw, Op.UPSTREAM, b"x")
        assert json.loads(reply.body)["code"] == "not_allowed"
        assert (await request(raw, Op.HEARTBEAT)).op == Op.HEARTBEAT_OK  # still open
        await raw.close()


@pytest.fixture
async def plain_node(tmp_path: Any, bus: str) -> AsyncIterator[Node]:
    await fresh_bus(bus)
    async with Node(node_settings(tmp_path, bus=bus, demo_echo=False)) as node:
        yield node


async def test_a_new_login_of_the_device_replaces_the_older_one(plain_node: Node) -> None:
    node = plain_node
    async with (
        api_client(node) as api,
        Client(node.http_url, user="xia", device="xia-tv") as old,
        Client(node.http_url, user="xia", device="xia-tv", transport="tcp") as new,
    ):
        kicked = await old.next_event(timeout=WAIT)
        assert isinstance(kicked, Kicked) and kicked.reason == "replaced"
        gone = await old.next_event(timeout=WAIT)
        assert isinstance(gone, Disconnected) and not gone.will_reconnect
        sessions = (await api.get("/v1/users/xia")).json()["connections"]
        assert [s["conn_id"] for s in sessions] == [new.auth_ok.conn_id]  # type: ignore[union-attr]
        await api.post("/v1/push", json={"to": {"devices": ["xia-tv"]}, "data": 1})
        assert (await new.next_message(timeout=WAIT)).json() == 1


async def test_same_device_may_stay_twice_when_configured(tmp_path: Any, bus: str) -> None:
    await fresh_bus(bus)
    async with (
        Node(node_settings(tmp_path, bus=bus, kick_same_device=False)) as node,
        api_client(node) as api,
        Client(node.http_url, user="yan", device="yan-tv") as first,
        Client(node.http_url, user="yan", device="yan-tv") as second,
    ):
        sessions = (await api.get("/v1/users/yan")).json()["connections"]
        assert len(sessions) == 2
        await api.post("/v1/push", json={"to": {"devices": ["yan-tv"]}, "data": 2})
        assert (await first.next_message(timeout=WAIT)).json() == 2
        assert (await second.next_message(timeout=WAIT)).json() == 2


async def test_other_devices_stay_and_upstream_needs_a_webhook(plain_node: Node) -> None:
    async with (
        Client(plain_node.http_url, user="zed", device="zed-1") as one,
        Client(plain_node.http_url, user="zed", device="zed-2") as two,
    ):
        with pytest.raises(ServerError) as refused:
            await one.upstream(b"x")
        assert refused.value.code == "not_allowed"
        assert two.connected and one.connected
