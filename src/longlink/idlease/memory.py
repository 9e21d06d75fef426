"""The embedded node numbers: a dict in one process.

Limit: one process. Its owners (the nodes of the process, usually one) never
lapse: a number is held until given back.
"""

from __future__ import annotations

import time

from longlink.idlease.base import NUMBERS, Grant

#: Reported as the lease time: how often the keeper looks (nothing lapses here).
TTL_MS = 10_000


class MemoryNumbers:
    """:class:`~longlink.idlease.base.NodeNumbers` in one process (see the module docstring)."""

    def __init__(self, ttl_ms: int = TTL_MS) -> None:
        self._ttl_ms = ttl_ms
        self._holders: dict[int, str] = {}
        self._after: dict[int, int] = {}  # number -> the last stamp its holders may have used

    @property
    def ttl_ms(self) -> int:
        return self._ttl_ms

    async def claim(self, owner: str, number: int | None = None) -> Grant | None:
        now_ms = int(time.time() * 1000)
        if number is None:
            free = [n for n in range(NUMBERS) if self._holders.get(n, owner) == owner]
            if not free:
                return None
            past = [n for n in free if self._after.get(n, 0) < now_ms]
            number = past[0] if past else min(free, key=lambda n: self._after.get(n, 0))
        elif self._holders.get(number, owner) != owner:
            return None
        after = self._after.get(number, 0)
        until = max(after, now_ms) + self._ttl_ms
        self._holders[number] = owner
        self._after[number] = until
        return Grant(number, after, until)

    async def renew(self, owner: str, number: int, until_ms: int) -> bool:
        if self._holders.get(number) != owner:
            return False
        self._after[number] = max(self._after.get(number, 0), until_ms)
        return True

    async def release(self, owner: str, number: int, last_ms: int) -> None:
        if self._holders.get(number) == owner:
            del self._holders[number]
            self._after[number] = last_ms

    async def holder(self, number: int) -> str | None:
        return self._holders.get(number)
