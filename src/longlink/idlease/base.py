"""The id node number seam: which process may mint message ids with which number.

A message id holds a 10-bit node number (:class:`~longlink.model.MsgIdGenerator`):
two processes minting with the same number can mint the same id. Each
process that mints takes a number no live process holds, from
:class:`NodeNumbers`, and keeps it by renewing it
(:class:`~longlink.idlease.keeper.IdLease`).

Numbers are fenced by time as well as by holder: every grant and renewal
records the latest stamp its holder may mint (``until_ms``); the next holder
of the number is told the highest such stamp (``after_ms``) and mints only
later stamps. So even a holder that lost its number without knowing it (a
process paused past its lease) cannot mint an id the next holder mints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from longlink.model import MAX_NODE

__all__ = ["NUMBERS", "Grant", "NodeNumbers"]

#: How many node numbers there are (0 .. MAX_NODE).
NUMBERS = MAX_NODE + 1


@dataclass(frozen=True, slots=True)
class Grant:
    """A node number held, and the stamps its holder may mint with it (unix ms).

    Mint ids stamped later than ``after_ms`` (the last stamp any earlier
    holder may have used) and at most ``until_ms`` (raised by each renewal).
    """

    number: int
    after_ms: int
    until_ms: int


class NodeNumbers(Protocol):
    """Node numbers 0..1023, each held by at most one live owner.

    Guarantees every backend keeps (``tests/contracts/test_idlease.py``):

    * A claim is atomic: two owners never hold one number at once, however
      many claim concurrently, from however many processes share the backend.
    * A number stays held for ``ttl_ms`` after its claim or last renewal;
      after that another owner may claim it (a shared backend only: the
      embedded one serves one process, whose owners give numbers back).
    * ``Grant.after_ms`` of a claim is at least every ``until_ms`` any earlier
      holder of the number was granted or renewed to, except that a number
      given back with :meth:`release` is fenced at the ``last_ms`` given.
    * A shared backend that loses its data (Redis restarted empty) forgets
      every holder and fence: keep its data (AOF).
    """

    @property
    def ttl_ms(self) -> int:
        """How long a claim or renewal holds the number (renew well within it)."""
        ...

    async def claim(self, owner: str, number: int | None = None) -> Grant | None:
        """Hold ``number``, or with None the lowest free number, for ``owner``.

        A number ``owner`` already holds is granted again. With None, a free
        number whose ``after_ms`` is not in the future is preferred (its
        holder gave it back, or left long ago), so ids keep to the clock.
        Returns None when ``number`` is held by another owner, or, with
        None, when every number is.
        """
        ...

    async def renew(self, owner: str, number: int, until_ms: int) -> bool:
        """Hold ``number`` for another ``ttl_ms`` and let ``owner`` mint up to ``until_ms``.

        False, changing nothing, when ``owner`` does not hold the number (its
        claim lapsed and another owner took it, or the backend lost it):
        stop minting with it at once.
        """
        ...

    async def release(self, owner: str, number: int, last_ms: int) -> None:
        """Give ``number`` back; ``last_ms``: the last stamp ``owner`` minted with it.

        Idempotent; nothing happens when ``owner`` does not hold the number.
        Stop minting with the number before calling this.
        """
        ...

    async def holder(self, number: int) -> str | None:
        """Who holds ``number`` as last recorded (None: nobody); for error messages."""
        ...
