"""The RoomDirectory contract (longlink.logic.base), for every backend."""

from __future__ import annotations

from longlink.logic.base import Registry
from tests.contracts.registry_helpers import report, session


async def test_areas(registry: Registry) -> None:
    await report(registry, "n1")
    await registry.add_session(session("c1", "n1", "u", "d", ["r1", "r2"]))
    await registry.set_room_area("r1", "a")
    await registry.set_room_area("r2", "a")
    assert await registry.room_area("r1") == "a"
    assert await registry.rooms_in_areas(["a"]) == ["r1", "r2"]
    assert (await registry.online()).areas == {"a": 2}
    await registry.set_room_area("r2", None)
    assert await registry.rooms_in_areas(["a"]) == ["r1"]
    assert (await registry.online()).areas == {"a": 1}
    await registry.set_room_area("r1", "b")  # a room is in one area at most
    assert await registry.rooms_in_areas(["a", "b"]) == ["r1"]
    assert (await registry.online()).areas == {"b": 1}


async def test_a_room_keeps_its_settings_with_nobody_in_it(registry: Registry) -> None:
    await registry.set_room_area("empty", "a")
    await registry.set_room_announce("empty", True)
    assert await registry.room_area("empty") == "a"
    assert await registry.room_area("other") is None
    assert await registry.rooms_in_areas(["a", "nowhere"]) == ["empty"]
    assert await registry.announced_rooms(["empty"]) == {"empty"}
    assert (await registry.online()).areas == {}


async def test_rooms_announce_when_set(registry: Registry) -> None:
    assert await registry.announced_rooms(["a", "b"]) == set()
    assert await registry.announced_rooms([]) == set()
    await registry.set_room_announce("a", True)
    await registry.set_room_announce("c", True)
    assert await registry.announced_rooms(["a", "b"]) == {"a"}
    await registry.set_room_announce("a", False)
    await registry.set_room_announce("b", False)  # never set: harmless
    assert await registry.announced_rooms(["a", "b", "c"]) == {"c"}
