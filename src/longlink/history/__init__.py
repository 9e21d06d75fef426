"""Room history: each room's recent messages, for recovery and the history API (PROTOCOL.md §1.4).

The seam is :class:`~longlink.history.base.RoomHistory`; the embedded
implementation is :mod:`longlink.history.memory`, the shared one
:mod:`longlink.history.redis`. docs/rooms.md describes the semantics.
"""

from longlink.history.base import HistoryEntry, Kept, RoomHistory, after

__all__ = ["HistoryEntry", "Kept", "RoomHistory", "after"]
