"""The room history on Redis: one capped stream per room.

Key ``ll:room:{<room>}:history``: the room in a hash tag, so every key of a
room lands in one Redis Cluster slot. Each stream entry holds one msgpack
:class:`~longlink.history.base.HistoryEntry` (field ``e``).

Writes: :data:`APPEND`, one script call per room and dispatch step, appends
the room's entries (``XADD MAXLEN ~ size``: Redis trims whole stream nodes,
so a stream holds between ``size`` and about twice as many), trims what was
appended more than ``ttl_s`` ago (``XTRIM MINID ~``, by Redis's clock) and
sets the key to expire ``ttl_s`` after its last append (an idle room
leaves nothing behind). Dispatch queues these calls in the pipeline that
writes the node streams (:class:`~longlink.bus.redis.RedisNodeChannel`),
before the node writes: one round trip, and a message a node got is in its
room's history, whichever gateway dies.

Reads: ``XREVRANGE … COUNT size`` per room, every room in one pipeline;
the exact bounds (the newest ``size``, accepted within ``ttl_s``) are
applied to what comes back.

Scripts are called with ``EVALSHA``; a Redis that lost its script cache
(restarted) answers ``NOSCRIPT``, and the calls that failed are sent again
after ``SCRIPT LOAD`` (:meth:`RedisHistory.settle`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from longlink.bus import keys
from longlink.history.base import HistoryEntry, Kept

__all__ = ["APPEND", "RedisHistory", "history_key"]

#: KEYS[1] a room's stream; ARGV[1] size, ARGV[2] ttl in ms, ARGV[3..] packed entries.
APPEND = """
local key = KEYS[1]
for i = 3, #ARGV do
  redis.call('XADD', key, 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i])
end
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[2])
if floor > 0 then
  redis.call('XTRIM', key, 'MINID', '~', floor)
end
redis.call('PEXPIRE', key, ARGV[2])
return #ARGV - 2
"""
_APPEND_SHA = hashlib.sha1(APPEND.encode()).hexdigest()  # Redis names scripts by SHA-1

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(HistoryEntry)

#: A command queued in a pipeline: its arguments, as ``execute_command`` takes them.
Command = tuple[Any, ...]


def history_key(room: str) -> str:
    """The stream of ``room``'s history (hash tag: the room; :mod:`longlink.bus.keys`)."""
    return keys.room_history(room)


class RedisHistory:
    """Each room's history as a capped Redis stream (see the module docstring)."""

    def __init__(
        self, client: aioredis.Redis | aioredis.RedisCluster, size: int = 100, ttl_s: float = 300.0
    ) -> None:
        if size < 0 or ttl_s < 0:
            raise ValueError("size and ttl_s must be >= 0")
        self._redis: Any = client  # redis-py types RESP2 and RESP3 replies as one union
        self.size = size
        self.ttl_s = ttl_s
        self._ttl_ms = max(1, int(ttl_s * 1000))

    def commands(self, entries: Sequence[Kept]) -> list[Command]:
        """The script calls that append ``entries``: one per room, rooms in first-seen order."""
        if self.size <= 0 or self.ttl_s <= 0 or not entries:
            return []
        per_room: dict[str, list[bytes]] = {}
        for room, entry in entries:
            per_room.setdefault(room, []).append(_encoder.encode(entry))
        return [
            ("EVALSHA", _APPEND_SHA, 1, history_key(room), self.size, self._ttl_ms, *packed)
            for room, packed in per_room.items()
        ]

    async def settle(self, commands: Sequence[Command], results: Sequence[Any]) -> None:
        """Check the results of :meth:`commands` run in a pipeline (``raise_on_error=False``).

        Calls refused with ``NOSCRIPT`` are run again once the script is
        loaded; any other error is raised.
        """
        again = [cmd for cmd, result in zip(commands, results, strict=True) if _noscript(result)]
        for result in results:
            if isinstance(result, Exception) and not _noscript(result):
                raise result
        if again:
            await self._redis.script_load(APPEND)
            async with self._redis.pipeline(transaction=False) as pipe:
                for command in again:
                    pipe.execute_command(*command)
                await pipe.execute()

    async def append(self, entries: Sequence[Kept]) -> None:
        commands = self.commands(entries)
        if not commands:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            results = await pipe.execute(raise_on_error=False)
        await self.settle(commands, results)

    async def read(self, rooms: Sequence[str]) -> dict[str, list[HistoryEntry]]:
        if not rooms:
            return {}
        if self.size <= 0 or self.ttl_s <= 0:
            return {room: [] for room in rooms}
        async with self._redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.xrevrange(history_key(room), count=self.size)
            replies: list[Any] = await pipe.execute()
        oldest = (time.time() - self.ttl_s) * 1000
        out: dict[str, list[HistoryEntry]] = {}
        for room, reply in zip(rooms, replies, strict=True):
            entries = [_decoder.decode(fields[b"e"]) for _, fields in reversed(reply)]
            start = 0
            while start < len(entries) and entries[start].at_ms < oldest:
                start += 1  # oldest first: a room never keeps a message and drops an older one
            out[room] = entries[start:]
        return out

    async def close(self) -> None:
        """Nothing of its own to release (the client belongs to the backends)."""


def _noscript(result: Any) -> bool:
    return isinstance(result, NoScriptError)
