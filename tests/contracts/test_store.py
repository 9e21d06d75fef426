"""The OfflineStore contract (longlink.store.base), run against every backend: SQLite and Redis.

Add a backend by adding a parameter to ``backend`` and a branch to
``open_store``: a PostgreSQL store runs the same suite.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from longlink.bus.redis import connect as redis_connect
from longlink.model import Message, Priority, Target
from longlink.store.base import (
    OfflineStore,
    StoreError,
    device_recipient,
    recipients_of,
    recipients_of_conn,
    user_recipient,
)
from longlink.store.redis import RedisStore
from longlink.store.sqlite import SqliteStore
from tests.contracts.conftest import bus_url

#: ``await opener()`` opens the backend's store on the same data as the last one.
Opener = Callable[[], Awaitable[OfflineStore]]


@pytest.fixture(params=["sqlite", "redis", "cluster"])
def backend(request: pytest.FixtureRequest) -> str:
    """The store's backends (this suite's own: the others' are memory and Redis)."""
    name: str = request.param
    if name != "sqlite":
        bus_url(name, request)
    return name


@pytest.fixture
async def open_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Opener]:
    """Opens stores of ``backend`` that share one data set (to check what survives a reopen)."""
    opened: list[OfflineStore] = []
    clients: list[aioredis.Redis | aioredis.RedisCluster] = []
    if backend != "sqlite":
        first = redis_connect(bus_url(backend, request))
        await first.flushdb()
        await first.aclose()

    async def opener() -> OfflineStore:
        if backend == "sqlite":
            store: OfflineStore = SqliteStore.in_dir(tmp_path)
        elif backend in ("redis", "cluster"):
            client = redis_connect(bus_url(backend, request))
            clients.append(client)
            store = RedisStore(client)
        else:  # pragma: no cover - another backend needs its branch here
            raise AssertionError(f"unknown backend {backend}")
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.close()
    for client in clients:
        await client.aclose()


@pytest.fixture
async def store(open_store: Opener) -> OfflineStore:
    return await open_store()


NOW = int(time.time() * 1000)
ALICE = recipients_of_conn("alice", "a-phone")
BOB = recipients_of_conn("bob", "b-phone")


def message(
    msg_id: int,
    *,
    users: tuple[str, ...] = ("alice",),
    devices: tuple[str, ...] = (),
    ttl_s: int = 60,
    accepted_ms: int = NOW,
    payload: bytes = b"",
) -> Message:
    return Message(
        msg_id=msg_id,
        target=Target(users=list(users)) if users else Target(devices=list(devices)),
        payload=payload or f"m{msg_id}".encode(),
        priority=Priority.HIGH,
        guaranteed=True,
        ttl_s=ttl_s,
        accepted_ms=accepted_ms,
    )


def ids(messages: list[Message]) -> list[int]:
    return [m.msg_id for m in messages]


def test_recipients() -> None:
    assert recipients_of(Target(users=["a", "b", "a"])) == ["u:a", "u:b"]
    assert recipients_of(Target(devices=["d"])) == ["d:d"]
    assert recipients_of(Target(rooms=["r"])) == []
    assert recipients_of_conn("a", "d") == [user_recipient("a"), device_recipient("d")]


async def test_put_then_pending_oldest_first_whole_messages(store: OfflineStore) -> None:
    kept = [message(3), message(1, payload=bytes(range(256))), message(2)]
    await store.put(kept)
    pending = await store.pending(ALICE, NOW)
    assert ids(pending) == [1, 2, 3]
    assert pending[0] == kept[1]  # every field round-trips
    assert await store.pending(BOB, NOW) == []


async def test_a_user_message_and_a_device_message_reach_the_connection_once(
    store: OfflineStore,
) -> None:
    both = Message(1, Target(users=["alice"]), b"x", guaranteed=True, accepted_ms=NOW)
    await store.put([both, message(2, users=(), devices=("a-phone",))])
    await store.put([message(3, users=(), devices=("a-laptop",))])
    assert ids(await store.pending(ALICE, NOW)) == [1, 2]
    assert ids(await store.pending(recipients_of_conn("alice", "a-laptop"), NOW)) == [1, 3]


async def test_putting_again_changes_nothing(store: OfflineStore) -> None:
    await store.put([message(1)])
    await store.put([message(1), message(1)])
    assert ids(await store.pending(ALICE, NOW)) == [1]
    assert await store.count() == 1


