"""Recovery: missed room messages before live ones, none twice (PROTOCOL.md §1.4 rule 3).

When AUTH or JOIN names, for a room, the last message the client got
(``since``), the connection gets the room's kept messages after that one,
in order and tagged as room batches, before any live message of that room;
nothing is missing and nothing is sent twice across the seam between the
two, even when messages keep arriving while the history is read. The
sessions part (:mod:`~longlink.gateway.sessions`) runs the steps, this part
does them:

1. **hold** (:meth:`Recovery.hold`): the connection is *not* indexed in the
   room yet; every message of the room the node plans from now on is
   captured for it instead (msg id and PUSH frame, in order), whether or
   not the room has members here. Bounded: past :attr:`Recovery.hold_max`
   bytes the connection is closed with ``server_busy`` (its client
   reconnects and recovers again, from what it got).
2. **read** (:meth:`Recovery.read`): the rooms' history, one read. Dispatch
   keeps a message in its room's history before any node gets it
   (:meth:`~longlink.bus.base.NodeChannel.send_many`), so a message is in
   the read, or was planned here after the hold began (captured), or both.
3. the caller writes AUTH_OK / JOIN_OK with ``recovered``
   (:func:`~longlink.history.base.after`: the history still held ``since``).
4. **replay** (:meth:`Recovery.replay`): the kept messages after ``since``
   (all of them when ``since`` is gone), then the captured ones whose id
   the read did not hold, in order.
5. **settle**: messages of the read may still be on their way to this node
   (kept by dispatch before the read, not planned here yet). Until each of
   them has been planned here — the node remembers the last message it
   planned per room, and a room's messages reach a node in the order they
   were kept — or :data:`SETTLE_S` has passed, the connection gets the
   room's live messages from here, without the ids of the read; then it is
   indexed in the room and gets them with every other member.

What a client may still see twice: a message of the read that reaches this
node more than :data:`SETTLE_S` after the read (a backlog of that length),
and a push to several rooms reaching it through two of them while one is
recovered. The SDKs drop duplicates by msg id (§1.3 rule 5). Order across
rooms is not kept (it never is); within a room it is the history's order,
which is the order dispatch handed the messages over (one dispatch process;
several share the rooms' messages, and their steps may interleave).

The write path (:mod:`~longlink.gateway.delivery`) tells this part what it
plans — :meth:`Recovery.planned_batches`, :meth:`Recovery.planned_message`
— *after* planning the room's members, so a connection that leaves the
hold during the call is not written twice. A room without recoveries costs
one dict store per planned message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from longlink.gateway.connection import Connection
from longlink.gateway.hub import Hub
from longlink.history.base import HistoryEntry, RoomHistory, after
from longlink.model import Message, RoomBatch, message_push
from longlink.protocol import ErrorCode, ProtocolError
from longlink.protocol.frames import MAX_U32, decode_frame
from longlink.protocol.push import push_frame, room_batch, room_tag, split_room_batch
from longlink.protocol.server import SessionState

__all__ = ["SETTLE_S", "Plan", "Recovery"]

#: Longest a recovered connection gets a room's live messages through the filter (step 5).
SETTLE_S = 3.0
#: Largest body of one replayed room batch (more messages: more batches).
REPLAY_BATCH_BYTES = 64 * 1024
_OPEN = SessionState.OPEN

#: One captured message: its msg id and its plain PUSH frame.
Captured = tuple[int, bytes]


@dataclass(slots=True)
class Plan:
    """What a recovery read found: per room, the kept messages and ``recovered``."""

    since: dict[str, int]
    kept: dict[str, list[HistoryEntry]]
    recovered: dict[str, bool]


class _Held:
    """One room being recovered for one connection."""

    __slots__ = ("conn", "expected", "held", "held_bytes", "known", "room", "timer")

    def __init__(self, conn: Connection, room: str) -> None:
        self.conn = conn
        self.room = room
        self.held: list[Captured] | None = []  # None once replayed (settling)
        self.held_bytes = 0
        self.known: frozenset[int] = frozenset()  # ids of the read: never written live
        self.expected: set[int] = set()  # ids of the read not planned here yet
        self.timer: asyncio.TimerHandle | None = None


class RecoveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rooms = Counter(
            "longlink_recoveries",
            "Rooms recovered at AUTH or JOIN, by outcome (recovered: since was still kept)",
            ["outcome"],
            registry=registry,
        )
        self.replayed = Counter(
            "longlink_recovery_replayed_messages",
            "Kept messages written to recovering connections",
            registry=registry,
        )
        self.skipped = Counter(
            "longlink_recovery_skipped_messages",
            "Live messages not written to a recovering connection: its replay held them",
            registry=registry,
        )
        self.overflows = Counter(
            "longlink_recovery_hold_overflows",
            "Connections closed with server_busy: too much arrived while the history was read",
            registry=registry,
        )


class Recovery:
    """The recoveries of one gateway (see the module docstring)."""

    def __init__(
        self,
        hub: Hub,
        history: RoomHistory | None,
        metrics: CollectorRegistry,
        *,
        hold_max: int = 1 << 20,
        settle_s: float = SETTLE_S,
    ) -> None:
        self.hub = hub
        self.history = history
        self.metrics = RecoveryMetrics(metrics)
        #: Bytes a connection's hold may capture per room (the outbox's hard limit).
        self.hold_max = hold_max
        self.settle_s = settle_s
        #: room -> connection -> its recovery, for rooms with recoveries under way.
        self.rooms: dict[str, dict[Connection, _Held]] = {}
        #: The last msg id planned here per room (step 5).
        self.last: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        """Whether rooms are kept at all (``since`` is otherwise answered ``false``)."""
        history = self.history
        return history is not None and history.size > 0 and history.ttl_s > 0

    # ------------------------------------------------------------------ steps

    def hold(self, conn: Connection, rooms: Iterable[str]) -> None:
        """Step 1: capture ``rooms``' messages for ``conn`` from now on (not indexed there)."""
        for room in rooms:
            held = self.rooms.get(room)
            if held is None:
                held = self.rooms[room] = {}
            held[conn] = _Held(conn, room)

    async def read(self, since: dict[str, int]) -> Plan:
        """Step 2: the history of the rooms of ``since`` (after :meth:`hold`)."""
        rooms = list(since)
        if self.enabled:
            assert self.history is not None
            kept = await self.history.read(rooms)
        else:
            kept = {room: [] for room in rooms}
        recovered = {room: after(kept[room], since[room])[1] for room in rooms}
        for ok in recovered.values():
            self.metrics.rooms.labels("recovered" if ok else "not_recovered").inc()
        return Plan(since, kept, recovered)

    def replay(self, conn: Connection, plan: Plan) -> None:
        """Steps 4 and 5 (after AUTH_OK / JOIN_OK was written)."""
        for room, since in plan.since.items():
            state = self.rooms.get(room, {}).get(conn)
            if state is None or state.held is None:
                continue  # forgotten meanwhile (closed)
            kept = plan.kept[room]
            missed, _ = after(kept, since)
            held, state.held = state.held, None
            state.known = frozenset(entry.msg_id for entry in kept)
            frames = [push_frame(e.payload, e.msg_id) for e in missed]
            captured = [frame for msg_id, frame in held if msg_id not in state.known]
            self.metrics.replayed.inc(len(frames))
            self.metrics.skipped.inc(len(held) - len(captured))
            self._write(conn, room, frames + captured)
            state.expected = self._in_flight(room, kept) - {msg_id for msg_id, _ in held}
            if state.expected and conn.state is _OPEN:
                loop = asyncio.get_running_loop()
                state.timer = loop.call_later(self.settle_s, self._settled, state)
            else:
                self._release(state)

    def forget(self, conn: Connection, rooms: Iterable[str] | None = None) -> None:
        """Stop recovering ``rooms`` (all of the connection's when None): closed or left."""
        names = list(self.rooms) if rooms is None else list(rooms)
        for room in names:
            held = self.rooms.get(room)
            if held is None:
                continue
            state = held.pop(conn, None)
            if state is not None and state.timer is not None:
                state.timer.cancel()
            if not held:
                del self.rooms[room]

    def recovering(self, conn: Connection, room: str) -> bool:
        """Whether ``room`` is being recovered for ``conn`` (it is not indexed there yet)."""
        return conn in self.rooms.get(room, ())

    # ------------------------------------------------------------------ the write path

    def planned_batches(self, batches: Sequence[RoomBatch]) -> None:
        """The write path planned ``batches`` (one room, in order) for the room's members."""
        room = batches[0].room
        last = batches[-1].msg_ids
        if last:
            self._planned(room, last[-1])
        if room in self.rooms:
            pushes: list[Captured] = []
            for batch in batches:
                pushes.extend(_pushes_of(batch))
            self._live(room, pushes)

    def planned_message(self, message: Message) -> None:
        """The write path planned ``message`` (to rooms) for the rooms' members."""
        rooms = self.rooms
        for room in message.target.rooms:
            self._planned(room, message.msg_id)
            if room in rooms:
                self._live(room, [(message.msg_id, message_push(message))])

    def _planned(self, room: str, msg_id: int) -> None:
        last = self.last
        last[room] = msg_id
        if len(last) > 2 * len(self.hub.groups) + 1024:  # rooms gone from here are forgotten
            groups, rooms = self.hub.groups, self.rooms
            self.last = {r: i for r, i in last.items() if r in groups or r in rooms}

    def _live(self, room: str, pushes: list[Captured]) -> None:
        overflow: list[_Held] = []
        for state in list(self.rooms[room].values()):
            conn = state.conn
            if state.held is not None:  # step 1: captured
                state.held.extend(pushes)
                state.held_bytes += sum(len(frame) for _, frame in pushes)
                if state.held_bytes > self.hold_max:
                    overflow.append(state)
                continue
            frames = []
            for msg_id, frame in pushes:  # step 5: through the filter
                state.expected.discard(msg_id)
                if msg_id in state.known:
                    self.metrics.skipped.inc()
                else:
                    frames.append(frame)
            self._write(conn, room, frames)
            if not state.expected:
                self._release(state)
        for state in overflow:
            self.metrics.overflows.inc()
            self.forget(state.conn, [room])
            error = ProtocolError(ErrorCode.SERVER_BUSY, f"room {room!r} is too busy to recover")
            state.conn.apply(state.conn.fail(error))

    # ------------------------------------------------------------------ helpers

    def _in_flight(self, room: str, kept: list[HistoryEntry]) -> set[int]:
        """Ids of ``kept`` that may not have been planned here yet (step 5)."""
        ids = [entry.msg_id for entry in kept]
        last = self.last.get(room)
        if last is not None:
            for index in range(len(ids) - 1, -1, -1):
                if ids[index] == last:
                    return set(ids[index + 1 :])
        return set(ids)  # nothing of the read planned here yet (or unknown): wait for all

    def _settled(self, state: _Held) -> None:
        state.timer = None
        if self.rooms.get(state.room, {}).get(state.conn) is state:
            self._release(state)

    def _release(self, state: _Held) -> None:
        """Index the connection in the room: from now on it is a member like any other."""
        self.forget(state.conn, [state.room])
        conn = state.conn
        if conn.state is _OPEN and state.room in conn.rooms:
            self.hub.join(conn, state.room, record=False)

    def _write(self, conn: Connection, room: str, frames: list[bytes]) -> None:
        if not frames or conn.state is not _OPEN:
            return
        conn.apply(list(_room_batches(room, frames)))


def _pushes_of(batch: RoomBatch) -> list[Captured]:
    """The messages of an encoded room batch as (msg id, plain PUSH frame)."""
    outer = decode_frame(batch.frames[0], MAX_U32)
    _, inner = split_room_batch(outer.body)
    return [(f.msg_id, push_frame(f.body, f.msg_id, f.flags)) for f in inner]


def _room_batches(room: str, frames: list[bytes]) -> Iterable[bytes]:
    """``frames`` as room batches (ROOM ``room`` first), each body at most about 64 KiB."""
    tag = room_tag(room)
    start = size = 0
    for index, frame in enumerate(frames):
        if size and size + len(frame) > REPLAY_BATCH_BYTES:
            yield room_batch(tag, frames[start:index])
            start, size = index, 0
        size += len(frame)
    yield room_batch(tag, frames[start:])
