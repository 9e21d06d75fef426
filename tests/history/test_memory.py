"""The embedded history's own bound: total memory, oldest first across rooms."""

from __future__ import annotations

from longlink.history.base import HistoryEntry
from longlink.history.memory import ENTRY_OVERHEAD, MemoryHistory


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def entry(msg_id: int, clock: Clock, size: int = 100) -> HistoryEntry:
    return HistoryEntry(msg_id, int(clock.now * 1000), b"x" * size)


async def test_past_max_bytes_the_oldest_of_all_rooms_go_first() -> None:
    clock = Clock()
    cost = 100 + ENTRY_OVERHEAD
    history = MemoryHistory(size=10, ttl_s=300, max_bytes=4 * cost, clock=clock)
    history.keep([("quiet", entry(1, clock)), ("busy", entry(2, clock))])
    history.keep([("busy", entry(i, clock)) for i in (3, 4, 5)])
    assert history.bytes <= 4 * cost and history.entries == 4
    read = await history.read(["quiet", "busy"])
    assert read["quiet"] == []  # quiet longest: its history went first
    assert [e.msg_id for e in read["busy"]] == [2, 3, 4, 5]


async def test_expired_entries_give_their_memory_back() -> None:
    clock = Clock()
    history = MemoryHistory(size=10, ttl_s=60, clock=clock)
    history.keep([(f"room-{i}", entry(i, clock)) for i in range(50)])
    assert history.entries == 50
    clock.now += 61
    history.keep([("new", entry(99, clock))])
    assert history.entries == 1
    assert history.bytes == 100 + ENTRY_OVERHEAD


async def test_the_age_order_is_compacted_when_rooms_drop_their_own() -> None:
    clock = Clock()
    history = MemoryHistory(size=2, ttl_s=300, clock=clock)
    history.keep([("old", entry(0, clock))])  # stays oldest: nothing passes it by age
    for i in range(1, 10_000):
        history.keep([("r", entry(i, clock, size=1))])
    assert history.entries == 3
    assert len(history._order) <= 2 * 3 + 1024


async def test_off_keeps_nothing() -> None:
    clock = Clock()
    for history in (MemoryHistory(0, 300, clock=clock), MemoryHistory(5, 0, clock=clock)):
        history.keep([("r", entry(1, clock))])
        assert history.entries == 0
