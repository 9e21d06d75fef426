"""Room aggregation, the policy alone: which messages wait, and when a room's window closes.

Pure: no asyncio, no clock of its own (every call is given ``now``, in seconds),
no encoding. The dispatcher drives it (:mod:`longlink.dispatch.dispatcher`) and
turns what it returns into :class:`~longlink.model.RoomBatch` frames.

Rules, in order:

1. **What aggregates.** A low-priority, non-guaranteed message to exactly one
   room. Anything else — users, devices, several rooms, all, a guaranteed
   message — is *passed through*: every pending room is flushed first, then
   the message goes out on its own. So a connection's messages keep their
   order across targets (a push to ``all`` never overtakes a room's window).
   High-priority messages never come here: they have their own path.
2. **Cold room.** A message for a room with nothing pending, whose last flush
   is at least one window old, is flushed at once: a quiet room pays no delay.
3. **Warm room.** Otherwise the message waits in the room's pending list,
   which is flushed at the room's last flush + window. No message waits longer
   than one window, and a room is written at most once per window (the cost
   that matters: one write per connection per flush).
4. **Size cap.** A pending list reaching ``max_messages`` messages or
   ``max_bytes`` bytes of inner frames is flushed at once.
5. **Order.** A flush carries a room's messages in arrival order, and flushes
   come out in the order they happen.
6. **Heat.** A room whose fan-out takes long (many connections) gets a longer
   window: ``max(window_s, fanout_s(room) / FANOUT_SHARE)``, where ``fanout_s``
   (given by the caller) is the time the room's last write to all its
   connections took. Writing a big, hot room then takes at most
   ``FANOUT_SHARE`` of the time, whatever its message rate: one write per
   connection per window is the cost that matters, and it stays bounded.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from longlink.model import Message, Priority

#: Bytes an inner frame adds to its payload (PROTOCOL.md §1.1 header).
FRAME_OVERHEAD = 20
#: Share of the time a room's fan-out may take (rule 6).
FANOUT_SHARE = 0.9

#: Seconds the last write of a room to all its connections took (0.0: small or unknown).
FanoutTime = Callable[[str], float]


@dataclass(slots=True)
class RoomFlush:
    """A room's messages to go out as one batch, in arrival order."""

    room: str
    messages: list[Message]


#: What :meth:`Aggregator.add` hands back: batches, and passed-through messages.
Output = RoomFlush | Message


@dataclass(slots=True)
class _Room:
    last_flush: float = float("-inf")
    pending: list[Message] = field(default_factory=list)
    size: int = 0  # bytes of inner frames pending
    deadline: float = 0.0


def aggregatable(message: Message) -> bool:
    """Rule 1: a low-priority, non-guaranteed message to exactly one room."""
    target = message.target
    return (
        message.priority == Priority.LOW
        and not message.guaranteed
        and len(target.rooms) == 1
        and not (target.users or target.devices or target.areas or target.all)
    )


class Aggregator:
    """Pending room windows (see the module docstring for the rules).

    ``window_s`` must be positive; ``max_messages`` and ``max_bytes`` at least 1.
    ``fanout_s`` gives rule 6 its figures (without it every room has ``window_s``).
    """

    __slots__ = (
        "_deadlines",
        "_fanout_s",
        "_next_sweep",
        "_pending",
        "_rooms",
        "max_bytes",
        "max_messages",
        "window_s",
    )

    def __init__(
        self,
        window_s: float,
        max_messages: int = 200,
        max_bytes: int = 64 * 1024,
        fanout_s: FanoutTime | None = None,
    ) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0 (a window of 0 means: do not aggregate)")
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("max_messages and max_bytes must be >= 1")
        self.window_s = window_s
        self._fanout_s = fanout_s
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._rooms: dict[str, _Room] = {}
        self._pending: dict[str, _Room] = {}  # rooms with messages waiting, oldest first
        self._deadlines: list[tuple[float, str]] = []  # heap; stale entries are skipped
        self._next_sweep = 0.0

    def window_for(self, room: str) -> float:
        """The window of ``room`` now (rule 6)."""
        if self._fanout_s is None:
            return self.window_s
        return max(self.window_s, self._fanout_s(room) / FANOUT_SHARE)

    @property
    def pending_messages(self) -> int:
        """Messages waiting in all rooms."""
        return sum(len(room.pending) for room in self._pending.values())

    @property
    def pending_rooms(self) -> int:
        return len(self._pending)

    def add(self, message: Message, now: float) -> list[Output]:
        """Take one message; return what must go out now, in order."""
        if not aggregatable(message):
            out: list[Output] = list(self.flush_all(now))
            out.append(message)
            return out
        name = message.target.rooms[0]
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = _Room()
        size = len(message.payload) + FRAME_OVERHEAD
        if not room.pending:
            window = self.window_for(name)
            if now - room.last_flush >= window:  # rule 2: cold
                room.last_flush = now
                return [RoomFlush(name, [message])]
            room.deadline = room.last_flush + window  # rule 3: warm
            heapq.heappush(self._deadlines, (room.deadline, name))
            self._pending[name] = room
        room.pending.append(message)
        room.size += size
        if len(room.pending) >= self.max_messages or room.size >= self.max_bytes:
            return [self._flush(name, room, now)]  # rule 4
        return []

    def due(self, now: float) -> list[RoomFlush]:
        """Flush every room whose window has closed by ``now``; forget long-idle rooms."""
        out: list[RoomFlush] = []
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, name = heapq.heappop(deadlines)
            room = self._pending.get(name)
            if room is not None and room.deadline == deadline:
                out.append(self._flush(name, room, now))
        if now >= self._next_sweep and len(self._rooms) > 2 * len(self._pending) + 1024:
            self._next_sweep = now + self.window_s
            self._forget_idle(now)
        return out

    def flush_all(self, now: float) -> list[RoomFlush]:
        """Flush every pending room (oldest pending first)."""
        return [self._flush(name, room, now) for name, room in list(self._pending.items())]

    def next_deadline(self) -> float | None:
        """When :meth:`due` has something next; ``None`` when nothing is pending."""
        deadlines = self._deadlines
        while deadlines:
            deadline, name = deadlines[0]
            room = self._pending.get(name)
            if room is not None and room.deadline == deadline:
                return deadline
            heapq.heappop(deadlines)  # stale: that room was flushed early
        return None

    def _flush(self, name: str, room: _Room, now: float) -> RoomFlush:
        flush = RoomFlush(name, room.pending)
        room.pending = []
        room.size = 0
        room.last_flush = now
        del self._pending[name]
        return flush

    def _forget_idle(self, now: float) -> None:
        # A room idle for a whole window is cold again: its state can go.
        cold = now - self.window_s
        for name in [n for n, r in self._rooms.items() if not r.pending and r.last_flush <= cold]:
            del self._rooms[name]
