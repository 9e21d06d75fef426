"""The high and low queues on Redis Streams: shards per priority, one consumer group.

See :mod:`longlink.bus.redis` for the whole bus and :class:`RedisQueue` for
the sharding, the reads and what happens when Redis restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from longlink.bus import keys
from longlink.bus.base import QueueFull
from longlink.bus.consumers import ConsumerWatch
from longlink.bus.redis_client import RETRYABLE
from longlink.bus.redis_client import reraise_if_cancelled as _reraise_if_cancelled
from longlink.model import Message, Priority

log = logging.getLogger("longlink.bus.redis")

GROUP = "dispatch"
DEPTH_TTL_S = 0.1  # how old the queue length used for the bound may be
_message_decoder = msgspec.msgpack.Decoder(Message)
_encoder = msgspec.msgpack.Encoder()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
#: Cluster: how long a fetch that got entries from one shard waits for the others'.
COALESCE_S = 0.001
#: Seconds after Redis came back empty before pushes are taken again: every gateway
#: reports each second and registers its sessions again when it finds itself unknown.
REBUILD_S = 3.0


def queue_key(priority: Priority, shard: int = 0, shards: int = 1) -> str:
    """The stream of ``priority``'s queue shard ``shard`` (of ``shards``)."""
    return keys.queue_keys(priority, shards)[shard]


