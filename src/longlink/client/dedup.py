"""A bounded set of recently seen message ids, to drop duplicate pushes.

PROTOCOL.md §1.3 rule 5: a guaranteed message may arrive more than once (a
retry racing the ACK, a redelivery from the offline store after a reconnect);
the client drops duplicates by ``msg_id``. The set remembers the ``size`` most
recently seen ids: older ids are forgotten first, and seeing an id again makes
it recent again, so a message the server keeps resending is never forgotten
while it is being resent.
"""

from __future__ import annotations

from collections import OrderedDict


class RecentIds:
    """The last ``size`` distinct message ids seen (``size`` 0 remembers nothing).

    >>> seen = RecentIds(2)
    >>> seen.add(1), seen.add(1), seen.add(2), seen.add(3), seen.add(1)
    (True, False, True, True, True)
    """

    __slots__ = ("_ids", "size")

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, not {size}")
        self.size = size
        self._ids: OrderedDict[int, None] = OrderedDict()

    def add(self, msg_id: int) -> bool:
        """Record ``msg_id``; True if it is new, False if it was seen recently."""
        ids = self._ids
        if msg_id in ids:
            ids.move_to_end(msg_id)
            return False
        if self.size == 0:
            return True
        ids[msg_id] = None
        if len(ids) > self.size:
            ids.popitem(last=False)
        return True

    def discard(self, msg_id: int) -> None:
        """Forget ``msg_id`` if it is held."""
        self._ids.pop(msg_id, None)

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
