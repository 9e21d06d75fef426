"""The reconnect delay schedule: exponential backoff with full jitter.

Attempt ``n`` (from 0) waits a uniform random time in ``[0, cap(n)]`` where
``cap(n) = min(maximum, initial * 2**n)``. Full jitter spreads the clients a
drained or crashed node sheds over the whole window instead of bringing them
back in waves.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays between reconnect attempts; :meth:`reset` after a connection that held.

    Pass a seeded ``random.Random`` as ``rng`` for a reproducible schedule.
    """

    __slots__ = ("attempt", "initial", "maximum", "rng")

    def __init__(
        self, initial: float = 0.2, maximum: float = 10.0, rng: random.Random | None = None
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"need 0 < initial <= maximum, got {initial} and {maximum}")
        self.initial = initial
        self.maximum = maximum
        self.rng = rng if rng is not None else random.Random()
        self.attempt = 0

    def cap(self, attempt: int) -> float:
        """The longest delay of attempt ``attempt`` (counted from 0)."""
        # 2**64 already exceeds any sane maximum; bounding the exponent avoids huge ints.
        return min(self.maximum, self.initial * (1 << min(attempt, 64)))

    def next_delay(self) -> float:
        """The delay before the next attempt, in seconds; counts the attempt."""
        delay = self.rng.uniform(0.0, self.cap(self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start over from ``initial``: the last connection lasted."""
        self.attempt = 0
