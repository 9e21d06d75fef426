"""The NodeNumbers contract (longlink.idlease.base), for every backend, and the IdLease keeper."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from longlink.bus.redis import connect as redis_connect
from longlink.idlease import IdLease, NodeNumbers
from longlink.idlease.base import NUMBERS
from longlink.idlease.memory import MemoryNumbers
from longlink.idlease.redis import AFTER, HOLDERS, RedisNumbers
from longlink.model import IdsUnavailable, MsgIdGenerator
from longlink.settings import ConfigError
from tests.conftest import WAIT, eventually
from tests.redis_server import RedisServer, require_redis


def make_numbers(client: Any, ttl_ms: int = 10_000) -> NodeNumbers:
    return MemoryNumbers(ttl_ms) if client is None else RedisNumbers(client, ttl_ms=ttl_ms)


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_concurrent_claims_never_share_a_number(client: Any) -> None:
    numbers = make_numbers(client)
    grants = await asyncio.wait_for(
        asyncio.gather(*(numbers.claim(f"owner-{i}") for i in range(64))), WAIT
    )
    assert all(g is not None for g in grants)
    got = [g.number for g in grants if g is not None]
    assert len(set(got)) == 64
    assert sorted(got) == list(range(64))  # the lowest free ones
    assert await numbers.holder(got[0]) is not None


async def test_a_number_held_by_another_owner_is_refused(client: Any) -> None:
    numbers = make_numbers(client)
    grant = await numbers.claim("a", 7)
    assert grant is not None and grant.number == 7
    assert await numbers.claim("b", 7) is None
    assert await numbers.holder(7) == "a"
    again = await numbers.claim("a", 7)  # the holder is granted its own number again
    assert again is not None and again.number == 7
    other = await numbers.claim("b")
    assert other is not None and other.number == 0


async def test_a_grant_fences_stamps_after_every_earlier_holder(client: Any) -> None:
    numbers = make_numbers(client)
    first = await numbers.claim("a", 3)
    assert first is not None
    assert first.until_ms >= now_ms() + numbers.ttl_ms - 1000
    assert first.after_ms < first.until_ms
    raised = first.until_ms + 60_000
    assert await numbers.renew("a", 3, raised)
    assert not await numbers.renew("b", 3, raised + 1)  # not the holder: nothing changes
    await numbers.release("a", 3, last_ms=raised - 10)
    assert await numbers.holder(3) is None
    second = await numbers.claim("b", 3)
    assert second is not None and second.after_ms == raised - 10  # released: its last stamp
    assert second.until_ms > second.after_ms


async def test_release_by_another_owner_changes_nothing(client: Any) -> None:
    numbers = make_numbers(client)
    assert await numbers.claim("a", 5) is not None
    await numbers.release("b", 5, last_ms=0)
    assert await numbers.holder(5) == "a"
    await numbers.release("a", 5, last_ms=now_ms())
    await numbers.release("a", 5, last_ms=now_ms())  # idempotent
    assert await numbers.holder(5) is None


async def test_every_number_held_means_no_claim(client: Any) -> None:
    numbers = make_numbers(client)
    for number in range(NUMBERS):
        assert await numbers.claim(f"o{number}", number) is not None
    assert await numbers.claim("late") is None
    await numbers.release("o42", 42, last_ms=now_ms())
    grant = await numbers.claim("late")
    assert grant is not None and grant.number == 42


async def test_a_free_number_fenced_in_the_future_is_taken_last(client: Any) -> None:
    numbers = make_numbers(client)
    assert await numbers.claim("a", 0) is not None
    await numbers.release("a", 0, last_ms=now_ms() + 60_000)  # as if its holder crashed ahead
    grant = await numbers.claim("b")
    assert grant is not None and grant.number == 1


# ---------------------------------------------------------------- lapse (shared backends)


async def test_a_lapsed_number_goes_to_another_owner_fenced_after_the_first(
    redis_client: Any,
) -> None:
    numbers = RedisNumbers(redis_client, ttl_ms=200)
    first = await numbers.claim("a", 9)
    assert first is not None
    assert await numbers.claim("b", 9) is None

    async def lapsed() -> bool:
        return await numbers.claim("b", 9) is not None

    await eventually(lapsed, what="a's lease to lapse")
    assert not await numbers.renew("a", 9, first.until_ms + 1)  # a lost it: told so
    second = await numbers.claim("b", 9)
    assert second is not None and second.after_ms >= first.until_ms


async def test_a_lapsed_number_nobody_took_is_renewed(redis_client: Any) -> None:
    numbers = RedisNumbers(redis_client, ttl_ms=100)
    grant = await numbers.claim("a", 4)
    assert grant is not None
    await eventually(lambda: now_ms() > grant.until_ms, what="the lease time to pass")
    assert await numbers.renew("a", 4, now_ms() + 100)


# ---------------------------------------------------------------- the keeper


async def test_the_lease_holds_a_number_while_entered(client: Any) -> None:
    numbers = make_numbers(client)
    ids = MsgIdGenerator()
    async with IdLease(numbers, ids, owner="p1") as lease:
        assert lease.held == ids.node == 0
        ids.next_id()
        assert await numbers.holder(0) == "p1"
    assert ids.node is None and await numbers.holder(0) is None
    with pytest.raises(IdsUnavailable):
        ids.next_id()


async def test_a_configured_number_held_elsewhere_refuses_the_start(client: Any) -> None:
    numbers = make_numbers(client)
    async with IdLease(numbers, MsgIdGenerator(), owner="p1", number=12):
        with pytest.raises(ConfigError, match=r"id_node 12 is held by another live process \(p1\)"):
            async with IdLease(numbers, MsgIdGenerator(), owner="p2", number=12):
                pass
    async with IdLease(numbers, MsgIdGenerator(), owner="p2", number=12) as lease:
        assert lease.held == 12  # given back at close: free again


def test_a_configured_number_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="id_node 1024"):
        IdLease(MemoryNumbers(), MsgIdGenerator(), owner="p", number=1024)


async def test_a_lease_taken_by_another_stops_minting_then_claims_anew(redis_client: Any) -> None:
    numbers = RedisNumbers(redis_client, ttl_ms=400)  # renewed every 100 ms
    ids = MsgIdGenerator()
    async with IdLease(numbers, ids, owner="p1") as lease:
        assert lease.held == 0
        before = ids.next_id()
        # Another process took the number (as after p1 stalled past its lease).
        await redis_client.hset(HOLDERS, 0, f"{now_ms() + 60_000}|intruder")
        await redis_client.hset(AFTER, 0, now_ms() + 60_000)
        await eventually(lambda: lease.held != 0, what="p1 to notice", interval=0.005)
        # Never minting with a number someone else may hold; then a free one.
        await eventually(lambda: lease.held == 1, what="p1 to claim another number")
        after = ids.next_id()
        assert after > before and (after >> 12) & 1023 == 1
        assert await numbers.holder(0) == "intruder"


async def test_a_lease_that_cannot_be_renewed_stops_minting_by_itself(tmp_path: Path) -> None:
    require_redis()
    server = RedisServer(str(tmp_path))
    server.start()
    client = redis_connect(server.url)
    try:
        ids = MsgIdGenerator()
        async with IdLease(RedisNumbers(client, ttl_ms=300), ids, owner="p1") as lease:
            assert lease.held == 0
            ids.next_id()
            server.stop(kill=True)  # renewals fail from now on
            # Minting stops within the lease time, before another process may claim it.
            await eventually(lambda: _refused(ids), what="minting to stop")
            assert lease.held == 0  # still its number: nobody said otherwise
    finally:
        server.stop()
        await client.aclose()


def _refused(ids: MsgIdGenerator) -> bool:
    try:
        ids.next_id()
    except IdsUnavailable:
        return True
    return False
