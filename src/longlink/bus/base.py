"""The bus seam: what api, dispatch and gateway may rely on, whatever the backend.

Two small protocols:

* :class:`MessageQueue` — accepted messages waiting for dispatch. One queue
  per priority, physically separate, each FIFO. ``publish`` returns once the
  message is held by the queue; a full queue raises :class:`QueueFull`
  instead of blocking the API.
* :class:`NodeChannel` — dispatch hands each gateway node the messages it
  must write. Per node, messages arrive in the order they were sent. The
  room messages of a step are kept in their rooms' history
  (:mod:`longlink.history`) by the same call, before any node gets them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from longlink.history.base import Kept
from longlink.model import Envelope, Message, Priority
from longlink.protocol.errors import LonglinkError


class QueueFull(LonglinkError):
    """The queue of that priority is at its bound; the API answers 503."""


#: Called by a node channel on the gateway's event loop with what was sent to the node.
DeliveryHandler = Callable[[Sequence[Envelope]], None]


class MessageQueue(Protocol):
    """Accepted messages waiting for dispatch; FIFO per priority."""

    async def publish(self, message: Message) -> None:
        """Hold ``message`` on the queue of its priority; raise QueueFull at the bound."""
        ...

    async def publish_many(self, messages: Sequence[Message]) -> int:
        """:meth:`publish` of each message in order, in one go; return how many were held.

        The first message whose queue is at its bound stops the rest (the count
        is then below ``len(messages)``). A distributed queue holds them with
        one round trip (the API publishes a whole push request this way).
        Raises QueueFull when closed or unreachable.
        """
        ...

    async def fetch(self, priority: Priority, max_count: int) -> list[Message]:
        """Wait for at least one message of ``priority``; return up to ``max_count``."""
        ...

    async def ack(self, priority: Priority, messages: Sequence[Message]) -> None:
        """Dispatch is done with ``messages`` (fetched from ``priority``): forget them.

        Until then a distributed queue keeps them pending, so a dispatch worker
        that dies mid-batch loses nothing (another worker claims them).
        """
        ...

    def depth(self, priority: Priority) -> int:
        """Messages of ``priority`` waiting (for metrics and overload checks)."""
        ...

    async def close(self) -> None:
        """Wake every ``fetch`` with an empty list and refuse further publishes."""
        ...


class NodeChannel(Protocol):
    """Delivery of messages from dispatch to gateway nodes."""

    async def send(self, node_id: str, envelopes: Sequence[Envelope]) -> None:
        """Hand ``envelopes`` (messages, commands) to ``node_id``; unattached: dropped."""
        ...

    async def send_many(
        self, batches: Mapping[str, Sequence[Envelope]], history: Sequence[Kept] = ()
    ) -> None:
        """:meth:`send` to each node of ``batches`` (order kept per node), in one go.

        Dispatch hands a whole step to its nodes this way: one round trip on a
        distributed channel, and every write done when it returns.

        ``history`` (room, entry) pairs are appended to the rooms' history
        (PROTOCOL.md §1.4 rule 2) in the same go, *before* any node gets the
        envelopes: a gateway that receives a room message can count on its
        room's history holding it, which recovery relies on
        (:mod:`longlink.gateway.recovery`). A channel built without a history
        keeps nothing.
        """
        ...

    async def attach(self, node_id: str, handler: DeliveryHandler) -> None:
        """Start receiving the messages sent to ``node_id``."""
        ...

    async def detach(self, node_id: str) -> None:
        """Stop receiving; idempotent."""
        ...
