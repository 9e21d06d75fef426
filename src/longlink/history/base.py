"""The room history seam: each room's recent messages (PROTOCOL.md §1.4 rules 2-4).

:class:`RoomHistory` keeps, per room, the last ``size`` room messages whose
acceptance is at most ``ttl_s`` seconds old, in the order the room's
connections receive them. Dispatch writes it (through the node channel, in
the same round trip as the node writes: :mod:`longlink.bus`); the gateway
reads it when a client names the last message it got (``since`` of AUTH and
JOIN, :mod:`longlink.gateway.recovery`) and the HTTP API when a backend asks
(``GET /v1/rooms/{room}/history``).

What is kept is the message as its room's connections got it: its msg id,
its payload, its acceptance time (and whether the payload was pushed as
JSON ``data``). :func:`after` is the one rule of recovery on it: the
messages after the one the client named, and whether the history still held
that one.

Implementations: :class:`~longlink.history.memory.MemoryHistory` (embedded,
in process, bounded in total memory) and
:class:`~longlink.history.redis.RedisHistory` (one capped stream per room).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

__all__ = ["HistoryEntry", "Kept", "RoomHistory", "after"]


class HistoryEntry(msgspec.Struct, frozen=True, array_like=True):
    """One kept room message (PROTOCOL.md §1.4 rule 2).

    ``at_ms`` is its acceptance (unix ms, the ``at`` of the history API);
    ``json`` tells that ``payload`` is the JSON encoding of a push's
    ``data`` (the API answers ``data``), not bytes given as ``data_b64``.
    """

    msg_id: int
    at_ms: int
    payload: bytes
    json: bool = False


#: One message to keep: its room and its entry.
Kept = tuple[str, HistoryEntry]


class RoomHistory(Protocol):
    """Each room's recent messages; every backend gives these guarantees:

    * **Order.** Per room, entries are kept in the order they were
      appended (dispatch appends in the order it hands messages to the
      nodes), and :meth:`read` returns them oldest first.
    * **Bounds.** A read returns at most :attr:`size` entries, the newest,
      each accepted at most :attr:`ttl_s` seconds before the read. A backend
      may drop entries sooner to stay within a bound of its own (the
      embedded one: total memory), oldest first; it never drops an entry
      while keeping an older one of the same room.
    * **Visibility.** An entry whose :meth:`append` returned before a read
      began is in that read, unless dropped by the bounds.
    * **Durability.** As durable as the backend: the embedded history dies
      with its process; the Redis one survives any gateway's death.
    """

    #: Messages kept per room (PROTOCOL.md §1.4: ``LONGLINK_HISTORY_SIZE``, 0: history off).
    size: int
    #: Seconds a message is kept after its acceptance (``LONGLINK_HISTORY_TTL_S``).
    ttl_s: float

    async def append(self, entries: Sequence[Kept]) -> None:
        """Keep ``entries`` (room, entry), in order; returns once a read would see them."""
        ...

    async def read(self, rooms: Sequence[str]) -> dict[str, list[HistoryEntry]]:
        """Each room's kept entries, oldest first (every room of ``rooms`` is a key).

        A distributed backend reads all of ``rooms`` in one round trip.
        """
        ...

    async def close(self) -> None:
        """Release what the history holds in this process; idempotent."""
        ...


def after(entries: Sequence[HistoryEntry], since: int | None) -> tuple[list[HistoryEntry], bool]:
    """The rule of recovery (PROTOCOL.md §1.4 rule 3) on one room's kept ``entries``.

    Returns the entries after the one whose msg id is ``since``, and True,
    when the history still holds it (nothing was missed); otherwise every
    entry, and False (what is kept; the client should refresh). Without
    ``since`` every entry and False: there is no position to recover from.
    Entries are matched by msg id, not compared: ids are time-ordered, but
    the order of a room is the order its connections received them.
    """
    if since is not None:
        for index in range(len(entries) - 1, -1, -1):
            if entries[index].msg_id == since:
                return list(entries[index + 1 :]), True
    return list(entries), False
