"""Online counts through real connections on two nodes stay exact (PROTOCOL.md §1.2, §2.2).

1,000 random operations — opens, joins, leaves, heartbeats, graceful closes
and resets, over TCP and WebSocket, on two gateway nodes — are applied to
real connections and to a plain model. JOIN_OK must carry the model's count
at once; ``GET /v1/online``, ``GET /v1/rooms/{room}`` and ``GET /v1/users/{user}``
must agree with the model at every checkpoint.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from longlink.client.raw import RawConnection
from longlink.logic.base import SessionInfo, Sessions
from longlink.node import Backends, Node
from longlink.protocol import Op
from longlink.protocol.messages import Auth, AuthOk, HeartbeatOk, JoinOk, decode_body, encode_body
from tests.conftest import API_KEY, WAIT, fresh_bus, node_settings
from tests.e2e.raw_sessions import address, join, leave, open_session, request

ROOMS = [f"room-{i}" for i in range(6)]
AREA_OF = {"room-0": "east", "room-1": "east", "room-2": "west"}


class Removals:
    """Tells the test when the registry has removed a session, whatever the backend.

    Wraps ``remove_session`` of the very registry the nodes run on (memory or
    Redis): the nodes keep their real registry, and the test awaits the removal
    instead of polling for it.
    """

    def __init__(self, registry: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
        self._remove_session = registry.remove_session
        self._removed = asyncio.Condition()
        self.removed: set[str] = set()
        monkeypatch.setattr(registry, "remove_session", self.remove_session)

    async def remove_session(self, conn_id: str) -> SessionInfo | None:
        session = await self._remove_session(conn_id)
        async with self._removed:
            self.removed.add(conn_id)
            self._removed.notify_all()
        return session

    async def wait_removed(self, conn_id: str) -> None:
        async with asyncio.timeout(WAIT), self._removed:
            await self._removed.wait_for(lambda: conn_id in self.removed)


@dataclass
class Live:
    raw: RawConnection
    node: str
    user: str
    device: str
    rooms: set[str]


@dataclass
class Pair:
    a: Node
    b: Node
    removals: Removals
    api: httpx.AsyncClient


@pytest.fixture
async def pair(tmp_path: Any, bus: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Pair]:
    """Two nodes on one set of backends (memory, or one Redis): ``pa`` runs every role."""
    await fresh_bus(bus)
    base = node_settings(tmp_path, bus=bus)
    backends = Backends.from_settings(base)
    removals = Removals(backends.registry, monkeypatch)
    a = Node(base.replace(node_id="pa"), backends)
    b = Node(base.replace(node_id="pb", roles=("gateway",)), backends)
    try:
        async with a, b:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(base_url=a.http_url, headers=headers, timeout=WAIT) as api:
                yield Pair(a, b, removals, api)
    finally:
        await backends.close()


async def check(pair: Pair, live: dict[str, Live], rng: random.Random) -> None:
    rooms = Counter(r for conn in live.values() for r in conn.rooms)
    areas = Counter({area: 0 for area in AREA_OF.values()})
    for room, n in rooms.items():
        if room in AREA_OF:
            areas[AREA_OF[room]] += n
    online = (await pair.api.get("/v1/online")).json()
    assert online == {
        "total": len(live),
        "rooms": {r: n for r, n in rooms.items() if n},
        "areas": {a: n for a, n in areas.items() if n},
    }
    room = rng.choice(ROOMS)
    answer = (await pair.api.get(f"/v1/rooms/{room}")).json()
    assert answer == {"room": room, "area": AREA_OF.get(room), "online": rooms[room]}
    user = rng.choice(["u0", "u1", "u2", "u3"])
    connections = (await pair.api.get(f"/v1/users/{user}")).json()["connections"]
    assert sorted(
        (c["conn_id"], c["node"], c["device"], sorted(c["rooms"])) for c in connections
    ) == sorted(
        (conn_id, c.node, c.device, sorted(c.rooms))
        for conn_id, c in live.items()
        if c.user == user
    )


async def test_counts_stay_exact_through_1000_random_operations(pair: Pair) -> None:
    rng = random.Random(20240611)
    for room, area in AREA_OF.items():
        await pair.api.put(f"/v1/rooms/{room}", json={"area": area})
    live: dict[str, Live] = {}
    try:
        await run_operations(pair, live, rng)
    finally:
        for conn in live.values():
            await conn.raw.close()


async def run_operations(pair: Pair, live: dict[str, Live], rng: random.Random) -> None:
    nodes = {"pa": pair.a, "pb": pair.b}
    done: Counter[str] = Counter()
    serial = 0
    for step in range(1000):
        op = rng.choices(
            ["open", "join", "leave", "heartbeat", "close", "reset"],
            weights=[12 if len(live) > 15 else 40, 34, 20, 6, 12, 12]
            if live
            else [1, 0, 0, 0, 0, 0],
        )[0]
        done[op] += 1
        if op == "open":
            serial += 1
            node_id, transport = rng.choice(["pa", "pb"]), rng.choice(["ws", "tcp"])
            user, device = f"u{rng.randrange(4)}", f"dev-{serial}"
            rooms = set(rng.sample(ROOMS, rng.randrange(4)))
            token, _ = pair.a.tokens.issue(user, device)
            raw = await RawConnection.open(transport, address(nodes[node_id], transport))
            auth = Auth(token=token, rooms=sorted(rooms))
            reply = await request(raw, Op.AUTH, encode_body(auth))
            ok = decode_body(reply.body, AuthOk)
            assert (ok.node, sorted(ok.rooms)) == (node_id, sorted(rooms))
            live[ok.conn_id] = Live(raw, node_id, user, device, rooms)
        else:
            conn_id = rng.choice(sorted(live))
            conn = live[conn_id]
            if op == "join":
                room = rng.choice(ROOMS)
                conn.rooms.add(room)
                reply = await join(conn.raw, room)
                expected = sum(room in c.rooms for c in live.values())
                assert decode_body(reply.body, JoinOk) == JoinOk(room, expected)
            elif op == "leave":
                room = rng.choice(ROOMS)
                conn.rooms.discard(room)
                assert (await leave(conn.raw, room)).op == Op.LEAVE_OK
            elif op == "heartbeat":
                reply = await request(conn.raw, Op.HEARTBEAT)
                assert set(decode_body(reply.body, HeartbeatOk).online) == conn.rooms
            else:
                del live[conn_id]
                if op == "close":
                    await conn.raw.close()
                else:
                    conn.raw.abort()
                await pair.removals.wait_removed(conn_id)
        if step % 25 == 24:
            await check(pair, live, rng)
    await check(pair, live, rng)
    assert min(done.values()) > 20, done


async def test_heartbeat_ok_and_join_ok_carry_room_counts(pair: Pair) -> None:
    first, _ = await open_session(pair.a, "v1", rooms=["hall"])
    second, _ = await open_session(pair.b, "v2", rooms=["hall"], control=pair.a)
    reply = await join(first, "side")
    assert decode_body(reply.body, JoinOk) == JoinOk("side", 1)
    reply = await join(second, "side")
    assert decode_body(reply.body, JoinOk) == JoinOk("side", 2)
    reply = await request(second, Op.HEARTBEAT)
    assert decode_body(reply.body, HeartbeatOk).online == {"hall": 2, "side": 2}
    for raw in (first, second):
        await raw.close()
