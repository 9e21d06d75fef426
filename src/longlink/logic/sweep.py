"""Healing a shared registry after a gateway dies without saying goodbye (kill -9).

A dead node's counts vanish by themselves when its reports stop (on Redis,
when its ``alive`` key expires: :mod:`longlink.logic.redis`).
:class:`RegistrySweeper` then, on a registry that offers
:class:`~longlink.logic.base.NodeSweep`, after ``sweep_after_s``, removes the
node's sessions and fires an ``exit`` event
(reason ``node_lost``) for every room they were in, so the business learns
that those users left. Event ids are derived from the connection and room,
so the exit can be deduplicated against any the gateway itself had sent.
"""

from __future__ import annotations

import logging
import time

from longlink.lifetime import Periodic
from longlink.logic.base import NodeSweep
from longlink.logic.events import EXIT, EventSink, WebhookEvent

log = logging.getLogger("longlink.logic.sweep")


class RegistrySweeper(Periodic):
    """Runs ``registry.sweep`` (:class:`~longlink.logic.base.NodeSweep`) every ``interval_s``."""

    task_name = "longlink-registry-sweep"

    def __init__(
        self,
        registry: NodeSweep,
        events: EventSink | None,
        *,
        node: str,
        stale_after_s: float = 30.0,
        interval_s: float = 1.0,
    ) -> None:
        super().__init__(interval_s)
        self.registry = registry
        self.events = events
        self.node = node
        self.stale_after_ms = int(stale_after_s * 1000)

    async def tick(self) -> None:
        await self.sweep()

    async def sweep(self) -> int:
        """Sweep once; returns how many sessions of dead nodes were removed."""
        lost = await self.registry.sweep(self.stale_after_ms)
        now_ms = int(time.time() * 1000)
        for session in lost:
            log.info("node %s is gone: session %s removed", session.node, session.conn_id)
            if self.events is None:
                continue
            for room in session.rooms:
                self.events.offer(
                    WebhookEvent(
                        id=f"lost-{session.conn_id}-{room}",
                        type=EXIT,
                        user=session.user,
                        device=session.device,
                        room=room,
                        conn_id=session.conn_id,
                        node=session.node,
                        at=now_ms,
                        reason="node_lost",
                    )
                )
        return len(lost)
