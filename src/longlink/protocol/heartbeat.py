"""The adaptive heartbeat of a client (PROTOCOL.md §1.6 rule 2), a pure state machine.

A mobile client pays for every heartbeat in radio wake-ups; a connection
that stays healthy does not need one every 30 s. :class:`AdaptiveHeartbeat`
lengthens the interval step by step while heartbeats are answered and falls
back at once when one is not:

=================  ==========================================================
event              effect
=================  ==========================================================
start              interval = ``base`` (AUTH_OK's ``heartbeat_s``)
answered           one more in the streak; after ``streak`` in a row the next
                   HEARTBEAT asks for ``ceil(interval × growth)`` (at most
                   the ceiling); the server's answer (clamped) becomes the
                   interval, and a clamped answer lowers the ceiling to it
missed             (no HEARTBEAT_OK within ``reply_timeout_s``) interval =
                   ``base`` at once, streak 0; the next HEARTBEAT goes now
                   and asks for ``base``
=================  ==========================================================

Invariants (tests/protocol/test_heartbeat.py checks them with hypothesis):
the interval never leaves [``base``, ceiling]; one miss brings it back to
``base``; it only grows after ``streak`` answers in a row. The server's
liveness deadline follows the interval asked for (the HEARTBEAT body), so
a longer interval never makes the server drop a healthy client.
"""

from __future__ import annotations

import math

__all__ = ["AdaptiveHeartbeat"]


class AdaptiveHeartbeat:
    """The heartbeat interval of one connection (see the module docstring)."""

    __slots__ = (
        "asked",
        "base",
        "ceiling",
        "growth",
        "interval",
        "reply_timeout_s",
        "run",
        "streak",
    )

    def __init__(
        self,
        base: int,
        *,
        ceiling: int = 300,
        growth: float = 1.5,
        streak: int = 3,
        adaptive: bool = True,
    ) -> None:
        if base <= 0:
            raise ValueError("base must be > 0")
        self.base = base
        #: The longest interval to ask for (lowered to what the server grants).
        self.ceiling = max(base, ceiling) if adaptive else base
        self.growth = growth
        self.streak = streak
        self.interval = base
        self.run = 0  # heartbeats answered in a row
        self.asked: int | None = None  # the interval the heartbeat in flight asked for
        #: A reply later than this (seconds after the HEARTBEAT) counts as missed.
        self.reply_timeout_s = max(1.0, min(10.0, base / 3))

    def ask(self) -> int | None:
        """The interval the next HEARTBEAT should ask for (its body), or None: ask nothing."""
        if self.run >= self.streak and self.interval < self.ceiling:
            want = min(self.ceiling, math.ceil(self.interval * self.growth))
            return want if want > self.interval else None
        return None

    def sent(self, asked: int | None) -> None:
        """A HEARTBEAT left asking for ``asked`` (None: nothing)."""
        self.asked = asked

    def answered(self, granted: int | None) -> None:
        """HEARTBEAT_OK came back in time; ``granted`` is its ``heartbeat_s`` (if asked)."""
        self.run += 1
        asked, self.asked = self.asked, None
        if asked is None or granted is None:
            return
        granted = max(self.base, min(granted, self.ceiling))
        if granted < asked:
            self.ceiling = granted  # the server's maximum: ask no further
        if granted != self.interval:
            self.interval = granted
            self.run = 0  # the new interval has to prove itself before the next step

    def missed(self) -> int | None:
        """No HEARTBEAT_OK in time: back to ``base``; returns what the next HEARTBEAT asks for."""
        self.run = 0
        self.asked = None
        changed = self.interval != self.base
        self.interval = self.base
        return self.base if changed else None
