"""The Sessions contract (longlink.logic.base), for every backend.

Counts stay exact through random operations against a plain model that
recomputes every count from scratch, while the registry keeps them
incrementally: total, per room, per area, a user's sessions, and which
nodes a target reaches.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from longlink.logic.base import Registry, SessionInfo
from longlink.model import Target
from tests.contracts.registry_helpers import report, session

ROOMS = [f"r{i}" for i in range(8)]
AREAS = ["north", "south", "east"]
NODES = ["g1", "g2", "g3"]
USERS = [f"u{i}" for i in range(6)]


async def test_sessions_rooms_and_counts(registry: Registry) -> None:
    await report(registry, "n1", "n2")
    await registry.add_session(session("c1", "n1", "alice", "a1", ["r1", "r2"]))
    await registry.add_session(session("c2", "n2", "alice", "a2", ["r1"]))
    await registry.add_session(session("c3", "n2", "bob", "b1", []))
    assert await registry.room_online(["r1", "r2", "r3"]) == {"r1": 2, "r2": 1, "r3": 0}
    assert await registry.join("c3", "r2") == 2
    assert await registry.join("c3", "r2") == 2  # idempotent
    assert await registry.leave("c1", "r2") == 1
    online = await registry.online()
    assert online.total == 3 and online.rooms == {"r1": 2, "r2": 1}
    sessions = await registry.user_sessions("alice")
    assert [(s.conn_id, s.node, s.device) for s in sessions] == [
        ("c1", "n1", "a1"),
        ("c2", "n2", "a2"),
    ]
    removed = await registry.remove_session("c2")
    assert removed is not None and removed.user == "alice" and removed.rooms == ["r1"]
    assert await registry.remove_session("c2") is None
    assert await registry.room_online(["r1"]) == {"r1": 1}


async def test_an_unknown_connection_changes_nothing(registry: Registry) -> None:
    await report(registry, "n1")
    await registry.add_session(session("c1", "n1", "u", "d", ["r"]))
    assert await registry.join("ghost", "r") == 1
    assert await registry.leave("ghost", "r") == 1
    assert await registry.room_online(["r"]) == {"r": 1}


async def test_adding_a_known_connection_replaces_it(registry: Registry) -> None:
    await report(registry, "n1", "n2")
    await registry.add_session(session("c1", "n1", "u", "d", ["a", "a", "b"]))
    assert await registry.room_online(["a", "b"]) == {"a": 1, "b": 1}  # repeated rooms count once
    await registry.add_session(session("c1", "n2", "u", "d", ["b"]))
    assert await registry.room_online(["a", "b"]) == {"a": 0, "b": 1}
    assert await registry.nodes_for(Target(users=["u"])) == {"n2"}


async def test_a_reconnect_racing_the_old_sessions_removal_keeps_the_room_routed(
    registry: Registry,
) -> None:
    """The last connection of a room leaves while another of the same node joins it, in
    every interleaving of their commands: the room keeps its node (a count decremented to
    zero and dropped apart would lose the join in between)."""
    await report(registry, "n1")
    await registry.add_session(session("c0", "n1", "u", "d0", ["r"]))
    for i in range(1, 40):
        await asyncio.gather(
            registry.remove_session(f"c{i - 1}"),
            registry.add_session(session(f"c{i}", "n1", "u", f"d{i}", ["r"])),
        )
        assert await registry.nodes_for(Target(rooms=["r"])) == {"n1"}, i
        assert await registry.room_online(["r"]) == {"r": 1}


async def test_nodes_for_each_target_kind(registry: Registry) -> None:
    await report(registry, "n1", "n2", "n3")
    await registry.add_session(session("c1", "n1", "alice", "a1", ["r1"]))
    await registry.add_session(session("c2", "n2", "bob", "b1", ["r2"]))
    await registry.set_room_area("r2", "area")
    assert await registry.nodes_for(Target(users=["alice"])) == {"n1"}
    assert await registry.nodes_for(Target(devices=["b1"])) == {"n2"}
    assert await registry.nodes_for(Target(rooms=["r1", "r2"])) == {"n1", "n2"}
    assert await registry.nodes_for(Target(areas=["area"])) == {"n2"}
    assert await registry.nodes_for(Target(all=True)) == {"n1", "n2"}
    assert await registry.nodes_for(Target(users=["nobody"])) == set()


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


async def check(registry: Registry, model: Model) -> None:
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
    for target in TARGETS:
        assert await registry.nodes_for(target) == model.nodes_for(target), target
    assert await registry.nodes_for_many(TARGETS) == [model.nodes_for(t) for t in TARGETS]


TARGETS = [
    Target(all=True),
    Target(users=["u0", "u3"]),
    Target(devices=["d1", "d4"]),
    Target(rooms=["r0", "r5"]),
    Target(areas=["north"]),
    Target(areas=["south", "east"]),
]


async def test_counts_stay_exact_through_random_operations(registry: Registry, client: Any) -> None:
    # On Redis each check is a few dozen round trips: fewer operations there.
    runs = [(1, 1000), (2, 1000), (3, 1000)] if client is None else [(1, 150)]
    for seed, operations in runs:
        await random_operations(registry, random.Random(seed), operations)


async def random_operations(registry: Registry, rng: random.Random, operations: int) -> None:
    for node in NODES:  # start from nothing
        await registry.forget_node(node)
    for room in ROOMS:
        await registry.set_room_area(room, None)
    model = Model()
    next_conn = 0
    ops = Counter[str]()
    for _ in range(operations):
        await report(registry, *NODES)  # as live gateways do every second
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
        else:  # a node dies: every session it held goes (it comes back at the next report)
            node = rng.choice(NODES)
            await registry.forget_node(node)
            model.sessions = {c: s for c, s in model.sessions.items() if s[0] != node}
        await check(registry, model)
    assert min(ops.values()) > 0
