"""The bus on Redis Streams: queues with consumer groups, one stream per gateway node.

Queues (``{ll}:q:high``, ``{ll}:q:low``): physically separate streams, each
read by the consumer group ``dispatch``. A message stays pending in the
group until :meth:`RedisQueue.ack` (after dispatch handed it to the nodes);
a dispatch worker that dies leaves its entries pending and another worker
claims them with ``XAUTOCLAIM`` after ``claim_idle_ms``. Nothing accepted is
lost; a message may be dispatched twice after a crash (gateways and SDKs
drop duplicates by msg id).

Node channels (``{ll}:node:<id>`` and ``{ll}:node:<id>:hi``): two streams
per gateway node, high-priority messages on their own so a low-priority
backlog never delays them; the node reads both with one ``XREAD`` and
handles the high stream's entries first. Each capped at
``node_stream_max`` entries, read from the tail by the node (at-most-once:
entries written while a node is down are skipped when it comes back —
guaranteed messages do not depend on this path, they are in the offline
store). Each entry holds one msgpack list of envelopes.

A push batch is appended to its queue by one command (:data:`XADD_MANY`, a
Lua script on that one key) rather than one ``XADD`` per message: the cost
that matters is redis-py's CPU per command, not Redis's.

Room history: a channel built with a
:class:`~longlink.history.redis.RedisHistory` queues the history appends of
a :meth:`RedisNodeChannel.send_many` first in the pipeline that writes the
node streams (one round trip; Redis runs a connection's commands in order,
so the history holds a message before any node can read it).

Redis Cluster: every operation touches one key but a node's ``XREAD`` (its
two streams: they must share a hash tag); see docs/deployment.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from longlink.bus.base import DeliveryHandler, QueueFull
from longlink.history.base import Kept
from longlink.history.redis import RedisHistory
from longlink.model import Envelope, Message, Priority

log = logging.getLogger("longlink.bus.redis")

PREFIX = "{ll}"
GROUP = "dispatch"
DEPTH_TTL_S = 0.1  # how old the queue length used for the bound may be
_message_decoder = msgspec.msgpack.Decoder(Message)
_envelopes_decoder = msgspec.msgpack.Decoder(list[Envelope])
_encoder = msgspec.msgpack.Encoder()
RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)
#: What redis-py raises while Redis is unreachable or loading (BusyLoadingError is a
#: ConnectionError): callers answer "unavailable, retry", never "internal error".
OUTAGES: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)

#: Appends every ARGV to the stream KEYS[1] as a queue entry (field ``m``), in order:
#: one command for a whole push batch. redis-py's CPU (measured here): ~50 µs per
#: command sent alone, ~9 µs per command of a pipeline, under 1 µs per argument.
#: Refused (-1) while KEYS[2], the epoch, is missing: Redis came back empty and the
#: registry is being rebuilt (:class:`RedisQueue`, "Redis restarts").
XADD_MANY = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  return -1
end
for i = 1, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[i])
end
return #ARGV
"""
#: Set once the registry is known whole; gone when Redis restarts without its data.
EPOCH_KEY = PREFIX + ":epoch"
#: Seconds after Redis came back empty before pushes are taken again: every gateway
#: reports each second and registers its sessions again when it finds itself unknown.
REBUILD_S = 3.0


def connect(url: str, *, max_connections: int = 64) -> aioredis.Redis:
    """A client for ``url`` (``redis://host:port/db``) that reconnects on its own.

    The pool blocks (up to 10 s) when all ``max_connections`` are busy, so a
    burst of concurrent pushes waits for a connection instead of failing.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        health_check_interval=10,
        socket_keepalive=True,
        retry_on_timeout=True,
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes both


def _reraise_if_cancelled() -> None:
    """redis-py may turn a cancellation into a connection error: never retry those."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def queue_key(priority: Priority) -> str:
    return f"{PREFIX}:q:{priority.value}"


def node_key(node_id: str, priority: Priority = Priority.LOW) -> str:
    """A gateway node's stream: high priority has its own, read first (never behind low)."""
    suffix = ":hi" if priority == Priority.HIGH else ""
    return f"{PREFIX}:node:{node_id}{suffix}"


def split_by_priority(envelopes: Sequence[Envelope]) -> tuple[list[Envelope], list[Envelope]]:
    """(high-priority messages, the rest in order): what goes on each of a node's streams.

    Commands and room batches stay on the low stream, in their order with the
    low-priority messages (a KICK after a push still comes after it).
    """
    high: list[Envelope] = []
    rest: list[Envelope] = []
    for envelope in envelopes:
        if isinstance(envelope, Message) and envelope.priority == Priority.HIGH:
            high.append(envelope)
        else:
            rest.append(envelope)
    return high, rest


