"""What arrives on the node channel: messages to write and commands to obey, in order.

Dispatch and control send a gateway :data:`~longlink.model.Envelope` values:
messages and room batches go to the write path
(:mod:`~longlink.gateway.delivery`) and :class:`~longlink.model.NodeCommand`
values are carried out here, each in its place in the sequence.

==============  ===============================================================
command         does
==============  ===============================================================
``kick_user``   KICK every connection of ``user`` here (``reason``)
``kick_conn``   KICK one connection (a newer login of its device replaced it)
``drain``       KICK every client with ``drain`` so SDKs reconnect elsewhere
``room_event``  EVENT ``body`` to the connections of ``room`` here
==============  ===============================================================
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from longlink.gateway.delivery import Delivery
from longlink.gateway.events import DRAIN, Presence
from longlink.gateway.hub import Hub
from longlink.model import Envelope, Message, NodeCommand, RoomBatch

log = logging.getLogger("longlink.gateway")


class NodeCommands:
    """The node channel's handler (see the module docstring)."""

    def __init__(self, hub: Hub, delivery: Delivery, presence: Presence) -> None:
        self.hub = hub
        self.delivery = delivery
        self.presence = presence

    def deliver(self, envelopes: Sequence[Envelope]) -> None:
        """Write messages and room batches, obey commands, in order."""
        messages: list[Message | RoomBatch] = []
        for envelope in envelopes:
            if isinstance(envelope, NodeCommand):
                if messages:
                    self.delivery.deliver(messages)
                    messages = []
                self.command(envelope)
            else:
                messages.append(envelope)
        if messages:
            self.delivery.deliver(messages)

    def command(self, command: NodeCommand) -> None:
        """Carry out one :class:`NodeCommand`."""
        if command.action == "kick_user":
            self.kick_user(command.user, command.reason or "kicked")
        elif command.action == "drain":
            self.drain()
        elif command.action == "kick_conn":
            self.presence.kick_conn(command.conn_id, command.reason or "kicked")
        elif command.action == "room_event":
            self.presence.room_event(command.room, command.body)
        else:
            log.warning("unknown node command %r", command.action)

    def kick_user(self, user: str, reason: str) -> int:
        """Close every connection of ``user`` on this node with KICK; returns how many."""
        conns = list(self.hub.users.get(user, ()))
        for conn in conns:
            self.presence.kick(conn, reason)
        return len(conns)

    def drain(self) -> None:
        """KICK every client with reason ``drain`` so SDKs reconnect to another node.

        The node keeps accepting (control stops sending clients here once the
        registry marks it draining) and keeps delivering to what is left.
        """
        for conn in list(self.hub.conns.values()):
            self.presence.kick(conn, "drain", DRAIN)
