"""The expiry sweep: once a second, expired guaranteed messages leave the offline store.

Each removed message gets an ``expired`` event in the message trace, so
``GET /v1/messages/{msg_id}`` says why it never arrived. The sweep runs in
the process that owns the store (``longlink serve`` runs one); with a shared
store several sweepers are harmless: a message is removed, and traced, once.
"""

from __future__ import annotations

import logging
import time

from longlink.lifetime import Periodic
from longlink.store.base import OfflineStore
from longlink.trace import Tracer

__all__ = ["SWEEP_LIMIT", "Sweeper"]

log = logging.getLogger("longlink.store")

#: Most messages removed per transaction (a large backlog is removed in steps).
SWEEP_LIMIT = 10_000


class Sweeper(Periodic):
    """Runs :meth:`OfflineStore.expire` every ``interval_s`` (``async with Sweeper(...)``)."""

    task_name = "longlink-store-sweep"

    def __init__(self, store: OfflineStore, tracer: Tracer, interval_s: float = 1.0) -> None:
        super().__init__(interval_s)
        self.store = store
        self.tracer = tracer

    async def sweep(self) -> int:
        """Remove every message expired by now; returns how many."""
        removed = 0
        while True:
            ids = await self.store.expire(int(time.time() * 1000), SWEEP_LIMIT)
            for msg_id in ids:
                self.tracer.record(msg_id, "expired")
            removed += len(ids)
            if len(ids) < SWEEP_LIMIT:
                return removed

    async def tick(self) -> None:
        removed = await self.sweep()
        if removed:
            log.info("offline store: %d expired messages removed", removed)
