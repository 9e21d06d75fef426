"""The message trace of every process on the Redis bus: scatter-gather over pub/sub.

Each process records its own events in its in-memory
:class:`~longlink.trace.tracer.Tracer` (no Redis command per message). A query is
rare (an operator, a dashboard) and pays for the whole view:

1. The asking process PUBLISHes a :class:`TraceQuery` on ``{ll}:trace:q``.
   PUBLISH answers how many subscribers received it: that many replies are
   awaited. On a Redis Cluster the channel is a shard channel (SPUBLISH,
   SSUBSCRIBE: Redis 7): every subscriber is on the primary that owns the
   channel's slot, so SPUBLISH's count covers every process (a plain
   PUBLISH would count only the subscribers of the node that took it).
2. Every process subscribed there (each :class:`RedisTraceView`, one per
   process) answers with its local part: RPUSH of a :class:`TracePart` on
   the query's reply list ``ll:trace:r:{<id>}``, which expires after
   ``REPLY_TTL_S``.
3. The asker BLPOPs the replies until it has them all or ``timeout_s`` has
   passed, then merges them with its own part (taken from its tracer, its own
   responder only acknowledges): :func:`~longlink.trace.view.merge_traces`,
   :func:`~longlink.trace.view.merge_reach`.

What a process does not answer in time is left out (logged), never waited
for past the deadline; a dead process is not subscribed, so it is not waited
for at all, and its part of every trace is gone with it. With Redis down the
answer is the asker's part alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any, Self

import msgspec
import redis.asyncio as aioredis

from longlink.bus import keys
from longlink.bus.redis import RETRYABLE
from longlink.lifetime import cancel_requested, stop_tasks
from longlink.trace.tracer import MessageTrace, Reach, Tracer
from longlink.trace.view import merge_reach, merge_traces

__all__ = ["CHANNEL", "RedisTraceView", "TracePart", "TraceQuery"]

log = logging.getLogger("longlink.trace")

#: The pub/sub channel every process listens on for trace queries.
CHANNEL = keys.global_key("trace:q")
#: Redis away (or changing) or a reply late: the responder and the gatherer go on.
UNREACHABLE: tuple[type[Exception], ...] = (*RETRYABLE, TimeoutError)
#: Seconds a reply list lives (replies that come after the deadline vanish with it).
REPLY_TTL_S = 10
#: Queries gathered at once by one process (each holds a pooled connection while it waits).
MAX_GATHERS = 8


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def reply_key(query_id: str) -> str:
    return keys.trace_reply(query_id)


class TraceQuery(msgspec.Struct, frozen=True):
    """What the asking process publishes (a map: processes of other versions skip new fields)."""

    reply: str  # the list to RPUSH the answer on
    origin: str  # the asking view: it answers itself from memory
    kind: str  # "trace" or "reach"
    msg_id: int = 0
    window_s: int | None = None


class TracePart(msgspec.Struct, frozen=True):
    """One process's answer: its part of the trace (or of the reach), ``None`` when it has none."""

    origin: str
    trace: MessageTrace | None = None
    reach: Reach | None = None


_encoder = msgspec.msgpack.Encoder()
_query_decoder = msgspec.msgpack.Decoder(TraceQuery)
_part_decoder = msgspec.msgpack.Decoder(TracePart)


