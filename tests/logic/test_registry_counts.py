"""Online counts stay exact: 1,000 random operations on the registry against a plain model.

The model recomputes every count from scratch; the registry keeps them
incrementally. After every operation they must agree: total, per room, per
area, a user's sessions, and which nodes a target reaches.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from longlink.bus.redis import connect as redis_connect
from longlink.logic.base import SessionInfo, SessionRegistry
from longlink.logic.memory import MemoryRegistry
from longlink.logic.redis import RedisRegistry
from longlink.model import Target

ROOMS = [f"r{i}" for i in range(8)]
AREAS = ["north", "south", "east"]
NODES = ["g1", "g2", "g3"]
USERS = [f"u{i}" for i in range(6)]


@dataclass
class Model:
    sessions: dict[str, tuple[str, str, str, set[str]]] = field(default_factory=dict)
    area: dict[str, str] = field(default_factory=dict)

    def rooms(self) -> Counter[str]:
        return Counter(r for *_, rooms in self.sessions.values() for r in rooms)

    def areas(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for room, n in self.rooms().items():
            if room in self.area:
                counts[self.area[room]] += n
        return counts

    def nodes_for(self, target: Target) -> set[str]:
        rooms = set(target.rooms) | {r for r, a in self.area.items() if a in target.areas}
        return {
            node
            for node, user, device, joined in self.sessions.values()
            if target.all or user in target.users or device in target.devices or joined & rooms
        }


async def check(registry: SessionRegistry, model: Model) -> None:
    online = await registry.online()
    assert online.total == len(model.sessions)
    assert online.rooms == dict(model.rooms())
    assert online.areas == dict(model.areas())
    assert await registry.room_online(ROOMS) == {r: model.rooms().get(r, 0) for r in ROOMS}
    for user in USERS:
        got = {
            (s.conn_id, s.node, s.device, frozenset(s.rooms))
            for s in await registry.user_sessions(user)
        }
        want = {
            (c, node, device, frozenset(rooms))
            for c, (node, u, device, rooms) in model.sessions.items()
            if u == user
        }
        assert got == want
    for area in AREAS:
        assert sorted(await registry.rooms_in_areas([area])) == sorted(
            r for r, a in model.area.items() if a == area
        )


TARGETS = [
    Target(all=True),
    Target(users=["u0", "u3"]),
    Target(devices=["d1", "d4"]),
    Target(rooms=["r0", "r5"]),
    Target(areas=["north"]),
    Target(areas=["south", "east"]),
]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_counts_stay_exact_through_1000_random_operations(seed: int) -> None:
    rng = random.Random(seed)
    registry = MemoryRegistry()
    model = Model()
    next_conn = 0
    ops = Counter[str]()
    for _ in range(1000):
        live = sorted(model.sessions)
        op = rng.choices(
            ["open", "join", "leave", "close", "area", "forget"],
            weights=[20, 35, 20, 20, 4, 1] if live else [1, 0, 0, 0, 0, 0],
        )[0]
        ops[op] += 1
        if op == "open":
            next_conn += 1
            conn = f"c{next_conn}"
            node, user = rng.choice(NODES), rng.choice(USERS)
            device = f"d{rng.randrange(8)}"
            rooms = rng.sample(ROOMS, rng.randrange(4))
            await registry.add_session(SessionInfo(conn, node, user, device, rooms=list(rooms)))
            model.sessions[conn] = (node, user, device, set(rooms))
        elif op == "join":
            conn, room = rng.choice(live), rng.choice(ROOMS)
            model.sessions[conn][3].add(room)
            assert await registry.join(conn, room) == model.rooms()[room]
        elif op == "leave":
            conn, room = rng.choice(live), rng.choice(ROOMS)
            model.sessions[conn][3].discard(room)
            assert await registry.leave(conn, room) == model.rooms()[room]
        elif op == "close":  # a close and a reset look the same to the registry
            conn = rng.choice(live)
            removed = await registry.remove_session(conn)
            assert removed is not None and removed.conn_id == conn
            del model.sessions[conn]
            assert await registry.remove_session(conn) is None
        elif op == "area":
            room, area = rng.choice(ROOMS), rng.choice([*AREAS, None])
            await registry.set_room_area(room, area)
            if area is None:
                model.area.pop(room, None)
            else:
                model.area[room] = area
        else:  # a node dies: every session it held goes
            node = rng.choice(NODES)
            await registry.forget_node(node)
            model.sessions = {c: s for c, s in model.sessions.items() if s[0] != node}
        await check(registry, model)
        for target in TARGETS:
            assert await registry.nodes_for(target) == model.nodes_for(target), target
    assert min(ops.values()) > 0


@pytest.fixture(params=["memory", "redis"])
async def any_registry(request: pytest.FixtureRequest) -> AsyncIterator[SessionRegistry]:
    if request.param == "memory":
        yield MemoryRegistry()
        return
    client = redis_connect(request.getfixturevalue("redis_server_url"))
    await client.flushdb()
    yield RedisRegistry(client, live_cache_s=0.0)
    await client.aclose()


async def test_rooms_announce_when_set(any_registry: SessionRegistry) -> None:
    registry = any_registry
    assert await registry.announced_rooms(["a", "b"]) == set()
    assert await registry.announced_rooms([]) == set()
    await registry.set_room_announce("a", True)
    await registry.set_room_announce("c", True)
    assert await registry.announced_rooms(["a", "b"]) == {"a"}
    await registry.set_room_announce("a", False)
    await registry.set_room_announce("b", False)  # never set: harmless
    assert await registry.announced_rooms(["a", "b", "c"]) == {"c"}
