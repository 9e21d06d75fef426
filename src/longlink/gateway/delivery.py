"""Writing pushes to connections: frame once, write the same bytes to many, wait for no one.

:class:`Delivery` is the gateway's write path (docs/dispatch.md). It takes
what dispatch sends the node — single messages and room batches, already
encoded — and writes them with ``transport.write``; the transport's write
buffer is each connection's outbox.

Two write paths, so low-priority volume never delays a high-priority push:

* **High priority** is written at once, inside :meth:`Delivery.deliver`,
  after the node's duplicate filter (:class:`~longlink.gateway.dedup.SeenIds`):
  dispatch sends each high-priority message twice, the second copy is dropped
  here by msg id.
* **Low priority** goes through one ordered queue of jobs, written by one
  writer task in slices of :data:`SLICE` writes with a yield to the loop
  between slices, so a fan-out to a big room never starves heartbeats or a
  high-priority push. A job that fits in a slice while the queue is empty is
  written at once. Room batches waiting back to back for the same room are
  written together, one write per connection carrying all of their frames:
  when the writer falls behind, batches grow instead of the delay (the window
  adapts to the room's heat). Single messages to one room waiting back to
  back (aggregation off) keep a frame each but share one write per
  connection, up to ``write_join`` (a setting). :meth:`Delivery.wait_ready` lets an in-process
  dispatcher wait while the queue holds more than :data:`BACKLOG_PACE` writes.

Room batches are written per group of the room (transport, codec; see
:mod:`~longlink.gateway.hub`): the frame for the group's codec is chosen
once, wrapped in a WebSocket message once, and the same bytes go to every
member. Order per connection is kept: jobs run in order, and a connection
appears once in a job.

What each connection gets is planned by :mod:`~longlink.gateway.fanout`
(pure); every room message planned, whether the room has members here or
not, is then told to :mod:`~longlink.gateway.recovery` (connections
recovering the room get it from there). Every write goes through the outbox
policy of
:mod:`~longlink.gateway.outbox` (one budget per connection, shared with
guaranteed messages and replies). A slow client never slows its room:
nothing here waits for a connection.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from longlink.gateway.connection import Connection
from longlink.gateway.dedup import SeenIds
from longlink.gateway.fanout import (
    Part,
    batch_parts,
    by_transport,
    message_parts,
    one_room,
    room_messages_parts,
)
from longlink.gateway.guarantee import Guarantee
from longlink.gateway.hub import Hub
from longlink.gateway.metrics import GatewayMetrics
from longlink.gateway.outbox import Outbox
from longlink.gateway.recovery import Recovery
from longlink.model import Message, Priority, RoomBatch
from longlink.protocol.server import SessionState
from longlink.trace import Tracer

SLICE = 256  # writes between two yields to the loop (2-3 ms: the API and dispatch keep moving)
BACKLOG_PACE = 200_000  # queued low-priority writes past which wait_ready() waits
BACKLOG_MAX = 2_000_000  # past this, low-priority work is dropped (counted); guaranteed is kept
FANOUT_MIN_S = 0.002  # fan-outs quicker than this are not remembered (fanout_s)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

_OPEN = SessionState.OPEN
_LOW = Priority.LOW
_HIGH = Priority.HIGH

#: Runs a short step as a tracked task (the gateway awaits them on close).
Spawn = Callable[[Coroutine[Any, Any, None]], None]


class DeliveryMetrics:
    """Prometheus collectors of the write path (names listed in docs/dispatch.md)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "longlink_deliveries",
            "Messages written to connections (a batch of n written to c connections: n x c)",
            ["priority"],
            registry=registry,
        )
        self.batch_writes = Counter(
            "longlink_batch_writes",
            "Room batch frames written to connections",
            registry=registry,
        )
        self.dedup_drops = Counter(
            "longlink_dedup_drops",
            "High-priority copies dropped by the node's duplicate filter",
            registry=registry,
        )
        self.coalesced = Counter(
            "longlink_coalesced_batches",
            "Room batches or messages written in the same write as the one before (writer behind)",
            registry=registry,
        )
        self.overload_drops = Counter(
            "longlink_delivery_overload_drops",
            "Low-priority messages dropped because the node's write queue was full",
            registry=registry,
        )
        self.backlog = Gauge(
            "longlink_delivery_backlog_writes",
            "Low-priority writes queued on this node",
            registry=registry,
        )
        self.latency = Histogram(
            "longlink_delivery_latency_seconds",
            "From acceptance at the API to the last connection written (oldest message)",
            ["priority"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class _Job:
    """Queued low-priority work: room batches, one message, or one guaranteed message."""

    __slots__ = ("batches", "conns", "estimate", "message")

    def __init__(
        self,
        estimate: int,
        batches: list[RoomBatch] | None = None,
        message: Message | None = None,
        conns: list[Connection] | None = None,
    ) -> None:
        self.estimate = estimate  # writes it will take
        self.batches = batches
        self.message = message
        self.conns = conns  # a message's connections, resolved when it was queued


class Delivery:
    """The gateway's write path (see the module docstring)."""

    def __init__(
        self,
        hub: Hub,
        outbox: Outbox,
        guarantee: Guarantee,
        tracer: Tracer,
        metrics: GatewayMetrics,
        spawn: Spawn,
        *,
        node: str,
        dedup_window_s: float,
        dedup_size: int,
        recovery: Recovery,
        write_join: int = 64,
    ) -> None:
        self.hub = hub
        #: Single room messages joined into one write at most (writer behind; 1: none).
        self.write_join = write_join
        self.recovery = recovery
        self.outbox = outbox
        self.guarantee = guarantee
        self.tracer = tracer
        self.metrics = metrics
        self.spawn = spawn
        self.node = node
        self.stats = DeliveryMetrics(metrics.registry)
        self.stats.backlog.set_function(lambda: float(self.backlog))
        # Per message (per-user pushes: one write each), so the label children and the
        # trace details are looked up once, not built per call.
        self._per_priority = {
            p: (self.stats.deliveries.labels(p.value), self.stats.latency.labels(p.value))
            for p in Priority
        }
        self._written: dict[int, Any] = {}  # written count -> frozen "written" trace detail
        #: High-priority msg ids written lately (the second copy is dropped).
        self.seen = SeenIds(dedup_window_s, dedup_size)
        self._low: deque[_Job] = deque()
        self._queued = 0  # writes the jobs in self._low will take (estimated when queued)
        self._inflight = 0  # writes left in the job being written
        self._writing = False  # the writer task runs
        self._fanout: dict[str, float] = {}  # room -> seconds its last batch fan-out took
        self._room = asyncio.Event()  # set while the backlog is under BACKLOG_PACE
        self._room.set()

    # ------------------------------------------------------------------ entry points

    def deliver(self, items: Sequence[Message | RoomBatch]) -> None:
        """Write what dispatch sent this node, in order (high priority at once)."""
        for item in items:
            if item.priority == _HIGH:
                self._high(item)
            elif isinstance(item, RoomBatch):
                self._low_batch(item)
            else:
                self._low_message(item)

    async def wait_ready(self) -> None:
        """Return once the low-priority queue holds at most :data:`BACKLOG_PACE` writes."""
        while self.backlog > BACKLOG_PACE:
            self._room.clear()
            await self._room.wait()

    @property
    def backlog(self) -> int:
        """Low-priority writes queued or being written (queued jobs are estimates)."""
        return self._queued + self._inflight

    def fanout_s(self, room: str) -> float:
        """How long the last fan-out of a batch to ``room`` took (0.0: quick or unknown).

        Dispatch lengthens a hot room's window with it (aggregator rule 6).
        """
        took = self._fanout.get(room, 0.0)
        if took and room not in self.hub.groups:
            del self._fanout[room]  # the room is gone
            return 0.0
        return took

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being written."""
        return not self._writing and not self._low

    def write_many(self, conns: Iterable[Connection], frame: bytes, priority: Priority) -> int:
        """Write one frame to many connections now, with the outbox policy; returns writes."""
        return self._write_parts(by_transport(conns, frame), 1, priority)

    # ------------------------------------------------------------------ high priority

    def _high(self, item: Message | RoomBatch) -> None:
        now = time.monotonic()
        seen = self.seen
        if isinstance(item, RoomBatch):  # dispatch does not batch high priority; be exact anyway
            if not all([seen.add(msg_id, now) for msg_id in item.msg_ids]):
                self.stats.dedup_drops.inc()
                return
            self._finish([item], self._plan_batches([item]), _HIGH)
            return
        if not seen.add(item.msg_id, now):
            self.stats.dedup_drops.inc()  # the other path's copy was written already
            return
        if item.guaranteed:  # ACK_REQUIRED, retries, offline store: gateway/guarantee.py
            self.guarantee.deliver(item)
            return
        parts = self._plan_message(item)
        self._finish_message(item, self._write_parts(parts, 1, _HIGH))

    # ------------------------------------------------------------------ low priority

    def _low_batch(self, batch: RoomBatch) -> None:
        groups = self.hub.groups.get(batch.room)
        if not groups:
            if not self._writing and not self._low:
                self.recovery.planned_batches([batch])  # no member here, maybe a recovery
            else:
                self._queue(_Job(0, batches=[batch]), len(batch.msg_ids))  # its turn
            return
        size = sum(len(members) for members in groups.values())
        if not self._writing and not self._low and size <= SLICE:
            self._finish([batch], self._plan_batches([batch]), _LOW)
            return
        self._queue(_Job(size, batches=[batch]), len(batch.msg_ids))

    def _low_message(self, message: Message) -> None:
        if not self._writing and not self._low:
            if message.guaranteed:
                self.guarantee.deliver(message)
                return
            conns = None
            if not one_room(message):
                conns = list(self.hub.resolve(message.target))
                size = len(conns)
            else:
                size = len(self.hub.rooms.get(message.target.rooms[0], ()))
            if size <= SLICE:
                parts = self._plan_message(message, conns)
                self._finish_message(message, self._write_parts(parts, 1, _LOW))
                return
            self._queue(_Job(size, message=message, conns=conns), 1)
            return
        if message.guaranteed:
            self._queue(_Job(1, message=message), 1)  # its turn keeps its order
            return
        if one_room(message):
            size = len(self.hub.rooms.get(message.target.rooms[0], ()))
            self._queue(_Job(size, message=message), 1)
        else:
            conns = list(self.hub.resolve(message.target))
            self._queue(_Job(len(conns), message=message, conns=conns), 1)

    def _queue(self, job: _Job, messages: int) -> None:
        # Past the cap low-priority work is dropped; a guaranteed message never is: it is
        # one write, and dropped here it would wait in the store for its user's reconnect.
        if self.backlog + job.estimate > BACKLOG_MAX and not _guaranteed(job):
            self.stats.overload_drops.inc(messages)
            return
        self._low.append(job)
        self._queued += job.estimate
        if self.backlog > BACKLOG_PACE:
            self._room.clear()
        if not self._writing:
            self._writing = True
            self.spawn(self._write_queue())  # tracked: the gateway awaits it on close

    async def _write_queue(self) -> None:
        """The writer task: run the jobs in order, a slice at a time; ends when empty."""
        low = self._low
        budget = SLICE
        try:
            while low:
                job = low.popleft()
                self._queued -= job.estimate
                joined: list[Message] | None = None
                if job.batches is not None:
                    batches = job.batches
                    room = batches[0].room
                    while low and low[0].batches is not None and low[0].batches[0].room == room:
                        merged = low.popleft()
                        self._queued -= merged.estimate
                        assert merged.batches is not None
                        batches.extend(merged.batches)
                        self.stats.coalesced.inc(len(merged.batches))
                    parts = self._plan_batches(batches)
                    messages = sum(len(b.msg_ids) for b in batches)
                    began = time.monotonic()
                else:
                    assert job.message is not None
                    messages = 1
                    if job.message.guaranteed:
                        self.guarantee.deliver(job.message)
                        parts = []
                    elif (joined := self._join_room_messages(job)) is not None:
                        parts = self._plan_room_messages(joined)
                        messages = len(joined)
                    else:
                        parts = self._plan_message(job.message, job.conns)
                written = 0
                self._inflight = sum(len(conns) for conns, _ in parts)
                for conns, data in parts:
                    for start in range(0, len(conns), SLICE):
                        chunk = conns[start : start + SLICE]
                        if budget <= 0:
                            budget = SLICE
                            self._wake_pacer()
                            await asyncio.sleep(0)
                        written += self._write(chunk, data, messages, _LOW)
                        budget -= len(chunk)
                        self._inflight -= len(chunk)
                self._inflight = 0
                if job.batches is not None:
                    took = time.monotonic() - began
                    if took >= FANOUT_MIN_S:
                        self._fanout[job.batches[0].room] = took
                    else:
                        self._fanout.pop(job.batches[0].room, None)
                    self._count_batches(job.batches, written, _LOW)
                elif joined is not None:
                    for message in joined:
                        self._finish_message(message, written)
                elif job.message is not None and not job.message.guaranteed:
                    self._finish_message(job.message, written)
                if budget <= 0 or not low:
                    budget = SLICE
                    self._wake_pacer()
                    await asyncio.sleep(0)
        finally:
            self._writing = False
            self._inflight = 0
            self._wake_pacer()

    def _join_room_messages(self, job: _Job) -> list[Message] | None:
        """``job``'s single room message and those for the same room queued right
        after it (at most ``write_join``), taken off the queue; None when alone.

        When the writer is behind, a hot room's messages wait back to back: each
        keeps its own frame, but they share one write per connection (the
        syscalls, not the bytes, are the cost), without waiting for anything.
        """
        message = job.message
        low = self._low
        if message is None or not low or not one_room(message):
            return None
        room = message.target.rooms[0]
        joined = [message]
        while low and len(joined) < self.write_join:
            nxt = low[0].message
            if nxt is None or nxt.guaranteed or not one_room(nxt) or nxt.target.rooms[0] != room:
                break
            self._queued -= low.popleft().estimate
            joined.append(nxt)
        if len(joined) == 1:
            return None
        self.stats.coalesced.inc(len(joined) - 1)
        return joined

    def _wake_pacer(self) -> None:
        if self.backlog <= BACKLOG_PACE // 2 or not self._low:
            self._room.set()

    # ------------------------------------------------------------------ planning

    def _plan_batches(self, batches: list[RoomBatch]) -> list[Part]:
        """The plan of a room's batches; then the recoveries of the room hear of them.

        (In that order: a connection the recovery indexes in the room during
        the call is not in this plan, so it is not written twice.)
        """
        parts = batch_parts(self.hub, batches)
        self.recovery.planned_batches(batches)
        return parts

    def _plan_message(self, message: Message, conns: list[Connection] | None = None) -> list[Part]:
        """The plan of one message; then the recoveries of its rooms hear of it."""
        parts = message_parts(self.hub, message, conns)
        if message.target.rooms:
            self.recovery.planned_message(message)
        return parts

    def _plan_room_messages(self, messages: list[Message]) -> list[Part]:
        """The plan of single messages to one room (one write); then the recoveries hear."""
        parts = room_messages_parts(self.hub, messages)
        for message in messages:
            self.recovery.planned_message(message)
        return parts

    # ------------------------------------------------------------------ writing

    def _write_parts(self, parts: list[Part], messages: int, priority: Priority) -> int:
        return sum(self._write(conns, data, messages, priority) for conns, data in parts)

    def _write(
        self, conns: list[Connection], data: bytes, messages: int, priority: Priority
    ) -> int:
        """Write ``data`` to each open connection of ``conns`` (the hot loop); returns writes.

        ``messages`` is how many messages ``data`` carries (for the drop counts).
        """
        # Per write: one state check and, only while some client is slow, a set lookup.
        # (An OPEN connection always has its transport; asking each transport for its
        # buffer size would cost more than the rest of the loop.)
        open_ = _OPEN
        outbox = self.outbox
        behind = outbox.behind
        low = priority == _LOW
        skipped = 0
        for conn in conns:
            if conn.state is not open_ or (
                behind and conn in behind and not outbox.admits(conn, len(data), messages, low)
            ):
                skipped += 1
                continue
            conn.transport.write(data)  # type: ignore[union-attr]
        return len(conns) - skipped

    # ------------------------------------------------------------------ accounting

    def _finish(self, batches: list[RoomBatch], parts: list[Part], priority: Priority) -> None:
        messages = sum(len(b.msg_ids) for b in batches)
        written = self._write_parts(parts, messages, priority)
        self._count_batches(batches, written, priority)

    def _count_batches(self, batches: list[RoomBatch], written: int, priority: Priority) -> None:
        messages = sum(len(b.msg_ids) for b in batches)
        stats = self.stats
        label = priority.value
        stats.deliveries.labels(label).inc(messages * written)
        stats.batch_writes.inc(written * len(batches))
        self.metrics.pushes_written.inc(written)
        accepted = min((b.accepted_ms for b in batches if b.accepted_ms), default=0)
        if accepted:
            stats.latency.labels(label).observe(max(0.0, time.time() - accepted / 1000))
        tracer = self.tracer
        if tracer.scope == "all" and tracer.max_messages > 0:
            at_ms = tracer.now_ms()
            # Frozen once for the whole call: the same detail for every message.
            detail = tracer.freeze("written", {"node": self.node, "written": written})
            for batch in batches:
                for msg_id in batch.msg_ids:
                    tracer.record(msg_id, "written", detail, at_ms)

    def _finish_message(self, message: Message, written: int) -> None:
        deliveries, latency = self._per_priority[message.priority]
        deliveries.inc(written)
        self.metrics.pushes_written.inc(written)
        if message.accepted_ms:
            latency.observe(max(0.0, time.time() - message.accepted_ms / 1000))
        tracer = self.tracer
        if tracer.wants(message):
            detail = self._written.get(written)
            if detail is None:
                if len(self._written) >= 256:
                    self._written.clear()
                detail = tracer.freeze("written", {"node": self.node, "written": written})
                self._written[written] = detail
            tracer.record(message.msg_id, "written", detail)


def _guaranteed(job: _Job) -> bool:
    return job.message is not None and job.message.guaranteed
