"""The bus on Redis Streams: queues with consumer groups, one stream per gateway node.

The parts: :mod:`longlink.bus.redis_client` (the clients of ``LONGLINK_BUS``
and their outages), :mod:`longlink.bus.redis_queue` (the queues), this module
(the node channels; everything re-exported here).

Queues (``ll:q:{high.<i>.<k>}``, ``ll:q:{low.<i>.<k>}``: key layout in
:mod:`longlink.bus.keys`): physically separate streams per priority, split
into ``shards`` streams each (a message goes to the shard of its first
target, so a room's or a user's pushes keep their order), all read by the
consumer group ``dispatch``. A message stays pending in the
group until :meth:`RedisQueue.ack` (after dispatch handed it to the nodes);
a dispatch worker that dies leaves its entries pending and another worker
claims them as soon as the dead one's liveness key expires (``consumer_ttl_ms``,
:mod:`longlink.bus.consumers`), or with ``XAUTOCLAIM`` after ``claim_idle_ms``
(the fallback). Nothing accepted is
lost; a message may be dispatched twice after a crash (gateways and SDKs
drop duplicates by msg id).

Node channels (``ll:node:{n:<id>}`` and ``ll:node:{n:<id>}:hi``): two streams
per gateway node, high-priority messages on their own so a low-priority
backlog never delays them; the node reads both with one ``XREAD`` and
handles the high stream's entries first. Each capped at
``node_stream_max`` entries, read from the tail by the node (at-most-once:
entries written while a node is down are skipped when it comes back —
guaranteed messages do not depend on this path, they are in the offline
store). Each entry holds one msgpack list of envelopes.

A push batch is appended to each of its shards by one command
(:data:`XADD_MANY`, a Lua script on that shard's stream and epoch) rather
than one ``XADD`` per message: the cost that matters is redis-py's CPU per command, not Redis's.

Room history: a channel built with a
:class:`~longlink.history.redis.RedisHistory` queues the history appends of
a :meth:`RedisNodeChannel.send_many` first in the pipeline that writes the
node streams (one round trip; Redis runs a connection's commands in order,
so the history holds a message before any node can read it).

Redis Cluster (``redis+cluster://``, :func:`connect`): every command and
script touches one slot: a shard's stream and its epoch share the shard's
tag, a node's two streams the node's tag; the shards are spread over the
slot space, so over the primaries (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from longlink.bus import keys
from longlink.bus.base import DeliveryHandler
from longlink.bus.redis_client import (
    OUTAGES,
    RETRYABLE,
    SCHEMES,
    BoundedCluster,
    Client,
    SentinelManaged,
    connect,
)
from longlink.bus.redis_client import reraise_if_cancelled as _reraise_if_cancelled
from longlink.bus.redis_queue import GROUP, XADD_MANY, RedisQueue, queue_key
from longlink.history.base import Kept
from longlink.history.redis import RedisHistory
from longlink.model import Envelope, Message, Priority

__all__ = [
    "GROUP",
    "OUTAGES",
    "PREFIX",
    "RETRYABLE",
    "SCHEMES",
    "XADD_MANY",
    "BoundedCluster",
    "Client",
    "RedisNodeChannel",
    "RedisQueue",
    "SentinelManaged",
    "connect",
    "high_first",
    "node_key",
    "queue_key",
    "split_by_priority",
]

log = logging.getLogger("longlink.bus.redis")

PREFIX = keys.GLOBAL
_envelopes_decoder = msgspec.msgpack.Decoder(list[Envelope])
_encoder = msgspec.msgpack.Encoder()


def node_key(node_id: str, priority: Priority = Priority.LOW) -> str:
    """A gateway node's stream: high priority has its own, read first (never behind low)."""
    return keys.node_stream(node_id, high=priority == Priority.HIGH)


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


class RedisNodeChannel:
    """One capped stream per gateway node; the node reads new entries as they come.

    ``history`` keeps the room messages given to :meth:`send_many` (without
    one they are not kept).
    """

    def __init__(
        self,
        client: Client,
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
