"""Message queues (high, low) and node delivery: the seam between api, dispatch and gateway."""

from longlink.bus.base import DeliveryHandler, MessageQueue, NodeChannel, QueueFull

__all__ = ["DeliveryHandler", "MessageQueue", "NodeChannel", "QueueFull"]
