"""A hashed timing wheel: deadlines for many connections without a timer each.

Items sit in one bucket per tick. :meth:`TimingWheel.advance` returns every
item whose bucket time has passed; the caller checks each item's real
deadline and schedules it again if it is not due yet. That makes activity
cheap: a connection that receives a frame only stores the time, it never
moves between buckets (the wheel re-checks it when its old bucket comes up).

Pure: no asyncio, no clock of its own; the owner drives it with ``now``.
"""

from __future__ import annotations

import math
from typing import Generic, TypeVar

T = TypeVar("T")


class TimingWheel(Generic[T]):
    """``slots`` buckets of ``tick_s`` seconds; deadlines past the span land in the last one."""

    __slots__ = ("_buckets", "_current", "_origin", "_slots", "_tick_s")

    def __init__(self, tick_s: float, slots: int, now: float) -> None:
        if tick_s <= 0 or slots < 2:
            raise ValueError("tick_s must be > 0 and slots >= 2")
        self._tick_s = tick_s
        self._slots = slots
        self._origin = now
        self._current = 0  # ticks since origin already processed
        self._buckets: list[set[T]] = [set() for _ in range(slots)]

    @property
    def tick_s(self) -> float:
        return self._tick_s

    @property
    def span_s(self) -> float:
        """How far ahead a deadline can be placed exactly."""
        return self._tick_s * (self._slots - 1)

    def schedule(self, item: T, at: float) -> int:
        """Put ``item`` in the bucket for time ``at``; returns the bucket (for :meth:`cancel`).

        ``at`` in the past lands in the next tick; ``at`` beyond the span lands
        in the farthest bucket (the caller re-schedules it when it comes back).
        """
        tick = math.ceil((at - self._origin) / self._tick_s)
        tick = min(max(tick, self._current + 1), self._current + self._slots - 1)
        index = tick % self._slots
        self._buckets[index].add(item)
        return index

    def cancel(self, item: T, index: int) -> None:
        """Take ``item`` out of bucket ``index``; harmless if it is not there."""
        self._buckets[index].discard(item)

    def advance(self, now: float) -> list[T]:
        """Every item whose bucket's time is ≤ ``now``, removed from the wheel."""
        target = math.floor((now - self._origin) / self._tick_s)
        due: list[T] = []
        if target - self._current > self._slots:
            self._current = target - self._slots  # a long stall: every bucket is due once
        while self._current < target:
            self._current += 1
            bucket = self._buckets[self._current % self._slots]
            if bucket:
                due.extend(bucket)
                bucket.clear()
        return due

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets)
