"""The dispatch job: the high and low queues consumed apart, rooms aggregated, batches encoded once.

Tasks (``async with Dispatcher(...)``), none shared between the priorities:

* ``dispatch-high``: fetches high-priority messages, resolves their targets
  to nodes and hands them over at once (path ``a``). With ``high_copies``
  2 (the default) it also gives each fetched list to
* ``dispatch-high-b``: a second, independent path that resolves the targets
  again and hands the same messages over once more. Gateways drop the second
  copy by msg id (PROTOCOL.md §1.3 rule 5); a copy lost or stuck on one path
  still arrives by the other.
* ``dispatch-low``: fetches low-priority messages, expands areas to rooms and
  feeds the :class:`~longlink.dispatch.aggregator.Aggregator` (window
  ``aggregate_ms``). With ``aggregate_ms`` 0 it routes every message on its
  own, as it comes.
* ``dispatch-low-emit``: the only task that hands low-priority work to the
  nodes, so what the aggregator releases keeps its order: it closes windows
  when due, encodes each room flush once into a
  :class:`~longlink.model.RoomBatch` (:mod:`~longlink.dispatch.compression`)
  and sends each node its envelopes in order.

Every consumer yields to the loop between fetched lists: the embedded queue
never suspends while it has messages, and a low-priority backlog must not
starve the high consumer sharing the loop. ``pace``, when given (the node
wires its own gateway's), is awaited before each low-priority fetch so the
backlog stays in the queue (bounded, 503 at the API) instead of piling up in
a gateway's write queue. ``fanout_s``, when given (the node wires its own
gateway's), tells how long a room's last fan-out took, and a room that takes
long gets a longer window (:mod:`~longlink.dispatch.aggregator`, rule 6).

Each step resolves all of its targets with one ``nodes_for_many`` and hands
every node its envelopes with one ``send_many``: a distributed backend pays
per command and per round trip (redis-py spends about 50 µs of CPU on a
command sent on its own), so a step costs one round trip each way whatever
its size; the embedded backends loop, where a call costs nothing. Nothing
is cached between steps.

Room history (PROTOCOL.md §1.4 rule 2): each step's room messages are
handed to ``send_many`` with the envelopes, as (room, entry) pairs in the
order the nodes get them, so the node channel keeps them in the rooms'
history in the same round trip, before any node writes them (a room
nobody listens to on any node is kept all the same). Not kept: pushes with
``"history": false``, area pushes (made room pushes by
``_expand_areas``), the second high-priority path's copies, and everything
when ``history_size`` is 0.

Messages are acked to the queue once handed over (for the low priority:
once the batch holding them was sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import msgspec
from prometheus_client import CollectorRegistry

from longlink.bus.base import MessageQueue, NodeChannel
from longlink.dispatch.aggregator import Aggregator, FanoutTime, Output, RoomFlush
from longlink.dispatch.compression import BatchEncoder
from longlink.dispatch.metrics import DispatchMetrics
from longlink.history.base import HistoryEntry, Kept
from longlink.lifetime import cancel_requested, stop_tasks
from longlink.logic.base import RoomDirectory, Sessions
from longlink.model import Envelope, Message, Priority, Target
from longlink.settings import Settings
from longlink.trace import Tracer

log = logging.getLogger("longlink.dispatch")

FETCH_MAX = 512  # high-priority messages taken per step
FETCH_LOW = 128  # low-priority messages taken per step: a step stays well under a millisecond
EMIT_MAX = 256  # low-priority messages encoded and handed over per step of the emitter
READY_MAX = 8 * FETCH_MAX  # released low-priority items waiting for the emitter
SECOND_PATH_MAX = 64  # fetched lists waiting on the second high path; more are not copied
CLOSE_FLUSH_S = 1.0  # on close, how long pending windows get to go out

#: Awaited before each low-priority fetch (returns when the write path has room).
Pace = Callable[[], Awaitable[None]]


class Routes(Sessions, RoomDirectory, Protocol):
    """What dispatch reads: the nodes targets reach (``nodes_for_many``) and areas' rooms."""


