"""A bounded, closable queue between the client's reader task and the application.

Two overflow policies, chosen per inbox:

* ``drop_oldest=False`` (messages): :meth:`Inbox.put` waits for room. The
  reader then stops reading, TCP backpressure reaches the server, and the
  server's per-connection outbox applies its own policy. Nothing is lost in
  the client.
* ``drop_oldest=True`` (events): :meth:`Inbox.put` never waits; when full the
  oldest item is dropped, so an application that never reads events cannot
  stall the connection.

After :meth:`Inbox.close`, :meth:`Inbox.get` returns what is left (unless the
close discarded it) and then raises :class:`ConnectionClosed` with the close's
reason.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from longlink.client.errors import ConnectionClosed

T = TypeVar("T")


class Inbox(Generic[T]):
    """A FIFO of at most ``maxsize`` items that readers can be told is finished."""

    def __init__(self, maxsize: int, *, drop_oldest: bool = False) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, not {maxsize}")
        self.maxsize = maxsize
        self.drop_oldest = drop_oldest
        self.dropped = 0  # items dropped by the drop_oldest policy
        self._items: deque[T] = deque()
        self._changed = asyncio.Condition()
        self._closed: str | None = None  # the close reason

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def put(self, item: T) -> None:
        """Append ``item``, waiting for room unless ``drop_oldest``; dropped once closed."""
        async with self._changed:
            if not self.drop_oldest:
                await self._changed.wait_for(
                    lambda: len(self._items) < self.maxsize or self._closed is not None
                )
            if self._closed is not None:
                return
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._changed.notify_all()

    async def get(self, timeout_s: float | None = None) -> T:
        """The oldest item; raises :class:`ConnectionClosed` when closed and empty.

        Raises :class:`TimeoutError` after ``timeout_s`` seconds without an item.
        """
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: bool(self._items) or self._closed is not None)
            if self._items:
                item = self._items.popleft()
                self._changed.notify_all()
                return item
            raise ConnectionClosed(self._closed or "closed")

    async def close(self, reason: str, *, discard: bool) -> None:
        """Finish the inbox: readers get ``ConnectionClosed(reason)`` once it is empty.

        With ``discard`` the items left are dropped, so readers get it at once.
        Closing again keeps the first reason.
        """
        async with self._changed:
            if self._closed is None:
                self._closed = reason
            if discard:
                self._items.clear()
            self._changed.notify_all()
