"""Keeping one node number for a process's message-id generator (docs/message-ids.md).

:class:`IdLease` claims a number when entered (the configured one, or the
lowest free), renews it every quarter of the lease time, and gives it back
when closed. The generator mints only while the number is held:

* a renewal moves the generator's bounds on (the latest stamp it may mint,
  and a deadline in monotonic time a little short of the lease's end);
* a renewal that is refused (another process took the number after this
  one's lease lapsed) stops the generator at once; a renewal that fails
  (backend unreachable) leaves it minting only until its deadline;
* without a number, every tick claims one again: the configured number
  (never another), or the one held last, or the lowest free.

Meanwhile the API answers pushes with 503 ``unavailable``.
"""

from __future__ import annotations

import logging
import time

from longlink.idlease.base import NUMBERS, NodeNumbers
from longlink.lifetime import Periodic
from longlink.model import MsgIdGenerator
from longlink.settings import ConfigError

log = logging.getLogger("longlink.idlease")

#: Renewals per lease time: three may fail before the number could lapse.
RENEWALS_PER_TTL = 4
#: The generator stops at this share of the lease time after a claim or renewal was sent.
VALID_SHARE = 0.9


class IdLease(Periodic):
    """Holds a node number for ``ids`` from ``numbers`` while entered (``async with``).

    ``number`` is the configured number (``id_node``): entering raises
    :class:`~longlink.settings.ConfigError` when another live process holds
    it, or, without one, when all 1024 are held. ``owner`` names this holder
    in the backend (unique per process and node).
    """

    task_name = "longlink-id-lease"

    def __init__(
        self,
        numbers: NodeNumbers,
        ids: MsgIdGenerator,
        *,
        owner: str,
        number: int | None = None,
    ) -> None:
        if number is not None and not 0 <= number < NUMBERS:
            raise ConfigError(f"id_node {number}: use a number from 0 to {NUMBERS - 1}")
        super().__init__(numbers.ttl_ms / 1000 / RENEWALS_PER_TTL)
        self.numbers = numbers
        self.ids = ids
        self.owner = owner
        self.number = number
        self.held: int | None = None  # the number held now
        self._last: int | None = None  # the number held last (asked for first when claiming)

    async def __aenter__(self) -> IdLease:
        if not await self._claim():
            if self.number is None:
                raise ConfigError(
                    f"all {NUMBERS} message-id node numbers are held by live processes"
                )
            holder = await self.numbers.holder(self.number)
            raise ConfigError(
                f"id_node {self.number} is held by another live process ({holder}): "
                "give each process serving the HTTP API its own id_node, or leave it unset"
            )
        await super().__aenter__()
        return self

    async def tick(self) -> None:
        if self.held is not None:
            if await self._renew(self.held):
                return
            log.error(
                "message-id node number %d was taken by another process: no ids until a "
                "number is held again",
                self.held,
            )
            self.ids.drop()
            self.held = None
        if not await self._claim():
            log.error("no message-id node number free (%s): pushes get 503", self._wanted())

    def _wanted(self) -> str:
        return "any" if self.number is None else f"id_node {self.number}"

    async def _claim(self) -> bool:
        sent = time.monotonic()
        grant = None
        first = self.number if self.number is not None else self._last
        if first is not None:
            grant = await self.numbers.claim(self.owner, first)
        if grant is None and self.number is None:
            grant = await self.numbers.claim(self.owner, None)
        if grant is None:
            return False
        self.ids.hold(
            grant.number,
            after_ms=grant.after_ms,
            until_ms=grant.until_ms,
            valid_until=sent + self._valid_s,
        )
        self.held = self._last = grant.number
        log.info("message ids are minted with node number %d", grant.number)
        return True

    async def _renew(self, number: int) -> bool:
        sent = time.monotonic()
        until_ms = max(int(time.time() * 1000), self.ids.last_ms) + self.numbers.ttl_ms
        if not await self.numbers.renew(self.owner, number, until_ms):
            return False
        self.ids.extend(until_ms=until_ms, valid_until=sent + self._valid_s)
        return True

    @property
    def _valid_s(self) -> float:
        return self.numbers.ttl_ms / 1000 * VALID_SHARE

    async def close(self) -> None:
        """Stop renewing, stop the generator, give the number back; idempotent."""
        await super().close()
        number, self.held = self.held, None
        self.ids.drop()
        if number is not None:
            try:
                await self.numbers.release(self.owner, number, self.ids.last_ms)
            except Exception:  # the lease lapses by itself
                log.warning("could not give back message-id node number %d", number, exc_info=True)
