"""What the client hands to the application: pushed messages and events.

:class:`Message` is one PUSH (PROTOCOL.md §1.2 op 5), tagged with its room
(§1.4 rule 1). :class:`ClientEvent` and its subclasses are everything else
worth telling the application: EVENT frames, ERROR frames not answering a
request, KICK, whether a room's missed messages were recovered, and the
client's own disconnects and reconnects. All are frozen dataclasses with
slots. The protocol-level ones are defined with the client session in
:mod:`longlink.protocol.client`; the connection-level ones here.
"""

from __future__ import annotations

from dataclasses import dataclass

from longlink.protocol.client import (
    MAX_SERVER_FRAME,
    ClientEvent,
    ErrorEvent,
    Kicked,
    Message,
    Recovery,
    ServerEvent,
    unpack_pushes,
)
from longlink.protocol.messages import AuthOk

__all__ = [
    "MAX_SERVER_FRAME",
    "ClientEvent",
    "Disconnected",
    "ErrorEvent",
    "Kicked",
    "Message",
    "Reconnected",
    "Recovery",
    "ServerEvent",
    "unpack_pushes",
]


@dataclass(frozen=True, slots=True)
class Disconnected(ClientEvent):
    """The connection was lost or dropped.

    ``will_reconnect`` tells whether the client is now reconnecting; when it is
    false, the client has stopped and its iterators raise ``ConnectionClosed``
    once drained.
    """

    reason: str
    will_reconnect: bool


@dataclass(frozen=True, slots=True)
class Reconnected(ClientEvent):
    """The client is connected again after a loss; ``attempts`` counts the tries it took.

    Rooms in :attr:`Client.rooms` were sent in the new AUTH with the last msg
    id received from each (``since``): a :class:`Recovery` event per room
    tells whether the server could send what was missed.
    """

    auth_ok: AuthOk
    attempts: int
