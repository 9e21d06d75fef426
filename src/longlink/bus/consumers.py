"""Dispatch workers' liveness on Redis: a dead worker's pending entries move at once.

A worker that fetches from the queue streams (:class:`~longlink.bus.redis.RedisQueue`)
holds a *liveness key* (``<prefix><consumer>``, expiring after ``ttl_ms``), set
before its first read and renewed every ``ttl_ms / 5`` by :class:`ConsumerWatch`.
On the same tick the watch looks at the consumers of each stream's group
(``XINFO CONSUMERS``). A consumer is **dead** when

* its liveness key is gone, and
* it has not touched the stream for ``ttl_ms`` either (a live worker reads at
  least every block interval; this keeps a worker whose key Redis lost, or a
  worker that does not keep a key, from being robbed while it reads).

A dead consumer's pending entries are claimed at once (``XPENDING`` of that
consumer, ``XCLAIM``) and handed to the next fetch of the stream
(:meth:`ConsumerWatch.take`); once it holds nothing it is removed from the
group (:data:`DELETE_IF_IDLE`, which checks again in the same command that it
still holds nothing and is still idle). So a worker killed with SIGKILL holds
its messages for about ``ttl_ms`` plus a tick, instead of the fixed
``claim_idle_ms`` of ``XAUTOCLAIM`` (which stays as the fallback).

Races are harmless by construction:

* Two survivors claiming the same dead consumer: ``XCLAIM`` takes an entry
  only if it was idle for ``ttl_ms / 2``; the first claim resets the idle
  time, so the second takes nothing. A dead consumer's entries have been idle
  at least ``ttl_ms`` (it read them, then stopped touching the stream).
* A worker that was only stalled (its loop blocked past ``ttl_ms``): its
  entries may be dispatched twice, which the bus allows (gateways and SDKs
  drop duplicates by msg id); when it reads again Redis creates its consumer
  again and its key is set again on its next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("longlink.bus.consumers")

#: Removes consumer ARGV[2] from group ARGV[1] of stream KEYS[1] if it holds no
#: pending entry and has been idle at least ARGV[3] ms; returns 1 when removed.
DELETE_IF_IDLE = """
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, fields in ipairs(consumers) do
  local c = {}
  for i = 1, #fields, 2 do c[fields[i]] = fields[i + 1] end
  if c['name'] == ARGV[2] then
    if tonumber(c['pending']) == 0 and tonumber(c['idle']) >= tonumber(ARGV[3]) then
      return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) * 0 + 1
    end
    return 0
  end
end
return 0
"""

#: Entries taken from one dead consumer per stream and tick (the rest on the next tick).
CLAIM_MAX = 1024


class ConsumerWatch:
    """Keeps ``consumer`` alive and takes over the entries of dead consumers of ``streams``.

    ``start`` (idempotent) sets the liveness key and starts the tick task;
    ``take`` hands over what was claimed from a stream; ``close`` stops the
    task and drops the key (a worker that stops cleanly is gone at once).
    """

    def __init__(
        self,
        client: Any,
        *,
        group: str,
        consumer: str,
        streams: Sequence[str],
        key_prefix: str,
        ttl_ms: int = 1_000,
    ) -> None:
        self._redis = client
        self._group = group
        self.consumer = consumer
        self._streams = list(streams)
        self._prefix = key_prefix
        self.ttl_ms = ttl_ms
        self.tick_s = ttl_ms / 5000
        self._claimed: dict[str, list[Any]] = {stream: [] for stream in self._streams}
        self._delete = client.register_script(DELETE_IF_IDLE)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def key(self, consumer: str) -> str:
        """The liveness key of ``consumer``."""
        return self._prefix + consumer

    async def start(self) -> None:
        """Set the liveness key (before the first read makes the consumer) and start ticking."""
        if self._task is not None or self._stop.is_set():
            return
        await self._renew()
        self._task = asyncio.create_task(self._run(), name=f"consumer-watch-{self.consumer}")

    def take(self, stream: str) -> list[Any]:
        """The entries (id, fields) claimed from dead consumers of ``stream``, now this one's."""
        entries = self._claimed.get(stream)
        if not entries:
            return []
        self._claimed[stream] = []
        return entries

    async def close(self) -> None:
        """Stop ticking and drop the liveness key; idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        try:
            # A command in flight is let finish (cancelling redis-py mid-reply can
            # spoil the connection); cancelled only if it hangs.
            await asyncio.wait_for(asyncio.shield(task), 2.0)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self._redis.delete(self.key(self.consumer))

    async def _run(self) -> None:
        me = asyncio.current_task()
        while not self._stop.is_set():
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that arrives as its inner wait ends, and this loop would then go on for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick_s):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            try:
                await self.check()
            except Exception as exc:  # Redis away: the next tick tries again
                # ... unless this task is being cancelled: redis-py may turn a
                # cancellation into a connection error, and swallowing it would
                # keep the task (and whoever awaits its end) alive for ever.
                if me is not None and me.cancelling():
                    raise asyncio.CancelledError from exc
                log.debug("consumer watch %s: %s", self.consumer, exc)

    async def _renew(self) -> None:
        await self._redis.set(self.key(self.consumer), 1, px=self.ttl_ms)

    async def check(self) -> int:
        """One tick: renew the key, find dead consumers, claim their entries; how many claimed."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self.key(self.consumer), 1, px=self.ttl_ms)
            for stream in self._streams:
                pipe.xinfo_consumers(stream, self._group)
            replies = await pipe.execute(raise_on_error=False)
        idle: list[tuple[str, str, int]] = []  # (stream, consumer, pending)
        for stream, reply in zip(self._streams, replies[1:], strict=True):
            if isinstance(reply, Exception):  # no group yet (NOGROUP): nothing to watch
                continue
            for info in reply:
                name = _text(info["name"])
                if name != self.consumer and int(info["idle"]) >= self.ttl_ms:
                    idle.append((stream, name, int(info["pending"])))
        if not idle:
            return 0
        names = list(dict.fromkeys(name for _, name, _ in idle))
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.exists(self.key(name))
            alive = {name for name, n in zip(names, await pipe.execute(), strict=True) if n}
        claimed = 0
        for stream, name, pending in idle:
            if name in alive:
                continue
            if pending and not self._claimed[stream]:
                claimed += await self._claim(stream, name)
            elif not pending and await self._delete(
                keys=[stream], args=[self._group, name, self.ttl_ms]
            ):
                log.info("dispatch worker %s is gone: removed from %s", name, stream)
        return claimed

    async def _claim(self, stream: str, dead: str) -> int:
        pending = await self._redis.xpending_range(
            stream, self._group, "-", "+", CLAIM_MAX, consumername=dead
        )
        ids = [item["message_id"] for item in pending]
        if not ids:
            return 0
        reply = await self._redis.xclaim(stream, self._group, self.consumer, self.ttl_ms // 2, ids)
        entries = [entry for entry in reply if entry and entry[1]]
        if entries:
            self._claimed[stream].extend(entries)
            log.warning(
                "dispatch worker %s is gone: took over %d pending entries of %s",
                dead,
                len(entries),
                stream,
            )
        return len(entries)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
