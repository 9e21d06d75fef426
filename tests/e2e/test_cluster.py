"""Many processes on one Redis: roles, routing across gateways, failover with no loss.

Each test runs a deployment of separate processes: one api+control, two
gateways in different regions (so clients can be placed on either) and two
dispatch workers, all on a private redis-server with AOF. Redis tests never
skip under CI=true (tests/redis_server.py).
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from longlink.client import Client
from tests.conftest import API_KEY, WAIT, eventually
from tests.e2e.cluster import Cluster, push
from tests.e2e.webhook_receiver import WebhookReceiver
from tests.redis_server import require_redis

pytestmark = pytest.mark.redis
WEBHOOK_SECRET = "cluster-webhook-secret-0123456789abcdef"


@pytest.fixture
async def hook() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        yield receiver


@pytest.fixture
async def cluster(tmp_path: Path, hook: WebhookReceiver) -> AsyncIterator[Cluster]:
    require_redis()
    webhook = {"LONGLINK_WEBHOOK_URL": hook.url, "LONGLINK_WEBHOOK_SECRET": WEBHOOK_SECRET}
    async with Cluster(tmp_path) as running:
        await running.start("api", "api,control", LONGLINK_SWEEP_AFTER_S="1", **webhook)
        await running.start("g1", "gateway", LONGLINK_REGION="r1", **webhook)
        await running.start("g2", "gateway", LONGLINK_REGION="r2", **webhook)
        await running.start("d1", "dispatch")
        await running.start("d2", "dispatch")
        yield running


async def client(cluster: Cluster, user: str, region: str, **kw: Any) -> Client:
    c = Client(cluster.processes["api"].http_url, user=user, region=region, **kw)
    await c.connect()
    return c


async def until_marker(c: Client, marker: str) -> list[Any]:
    seen: list[Any] = []
    while (value := (await c.next_message(timeout=WAIT)).json()) != {"marker": marker}:
        seen.append(value)
    return seen


async def test_pushes_reach_clients_on_both_gateways_exactly_once(cluster: Cluster) -> None:
    url = cluster.processes["api"].http_url
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        assert (await http.put(f"{url}/v1/rooms/side", json={"area": "a"})).status_code == 200
    alice = await client(cluster, "alice", "r1", rooms=["lobby"])
    bob = await client(cluster, "bob", "r2", rooms=["lobby"])
    carol = await client(cluster, "carol", "r2", rooms=["side"])
    try:
        assert alice.auth_ok is not None and alice.auth_ok.node == "g1"
        assert bob.auth_ok is not None and bob.auth_ok.node == "g2"
        await push(url, {"to": {"users": ["alice", "carol"]}, "data": "users"})
        await push(url, {"to": {"rooms": ["lobby"]}, "data": "room"})
        await push(url, {"to": {"areas": ["a"]}, "data": "area"})
        await push(url, {"to": {"all": True}, "data": "all"})
        await push(url, {"to": {"all": True}, "data": {"marker": "m"}})
        assert await until_marker(alice, "m") == ["users", "room", "all"]
        assert await until_marker(bob, "m") == ["room", "all"]
        assert await until_marker(carol, "m") == ["users", "area", "all"]
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            online = (await http.get(f"{url}/v1/online")).json()
        assert online["total"] == 3 and online["rooms"] == {"lobby": 2, "side": 1}
        assert online["areas"] == {"a": 1}
    finally:
        for c in (alice, bob, carol):
            await c.close()


async def test_kill_9_gateway_clients_move_and_nothing_guaranteed_is_lost(
    cluster: Cluster, hook: WebhookReceiver
) -> None:
    url = cluster.processes["api"].http_url
    alice = await client(cluster, "alice", "r1", rooms=["lobby"], backoff_max_s=0.5)
    bob = await client(cluster, "bob", "r2", rooms=["lobby"])
    try:
        assert alice.auth_ok is not None and alice.auth_ok.node == "g1"
        await hook.wait_events(1, type="enter", user="alice")
        await cluster.kill("g1")  # SIGKILL: no drain, no goodbye
        sent = [
            await push(url, {"to": {"users": ["alice"]}, "data": i, "guaranteed": True})
            for i in range(20)
        ]
        got = [await alice.next_message(timeout=WAIT * 3) for _ in sent]
        assert sorted(m.msg_id for m in got) == sorted(sent)  # each once: the SDK dedups
        assert alice.auth_ok is not None and alice.auth_ok.node == "g2"

        async def healed() -> bool:
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {API_KEY}"}) as h:
                online = (await h.get(f"{url}/v1/online")).json()
            return bool(online["total"] == 2 and online["rooms"] == {"lobby": 2})

        await eventually(healed, within=WAIT * 3, what="presence to heal", interval=0.1)
        # The sweeper fires the exit the dead gateway could not send.
        [lost] = await hook.wait_events(1, within=WAIT * 3, type="exit", reason="node_lost")
        assert lost["user"] == "alice" and lost["room"] == "lobby" and lost["node"] == "g1"
    finally:
        await alice.close()
        await bob.close()


async def test_kill_9_dispatch_worker_mid_stream_loses_nothing(cluster: Cluster) -> None:
    url = cluster.processes["api"].http_url
    alice = await client(cluster, "alice", "r1")
    try:
        sent: list[int] = []
        for i in range(300):
            sent.append(await push(url, {"to": {"users": ["alice"]}, "data": i}))
            if i == 100:
                await cluster.kill("d1")
        got = [await alice.next_message(timeout=WAIT * 3) for _ in sent]
        # Entries d1 had fetched but not acked were claimed by d2 (XAUTOCLAIM):
        # every message arrives, and the SDK drops any copy dispatched twice.
        assert sorted(m.msg_id for m in got) == sorted(sent)
    finally:
        await alice.close()


async def test_redis_restart_everything_carries_on(cluster: Cluster) -> None:
    url = cluster.processes["api"].http_url
    alice = await client(cluster, "alice", "r1", rooms=["lobby"])
    bob = await client(cluster, "bob", "r2", backoff_max_s=0.5)
    try:
        await bob.close()  # bob is offline: his guaranteed message waits in the store
        kept = await push(url, {"to": {"users": ["bob"]}, "data": "kept", "guaranteed": True})
        cluster.redis.stop(kill=True)
        cluster.redis.start()  # same port and directory: the AOF brings the data back

        async def delivered() -> bool:
            try:
                await push(url, {"to": {"rooms": ["lobby"]}, "data": "after"})
            except AssertionError:
                return False  # the API answers 503 while it reconnects
            try:
                message = await alice.next_message(timeout=1.0)
            except TimeoutError:
                return False
            return bool(message.json() == "after")

        await eventually(delivered, within=WAIT * 3, what="the delivery", interval=0.1)
        bob = await client(cluster, "bob", "r2")
        message = await bob.next_message(timeout=WAIT)
        assert (message.msg_id, message.json()) == (kept, "kept")
    finally:
        await alice.close()
        await bob.close()


async def test_sigterm_stops_each_role_cleanly(cluster: Cluster) -> None:
    for name in ("d2", "g2", "api"):
        await cluster.kill(name, signal.SIGTERM)
        proc = cluster.processes[name].proc
        assert proc is not None and proc.returncode == 0, cluster.log(name)


async def test_the_trace_on_the_api_holds_every_process_part(cluster: Cluster) -> None:
    url = cluster.processes["api"].http_url
    alice = await client(cluster, "alice", "r1")
    try:
        msg_id = await push(url, {"to": {"users": ["alice"]}, "data": "t", "guaranteed": True})
        assert (await alice.next_message(timeout=WAIT)).msg_id == msg_id  # the SDK acks it
        wanted = ["accepted", "stored", "queued", "dispatched", "written", "acked"]
        seen: list[dict[str, Any]] = []
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=WAIT
        ) as http:

            async def traced_to_the_ack() -> bool:
                response = await http.get(f"/v1/messages/{msg_id}")
                assert response.status_code == 200, response.text
                seen[:] = response.json()["events"]
                return "acked" in [e["event"] for e in seen]

            await eventually(traced_to_the_ack, within=WAIT * 3, what="the ack in the trace")
            # api, a dispatch worker and g1 each recorded their part, merged in path order
            # (a retry may slip in before a slow ACK).
            names = [e["event"] for e in seen if e["event"] in wanted]
            assert names == wanted, seen
            by_name = {e["event"]: e for e in seen}
            assert by_name["dispatched"]["nodes"] == ["g1"] and by_name["written"]["node"] == "g1"
            assert by_name["acked"]["conn"].startswith("g1-")
            ats = [e["at_ms"] for e in seen]
            assert ats == sorted(ats)

            async def reach_counted() -> bool:
                reach = (await http.get("/v1/stats/reach")).json()
                return bool(reach["deliveries"] >= 1 and reach["acked"] >= 1)

            await eventually(reach_counted, within=WAIT * 3, what="the reach figures")
            assert (await http.get("/v1/messages/1")).status_code == 404
    finally:
        await alice.close()