class RedisTraceView:
    """The :class:`~longlink.trace.view.TraceView` of a Redis deployment, and this process's part.

    ``async with RedisTraceView(client, tracer)``: entering subscribes (so a
    query published once ``__aenter__`` returned counts this process) and
    starts the responder; leaving stops it. Run exactly one per tracer: two
    views on one tracer would answer its part twice. The responder survives a
    Redis restart (it subscribes again every ``retry_s``) and stops on
    cancellation even when redis-py swallows the ``CancelledError``.

    :meth:`trace` and :meth:`reach` answer within ``timeout_s`` (plus one
    round trip) whatever the other processes do.
    """

    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,
        tracer: Tracer,
        *,
        name: str = "",
        timeout_s: float = 1.0,
        poll_s: float = 1.0,
        retry_s: float = 0.5,
    ) -> None:
        self._redis: Any = client  # redis-py types RESP2 and RESP3 replies as one union
        #: A cluster: the channel is a shard channel (SSUBSCRIBE, SPUBLISH).
        self._sharded = isinstance(client, aioredis.RedisCluster)
        self.tracer = tracer
        #: This view's id in queries and replies (the node id helps reading the logs).
        self.origin = f"{name or 'node'}-{secrets.token_hex(4)}"
        self.timeout_s = timeout_s
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._gathers = asyncio.Semaphore(MAX_GATHERS)
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Self:
        try:
            await self._subscribe()
        except UNREACHABLE as exc:  # Redis is down: the responder keeps trying
            log.warning("trace responder: %s; subscribing in the background", _reason(exc))
            await self._unsubscribe()
        self._task = asyncio.create_task(self._respond(), name="trace-responder")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop answering (other processes stop counting this one); idempotent."""
        task, self._task = self._task, None
        await stop_tasks(task)
        await self._unsubscribe()

    async def _subscribe(self) -> None:
        """Subscribe and wait for Redis to confirm it (from then on PUBLISH counts us)."""
        pubsub = self._pubsub = self._redis.pubsub()
        if self._sharded:
            await pubsub.ssubscribe(CHANNEL)
        else:
            await pubsub.subscribe(CHANNEL)
        async with asyncio.timeout(5):
            while True:
                message = await self._next(wait_s=1.0)
                if message is not None and message["type"] in ("subscribe", "ssubscribe"):
                    return

    async def _next(self, *, wait_s: float, ignore_subscribe_messages: bool = False) -> Any:
        get = self._pubsub.get_sharded_message if self._sharded else self._pubsub.get_message
        return await get(ignore_subscribe_messages=ignore_subscribe_messages, timeout=wait_s)

    async def _unsubscribe(self) -> None:
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(*RETRYABLE):
                await pubsub.aclose()
            self._pubsub = None  # only once closed: close() finishes a cancelled one

    async def _respond(self) -> None:
        while not cancel_requested():
            try:
                if self._pubsub is None:
                    await self._subscribe()
                    log.info("trace responder subscribed again")
                message = await self._next(ignore_subscribe_messages=True, wait_s=self._poll_s)
            except UNREACHABLE as exc:
                if cancel_requested():
                    raise asyncio.CancelledError from exc
                log.warning("trace responder: %s; subscribing again", _reason(exc))
                await self._unsubscribe()
                await asyncio.sleep(self._retry_s)
                continue
            except Exception:  # never leave the loop: this process would stop answering
                log.exception("trace responder failed; subscribing again")
                await self._unsubscribe()
                await asyncio.sleep(self._retry_s)
                continue
            if message is not None and message["type"] in ("message", "smessage"):
                try:
                    await self._answer(message["data"])
                except RETRYABLE as exc:
                    log.warning("trace responder: cannot reply: %s", exc)
                except Exception:
                    log.exception("trace responder: cannot answer a query")

    async def _answer(self, data: bytes) -> None:
        try:
            query = _query_decoder.decode(data)
        except msgspec.DecodeError:
            log.warning("trace responder: undecodable query (%d bytes) ignored", len(data))
            return
        if query.origin == self.origin:
            part = TracePart(self.origin)  # the asker reads its own tracer directly
        elif query.kind == "trace":
            part = TracePart(self.origin, trace=self.tracer.trace(query.msg_id))
        elif query.kind == "reach":
            part = TracePart(self.origin, reach=self.tracer.reach(query.window_s))
        else:
            part = TracePart(self.origin)  # a kind of a newer version: count us, add nothing
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.rpush(query.reply, _encoder.encode(part))
            pipe.expire(query.reply, REPLY_TTL_S)
            await pipe.execute()

    # ------------------------------------------------------------------ asking

    async def trace(self, msg_id: int) -> MessageTrace | None:
        """Every process's part of ``msg_id``'s trace, merged; ``None`` when none knows it."""
        parts = await self._gather("trace", msg_id=msg_id)
        return merge_traces(msg_id, [self.tracer.trace(msg_id), *(p.trace for p in parts)])

    async def reach(self, window_s: int | None = None) -> Reach:
        """Every process's reach counts over the window, summed."""
        parts = await self._gather("reach", window_s=window_s)
        others = [p.reach for p in parts if p.reach is not None]
        return merge_reach(self.tracer.reach(window_s), *others)

    async def _gather(self, kind: str, **fields: Any) -> list[TracePart]:
        """The other processes' parts that arrive within ``timeout_s``."""
        query_id = secrets.token_hex(8)
        query = TraceQuery(reply_key(query_id), self.origin, kind, **fields)
        parts: list[TracePart] = []
        asked = answered = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        try:
            # A backstop: the BLPOP timeouts below end each wait in time already.
            async with asyncio.timeout_at(deadline + 0.5), self._gathers:
                publish = self._redis.spublish if self._sharded else self._redis.publish
                asked = int(await publish(CHANNEL, _encoder.encode(query)))
                while answered < asked:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    # At least 10 ms: a BLPOP timeout of 0 would wait forever.
                    reply = await self._redis.blpop([query.reply], timeout=max(left, 0.01))
                    if reply is None:
                        break
                    answered += 1
                    try:
                        part = _part_decoder.decode(reply[1])
                    except msgspec.DecodeError:
                        log.warning("trace query (%s): an undecodable part left out", kind)
                        continue
                    if part.origin != self.origin:
                        parts.append(part)
        except UNREACHABLE as exc:
            log.warning("trace query (%s): gathering stopped: %s", kind, _reason(exc))
        if answered < asked:
            log.warning(
                "trace query (%s): %d of %d processes answered in time", kind, answered, asked
            )
        if asked:
            with contextlib.suppress(*RETRYABLE):
                await self._redis.delete(query.reply)
        return parts
