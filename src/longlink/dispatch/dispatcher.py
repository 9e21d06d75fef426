"""The dispatch job: high and low priority queues consumed separately, routed by registry.

Each priority has its own consumer task, so a backlog of low-priority
messages never delays a high-priority one. A message's target is resolved to
the nodes that hold its connections (areas become their rooms here, so a
gateway never needs to know areas), and each node receives, in queue order,
the messages it must write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict

from prometheus_client import CollectorRegistry, Counter, Histogram

from longlink.bus.base import MessageQueue, NodeChannel
from longlink.logic.base import SessionRegistry
from longlink.model import Message, Priority, Target

log = logging.getLogger("longlink.dispatch")

FETCH_MAX = 512


class DispatchMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.dispatched = Counter(
            "longlink_dispatched_messages",
            "Messages routed to gateway nodes",
            ["priority"],
            registry=registry,
        )
        self.unrouted = Counter(
            "longlink_unrouted_messages",
            "Messages whose target had no connection anywhere",
            ["priority"],
            registry=registry,
        )
        self.latency = Histogram(
            "longlink_dispatch_latency_seconds",
            "From acceptance at the API to hand-over to the gateway nodes",
            ["priority"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )


class Dispatcher:
    """Runs one consumer per priority until closed (``async with Dispatcher(...)``)."""

    def __init__(
        self,
        queue: MessageQueue,
        registry: SessionRegistry,
        channel: NodeChannel,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        self.queue = queue
        self.registry = registry
        self.channel = channel
        self.metrics = DispatchMetrics(metrics or CollectorRegistry())
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Dispatcher:
        self._tasks = [
            asyncio.create_task(self._consume(priority), name=f"dispatch-{priority.value}")
            for priority in (Priority.HIGH, Priority.LOW)
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop consuming; idempotent. Messages still queued stay in the queue."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _consume(self, priority: Priority) -> None:
        while True:
            messages = await self.queue.fetch(priority, FETCH_MAX)
            if not messages:
                return  # queue closed
            try:
                await self.route(messages)
            except Exception:
                log.exception("dispatch of %d %s messages failed", len(messages), priority)

    async def route(self, messages: list[Message]) -> None:
        """Send each message to the nodes holding its targets, in order per node."""
        per_node: defaultdict[str, list[Message]] = defaultdict(list)
        for message in messages:
            target = message.target
            if target.areas:
                rooms = await self.registry.rooms_in_areas(target.areas)
                target = Target(rooms=sorted(set(rooms)))
                message = Message(
                    msg_id=message.msg_id,
                    target=target,
                    payload=message.payload,
                    priority=message.priority,
                    guaranteed=message.guaranteed,
                    ttl_s=message.ttl_s,
                    accepted_ms=message.accepted_ms,
                )
            nodes = await self.registry.nodes_for(target)
            if not nodes:
                self.metrics.unrouted.labels(message.priority.value).inc()
            for node in nodes:
                per_node[node].append(message)
        for node, batch in per_node.items():
            await self.channel.send(node, batch)
        now_ms = time.time() * 1000
        for message in messages:
            label = message.priority.value
            self.metrics.dispatched.labels(label).inc()
            if message.accepted_ms:
                self.metrics.latency.labels(label).observe(
                    max(0.0, (now_ms - message.accepted_ms) / 1000)
                )
