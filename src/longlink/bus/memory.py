"""The embedded bus: asyncio in one process.

Limits: single process only; nothing survives a restart (guaranteed messages
are made durable by the offline store, not by the queue).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence

from longlink.bus.base import DeliveryHandler, QueueFull
from longlink.history.base import Kept
from longlink.history.memory import MemoryHistory
from longlink.model import Envelope, Message, Priority


class MemoryQueue:
    """Two bounded FIFO deques, one per priority, each with its own waiters."""

    def __init__(self, maxsize: int = 100_000) -> None:
        self._maxsize = maxsize
        self._queues: dict[Priority, deque[Message]] = {p: deque() for p in Priority}
        self._ready: dict[Priority, asyncio.Event] = {p: asyncio.Event() for p in Priority}
        self._closed = False

    async def publish(self, message: Message) -> None:
        if self._closed:
            raise QueueFull("queue is closed")
        queue = self._queues[message.priority]
        if len(queue) >= self._maxsize:
            raise QueueFull(f"{message.priority.value} queue holds {len(queue)} messages")
        queue.append(message)
        self._ready[message.priority].set()

    async def publish_many(self, messages: Sequence[Message]) -> int:
        for held, message in enumerate(messages):
            try:
                await self.publish(message)
            except QueueFull:
                if self._closed:
                    raise
                return held
        return len(messages)

    async def fetch(self, priority: Priority, max_count: int) -> list[Message]:
        queue = self._queues[priority]
        ready = self._ready[priority]
        while not queue:
            if self._closed:
                return []
            ready.clear()
            await ready.wait()
        count = min(max_count, len(queue))
        return [queue.popleft() for _ in range(count)]

    async def ack(self, priority: Priority, messages: Sequence[Message]) -> None:
        """Nothing to do: a fetched message has already left the deque."""

    def depth(self, priority: Priority) -> int:
        return len(self._queues[priority])

    async def close(self) -> None:
        self._closed = True
        for event in self._ready.values():
            event.set()


class MemoryNodeChannel:
    """Calls the attached node's handler directly: in-process delivery costs one call.

    ``history`` keeps the room messages given to :meth:`send_many` (before
    the handlers run); without one they are not kept.
    """

    def __init__(self, history: MemoryHistory | None = None) -> None:
        self._handlers: dict[str, DeliveryHandler] = {}
        self.history = history

    async def send(self, node_id: str, envelopes: Sequence[Envelope]) -> None:
        handler = self._handlers.get(node_id)
        if handler is not None:
            handler(envelopes)

    async def send_many(
        self, batches: Mapping[str, Sequence[Envelope]], history: Sequence[Kept] = ()
    ) -> None:
        if history and self.history is not None:
            self.history.keep(history)
        for node_id, envelopes in batches.items():
            await self.send(node_id, envelopes)

    async def attach(self, node_id: str, handler: DeliveryHandler) -> None:
        self._handlers[node_id] = handler

    async def detach(self, node_id: str) -> None:
        self._handlers.pop(node_id, None)
