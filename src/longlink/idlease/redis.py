"""Node numbers leased on Redis, shared by every process of a deployment.

Keys (prefix ``{ll}``, one hash tag: the scripts touch both keys):

=====================  ==========================================================
``idn``                hash: number -> ``<expires_ms>|<owner>`` (expiry in Redis's clock)
``idn:after``          hash: number -> the last stamp (unix ms) its holders may have used
=====================  ==========================================================

Each operation is one Lua script, so a claim is atomic: it looks for a
number that is free (absent, lapsed, or already the caller's) and takes it
in the same step. Lapse is judged by Redis's clock (``TIME``), never a
client's. Both hashes hold at most 1024 fields.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from longlink.bus import keys
from longlink.idlease.base import NUMBERS, Grant

HOLDERS = keys.global_key("idn")
AFTER = keys.global_key("idn:after")

#: A lease lapses this long after its claim or last renewal.
TTL_MS = 10_000

_HELD = """
local function redis_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function holder(n)
  local held = redis.call('HGET', KEYS[1], n)
  if not held then return nil, 0 end
  local bar = string.find(held, '|', 1, true)
  return string.sub(held, bar + 1), tonumber(string.sub(held, 1, bar - 1))
end
local function after(n)
  return tonumber(redis.call('HGET', KEYS[2], n) or '0')
end
"""

#: ARGV: owner, ttl_ms, wanted number (-1: the lowest free), client now_ms, how many numbers.
#: Returns {number, after_ms, until_ms}, or false when nothing could be claimed.
CLAIM = (
    _HELD
    + """
local owner, ttl = ARGV[1], tonumber(ARGV[2])
local wanted, client_now = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = redis_ms()
local function free(n)
  local who, expires = holder(n)
  return who == nil or who == owner or expires <= now
end
local pick = -1
if wanted >= 0 then
  if free(wanted) then pick = wanted end
else
  local fallback, fallback_after = -1, 0
  for n = 0, tonumber(ARGV[5]) - 1 do
    if free(n) then
      local a = after(n)
      if a < client_now then
        pick = n
        break
      end
      if fallback < 0 or a < fallback_after then
        fallback, fallback_after = n, a
      end
    end
  end
  if pick < 0 then pick = fallback end
end
if pick < 0 then return false end
local a = after(pick)
local limit = math.max(a, client_now) + ttl
redis.call('HSET', KEYS[1], pick, string.format('%d|%s', now + ttl, owner))
redis.call('HSET', KEYS[2], pick, string.format('%d', limit))
return {pick, a, limit}
"""
)

#: ARGV: owner, ttl_ms, number, until_ms. Returns 1 when renewed, 0 when not the holder.
RENEW = (
    _HELD
    + """
local owner, ttl, n, limit = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
if holder(n) ~= owner then return 0 end
redis.call('HSET', KEYS[1], n, string.format('%d|%s', redis_ms() + ttl, owner))
if limit > after(n) then redis.call('HSET', KEYS[2], n, string.format('%d', limit)) end
return 1
"""
)

#: ARGV: owner, number, last_ms. Returns 1 when released, 0 when not the holder.
RELEASE = (
    _HELD
    + """
local owner, n = ARGV[1], ARGV[2]
if holder(n) ~= owner then return 0 end
redis.call('HDEL', KEYS[1], n)
redis.call('HSET', KEYS[2], n, ARGV[3])
return 1
"""
)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisNumbers:
    """:class:`~longlink.idlease.base.NodeNumbers` on Redis (see the module docstring)."""

    def __init__(
        self, client: aioredis.Redis | aioredis.RedisCluster, *, ttl_ms: int = TTL_MS
    ) -> None:
        self._redis: Any = client  # redis-py types RESP2 and RESP3 replies as one union
        self._ttl_ms = ttl_ms
        self._claim = self._redis.register_script(CLAIM)
        self._renew = self._redis.register_script(RENEW)
        self._release = self._redis.register_script(RELEASE)

    @property
    def ttl_ms(self) -> int:
        return self._ttl_ms

    async def claim(self, owner: str, number: int | None = None) -> Grant | None:
        wanted = -1 if number is None else number
        now_ms = int(time.time() * 1000)
        args: list[str | int] = [owner, self._ttl_ms, wanted, now_ms, NUMBERS]
        reply = await self._claim(keys=[HOLDERS, AFTER], args=args)
        if not reply:
            return None
        got, after, until = (int(v) for v in reply)
        return Grant(got, after, until)

    async def renew(self, owner: str, number: int, until_ms: int) -> bool:
        args: list[str | int] = [owner, self._ttl_ms, number, until_ms]
        return bool(await self._renew(keys=[HOLDERS, AFTER], args=args))

    async def release(self, owner: str, number: int, last_ms: int) -> None:
        await self._release(keys=[HOLDERS, AFTER], args=[owner, number, last_ms])

    async def holder(self, number: int) -> str | None:
        held = await self._redis.hget(HOLDERS, number)
        return None if held is None else _s(held).partition("|")[2]
