"""The node reporter: the gateway tells the registry it is alive, with its load, every second.

Each report carries the node's endpoints, connection count, CPU load, price
and full mark, and its connection-quality window (control ranks endpoints by
them, PROTOCOL.md §2.1, §1.6 rule 3). The same loop refreshes
the online counts of the rooms held here (HEARTBEAT_OK carries them), and
when the registry answers that it did not know the node — a shared registry
that lost its data (Redis restarted empty) — every live session is
registered again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from longlink.gateway.hub import Hub
from longlink.gateway.quality import Quality
from longlink.gateway.sessions import Sessions
from longlink.lifetime import cancel_requested
from longlink.logic.base import NodeInfo, Registry

log = logging.getLogger("longlink.gateway")

REPORT_INTERVAL_S = 1.0


class NodeReporter:
    """Reports one gateway node (see the module docstring)."""

    def __init__(
        self,
        registry: Registry,
        hub: Hub,
        sessions: Sessions,
        quality: Quality,
        endpoints: Callable[[], tuple[str, str, str]],
        *,
        node: str,
        region: str,
        cost: float = 1.0,
        full: float = 0.8,
    ) -> None:
        self.registry = registry
        self.hub = hub
        self.sessions = sessions
        self.quality = quality
        self.cost = cost
        self.full = full
        self.endpoints = endpoints
        self.node = node
        self.region = region
        self._cpu = (time.monotonic(), time.process_time())

    async def run(self) -> None:
        """Report every :data:`REPORT_INTERVAL_S` until cancelled."""
        while not cancel_requested():
            await asyncio.sleep(REPORT_INTERVAL_S)
            try:
                await self.report()
                if self.hub.rooms:
                    self.sessions.online = await self.registry.room_online(list(self.hub.rooms))
            except Exception:
                log.exception("node report failed")

    async def report(self) -> None:
        """One report (the first one at start, before clients are sent here)."""
        now, cpu = time.monotonic(), time.process_time()
        last_now, last_cpu = self._cpu
        self._cpu = (now, cpu)
        load = (cpu - last_cpu) / (now - last_now) if now > last_now else 0.0
        ws, tcp, stream = self.endpoints()
        known = await self.registry.report_node(
            NodeInfo(
                node=self.node,
                region=self.region,
                ws=ws,
                tcp=tcp,
                stream=stream,
                connections=len(self.hub.conns) + len(self.sessions.unauthenticated),
                load=round(load, 3),
                reported_ms=int(time.time() * 1000),
                cost=self.cost,
                full=self.full,
                quality=self.quality.snapshot(now),
            )
        )
        if not known and self.hub.conns:
            await self.sessions.resync(int(time.time() * 1000))
