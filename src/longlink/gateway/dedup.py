"""A bounded, time-windowed set of message ids: the gateway's duplicate filter.

Dispatch sends each high-priority message on two independent paths
(docs/dispatch.md); the node writes the first copy and drops the second by
``msg_id`` (PROTOCOL.md §1.3 rule 5). :class:`SeenIds` remembers an id for
``window_s`` seconds and at most ``max_size`` ids (the oldest are forgotten
first), so its memory is bounded whatever the rate: about 100 bytes per id.
"""

from __future__ import annotations

from collections import deque


class SeenIds:
    """Ids seen in the last ``window_s`` seconds, ``max_size`` at most.

    >>> seen = SeenIds(window_s=10, max_size=2)
    >>> seen.add(1, now=0), seen.add(1, now=1), seen.add(2, now=1), seen.add(1, now=11)
    (True, False, True, True)
    """

    __slots__ = ("_ids", "_order", "max_size", "window_s")

    def __init__(self, window_s: float, max_size: int) -> None:
        if window_s <= 0 or max_size < 1:
            raise ValueError("window_s must be > 0 and max_size >= 1")
        self.window_s = window_s
        self.max_size = max_size
        self._ids: set[int] = set()
        self._order: deque[tuple[float, int]] = deque()  # (expiry, id), oldest first

    def add(self, msg_id: int, now: float) -> bool:
        """Record ``msg_id`` seen at ``now``; True if it is new, False for a duplicate."""
        self._expire(now)
        if msg_id in self._ids:
            return False
        self._ids.add(msg_id)
        self._order.append((now + self.window_s, msg_id))
        if len(self._order) > self.max_size:
            _, oldest = self._order.popleft()
            self._ids.discard(oldest)
        return True

    def _expire(self, now: float) -> None:
        order = self._order
        while order and order[0][0] <= now:
            _, msg_id = order.popleft()
            self._ids.discard(msg_id)

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
