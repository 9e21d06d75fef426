"""The embedded room history: in process, bounded in total memory.

Limits: one process only (the gateway that reads it must be the process
dispatch writes it in: ``longlink serve`` with the embedded backends), and
nothing survives a restart; a client that reconnects after one gets
``recovered: false``.

Eviction, always oldest first so a room never keeps a message while
dropping an older one of its own:

1. **per room**: past ``size`` entries, the room's oldest goes;
2. **age**: an entry accepted more than ``ttl_s`` ago goes (reads skip such
   entries at once; the memory is given back when the entry is the oldest
   kept, at the next append);
3. **memory**: past ``max_bytes`` in total (each entry counted as its
   payload plus :data:`ENTRY_OVERHEAD`), the oldest entry of all rooms goes,
   so the rooms that were quiet longest lose their history first.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

from longlink.history.base import HistoryEntry, Kept

__all__ = ["ENTRY_OVERHEAD", "MemoryHistory"]

#: Bytes an entry costs beside its payload (its objects and index slots; docs/rooms.md
#: has the measurement: tests/history/test_memory_figures.py keeps it true).
ENTRY_OVERHEAD = 220


class _Slot:
    """One kept entry; ``entry`` None once it was dropped (it waits in the age order)."""

    __slots__ = ("cost", "entry", "room")

    def __init__(self, room: str, entry: HistoryEntry) -> None:
        self.room = room
        self.entry: HistoryEntry | None = entry
        self.cost = len(entry.payload) + ENTRY_OVERHEAD


class MemoryHistory:
    """Each room's last ``size`` messages within ``ttl_s``, at most ``max_bytes`` in all.

    ``clock`` gives unix seconds (tests move it). :meth:`keep` is the
    synchronous append the embedded node channel calls before it hands the
    messages to the nodes.
    """

    def __init__(
        self,
        size: int = 100,
        ttl_s: float = 300.0,
        max_bytes: int = 64 << 20,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if size < 0 or ttl_s < 0 or max_bytes < 0:
            raise ValueError("size, ttl_s and max_bytes must be >= 0")
        self.size = size
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._rooms: dict[str, deque[_Slot]] = {}
        self._order: deque[_Slot] = deque()  # every slot, in append order (some dropped)
        self._bytes = 0
        self._live = 0

    @property
    def bytes(self) -> int:
        """What the kept entries count for against ``max_bytes``."""
        return self._bytes

    @property
    def entries(self) -> int:
        """Entries kept, in all rooms."""
        return self._live

    async def append(self, entries: Sequence[Kept]) -> None:
        self.keep(entries)

    def keep(self, entries: Sequence[Kept]) -> None:
        """:meth:`append`, synchronously."""
        if self.size <= 0 or self.ttl_s <= 0:
            return  # history off
        rooms = self._rooms
        order = self._order
        for room, entry in entries:
            slot = _Slot(room, entry)
            kept = rooms.get(room)
            if kept is None:
                kept = rooms[room] = deque()
            kept.append(slot)
            order.append(slot)
            self._bytes += slot.cost
            self._live += 1
            if len(kept) > self.size:  # rule 1
                self._drop(kept.popleft())
        self._evict()

    async def read(self, rooms: Sequence[str]) -> dict[str, list[HistoryEntry]]:
        oldest = self._oldest_ms()
        out: dict[str, list[HistoryEntry]] = {}
        for room in rooms:
            entries = [s.entry for s in self._rooms.get(room, ()) if s.entry is not None]
            start = 0
            while start < len(entries) and entries[start].at_ms < oldest:  # rule 2
                start += 1
            out[room] = entries[start:]
        return out

    async def close(self) -> None:
        self._rooms.clear()
        self._order.clear()
        self._bytes = self._live = 0

    def _oldest_ms(self) -> float:
        return (self._clock() - self.ttl_s) * 1000

    def _drop(self, slot: _Slot) -> None:
        if slot.entry is not None:
            slot.entry = None
            self._bytes -= slot.cost
            self._live -= 1

    def _evict(self) -> None:
        """Rules 2 and 3 from the oldest slot on; compact the age order when mostly dropped."""
        order = self._order
        oldest = self._oldest_ms()
        while order:
            head = order[0]
            entry = head.entry
            if entry is not None and self._bytes <= self.max_bytes and entry.at_ms >= oldest:
                break
            order.popleft()
            if entry is None:
                continue  # dropped already (rule 1)
            kept = self._rooms[head.room]
            # The oldest slot of all is the oldest of its room: rooms never lose order.
            assert kept[0] is head
            kept.popleft()
            self._drop(head)
            if not kept:
                del self._rooms[head.room]
        if len(order) > 2 * self._live + 1024:
            self._order = deque(slot for slot in order if slot.entry is not None)
