"""The offline store on Redis (with AOF), shared by every process of a deployment.

Why Redis and not PostgreSQL: the deployment already runs Redis for the bus
and the registry, a guaranteed push costs one pipelined round trip, and with
``appendonly yes`` + ``appendfsync always`` Redis fsyncs a write before it
replies, so :meth:`RedisStore.put` returning means the message is on disk.
(With ``appendfsync everysec`` a Redis crash may lose the last second; the
deployment docs say which to choose.)

Keys (:mod:`longlink.bus.keys` gives each its hash tag):

=========================  ======================================================
``gm:{m:<msg_id>}``        the message (msgpack); removed by ack or by :meth:`expire`
``grcpt:{m:<msg_id>}``     set: recipients still holding it
``inbox:{<recipient>}``    sorted set: msg ids (score = id, so oldest first); a
                           user's inbox (``u:<user>``) shares the user's slot
``{ll}:gexp``              sorted set: msg ids by expiry (ms)
=========================  ======================================================

A message leaves when its last recipient acks it or when it expires.
Every command touches one slot (``DEL`` of a message's two keys: the
message's), so Redis Cluster spreads them; there the messages of a
:meth:`RedisStore.pending` are read with one ``GET`` each (pipelined), not
one ``MGET``.

Replicas (Sentinel): with ``wait_replicas`` > 0, :meth:`RedisStore.put` ends
with ``WAIT wait_replicas wait_ms`` and fails (:class:`StoreError`: the API
answers 503) unless that many replicas have the writes, so a guaranteed
message accepted with 202 survives the primary's loss and a failover
(docs/deployment.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from longlink.bus import keys
from longlink.model import Message, pack_message, unpack_message
from longlink.store.base import StoreError, recipients_of

EXPIRIES = keys.global_key("gexp")


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore:
    """:class:`~longlink.store.base.OfflineStore` on Redis (see the module docstring)."""

    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,
        *,
        wait_replicas: int = 0,
        wait_ms: int = 1_000,
    ) -> None:
        self._redis: Any = client  # redis-py types RESP2 and RESP3 replies as one union
        self._closed = False
        self._clustered = isinstance(client, aioredis.RedisCluster)
        self._wait_replicas = wait_replicas
        self._wait_ms = wait_ms

    def _check(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    async def put(self, messages: Sequence[Message]) -> None:
        self._check()
        planned = []
        for message in messages:
            recipients = recipients_of(message.target)
            if not recipients:
                raise ValueError(f"message {message.msg_id} has no user or device recipient")
            planned.append((message, recipients))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for message, recipients in planned:
                    mid = str(message.msg_id)
                    pipe.set(keys.stored_message(mid), pack_message(message), nx=True)
                    pipe.sadd(keys.stored_recipients(mid), *recipients)
                    for recipient in recipients:
                        pipe.zadd(keys.inbox(recipient), {mid: message.msg_id})
                    pipe.zadd(EXPIRIES, {mid: message.expires_ms})
                if self._wait_replicas:
                    # After the writes, on the same connection: how many replicas have them.
                    pipe.execute_command("WAIT", self._wait_replicas, self._wait_ms)
                replies = await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        if self._wait_replicas and int(replies[-1]) < self._wait_replicas:
            raise StoreError(
                f"redis: {replies[-1]} of {self._wait_replicas} replicas have the messages"
            )

    async def pending(
        self, recipients: Sequence[str], now_ms: int, *, after: int = 0, limit: int = 500
    ) -> list[Message]:
        self._check()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for recipient in recipients:
                    pipe.zrangebyscore(
                        keys.inbox(recipient), f"({after}", "+inf", start=0, num=limit
                    )
                replies = await pipe.execute()
            ids = sorted({int(m) for reply in replies for m in reply})[:limit]
            if not ids:
                return []
            if self._clustered:  # one slot per message
                async with self._redis.pipeline(transaction=False) as pipe:
                    for i in ids:
                        pipe.get(keys.stored_message(i))
                    blobs = await pipe.execute()
            else:
                blobs = await self._redis.mget([keys.stored_message(i) for i in ids])
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        messages = [unpack_message(blob) for blob in blobs if blob is not None]
        return [m for m in messages if m.expires_ms > now_ms]

    async def ack(self, recipients: Sequence[str], msg_ids: Sequence[int]) -> None:
        await self.ack_many([(recipients, msg_ids)])

    async def ack_many(self, acks: Sequence[tuple[Sequence[str], Sequence[int]]]) -> None:
        self._check()
        acks = [(recipients, msg_ids) for recipients, msg_ids in acks if recipients and msg_ids]
        if not acks:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                scards: list[tuple[str, int]] = []  # (msg id, index of its SCARD's reply)
                commands = 0
                for recipients, msg_ids in acks:
                    mids = [str(i) for i in dict.fromkeys(msg_ids)]
                    for recipient in recipients:
                        pipe.zrem(keys.inbox(recipient), *mids)
                    commands += len(recipients)
                    for mid in mids:
                        pipe.srem(keys.stored_recipients(mid), *recipients)
                        pipe.scard(keys.stored_recipients(mid))
                        scards.append((mid, commands + 1))
                        commands += 2
                replies = await pipe.execute()
            # An id acked by two connections keeps its last count (dicts keep the last).
            left = {mid: replies[at] for mid, at in scards}
            done = [mid for mid, count in left.items() if count == 0]
            if done:
                await self._forget(done)
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc

    async def _forget(self, mids: list[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for mid in mids:
                pipe.delete(keys.stored_message(mid), keys.stored_recipients(mid))
            pipe.zrem(EXPIRIES, *mids)
            await pipe.execute()

    async def expire(self, now_ms: int, limit: int = 10_000) -> list[int]:
        self._check()
        try:
            due = await self._redis.zrangebyscore(EXPIRIES, "-inf", now_ms, start=0, num=limit)
            if not due:
                return []
            mids = [_s(m) for m in due]
            async with self._redis.pipeline(transaction=False) as pipe:
                for mid in mids:
                    pipe.zrem(EXPIRIES, mid)  # 1 for exactly one caller: it owns the expiry
                    pipe.smembers(keys.stored_recipients(mid))
                replies = await pipe.execute()
            expired: list[int] = []
            async with self._redis.pipeline(transaction=False) as pipe:
                for mid, removed, holders in zip(mids, replies[0::2], replies[1::2], strict=True):
                    if not removed:
                        continue
                    expired.append(int(mid))
                    for recipient in holders:
                        pipe.zrem(keys.inbox(_s(recipient)), mid)
                    pipe.delete(keys.stored_message(mid), keys.stored_recipients(mid))
                await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        return expired

    async def count(self) -> int:
        self._check()
        return int(await self._redis.zcard(EXPIRIES))

    async def close(self) -> None:
        self._closed = True
