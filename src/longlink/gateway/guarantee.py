"""Guaranteed delivery on one gateway node: ACK_REQUIRED, retries, redelivery from the store.

PROTOCOL.md §1.3 rule 5. A guaranteed message is already in the offline
store when it reaches a gateway (the API commits it before the 202), so
nothing here has to be durable: this module only decides what to write and
when to write it again.

Life of one guaranteed message on one connection::

    written ──interval──▶ retried 1 ──interval──▶ … retried n ──interval──▶ unacked
       │                                                        (it stays in the store)
       └── at any time: ACK ──▶ acked (removed from the store)
                        connection lost ──▶ closed (it stays in the store)
                        TTL over ──▶ unacked (the store's sweep expires it)

Rules:

* ``conn.unacked`` maps msg id → :class:`Unacked`; it is ``None`` on a
  connection with nothing unacked, so an idle connection holds no dict.
* One :class:`~longlink.gateway.wheel.TimingWheel` holds every retry of the
  node (no timer per message); its tick is a tenth of the retry interval
  (5–50 ms), so a retry goes out between one interval and one interval plus
  a tick after the previous write.
* The gateway drops duplicates before writing: a message already unacked on
  a connection is not written to it again (a live push racing the store's
  redelivery at AUTH_OK).
* After AUTH_OK the connection's pending messages (its user's and its
  device's) are read from the store oldest first, page by page, and written
  like live ones; at most :data:`REDELIVERY_WINDOW` wait unacked at a time.
* ACKs are applied at once in memory and reach the store in one transaction
  per loop turn. An ACK from any connection of the user removes a user
  message from the store (docs/guaranteed-delivery.md).
* Every delivery to a connection ends in exactly one reach outcome (acked
  after k retries, or not), which feeds ``GET /v1/stats/reach``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from longlink.gateway.connection import Connection
from longlink.gateway.hub import Hub
from longlink.gateway.outbox import Outbox
from longlink.gateway.wheel import TimingWheel
from longlink.lifetime import cancel_requested
from longlink.model import Message, message_push
from longlink.protocol.server import SessionState
from longlink.store.base import OfflineStore, StoreError, recipients_of_conn
from longlink.trace import Tracer

__all__ = ["MAX_UNACKED", "REDELIVERY_PAGE", "REDELIVERY_WINDOW", "Guarantee", "Unacked"]

log = logging.getLogger("longlink.gateway")

#: Unacked guaranteed messages one connection may hold; past it a message is not
#: written (it waits in the offline store for the next connect) and counted.
MAX_UNACKED = 10_000
#: Messages read from the store per page at AUTH_OK.
REDELIVERY_PAGE = 500
#: Unacked messages on a connection before the redelivery waits for ACKs.
REDELIVERY_WINDOW = 1000


class GuaranteeMetrics:
    """Prometheus counters of guaranteed delivery."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = Counter(
            "longlink_guaranteed_writes",
            "Guaranteed messages written to connections (first tries), by source",
            ["source"],
            registry=registry,
        )
        self.retries = Counter(
            "longlink_guaranteed_retries", "Guaranteed messages written again", registry=registry
        )
        self.outcomes = Counter(
            "longlink_guaranteed_outcomes",
            "Guaranteed deliveries to a connection that ended, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.overflow = Counter(
            "longlink_guaranteed_overflow",
            "Guaranteed messages not written: the connection had too many unacked",
            registry=registry,
        )
        # Label children looked up once: these count per message.
        self.live = self.written.labels("live")
        self.from_store = self.written.labels("store")
        self.acked = self.outcomes.labels("acked")
        self.closed = self.outcomes.labels("closed")
        self.unacked = {r: self.outcomes.labels(f"unacked_{r}") for r in ("retries", "ttl")}


class Unacked:
    """One guaranteed message written to one connection and not acked yet."""

    __slots__ = ("conn", "due", "frame", "from_store", "message", "retries", "slot")

    def __init__(self, conn: Connection, message: Message, frame: bytes, from_store: bool) -> None:
        self.conn = conn
        self.message = message
        self.frame = frame
        self.from_store = from_store
        self.retries = 0
        self.due = 0.0
        self.slot = -1