class Dispatcher:
    """Runs the consumers until closed (see the module docstring)."""

    def __init__(
        self,
        queue: MessageQueue,
        registry: Routes,
        channel: NodeChannel,
        metrics: CollectorRegistry | None = None,
        tracer: Tracer | None = None,
        *,
        settings: Settings | None = None,
        pace: Pace | None = None,
        fanout_s: FanoutTime | None = None,
    ) -> None:
        settings = settings or Settings()
        self.queue = queue
        self.registry = registry
        self.channel = channel
        self.metrics = DispatchMetrics(metrics or CollectorRegistry())
        self.tracer = tracer or Tracer(scope="off")  # records "dispatched" (longlink.trace)
        self.pace = pace
        self.high_copies = 2 if settings.high_copies >= 2 else 1
        self.aggregator: Aggregator | None = None
        if settings.aggregate_ms > 0:
            self.aggregator = Aggregator(
                settings.aggregate_ms / 1000,
                settings.aggregate_max_messages,
                settings.aggregate_max_bytes,
                fanout_s,
            )
        self.encoder = BatchEncoder(settings.compress_min_bytes, settings.brotli_quality)
        self.keep_history = settings.history_size > 0 and settings.history_ttl_s > 0
        self.metrics.watch(queue.depth, self._pending)
        self._ready: deque[Output] = deque()
        self._wake = asyncio.Event()  # the emitter has work (or a new deadline)
        self._drained = asyncio.Event()  # the emitter has caught up
        self._second: deque[list[Message]] = deque()
        self._second_wake = asyncio.Event()
        self._consumers: list[asyncio.Task[None]] = []
        self._helpers: list[asyncio.Task[None]] = []

    def _pending(self) -> int:
        held = self.aggregator.pending_messages if self.aggregator else 0
        return held + len(self._ready)

    async def __aenter__(self) -> Dispatcher:
        self._consumers = [
            asyncio.create_task(self._consume_high(), name="dispatch-high"),
            asyncio.create_task(self._consume_low(), name="dispatch-low"),
        ]
        if self.high_copies == 2:
            self._helpers.append(asyncio.create_task(self._second_path(), name="dispatch-high-b"))
        if self.aggregator is not None:
            self._helpers.append(asyncio.create_task(self._emit_low(), name="dispatch-low-emit"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop consuming; send what the open windows hold (1 s at most); idempotent.

        Messages still in the queue stay there.
        """
        await stop_tasks(*self._consumers)
        self._consumers = []
        emitter_alive = any(not t.done() for t in self._helpers)
        if self.aggregator is not None and emitter_alive:
            self._ready.extend(self.aggregator.flush_all(asyncio.get_running_loop().time()))
            if self._ready:
                self._drained.clear()
                self._wake.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_FLUSH_S):
                        await self._drained.wait()
        await stop_tasks(*self._helpers)
        self._helpers = []

    # ------------------------------------------------------------------ high priority

    async def _consume_high(self) -> None:
        queue = self.queue
        while not cancel_requested():
            messages = await queue.fetch(Priority.HIGH, FETCH_MAX)
            if not messages:
                return  # queue closed
            self.metrics.messages_in.labels(Priority.HIGH.value).inc(len(messages))
            if self.high_copies == 2:
                if len(self._second) < SECOND_PATH_MAX:
                    self._second.append(messages)
                    self._second_wake.set()
                else:
                    log.warning("second high-priority path is behind: %d not copied", len(messages))
            try:
                await self.route(messages, path="a")
            except Exception:
                log.exception("dispatch of %d high-priority messages failed", len(messages))
            finally:
                await queue.ack(Priority.HIGH, messages)
            await asyncio.sleep(0)  # let the loop breathe between fetched lists

    async def _second_path(self) -> None:
        while not cancel_requested():
            await self._second_wake.wait()
            self._second_wake.clear()
            while self._second:
                messages = self._second.popleft()
                try:
                    await self.route(messages, path="b", trace=False)
                except Exception:
                    log.exception("second path: %d high-priority messages failed", len(messages))

    # ------------------------------------------------------------------ low priority

    async def _consume_low(self) -> None:
        queue = self.queue
        loop = asyncio.get_running_loop()
        while not cancel_requested():
            if self.pace is not None:
                await self.pace()
            messages = await queue.fetch(Priority.LOW, FETCH_LOW)
            if not messages:
                return
            self.metrics.messages_in.labels(Priority.LOW.value).inc(len(messages))
            aggregator = self.aggregator
            if aggregator is None:  # aggregate_ms = 0: every message on its own
                try:
                    await self.route(messages)
                except Exception:
                    log.exception("dispatch of %d low-priority messages failed", len(messages))
                finally:
                    await queue.ack(Priority.LOW, messages)
            else:
                ready = self._ready
                for message in messages:
                    if message.target.areas:
                        message = await self._expand_areas(message)
                    ready.extend(aggregator.add(message, loop.time()))
                self._wake.set()
                while len(ready) > READY_MAX:
                    self._drained.clear()
                    await self._drained.wait()
            await asyncio.sleep(0)

    async def _emit_low(self) -> None:
        assert self.aggregator is not None
        aggregator = self.aggregator
        loop = asyncio.get_running_loop()
        ready = self._ready
        while not cancel_requested():
            self._wake.clear()
            ready.extend(aggregator.due(loop.time()))
            if ready:
                items: list[Output] = []
                count = 0
                while ready and count < EMIT_MAX:  # a bounded step: high priority waits less
                    item = ready.popleft()
                    items.append(item)
                    count += len(item.messages) if isinstance(item, RoomFlush) else 1
                try:
                    await self._send_low(items)
                except Exception:
                    log.exception("dispatch of %d low-priority items failed", len(items))
                await asyncio.sleep(0)
                continue  # look again: more may have come meanwhile
            self._drained.set()
            deadline = aggregator.next_deadline()
            if deadline is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await self._wake.wait()

    async def _send_low(self, items: list[Output]) -> None:
        """Encode each flush once and hand every node its envelopes, in order."""
        targets = [
            Target(rooms=[item.room]) if isinstance(item, RoomFlush) else item.target
            for item in items
        ]
        # Every target of the step in one registry read, every node in one write.
        resolved = await self.registry.nodes_for_many(targets)
        per_node: defaultdict[str, list[Envelope]] = defaultdict(list)
        done: list[Message] = []
        routed: list[tuple[Sequence[Message], set[str], int]] = []
        kept: list[Kept] = []
        keep = self.keep_history
        for item, nodes in zip(items, resolved, strict=True):
            if isinstance(item, RoomFlush):
                messages = item.messages
                batch, stats = self.encoder.encode(item.room, messages)
                self.metrics.batch(len(messages), stats)
                for node in nodes:
                    per_node[node].append(batch)
                routed.append((messages, nodes, batch.accepted_ms))
                done.extend(messages)
                if keep:
                    room = item.room
                    kept.extend((room, _entry(m)) for m in messages if m.history)
            else:
                for node in nodes:
                    per_node[node].append(item)
                routed.append(((item,), nodes, item.accepted_ms))
                done.append(item)
                if keep:
                    _keep(kept, item)
        self._count(routed, time.time() * 1000)
        try:
            if per_node or kept:
                await self.channel.send_many(per_node, kept)
        finally:
            # Acked after the node write, one XACK + XDEL for the step: a worker killed
            # before it leaves the step pending, for another to claim. (A write that
            # failed is acked too, as before; the emitter logs it.)
            await self.queue.ack(Priority.LOW, done)

    # ------------------------------------------------------------------ routing

    async def route(
        self, messages: Sequence[Message], *, path: str = "", trace: bool = True
    ) -> None:
        """Send each message to the nodes holding its targets, in order per node."""
        per_node: defaultdict[str, list[Envelope]] = defaultdict(list)
        expanded = [await self._expand_areas(m) if m.target.areas else m for m in messages]
        resolved = await self.registry.nodes_for_many([m.target for m in expanded])
        now_ms = time.time() * 1000
        kept: list[Kept] = []
        keep = self.keep_history and path != "b"  # the second path's copies are not kept again
        for message, nodes in zip(expanded, resolved, strict=True):
            for node in nodes:
                per_node[node].append(message)
            if keep:
                _keep(kept, message)
        if per_node or kept:
            await self.channel.send_many(per_node, kept)
        if path:
            self.metrics.high_copies.labels(path).inc(len(messages))
        if trace or not path:
            pairs = zip(expanded, resolved, strict=True)
            self._count([((m,), nodes, m.accepted_ms) for m, nodes in pairs], now_ms, trace=trace)

    async def _expand_areas(self, message: Message) -> Message:
        """The message with its areas replaced by their rooms (gateways know no areas)."""
        rooms = await self.registry.rooms_in_areas(message.target.areas)
        # Every other field kept: accepted_us orders the push against joins and leaves.
        # Area pushes are not kept in the rooms' history (PROTOCOL.md §1.4 rule 2).
        return msgspec.structs.replace(
            message, target=Target(rooms=sorted(set(rooms))), history=False
        )

    def _count(
        self,
        routed: Sequence[tuple[Sequence[Message], set[str], int]],
        now_ms: float,
        *,
        trace: bool = True,
    ) -> None:
        """Metrics and trace of one step: ``(messages, their nodes, accepted_ms)`` each.

        Counters move once per step and the trace records once per set of
        nodes (a step of per-user pushes has a few): per message, only the
        latency is observed.
        """
        if not routed:
            return
        metrics = self.metrics
        label = routed[0][0][0].priority.value  # a step holds one priority
        latency = metrics.latency.labels(label)
        count = unrouted = 0
        by_nodes: dict[frozenset[str], list[Message]] = {}
        for messages, nodes, accepted_ms in routed:
            count += len(messages)
            if not nodes:
                unrouted += len(messages)
            if accepted_ms:
                latency.observe(max(0.0, (now_ms - accepted_ms) / 1000))
            if trace:
                by_nodes.setdefault(frozenset(nodes), []).extend(messages)
        metrics.dispatched.labels(label).inc(count)
        if unrouted:
            metrics.unrouted.labels(label).inc(unrouted)
        for reached, grouped in by_nodes.items():
            self.tracer.on_many(grouped, "dispatched", {"nodes": sorted(reached)})


def _entry(message: Message) -> HistoryEntry:
    """The history entry of a room message (PROTOCOL.md §1.4 rule 2)."""
    return HistoryEntry(message.msg_id, message.accepted_ms, message.payload, message.data_json)


def _keep(kept: list[Kept], message: Message) -> None:
    """Add ``message`` to ``kept`` for each of its rooms, if it is a room push to keep."""
    if message.history and message.target.rooms:
        entry = _entry(message)
        kept.extend((room, entry) for room in message.target.rooms)
