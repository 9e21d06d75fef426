"""The embedded history counts each message honestly against its memory bound."""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc

from longlink.history.base import HistoryEntry
from longlink.history.memory import ENTRY_OVERHEAD, MemoryHistory


def test_a_kept_message_costs_at_most_its_payload_and_the_overhead_counted() -> None:
    now_ms = int(time.time() * 1000)
    kept = [
        (f"room-{r}", HistoryEntry(r * 100 + i + 1, now_ms, bytes(100), True))
        for r in range(100)
        for i in range(100)
    ]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        history = MemoryHistory(100, 300, 1 << 40)
        history.keep(kept)
        gc.collect()
        added = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    entry, _ = kept[0][1], kept[0][0]
    own = sys.getsizeof(entry) + sys.getsizeof(entry.payload)  # made by dispatch, kept here
    per_message = added / len(kept) + own
    assert history.entries == len(kept)
    assert per_message - len(entry.payload) <= ENTRY_OVERHEAD, per_message
    assert history.bytes == len(kept) * (100 + ENTRY_OVERHEAD)
