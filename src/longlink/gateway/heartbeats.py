"""Deadlines of every connection of a gateway: one timing wheel, one tick loop, no timers.

The session decides what a deadline means (the AUTH timeout, the liveness
machine; :meth:`~longlink.protocol.server.ServerSession.check`); this part
only brings each connection to it on time. Every :data:`TICK_S` the loop
refreshes :attr:`Heartbeats.clock` (the time sessions see), takes the due
connections out of the wheel, lets each session check itself, carries out
what it says and puts the connection back at the time it asks for.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from longlink.gateway.wheel import TimingWheel
from longlink.lifetime import cancel_requested

if TYPE_CHECKING:
    from longlink.gateway.connection import Connection

TICK_S = 0.1
WHEEL_SLOTS = 1024


class Heartbeats:
    """The wheel of session deadlines and the gateway's clock."""

    __slots__ = ("clock", "wheel")

    def __init__(self) -> None:
        #: Monotonic time as of the last tick (what sessions are given as ``now``).
        self.clock = time.monotonic()
        self.wheel: TimingWheel[Connection] = TimingWheel(TICK_S, WHEEL_SLOTS, self.clock)

    def watch(self, conn: Connection) -> None:
        """(Re)schedule ``conn`` at its session's first deadline."""
        self.wheel.cancel(conn, conn.wheel_slot)
        conn.wheel_slot = self.wheel.schedule(conn, conn.first_check())

    def forget(self, conn: Connection) -> None:
        """Take ``conn`` off the wheel (its session is over)."""
        self.wheel.cancel(conn, conn.wheel_slot)
        conn.wheel_slot = -1

    async def run(self) -> None:
        """The tick loop, until cancelled."""
        while not cancel_requested():
            await asyncio.sleep(TICK_S)
            self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        """Advance the clock to ``now`` and check every connection that is due."""
        self.clock = now
        for conn in self.wheel.advance(now):
            conn.wheel_slot = -1
            out, again = conn.check(now)
            if out:
                conn.apply(out)
            if again is not None and not conn.closed:
                conn.wheel_slot = self.wheel.schedule(conn, max(again, now + TICK_S))