async def test_pending_pages_with_after_and_limit(store: OfflineStore) -> None:
    await store.put([message(i) for i in range(1, 11)])
    first = await store.pending(ALICE, NOW, limit=4)
    assert ids(first) == [1, 2, 3, 4]
    second = await store.pending(ALICE, NOW, after=4, limit=4)
    assert ids(second) == [5, 6, 7, 8]
    assert ids(await store.pending(ALICE, NOW, after=8, limit=4)) == [9, 10]
    assert await store.pending(ALICE, NOW, after=10) == []


async def test_expired_messages_are_never_pending(store: OfflineStore) -> None:
    await store.put([message(1, ttl_s=1), message(2, ttl_s=60)])
    assert ids(await store.pending(ALICE, NOW + 999)) == [1, 2]
    assert ids(await store.pending(ALICE, NOW + 1000)) == [2]


async def test_ack_removes_for_those_recipients_only(store: OfflineStore) -> None:
    await store.put([message(1, users=("alice", "bob")), message(2)])
    await store.ack(ALICE, [1])
    assert ids(await store.pending(ALICE, NOW)) == [2]
    assert ids(await store.pending(BOB, NOW)) == [1]
    assert await store.count() == 2
    await store.ack(BOB, [1])
    assert await store.count() == 1  # the last recipient took it: gone
    await store.ack(BOB, [1, 2, 999])  # not kept for bob, or unknown: ignored
    assert ids(await store.pending(ALICE, NOW)) == [2]


async def test_ack_many_takes_the_acks_of_many_connections_at_once(store: OfflineStore) -> None:
    await store.put([message(1, users=("alice", "bob")), message(2), message(3, users=("bob",))])
    await store.ack_many([(ALICE, [1, 2]), (BOB, [1, 999]), (BOB, [])])
    assert await store.pending(ALICE, NOW) == []
    assert ids(await store.pending(BOB, NOW)) == [3]
    assert await store.count() == 1  # 1 and 2 are gone: no recipient is left waiting
    await store.ack_many([])


async def test_expire_removes_and_names_what_expired(store: OfflineStore) -> None:
    await store.put([message(1, ttl_s=1), message(2, ttl_s=2), message(3, ttl_s=60)])
    await store.put([message(4, users=("bob",), ttl_s=1)])
    assert sorted(await store.expire(NOW + 1000)) == [1, 4]
    assert await store.expire(NOW + 1000) == []  # once
    assert ids(await store.pending(ALICE, NOW)) == [2, 3]
    assert await store.pending(BOB, NOW) == []
    assert await store.expire(NOW + 2000, limit=10) == [2]
    assert await store.count() == 1


async def test_expire_limit(store: OfflineStore) -> None:
    await store.put([message(i, ttl_s=1) for i in range(1, 6)])
    assert len(await store.expire(NOW + 1000, limit=2)) == 2
    assert len(await store.expire(NOW + 1000, limit=10)) == 3


async def test_a_message_without_recipients_is_refused(store: OfflineStore) -> None:
    room = Message(1, Target(rooms=["r"]), b"", guaranteed=True, accepted_ms=NOW)
    with pytest.raises(ValueError):
        await store.put([room])
    assert await store.count() == 0


async def test_the_largest_message_ids_round_trip(store: OfflineStore) -> None:
    top = (1 << 64) - 1
    await store.put([message(top), message((1 << 63) - 1)])
    assert sorted(ids(await store.pending(ALICE, NOW))) == [(1 << 63) - 1, top]
    await store.ack(ALICE, [top])
    assert ids(await store.pending(ALICE, NOW)) == [(1 << 63) - 1]


async def test_concurrent_calls_each_take_effect(store: OfflineStore) -> None:
    await asyncio.gather(*(store.put([message(i)]) for i in range(1, 201)))
    assert len(await store.pending(ALICE, NOW, limit=1000)) == 200
    await asyncio.gather(*(store.ack(ALICE, [i]) for i in range(1, 101)))
    assert ids(await store.pending(ALICE, NOW, limit=1000)) == list(range(101, 201))


async def test_what_was_put_survives_a_reopen(open_store: Opener) -> None:
    first = await open_store()
    await first.put([message(1), message(2)])
    await first.ack(ALICE, [1])
    await first.close()
    second = await open_store()
    assert ids(await second.pending(ALICE, NOW)) == [2]


async def test_close_is_idempotent_and_final(store: OfflineStore) -> None:
    await store.put([message(1)])
    await store.close()
    await store.close()
    with pytest.raises(StoreError):
        await store.put([message(2)])
    with pytest.raises(StoreError):
        await store.pending(ALICE, NOW)
