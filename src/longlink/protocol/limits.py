"""Per-connection rate limits of the session (PROTOCOL.md §1.3 rule 6), pure.

Used for UPSTREAM (rule 6) and for every other frame that earns a reply or
costs the server work (the flood rule of docs/security.md).

A token bucket written as GCRA (the generic cell rate algorithm), so a
connection stores one float, its *theoretical arrival time* ``tat``, instead
of a bucket object:

* a frame at ``now`` is allowed when ``max(tat, now) - now`` (the debt) is
  within the burst: ``burst`` frames may come at once, then ``rate`` per
  second;
* a refused frame still adds to the debt, so a client that keeps sending
  without waiting digs deeper; once the debt reaches ``FLOOD_FACTOR`` times
  the burst the verdict is FLOOD and the gateway closes the connection.

A client that backs off after ``rate_limited`` pays the debt back at ``rate``
frames per second and is never closed.
"""

from __future__ import annotations

import enum

__all__ = ["FLOOD_FACTOR", "RateLimit", "Verdict"]

#: Debt, in bursts, at which a client that keeps on sending is closed.
FLOOD_FACTOR = 3.0


class Verdict(enum.IntEnum):
    ALLOW = 0
    LIMITED = 1
    FLOOD = 2


class RateLimit:
    """``rate`` frames per second with bursts of ``burst``; ``rate <= 0`` allows everything."""

    __slots__ = ("_flood", "_interval", "_tolerance")

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0:
            self._interval = 0.0
            self._tolerance = self._flood = float("inf")
            return
        self._interval = 1.0 / rate
        # The debt after `burst` frames at once is burst * interval; one more is too many.
        self._tolerance = max(1, burst) * self._interval
        self._flood = FLOOD_FACTOR * self._tolerance

    @property
    def rate(self) -> float:
        """Frames per second allowed over time (0: unlimited)."""
        return 1.0 / self._interval if self._interval else 0.0

    def take(self, tat: float, now: float) -> tuple[float, Verdict]:
        """One frame at ``now`` for a connection whose state is ``tat``: (new tat, verdict)."""
        if self._interval == 0.0:
            return tat, Verdict.ALLOW
        start = max(tat, now)
        new = start + self._interval
        debt = new - now
        if debt <= self._tolerance + 1e-9:
            return new, Verdict.ALLOW
        if debt >= self._flood - 1e-9:
            return new, Verdict.FLOOD
        return new, Verdict.LIMITED
