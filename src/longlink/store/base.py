"""The offline store seam: guaranteed messages kept until acked or expired.

PROTOCOL.md §1.3 rule 5: a guaranteed message for a user with no live
connection, or never acked, is kept until its TTL and delivered after the
user's next AUTH_OK, oldest first. :class:`OfflineStore` is where it is kept.

Recipients
----------
A message is kept once per *recipient* its target names: every user of
``to.users`` (``"u:<user>"``) and every device of ``to.devices``
(``"d:<device>"``). Rooms, areas and ``all`` are not recipients: the API
refuses guaranteed pushes to them. A message for a user is for the *user*,
whichever device takes it: it is delivered to every connection of the user
that is open, and the first ACK from any of them removes it. A connection
sees what is kept for its user and for its device (:func:`recipients_of_conn`).

Guarantees every backend gives
------------------------------
* :meth:`OfflineStore.put` is durable when it returns: a process killed right
  after loses nothing (for the embedded SQLite store, power loss too unless
  ``store_sync = "normal"``). A failed put raises :class:`StoreError`.
* :meth:`OfflineStore.pending` is oldest first (message ids are time-ordered)
  and never returns an expired message, nor one message twice.
* :meth:`OfflineStore.ack` removes a message for the given recipients only;
  ids that are not kept are ignored, so a late or repeated ACK is harmless.
* :meth:`OfflineStore.expire` removes what has expired and says what it removed,
  so each expiry can be traced once.
* Operations from one caller take effect in the order they were called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from longlink.model import Message, Target
from longlink.protocol.errors import LonglinkError

__all__ = [
    "OfflineStore",
    "StoreError",
    "device_recipient",
    "recipients_of",
    "recipients_of_conn",
    "user_recipient",
]


class StoreError(LonglinkError):
    """The store could not do what was asked (disk full, closed, corrupt); nothing was kept."""


def user_recipient(user: str) -> str:
    """The recipient key of ``user``."""
    return "u:" + user


def device_recipient(device: str) -> str:
    """The recipient key of ``device``."""
    return "d:" + device


def recipients_of(target: Target) -> list[str]:
    """The recipients ``target`` names (users and devices; each once, in order)."""
    keys = [user_recipient(u) for u in target.users]
    keys += [device_recipient(d) for d in target.devices]
    return list(dict.fromkeys(keys))


def recipients_of_conn(user: str, device: str) -> list[str]:
    """What a connection of ``user`` on ``device`` receives and may ack."""
    return [user_recipient(user), device_recipient(device)]


class OfflineStore(Protocol):
    """Guaranteed messages per recipient, until acked or expired (see the module docstring)."""

    async def put(self, messages: Sequence[Message]) -> None:
        """Keep each message for every recipient of its target, until ``expires_ms``.

        Durable when it returns. Putting a message again changes nothing.
        Raises :class:`StoreError` (nothing of this call is kept) and
        ``ValueError`` for a message whose target has no recipient.
        """
        ...

    async def pending(
        self, recipients: Sequence[str], now_ms: int, *, after: int = 0, limit: int = 500
    ) -> list[Message]:
        """Up to ``limit`` messages kept for any of ``recipients`` with ``msg_id > after``.

        Oldest first, each once, none expired at ``now_ms``. Page with
        ``after`` = the last id returned.
        """
        ...

    async def ack(self, recipients: Sequence[str], msg_ids: Sequence[int]) -> None:
        """Stop keeping ``msg_ids`` for ``recipients``; unknown ids are ignored."""
        ...

    async def ack_many(self, acks: Sequence[tuple[Sequence[str], Sequence[int]]]) -> None:
        """:meth:`ack` for each ``(recipients, msg_ids)`` pair, in one transaction.

        The gateway applies the ACKs of one loop turn, from any number of
        connections, with one call (one commit, one round trip).
        """
        ...

    async def expire(self, now_ms: int, limit: int = 10_000) -> list[int]:
        """Remove up to ``limit`` messages expired at ``now_ms``; return their ids."""
        ...

    async def count(self) -> int:
        """How many messages are kept (each once, whatever its recipients)."""
        ...

    async def close(self) -> None:
        """Finish what was asked, then release the store; idempotent.

        Later calls raise :class:`StoreError`.
        """
        ...
