"""The push use case: validated pushes in, message ids out, messages on the queues.

:class:`Pusher` is what ``POST /v1/push`` and ``POST /v1/push/batch`` do once
a request is decoded, checked and admitted (keys, scopes, rates and overload
are :mod:`longlink.api.admission`'s). No HTTP here: the route renders the ids
(202) or the refusal (503).

For one request of ``n`` pushes, in this order:

1. Each push becomes a :class:`~longlink.model.Message` with the next message
   id and one acceptance instant for the whole request; each is traced
   ``accepted``.
2. The guaranteed ones are committed to the offline store *before* anything is
   queued, so an id handed back means the message survives a crash
   (docs/guaranteed-delivery.md); traced ``stored``.
3. They are published in request order; the first one whose queue is full
   stops the rest. The queued ones are traced ``queued``.
4. The guaranteed messages that were not queued are taken back out of the
   store (best effort), so a refused message is not delivered later from it.

Refusals (each answered 503 ``overloaded`` with Retry-After)::

    LonglinkError
     └── PushNotQueued        (priority, queued, refused)
          ├── StoreUnavailable   the store failed: nothing was queued
          └── QueueFilled        a queue was full: ``queued`` holds the ids queued before it
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence

from longlink.api.schemas import PushRequest
from longlink.bus.base import MessageQueue, QueueFull
from longlink.model import Message, MsgIdGenerator, Priority
from longlink.protocol.errors import LonglinkError
from longlink.store.base import OfflineStore, StoreError, recipients_of
from longlink.trace import Tracer

__all__ = ["PushNotQueued", "Pusher", "QueueFilled", "StoreUnavailable"]


class PushNotQueued(LonglinkError):
    """Some pushes of a request were not queued; the client retries them later.

    ``queued`` are the ids of the messages queued before the refusal (in
    request order, possibly none); ``refused`` how many were not queued;
    ``priority`` the priority of the first one refused.
    """

    def __init__(
        self, message: str, *, priority: Priority, queued: list[int], refused: int
    ) -> None:
        super().__init__(message)
        self.message = message
        self.priority = priority
        self.queued = queued
        self.refused = refused


class StoreUnavailable(PushNotQueued):
    """The offline store could not keep the guaranteed messages: none of the request is queued."""


class QueueFilled(PushNotQueued):
    """The queue of ``priority`` was full: the pushes from the first refused one on are dropped."""


class Pusher:
    """Turns validated pushes into queued messages (see the module docstring).

    ``store`` is None when guaranteed messages are not made durable (API-only
    tests); ``clock_ns`` gives unix nanoseconds (the acceptance instant).
    """

    __slots__ = ("_clock_ns", "ids", "queue", "store", "tracer")

    def __init__(
        self,
        *,
        queue: MessageQueue,
        ids: MsgIdGenerator,
        tracer: Tracer,
        store: OfflineStore | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.queue = queue
        self.ids = ids
        self.tracer = tracer
        self.store = store
        self._clock_ns = clock_ns

    async def push(self, pushes: Sequence[PushRequest]) -> list[int]:
        """Queue ``pushes`` in order; their message ids, in the same order.

        Raises :class:`~longlink.model.IdsUnavailable` (nothing done),
        :class:`StoreUnavailable` or :class:`QueueFilled`.
        """
        # Ids first: IdsUnavailable (no id number held, docs/message-ids.md) leaves nothing done.
        msg_ids = [self.ids.next_id() for _ in pushes]
        accepted_us = self._clock_ns() // 1000  # µs: ordered against JOIN/LEAVE (dispatch)
        accepted_ms = accepted_us // 1000
        messages = [
            Message(
                msg_id=msg_id,
                target=push.target,
                payload=push.payload,
                priority=push.priority,
                guaranteed=push.guaranteed,
                ttl_s=push.ttl_s,
                accepted_ms=accepted_ms,
                accepted_us=accepted_us,
                history=push.history,
                data_json=push.data_json,
            )
            for push, msg_id in zip(pushes, msg_ids, strict=True)
        ]
        for message in messages:
            self.tracer.accepted(message)
        await self._keep(messages)
        held, full = await _publish_in_order(self.queue, messages)
        for message in messages[:held]:
            self.tracer.on(message, "queued")
        done = [message.msg_id for message in messages[:held]]
        if full is not None:
            first = messages[held]
            await self._unkeep(messages[held:])
            queued = f"; {held} of {len(messages)} were queued (msg_ids)" if done else ""
            raise QueueFilled(
                f"the {first.priority.value} priority queue is full{queued}; retry later",
                priority=first.priority,
                queued=done,
                refused=len(messages) - held,
            ) from full
        return done

    async def _keep(self, messages: list[Message]) -> None:
        """Commit the guaranteed ``messages`` to the offline store."""
        kept = [m for m in messages if m.guaranteed]
        if self.store is None or not kept:
            return
        try:
            await self.store.put(kept)
        except StoreError as exc:
            raise StoreUnavailable(
                "the offline store cannot keep guaranteed messages right now; retry later",
                priority=kept[0].priority,
                queued=[],
                refused=len(messages),
            ) from exc
        self.tracer.on_many(kept, "stored")

    async def _unkeep(self, messages: list[Message]) -> None:
        """Take the guaranteed ``messages`` that were not queued back out of the store."""
        if self.store is None:
            return
        for message in messages:
            if message.guaranteed:
                with contextlib.suppress(StoreError):
                    await self.store.ack(recipients_of(message.target), [message.msg_id])


async def _publish_in_order(
    queue: MessageQueue, messages: list[Message]
) -> tuple[int, QueueFull | None]:
    """Publish ``messages`` in order: how many the queue holds, and why it took no more."""
    try:
        held = await queue.publish_many(messages)
    except QueueFull as exc:
        return 0, exc
    if held < len(messages):
        return held, QueueFull(f"the {messages[held].priority.value} queue is at its bound")
    return held, None
