"""Recovery across gateways on the Redis bus: the room history survives a gateway's SIGKILL.

A deployment of separate processes on a private redis-server: api+control,
two gateways (regions r1 and r2, so a client can be placed on either) and
one dispatch worker (one worker keeps a room's order; several may
interleave their steps). Every process keeps 10 messages per room.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from longlink.client import Client, Message, Recovery
from longlink.client.raw import RawConnection
from longlink.protocol import Op
from longlink.protocol.client import unpack_pushes
from longlink.protocol.messages import Auth, AuthOk, decode_body, encode_body
from tests.conftest import API_KEY, WAIT, eventually
from tests.e2e.cluster import Cluster, push
from tests.e2e.raw_sessions import request
from tests.redis_server import require_redis

pytestmark = pytest.mark.redis
HISTORY = 10


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    require_redis()
    history = {"LONGLINK_HISTORY_SIZE": str(HISTORY)}
    async with Cluster(tmp_path) as running:
        await running.start("api", "api,control", **history)
        await running.start("g1", "gateway", LONGLINK_REGION="r1", **history)
        await running.start("g2", "gateway", LONGLINK_REGION="r2", **history)
        await running.start("d1", "dispatch", **history)
        yield running


async def room_push(url: str, room: str, data: object) -> int:
    return await push(url, {"to": {"rooms": [room]}, "data": data})


async def kept_ids(url: str, room: str) -> list[int]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        response = await http.get(f"{url}/v1/rooms/{room}/history")
    assert response.status_code == 200, response.text
    return [int(m["msg_id"]) for m in response.json()["messages"]]


async def recovery_event(client: Client) -> Recovery:
    while True:
        event = await client.next_event(timeout=WAIT * 3)
        if isinstance(event, Recovery):
            return event


async def take(client: Client, count: int) -> list[Message]:
    return [await client.next_message(timeout=WAIT * 3) for _ in range(count)]


async def test_kill_9_gateway_the_client_recovers_its_room_on_the_other(
    cluster: Cluster,
) -> None:
    url = cluster.processes["api"].http_url
    alice = Client(url, user="alice", region="r1", rooms=["lobby"], backoff_max_s=0.5)
    await alice.connect()
    try:
        assert alice.auth_ok is not None and alice.auth_ok.node == "g1"
        before = [await room_push(url, "lobby", i) for i in range(2)]
        assert [m.msg_id for m in await take(alice, 2)] == before
        await cluster.kill("g1")  # SIGKILL: no drain, no goodbye
        missed = [await room_push(url, "lobby", i) for i in range(2, 7)]
        await eventually(
            lambda: _holds(url, "lobby", missed[-1]), within=WAIT, what="the missed messages kept"
        )
        event = await recovery_event(alice)  # the SDK reconnected with since by itself
        assert event == Recovery("lobby", True)
        assert alice.auth_ok is not None and alice.auth_ok.node == "g2"
        got = await take(alice, len(missed))
        assert [(m.room, m.msg_id) for m in got] == [("lobby", i) for i in missed]
        live = [await room_push(url, "lobby", i) for i in range(7, 9)]
        got = await take(alice, len(live))
        assert [m.msg_id for m in got] == live
        assert alice.last_ids["lobby"] == live[-1]
    finally:
        await alice.close()


async def test_since_older_than_the_history_on_another_gateway(cluster: Cluster) -> None:
    url = cluster.processes["api"].http_url
    ids = [await room_push(url, "news", i) for i in range(HISTORY + 5)]
    await eventually(lambda: _holds(url, "news", ids[-1]), within=WAIT, what="news kept")
    assert await kept_ids(url, "news") == ids[-HISTORY:]
    async with httpx.AsyncClient(timeout=WAIT) as http:
        token = (await http.post(f"{url}/v1/connect", json={"user": "bob"})).json()["token"]
    g2 = cluster.processes["g2"]
    raw = await RawConnection.open("tcp", f"127.0.0.1:{g2.ports['tcp']}")
    try:
        since = {"news": str(ids[0]), "gone": "12345"}
        body = encode_body(Auth(token=token, rooms=["news", "gone"], since=since))
        reply = await request(raw, Op.AUTH, body)
        assert reply.op == Op.AUTH_OK, reply
        assert decode_body(reply.body, AuthOk).recovered == {"news": False, "gone": False}
        got: list[tuple[str | None, int]] = []
        while len(got) < HISTORY:
            frame = await raw.recv_frame(timeout=WAIT)
            if frame.op == Op.PUSH:
                got += [(m.room, m.msg_id) for m in unpack_pushes(frame)]
        assert got == [("news", i) for i in ids[-HISTORY:]]
        # And from one still kept: exactly the rest, recovered.
        raw2 = await RawConnection.open("tcp", f"127.0.0.1:{g2.ports['tcp']}")
        body = encode_body(Auth(token=token, rooms=["news"], since={"news": str(ids[-3])}))
        reply = await request(raw2, Op.AUTH, body)
        assert decode_body(reply.body, AuthOk).recovered == {"news": True}
        frame = await raw2.recv_frame(timeout=WAIT)
        assert [m.msg_id for m in unpack_pushes(frame)] == ids[-2:]
        await raw2.close()
    finally:
        await raw.close()


async def _holds(url: str, room: str, msg_id: int) -> bool:
    return msg_id in await kept_ids(url, room)
