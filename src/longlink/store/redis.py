"""The offline store on Redis (with AOF), shared by every process of a deployment.

Why Redis and not PostgreSQL: the deployment already runs Redis for the bus
and the registry, a guaranteed push costs one pipelined round trip, and with
``appendonly yes`` + ``appendfsync always`` Redis fsyncs a write before it
replies, so :meth:`RedisStore.put` returning means the message is on disk.
(With ``appendfsync everysec`` a Redis crash may lose the last second; the
deployment docs say which to choose.)

Keys (prefix ``{ll}``):

=======================  ======================================================
``gm:<msg_id>``          the message (msgpack); removed by ack or by :meth:`expire`
``grcpt:<msg_id>``       set: recipients still holding it
``inbox:<recipient>``    sorted set: msg ids (score = id, so oldest first)
``gexp``                 sorted set: msg ids by expiry (ms)
=======================  ======================================================

A message leaves when its last recipient acks it or when it expires.
Every command touches one key, so Redis Cluster may spread the keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from longlink.model import Message, pack_message, unpack_message
from longlink.store.base import StoreError, recipients_of

PREFIX = "{ll}"


def _k(*parts: str) -> str:
    return ":".join((PREFIX, *parts))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore:
    """:class:`~longlink.store.base.OfflineStore` on Redis (see the module docstring)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis: Any = client  # redis-py types RESP2 and RESP3 replies as one union
        self._closed = False

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
                    pipe.set(_k("gm", mid), pack_message(message), nx=True)
                    pipe.sadd(_k("grcpt", mid), *recipients)
                    for recipient in recipients:
                        pipe.zadd(_k("inbox", recipient), {mid: message.msg_id})
                    pipe.zadd(_k("gexp"), {mid: message.expires_ms})
                await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc

    async def pending(
        self, recipients: Sequence[str], now_ms: int, *, after: int = 0, limit: int = 500
    ) -> list[Message]:
        self._check()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for recipient in recipients:
                    pipe.zrangebyscore(
                        _k("inbox", recipient), f"({after}", "+inf", start=0, num=limit
                    )
                replies = await pipe.execute()
            ids = sorted({int(m) for reply in replies for m in reply})[:limit]
            if not ids:
                return []
            blobs = await self._redis.mget([_k("gm", str(i)) for i in ids])
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
                        pipe.zrem(_k("inbox", recipient), *mids)
                    commands += len(recipients)
                    for mid in mids:
                        pipe.srem(_k("grcpt", mid), *recipients)
                        pipe.scard(_k("grcpt", mid))
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
                pipe.delete(_k("gm", mid), _k("grcpt", mid))
            pipe.zrem(_k("gexp"), *mids)
            await pipe.execute()

    async def expire(self, now_ms: int, limit: int = 10_000) -> list[int]:
        self._check()
        try:
            due = await self._redis.zrangebyscore(_k("gexp"), "-inf", now_ms, start=0, num=limit)
            if not due:
                return []
            mids = [_s(m) for m in due]
            async with self._redis.pipeline(transaction=False) as pipe:
                for mid in mids:
                    pipe.zrem(_k("gexp"), mid)  # 1 for exactly one caller: it owns the expiry
                    pipe.smembers(_k("grcpt", mid))
                replies = await pipe.execute()
            expired: list[int] = []
            async with self._redis.pipeline(transaction=False) as pipe:
                for mid, removed, holders in zip(mids, replies[0::2], replies[1::2], strict=True):
                    if not removed:
                        continue
                    expired.append(int(mid))
                    for recipient in holders:
                        pipe.zrem(_k("inbox", _s(recipient)), mid)
                    pipe.delete(_k("gm", mid), _k("grcpt", mid))
                await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        return expired

    async def count(self) -> int:
        self._check()
        return int(await self._redis.zcard(_k("gexp")))

    async def close(self) -> None:
        self._closed = True