def high_first(reply: Sequence[Any], high_key: str) -> list[tuple[bytes, bytes, Any]]:
    """The entries of an XREAD reply over a node's two streams, the high stream's first.

    Each as (stream key, entry id, fields); the order within a stream is kept.
    """
    streams = sorted(reply, key=lambda stream: _text(stream[0]) != high_key)
    return [(stream[0], entry_id, fields) for stream in streams for entry_id, fields in stream[1]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisQueue:
    """The high and low queues as two Redis streams with one consumer group.

    Redis restarts: while Redis is unreachable :meth:`publish_many` raises
    :class:`~longlink.bus.base.QueueFull` (the API answers 503 with
    ``Retry-After``). When it comes back *without* its data, the registry
    is empty until every gateway has registered its sessions again; a push
    accepted meanwhile would find no route and be lost. So every append
    checks, in the same command, that the :data:`EPOCH_KEY` exists: a
    process that saw it and finds it gone refuses pushes for
    :data:`REBUILD_S` (gateways re-register within a report interval), then
    sets it again. A process sets it at :meth:`start` (and, had Redis been
    away then, on its first push).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        maxsize: int = 100_000,
        consumer: str | None = None,
        claim_idle_ms: int = 10_000,
        block_ms: int = 1_000,
        rebuild_s: float = REBUILD_S,
    ) -> None:
        self._redis: Any = client  # redis-py types RESP2 and RESP3 replies as one union
        self._maxsize = maxsize
        self._consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._claim_idle_ms = claim_idle_ms
        self._block_ms = block_ms
        self._entries: dict[int, bytes] = {}  # msg_id -> stream entry id, until acked
        self._groups_ready: set[Priority] = set()
        self._depth: dict[Priority, int] = {p: 0 for p in Priority}
        self._depth_read: dict[Priority, float] = {p: -DEPTH_TTL_S for p in Priority}
        self._closed = False
        self._claim_cursor: dict[Priority, bytes] = {p: b"0-0" for p in Priority}
        # XAUTOCLAIM runs before a fetch at most this often while it finds nothing
        # (an entry is only claimable after claim_idle_ms anyway): one command per
        # fetch, not two. While it finds entries, or has more to scan, it runs every fetch.
        self._claim_every_s = min(claim_idle_ms, block_ms) / 1000
        self._claim_due: dict[Priority, float] = {p: 0.0 for p in Priority}
        self._xadd_many = self._redis.register_script(XADD_MANY)
        self._rebuild_s = rebuild_s
        self._epoch_seen = False
        self._lost_at: float | None = None  # when this process found the epoch gone

    async def _ensure_group(self, priority: Priority) -> None:
        if priority in self._groups_ready:
            return
        try:
            await self._redis.xgroup_create(queue_key(priority), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups_ready.add(priority)

    async def publish(self, message: Message) -> None:
        if not await self.publish_many([message]):
            depth = self._depth[message.priority]
            raise QueueFull(f"{message.priority.value} queue holds {depth} messages")

    async def publish_many(self, messages: Sequence[Message]) -> int:
        """Hold ``messages`` in order, in one command per priority; return how many were held.

        As :meth:`publish` one after another: the first message whose queue is
        at its bound stops the rest, which are not held (the count is then
        below ``len(messages)``). Raises QueueFull when Redis is unreachable;
        then, as for one ``publish`` whose reply was lost, some of them may
        have been held all the same.
        """
        if self._closed:
            raise QueueFull("queue is closed")
        if not messages:
            return 0
        try:
            now = time.monotonic()
            stale = [
                p
                for p in dict.fromkeys(m.priority for m in messages)
                if now - self._depth_read[p] >= DEPTH_TTL_S
            ]
            # The lengths are read at most every DEPTH_TTL_S, not per push: the bound
            # may be passed by one interval's pushes.
            if stale:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for priority in stale:
                        pipe.xlen(queue_key(priority))
                    lengths = await pipe.execute()
                for priority, length in zip(stale, lengths, strict=True):
                    self._depth[priority] = int(length)
                    self._depth_read[priority] = now
            depth = dict(self._depth)
            held = 0
            for message in messages:
                if depth[message.priority] >= self._maxsize:
                    break
                depth[message.priority] += 1
                held += 1
            if held:
                per_queue: dict[Priority, list[bytes]] = {}
                for message in messages[:held]:
                    per_queue.setdefault(message.priority, []).append(_encoder.encode(message))
                for priority, encoded in per_queue.items():  # usually one
                    await self._append(priority, encoded)
            self._depth.update(depth)
        except RETRYABLE as exc:
            # Redis is unreachable (restarting): the API answers 503 with Retry-After.
            # A rebuild under way starts over once it is back (it may come back empty).
            self._lost_at = None
            raise QueueFull(f"the queue is unavailable: {exc}") from exc
        return held

    async def start(self) -> None:
        """Set the epoch if missing (a process starting: whatever is stored is whole)."""
        with contextlib.suppress(*RETRYABLE):
            await self._redis.set(EPOCH_KEY, int(time.time() * 1000), nx=True)
            self._epoch_seen = True

    async def _append(self, priority: Priority, encoded: list[bytes]) -> None:
        """Append to the queue unless Redis lost its data and the registry is not rebuilt."""
        for _ in range(2):
            if await self._xadd_many(keys=[queue_key(priority), EPOCH_KEY], args=encoded) >= 0:
                self._epoch_seen = True
                self._lost_at = None
                return
            if not await self._renew_epoch():
                break
        raise QueueFull("Redis restarted without its data; rebuilding the registry, retry")

    async def _renew_epoch(self) -> bool:
        """The epoch is gone: set it again now (first start) or once :data:`REBUILD_S` passed."""
        now = time.monotonic()
        if self._epoch_seen:
            if self._lost_at is None:
                self._lost_at = now
                log.warning(
                    "Redis lost its data: pushes wait %.1f s for the registry", self._rebuild_s
                )
            if now - self._lost_at < self._rebuild_s:
                return False
        await self._redis.set(EPOCH_KEY, int(time.time() * 1000), nx=True)
        return True

    async def fetch(self, priority: Priority, max_count: int) -> list[Message]:
        key = queue_key(priority)
        reply: Any
        while not self._closed:
            _reraise_if_cancelled()  # a cancellation redis-py swallowed must still stop us
            try:
                await self._ensure_group(priority)
                if time.monotonic() >= self._claim_due[priority]:
                    claimed = await self._claim(priority, max_count)
                    if claimed:
                        return claimed
                reply = await self._redis.xreadgroup(
                    GROUP,
                    self._consumer,
                    {key: ">"},
                    count=max_count,
                    block=self._block_ms,
                )
            except RETRYABLE as exc:
                _reraise_if_cancelled()
                log.warning("redis queue %s: %s; retrying", priority.value, exc)
                self._groups_ready.discard(priority)
                await asyncio.sleep(0.5)
                continue
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # Redis restarted empty: make the group again
                    self._groups_ready.discard(priority)
                    continue
                raise
            if reply:
                return self._decode(reply[0][1])
        return []

    async def _claim(self, priority: Priority, max_count: int) -> list[Message]:
        """Entries another worker fetched and never acked (it died): take them over."""
        reply = await self._redis.xautoclaim(
            queue_key(priority),
            GROUP,
            self._consumer,
            min_idle_time=self._claim_idle_ms,
            start_id=self._claim_cursor[priority],
            count=max_count,
        )
        cursor = bytes(reply[0]) if reply[0] else b"0-0"
        self._claim_cursor[priority] = cursor
        entries = [entry for entry in reply[1] if entry and entry[1]]
        if entries:
            log.info("claimed %d pending %s messages", len(entries), priority.value)
        elif cursor == b"0-0":  # scanned to the end, nothing idle: look again later
            self._claim_due[priority] = time.monotonic() + self._claim_every_s
        return self._decode(entries)

    def _decode(self, entries: Sequence[Any]) -> list[Message]:
        messages: list[Message] = []
        for entry_id, fields in entries:
            message = _message_decoder.decode(fields[b"m"])
            self._entries[message.msg_id] = entry_id
            messages.append(message)
        return messages

    async def ack(self, priority: Priority, messages: Sequence[Message]) -> None:
        ids = [self._entries.pop(m.msg_id) for m in messages if m.msg_id in self._entries]
        if ids:
            key = queue_key(priority)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.xack(key, GROUP, *ids)
                    pipe.xdel(key, *ids)
                    await pipe.execute()
            except RETRYABLE as exc:
                # Redis is away: the entries stay pending and are claimed again later
                # (dispatched twice at worst; gateways and SDKs drop duplicates).
                _reraise_if_cancelled()
                log.warning("redis queue %s: ack of %d failed: %s", priority.value, len(ids), exc)

    def depth(self, priority: Priority) -> int:
        return self._depth[priority]

    async def refresh_depths(self) -> dict[Priority, int]:
        """Read both queue lengths from Redis (for metrics and overload checks)."""
        for priority in Priority:
            self._depth[priority] = int(await self._redis.xlen(queue_key(priority)))
        return dict(self._depth)

    async def close(self) -> None:
        self._closed = True


class RedisNodeChannel:
    """One capped stream per gateway node; the node reads new entries as they come.

    ``history`` keeps the room messages given to :meth:`send_many` (without
    one they are not kept).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        node_stream_max: int = 100_000,
        block_ms: int = 1_000,
        history: RedisHistory | None = None,
    ) -> None:
        self._redis: Any = client  # redis-py types RESP2 and RESP3 replies as one union
        self.history = history
        self._max = node_stream_max
        self._block_ms = block_ms
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    async def send(self, node_id: str, envelopes: Sequence[Envelope]) -> None:
        await self.send_many({node_id: envelopes})

    async def send_many(
        self, batches: Mapping[str, Sequence[Envelope]], history: Sequence[Kept] = ()
    ) -> None:
        """``send`` to each node of ``batches``, all in one pipelined round trip.

        At most one stream entry per node and priority; commands are applied
        in the order sent, so a caller that acks its queue entries afterwards
        acks only what reached the node streams. The history appends of
        ``history`` go first (one script call per room).
        """
        entries: list[tuple[str, bytes]] = []
        for node_id, envelopes in batches.items():
            high, rest = split_by_priority(envelopes)
            if high:
                entries.append((node_key(node_id, Priority.HIGH), _encoder.encode(high)))
            if rest:
                entries.append((node_key(node_id), _encoder.encode(rest)))
        kept = self.history.commands(history) if self.history is not None and history else []
        if len(entries) == 1 and not kept:
            [(key, blob)] = entries
            await self._redis.xadd(key, {b"e": blob}, maxlen=self._max, approximate=True)
            return
        if not entries and not kept:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for command in kept:
                pipe.execute_command(*command)
            for key, blob in entries:
                pipe.xadd(key, {b"e": blob}, maxlen=self._max, approximate=True)
            results = await pipe.execute(raise_on_error=not kept)
        if kept:
            assert self.history is not None
            for result in results[len(kept) :]:
                if isinstance(result, Exception):
                    raise result
            # Scripts Redis forgot (it restarted) run again after the node writes: rare,
            # and recovery then still finds the message (in a later read).
            await self.history.settle(kept, results[: len(kept)])

    async def attach(self, node_id: str, handler: DeliveryHandler) -> None:
        await self.detach(node_id)
        # Entries sent from now on are delivered: pin the positions before returning.
        start = await self._tails(node_id)
        self._readers[node_id] = asyncio.create_task(
            self._read(node_id, handler, start), name=f"node-channel-{node_id}"
        )

    async def detach(self, node_id: str) -> None:
        task = self._readers.pop(node_id, None)
        if task is None:
            return
        # Let the reader leave after its current blocking read (cancelling a
        # read inside redis-py can hang the connection); cancel only as a last resort.
        self._stopping.add(task)
        try:
            await asyncio.wait_for(asyncio.shield(task), self._block_ms / 1000 + 2)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            self._stopping.discard(task)

    async def _read(self, node_id: str, handler: DeliveryHandler, start: dict[str, bytes]) -> None:
        high_key = node_key(node_id, Priority.HIGH)
        last: dict[str, bytes] | None = start
        me = asyncio.current_task()
        while me not in self._stopping:
            _reraise_if_cancelled()
            try:
                if last is None:
                    last = await self._tails(node_id)
                # One read of both streams; the high one's entries are handled first.
                reply: Any = await self._redis.xread(last, block=self._block_ms, count=512)
            except RETRYABLE as exc:
                _reraise_if_cancelled()
                log.warning("node channel %s: %s; retrying", node_id, exc)
                # Go on from the last entry read, not from the tail: entries written
                # between Redis coming back and this read would be skipped (issue 14,
                # failure 5). After a restart without data, new entry ids are later
                # (they are times) so reading after the old position misses nothing.
                await asyncio.sleep(0.1)
                continue
            if not reply:
                continue
            for key, entry_id, fields in high_first(reply, high_key):
                last[_text(key)] = entry_id
                try:
                    handler(_envelopes_decoder.decode(fields[b"e"]))
                except Exception:
                    log.exception("node %s: delivery handler failed", node_id)

    async def _tails(self, node_id: str) -> dict[str, bytes]:
        """Each of the node's streams at its newest entry: reading starts after (new only)."""
        keys = [node_key(node_id, Priority.HIGH), node_key(node_id)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.xrevrange(key, count=1)
            replies: list[Any] = await pipe.execute()
        return {
            key: bytes(entries[0][0]) if entries else b"0-0"
            for key, entries in zip(keys, replies, strict=True)
        }