class RedisQueue:
    """The high and low queues: ``shards`` Redis streams per priority, one consumer group.

    A message goes to the shard of its first target
    (:func:`~longlink.bus.keys.shard_of`), so the pushes to one room (one
    user, one device) stay in order on one shard. On one Redis, a fetch reads
    every shard of its priority with one ``XREADGROUP``; in a Redis Cluster
    (each shard in its own slot) with one blocking ``XREADGROUP`` per shard,
    all in flight at once: a fetch returns what the first ones bring (the
    others' entries are kept for the next fetch). Entries stay pending in the
    group until acked whatever happens to this process.

    Redis restarts: while Redis is unreachable :meth:`publish_many` raises
    :class:`~longlink.bus.base.QueueFull` (the API answers 503 with
    ``Retry-After``). When it comes back *without* its data, the registry
    is empty until every gateway has registered its sessions again; a push
    accepted meanwhile would find no route and be lost. So every append
    checks, in the same command, that its shard's epoch key
    (:func:`~longlink.bus.keys.epoch_key`) exists: a process that saw it and
    finds it gone refuses pushes for :data:`REBUILD_S` (gateways re-register
    within a report interval), then sets it again. A process sets every
    shard's epoch at :meth:`start` (and, had Redis been away then, on its
    first push).
    """

    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,
        *,
        maxsize: int = 100_000,
        consumer: str | None = None,
        claim_idle_ms: int = 10_000,
        consumer_ttl_ms: int = 1_000,
        block_ms: int = 500,
        rebuild_s: float = REBUILD_S,
        shards: int = 1,
    ) -> None:
        self._redis: Any = client  # redis-py types RESP2 and RESP3 replies as one union
        self._clustered = isinstance(client, aioredis.RedisCluster)
        self._maxsize = maxsize
        self._consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._claim_idle_ms = claim_idle_ms
        self._block_ms = block_ms
        self.shards = shards
        self._streams = {p: keys.queue_keys(p, shards) for p in Priority}
        self._entries: dict[int, tuple[str, bytes]] = {}  # msg_id -> (stream, entry id)
        self._groups_ready: set[str] = set()
        self._depth: dict[Priority, int] = {p: 0 for p in Priority}
        self._depth_read: dict[Priority, float] = {p: -DEPTH_TTL_S for p in Priority}
        self._closed = False
        self._claim_cursor: dict[str, bytes] = {}
        # XAUTOCLAIM runs before a fetch at most this often while it finds nothing
        # (an entry is only claimable after claim_idle_ms anyway): one command per
        # fetch, not two. While it finds entries, or has more to scan, it runs every fetch.
        self._claim_every_s = min(claim_idle_ms, block_ms) / 1000
        self._claim_due: dict[str, float] = {}
        self._fetched: dict[Priority, deque[Message]] = {p: deque() for p in Priority}
        self._reads: dict[Priority, dict[str, asyncio.Task[list[Message]]]] = {
            p: {} for p in Priority
        }
        self._xadd_many = self._redis.register_script(XADD_MANY)
        self._rebuild_s = rebuild_s
        self._epochs_seen: set[str] = set()  # the shards' epochs this process has seen
        self._lost_at: float | None = None  # when this process found an epoch gone
        # A dead worker's entries move once its liveness key expires (0: XAUTOCLAIM only,
        # after claim_idle_ms). What the watch claims waits for the next fetch of its
        # shard, at most one block_ms away (longlink.bus.consumers).
        self._watch = (
            ConsumerWatch(
                client,
                group=GROUP,
                consumer=self._consumer,
                streams=[stream for p in Priority for stream in self._streams[p]],
                key_prefix=keys.global_key("consumer:"),
                ttl_ms=consumer_ttl_ms,
            )
            if consumer_ttl_ms > 0
            else None
        )

    def streams(self, priority: Priority) -> tuple[str, ...]:
        """The shard streams of ``priority``'s queue."""
        return self._streams[priority]

    async def _ensure_groups(self, priority: Priority) -> None:
        for stream in self._streams[priority]:
            if stream not in self._groups_ready:
                await self._create_group(stream)

    async def _create_group(self, stream: str) -> None:
        try:
            await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups_ready.add(stream)

    def _forget_groups(self, priority: Priority) -> None:
        self._groups_ready.difference_update(self._streams[priority])

    async def publish(self, message: Message) -> None:
        if not await self.publish_many([message]):
            depth = self._depth[message.priority]
            raise QueueFull(f"{message.priority.value} queue holds {depth} messages")

    async def publish_many(self, messages: Sequence[Message]) -> int:
        """Hold ``messages`` in order, in one command per shard; return how many were held.

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
                await self._read_depths(stale, now)
            depth = dict(self._depth)
            held = 0
            for message in messages:
                if depth[message.priority] >= self._maxsize:
                    break
                depth[message.priority] += 1
                held += 1
            if held:
                per_stream: dict[str, list[bytes]] = {}
                for message in messages[:held]:
                    streams = self._streams[message.priority]
                    stream = streams[keys.shard_of(message.target, len(streams))]
                    per_stream.setdefault(stream, []).append(_encoder.encode(message))
                if len(per_stream) == 1:  # the usual case: one push, one target
                    [(stream, encoded)] = per_stream.items()
                    await self._append(stream, encoded)
                else:
                    await self._append_many(per_stream)
            self._depth.update(depth)
        except RETRYABLE as exc:
            # Redis is unreachable (restarting): the API answers 503 with Retry-After.
            # A rebuild under way starts over once it is back (it may come back empty).
            self._lost_at = None
            raise QueueFull(f"the queue is unavailable: {exc}") from exc
        return held

    async def _read_depths(self, priorities: Sequence[Priority], now: float) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for priority in priorities:
                for stream in self._streams[priority]:
                    pipe.xlen(stream)
            lengths = iter(await pipe.execute())
        for priority in priorities:
            self._depth[priority] = sum(int(next(lengths)) for _ in self._streams[priority])
            self._depth_read[priority] = now

    async def start(self) -> None:
        """Set the epochs if missing (a process starting: whatever is stored is whole)."""
        with contextlib.suppress(*RETRYABLE):
            stamp = int(time.time() * 1000)
            async with self._redis.pipeline(transaction=False) as pipe:
                for streams in self._streams.values():
                    for stream in streams:
                        pipe.set(keys.epoch_key(stream), stamp, nx=True)
                await pipe.execute()
            self._epochs_seen.update(keys.epoch_key(k) for ks in self._streams.values() for k in ks)

    async def _append(self, stream: str, encoded: list[bytes]) -> None:
        """Append to a shard unless Redis lost its data and the registry is not rebuilt."""
        epoch = keys.epoch_key(stream)
        for _ in range(2):
            if await self._xadd_many(keys=[stream, epoch], args=encoded) >= 0:
                self._epochs_seen.add(epoch)
                self._lost_at = None
                return
            if not await self._renew_epoch(epoch):
                break
        raise QueueFull("Redis restarted without its data; rebuilding the registry, retry")

    async def _append_many(self, per_stream: dict[str, list[bytes]]) -> None:
        """:meth:`_append` to several shards in one pipeline (a cluster: each primary at once).

        A shard refused (its epoch gone) or whose script Redis forgot goes again
        through :meth:`_append`, which sorts that out.
        """
        sha = self._xadd_many.sha
        streams = list(per_stream)
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream in streams:
                epoch = keys.epoch_key(stream)
                pipe.execute_command("EVALSHA", sha, 2, stream, epoch, *per_stream[stream])
            results = await pipe.execute(raise_on_error=False)
        again: list[str] = []
        for stream, result in zip(streams, results, strict=True):
            if isinstance(result, NoScriptError) or (
                not isinstance(result, Exception) and int(result) < 0
            ):
                again.append(stream)
            elif isinstance(result, Exception):
                raise result
            else:
                self._epochs_seen.add(keys.epoch_key(stream))
        for stream in again:
            await self._append(stream, per_stream[stream])
        if not again:
            self._lost_at = None

    async def _renew_epoch(self, epoch: str) -> bool:
        """The epoch is gone: set it again now (first start) or once :data:`REBUILD_S` passed."""
        now = time.monotonic()
        if epoch in self._epochs_seen:
            if self._lost_at is None:
                self._lost_at = now
                log.warning(
                    "Redis lost its data: pushes wait %.1f s for the registry", self._rebuild_s
                )
            if now - self._lost_at < self._rebuild_s:
                return False
        await self._redis.set(epoch, int(time.time() * 1000), nx=True)
        return True

    async def fetch(self, priority: Priority, max_count: int) -> list[Message]:
        fetched = self._fetched[priority]
        while not self._closed:
            if fetched:
                return [fetched.popleft() for _ in range(min(max_count, len(fetched)))]
            _reraise_if_cancelled()  # a cancellation redis-py swallowed must still stop us
            if self._clustered:  # each shard on its own: a primary down stops only its shards
                fetched.extend(await self._read_shards(priority, max_count))
                continue
            try:
                await self._ensure_groups(priority)
                if taken := await self._taken(self._streams[priority]):
                    fetched.extend(taken)
                    continue
                claimed = await self._claim_due_shards(priority, max_count)
                if claimed:
                    return claimed
                # One Redis: every shard in one blocking read.
                reply: Any = await self._redis.xreadgroup(
                    GROUP,
                    self._consumer,
                    dict.fromkeys(self._streams[priority], ">"),
                    count=max_count,
                    block=self._block_ms,
                )
                for stream, entries in reply or ():
                    fetched.extend(self._decode(_text(stream), entries))
            except RETRYABLE as exc:
                _reraise_if_cancelled()
                log.warning("redis queue %s: %s; retrying", priority.value, exc)
                self._forget_groups(priority)
                await asyncio.sleep(0.5)
                continue
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # Redis restarted empty: make the group again
                    self._forget_groups(priority)
                    continue
                raise
        return []

    async def _read_shards(self, priority: Priority, max_count: int) -> list[Message]:
        """Cluster: a blocking read on every shard; what the first ones to answer bring.

        Reads still blocked stay in flight; their entries come with a later fetch.
        """
        reads = self._reads[priority]
        for stream in self._streams[priority]:
            if stream not in reads:
                reads[stream] = asyncio.create_task(
                    self._read_shard(stream, priority, max_count), name=f"queue-read-{stream}"
                )
        done, pending = await asyncio.wait(reads.values(), return_when=asyncio.FIRST_COMPLETED)
        if pending and any(task.result() for task in done if not task.cancelled()):
            # One push request usually lands on several shards at once: take what the
            # other primaries answer within a millisecond into the same dispatch step.
            await asyncio.wait(pending, timeout=COALESCE_S)
        messages: list[Message] = []
        for stream, task in list(reads.items()):
            if task.done():
                del reads[stream]
                if not task.cancelled():
                    messages.extend(task.result())  # a shard's outage was handled in the task
        return messages

    async def _read_shard(self, stream: str, priority: Priority, max_count: int) -> list[Message]:
        """Cluster: one shard's claimable entries, or a blocking read of its new ones."""
        try:
            if stream not in self._groups_ready:
                await self._create_group(stream)
            if taken := await self._taken([stream]):
                return taken
            if time.monotonic() >= self._claim_due.get(stream, 0.0):
                claimed = await self._claim(stream, priority, max_count)
                if claimed:
                    return claimed
            reply: Any = await self._redis.xreadgroup(
                GROUP, self._consumer, {stream: ">"}, count=max_count, block=self._block_ms
            )
        except RETRYABLE as exc:
            log.warning("redis queue %s: %s: %s; retrying", priority.value, stream, exc)
            self._groups_ready.discard(stream)
            await asyncio.sleep(0.5)
            return []
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._groups_ready.discard(stream)  # its primary came back empty
            return []
        return self._decode(stream, reply[0][1]) if reply else []

    async def _taken(self, streams: Sequence[str]) -> list[Message]:
        """What the consumer watch took over from dead workers on ``streams``, now ours.

        Starts the watch first: its liveness key exists before this consumer reads.
        """
        if self._watch is None:
            return []
        await self._watch.start()
        return [m for stream in streams for m in self._decode(stream, self._watch.take(stream))]

    async def _claim_due_shards(self, priority: Priority, max_count: int) -> list[Message]:
        now = time.monotonic()
        for stream in self._streams[priority]:
            if now >= self._claim_due.get(stream, 0.0):
                claimed = await self._claim(stream, priority, max_count)
                if claimed:
                    return claimed
        return []

    async def _claim(self, stream: str, priority: Priority, max_count: int) -> list[Message]:
        """Entries another worker fetched and never acked (it died): take them over."""
        reply = await self._redis.xautoclaim(
            stream,
            GROUP,
            self._consumer,
            min_idle_time=self._claim_idle_ms,
            start_id=self._claim_cursor.get(stream, b"0-0"),
            count=max_count,
        )
        cursor = bytes(reply[0]) if reply[0] else b"0-0"
        self._claim_cursor[stream] = cursor
        entries = [entry for entry in reply[1] if entry and entry[1]]
        if entries:
            log.info("claimed %d pending %s messages", len(entries), priority.value)
        elif cursor == b"0-0":  # scanned to the end, nothing idle: look again later
            self._claim_due[stream] = time.monotonic() + self._claim_every_s
        return self._decode(stream, entries)

    def _decode(self, stream: str, entries: Sequence[Any]) -> list[Message]:
        messages: list[Message] = []
        for entry_id, fields in entries:
            message = _message_decoder.decode(fields[b"m"])
            self._entries[message.msg_id] = (stream, entry_id)
            messages.append(message)
        return messages

    async def ack(self, priority: Priority, messages: Sequence[Message]) -> None:
        per_stream: dict[str, list[bytes]] = {}
        for message in messages:
            where = self._entries.pop(message.msg_id, None)
            if where is not None:
                per_stream.setdefault(where[0], []).append(where[1])
        if not per_stream:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for stream, ids in per_stream.items():
                    pipe.xack(stream, GROUP, *ids)
                    pipe.xdel(stream, *ids)
                await pipe.execute()
        except RETRYABLE as exc:
            # Redis is away: the entries stay pending and are claimed again later
            # (dispatched twice at worst; gateways and SDKs drop duplicates).
            _reraise_if_cancelled()
            count = sum(map(len, per_stream.values()))
            log.warning("redis queue %s: ack of %d failed: %s", priority.value, count, exc)

    def depth(self, priority: Priority) -> int:
        return self._depth[priority]

    async def refresh_depths(self) -> dict[Priority, int]:
        """Read both queue lengths from Redis (for metrics and overload checks)."""
        await self._read_depths(list(Priority), time.monotonic())
        return dict(self._depth)

    async def close(self) -> None:
        """Refuse publishes, wake fetches; reads still in flight end within ``block_ms``."""
        self._closed = True
        if self._watch is not None:
            await self._watch.close()
        reads = [task for per in self._reads.values() for task in per.values()]
        for per in self._reads.values():
            per.clear()
        if reads:
            # Cancelling a read inside redis-py can hang its connection: let them end.
            _, pending = await asyncio.wait(reads, timeout=self._block_ms / 1000 + 2)
            for task in pending:
                task.cancel()
            for task in reads:
                with contextlib.suppress(BaseException):
                    await task