class Guarantee:
    """Unacked messages, retries and redelivery of one gateway node (module docstring)."""

    def __init__(
        self,
        hub: Hub,
        outbox: Outbox,
        store: OfflineStore | None,
        tracer: Tracer,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        *,
        node: str,
        retry_interval_s: float,
        max_retries: int,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        self.hub = hub
        self.outbox = outbox
        self.store = store
        self.tracer = tracer
        self.spawn = spawn
        self.metrics = GuaranteeMetrics(metrics or CollectorRegistry())
        self.node = node
        self.interval_s = retry_interval_s
        self.max_retries = max_retries
        self.tick_s = min(0.05, max(0.005, self.interval_s / 10))
        slots = max(1024, math.ceil(2 * self.interval_s / self.tick_s) + 2)
        self.wheel: TimingWheel[Unacked] = TimingWheel(self.tick_s, slots, time.monotonic())
        #: Messages written and not yet acked, on every connection of the node.
        self.inflight = 0
        #: Connections whose store redelivery is running.
        self.redelivering = 0
        self._waiters: dict[Connection, asyncio.Future[None]] = {}
        self._acks: dict[tuple[str, str], list[int]] = {}
        self._out: dict[Connection, list[bytes]] = {}  # frames of this loop turn

    @property
    def idle(self) -> bool:
        """Nothing unacked and no redelivery running (tests wait for this)."""
        return self.inflight == 0 and self.redelivering == 0

    async def run(self) -> None:
        """The retry loop: advance the wheel every tick until cancelled."""
        while not cancel_requested():
            await asyncio.sleep(self.tick_s)
            self.advance(time.monotonic())

    # ------------------------------------------------------------------ writing

    def deliver(self, message: Message) -> None:
        """Write a guaranteed ``message`` to every local connection its target reaches."""
        frame = message_push(message)
        now, now_ms = time.monotonic(), _now_ms()
        targeted = written = 0
        for conn in self.hub.resolve(message.target):
            targeted += 1
            if self._write(conn, message, frame, now, now_ms, from_store=False):
                written += 1
        if written:
            self.metrics.live.inc(written)
        self.tracer.record(
            message.msg_id,
            "written",
            (self.node, targeted, written),  # trace.FIELDS names the values
            now_ms,
        )

    def _write(
        self,
        conn: Connection,
        message: Message,
        frame: bytes,
        now: float,
        now_ms: int,
        *,
        from_store: bool,
    ) -> bool:
        """Write ``message`` to ``conn`` and track it; False when it was not written."""
        if conn.state != SessionState.OPEN or conn.transport is None:
            return False
        if now_ms >= message.expires_ms:
            return False
        unacked = conn.unacked
        if unacked is not None:
            if message.msg_id in unacked:
                return False  # PROTOCOL §1.3 rule 5: the gateway drops duplicates before writing
            if len(unacked) >= MAX_UNACKED:
                self.metrics.overflow.inc()
                return False  # it waits in the store for the next connect
        if not self._send(conn, frame):
            return False
        if unacked is None:
            unacked = conn.unacked = {}
        entry = Unacked(conn, message, frame, from_store)
        entry.due = now + self.interval_s
        entry.slot = self.wheel.schedule(entry, entry.due)
        unacked[message.msg_id] = entry
        self.inflight += 1
        return True

    def _send(self, conn: Connection, frame: bytes) -> bool:
        """Queue ``frame`` for ``conn`` unless the client is hopelessly behind (server_busy).

        The frames of one loop turn go out in one write per connection at the
        end of the turn (:meth:`flush`): a burst to a user costs one system
        call, not one per message. Order among guaranteed messages is kept.
        """
        if conn.transport is None or conn.state != SessionState.OPEN:
            return False
        if self.outbox.over_hard(conn, len(frame)):  # one budget per connection (outbox.py)
            return False
        frames = self._out.get(conn)
        if frames is None:
            if not self._out:
                asyncio.get_running_loop().call_soon(self.flush)
            self._out[conn] = [frame]
        else:
            frames.append(frame)
        return True

    def flush(self) -> None:
        """Write the frames queued this loop turn (called soon after the first is queued)."""
        out, self._out = self._out, {}
        for conn, frames in out.items():
            if conn.state == SessionState.OPEN:
                conn.write_many(frames)

    # ------------------------------------------------------------------ retries

    def advance(self, now: float) -> None:
        """Resend what is due, give up on what has used its retries (the retry loop calls it)."""
        due = self.wheel.advance(now)
        if not due:
            return
        if len(due) > 1:
            due.sort(key=_age)  # a bucket is a set: resend in message order
        now_ms = _now_ms()
        tracer = self.tracer
        for entry in due:
            conn = entry.conn
            unacked = conn.unacked
            msg_id = entry.message.msg_id
            if unacked is None or unacked.get(msg_id) is not entry:
                continue  # acked, or the connection went, since it was scheduled
            if now < entry.due:  # scheduled beyond the wheel's span: not yet
                entry.slot = self.wheel.schedule(entry, entry.due)
                continue
            if now_ms >= entry.message.expires_ms or entry.retries >= self.max_retries:
                # Given up on this connection; the store keeps it (or its sweep expires it).
                reason = "ttl" if now_ms >= entry.message.expires_ms else "retries"
                self._forget(conn, unacked, msg_id)
                tracer.record(
                    msg_id,
                    "unacked",
                    (conn.conn_id, entry.retries, reason),
                    now_ms,
                )
                tracer.outcome(entry.retries, False, entry.from_store)
                self.metrics.unacked[reason].inc()
                self._wake(conn)
                continue
            entry.retries += 1
            if not self._send(conn, entry.frame):
                continue  # the connection failed: closed() has taken care of its messages
            self.metrics.retries.inc()
            tracer.record(msg_id, "retried", (conn.conn_id, entry.retries), now_ms)
            entry.due = now + self.interval_s
            entry.slot = self.wheel.schedule(entry, entry.due)

    def _forget(self, conn: Connection, unacked: dict[int, Unacked], msg_id: int) -> Unacked:
        entry = unacked.pop(msg_id)
        self.wheel.cancel(entry, entry.slot)
        self.inflight -= 1
        if not unacked:
            conn.unacked = None  # an idle connection holds no dict
        return entry

    # ------------------------------------------------------------------ connection events

    def acked(self, conn: Connection, msg_ids: Iterable[int]) -> None:
        """ACK from ``conn`` (one id or a list): stop retrying, remove from the store."""
        ids = list(msg_ids)
        unacked = conn.unacked
        if unacked is not None:
            now_ms = _now_ms()
            tracer = self.tracer
            count = 0
            for msg_id in ids:
                if unacked.get(msg_id) is None:
                    continue  # not ours, already acked, or given up (still removed below)
                entry = self._forget(conn, unacked, msg_id)
                count += 1
                tracer.record(msg_id, "acked", (conn.conn_id, entry.retries), now_ms)
                tracer.outcome(entry.retries, True, entry.from_store)
                unacked = conn.unacked
                if unacked is None:
                    break
            self.metrics.acked.inc(count)
            self._wake(conn)
        if self.store is not None and ids:
            key = (conn.user, conn.device)
            pending = self._acks.get(key)
            if pending is None:
                if not self._acks:
                    self.spawn(self._flush_acks())
                self._acks[key] = list(ids)
            else:
                pending.extend(ids)

    async def _flush_acks(self) -> None:
        """Apply the ACKs of this loop turn to the store (one transaction for all of them)."""
        acks, self._acks = self._acks, {}
        store = self.store
        if store is None or not acks:
            return
        try:
            await store.ack_many([(recipients_of_conn(u, d), ids) for (u, d), ids in acks.items()])
        except StoreError as exc:
            # Not lost: the message is redelivered at the next connect and acked again.
            log.warning("offline store ack failed: %r", exc)

    def opened(self, conn: Connection) -> None:
        """AUTH_OK was sent: deliver what the store keeps for the connection, oldest first."""
        if self.store is None:
            return
        self.redelivering += 1
        self.spawn(self._redeliver(conn, self.store))

    def closed(self, conn: Connection) -> None:
        """The connection went: its unacked messages stay in the store for the next connect."""
        unacked, conn.unacked = conn.unacked, None
        if unacked:
            now_ms = _now_ms()
            for msg_id, entry in unacked.items():
                self.wheel.cancel(entry, entry.slot)
                self.tracer.record(msg_id, "closed", (conn.conn_id, entry.retries), now_ms)
                self.tracer.outcome(entry.retries, False, entry.from_store)
            self.inflight -= len(unacked)
            self.metrics.closed.inc(len(unacked))
        self._wake(conn)

    # ------------------------------------------------------------------ redelivery

    async def _redeliver(self, conn: Connection, store: OfflineStore) -> None:
        try:
            recipients = recipients_of_conn(conn.user, conn.device)
            after = 0
            while not conn.closed:
                page = await store.pending(
                    recipients, _now_ms(), after=after, limit=REDELIVERY_PAGE
                )
                for message in page:
                    after = message.msg_id
                    if conn.closed:
                        return
                    now_ms = _now_ms()
                    frame = message_push(message)
                    if self._write(conn, message, frame, time.monotonic(), now_ms, from_store=True):
                        self.metrics.from_store.inc()
                        self.tracer.record(message.msg_id, "from_store", (conn.conn_id,), now_ms)
                    unacked = conn.unacked
                    if unacked is not None and len(unacked) >= REDELIVERY_WINDOW:
                        await self._wait_window(conn)
                if len(page) < REDELIVERY_PAGE:
                    return
        except StoreError as exc:
            log.warning("conn %s: redelivery from the offline store failed: %s", conn.conn_id, exc)
        finally:
            self.redelivering -= 1

    async def _wait_window(self, conn: Connection) -> None:
        """Wait until half the window is acked, given up, or the connection is gone."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[conn] = future
        try:
            await future
        finally:
            if self._waiters.get(conn) is future:
                del self._waiters[conn]

    def _wake(self, conn: Connection) -> None:
        future = self._waiters.get(conn)
        if future is None or future.done():
            return
        unacked = conn.unacked
        if conn.closed or unacked is None or len(unacked) <= REDELIVERY_WINDOW // 2:
            future.set_result(None)

    async def close(self) -> None:
        """Wake every waiting redelivery (the gateway closes its connections first)."""
        for future in self._waiters.values():
            if not future.done():
                future.set_result(None)
        with contextlib.suppress(Exception):
            await self._flush_acks()


def _age(entry: Unacked) -> int:
    return entry.message.msg_id


def _now_ms() -> int:
    return int(time.time() * 1000)
