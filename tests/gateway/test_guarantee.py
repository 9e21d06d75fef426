"""gateway/guarantee.py without sockets: writes, retries, acks, give-up, redelivery window.

The retry wheel is driven by hand (``Guarantee.advance(now)``), so these tests
take no wall-clock time; tests/e2e/test_guaranteed.py checks the real timing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterable
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from longlink.gateway import guarantee as guarantee_module
from longlink.gateway.connection import Connection
from longlink.gateway.guarantee import MAX_UNACKED, REDELIVERY_WINDOW, Guarantee
from longlink.gateway.metrics import GatewayMetrics
from longlink.gateway.outbox import Outbox
from longlink.model import Message, Priority, Target
from longlink.protocol import ErrorCode, Flag, FrameDecoder, Op, ProtocolError
from longlink.protocol.server import SessionState
from longlink.settings import Settings
from longlink.store.base import recipients_of_conn
from longlink.trace import Tracer
from tests.conftest import eventually

INTERVAL = 2.0


class FakeTransport:
    def __init__(self) -> None:
        self.buffered = 0

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        pass


class FakeConn:
    """What Guarantee uses of a Connection."""

    def __init__(self, user: str, device: str = "", conn_id: str = "") -> None:
        self.user = user
        self.device = device or f"{user}-dev"
        self.conn_id = conn_id or f"c-{user}"
        self.state = SessionState.OPEN
        self.transport: FakeTransport | None = FakeTransport()
        self.unacked: dict[int, Any] | None = None
        self.frames: list[tuple[int, int, int]] = []  # (op, flags, msg_id)
        self.failed: list[str] = []
        self.writes = 0
        self.guarantee: Guarantee | None = None

    @property
    def closed(self) -> bool:
        return self.state == SessionState.CLOSED

    def write_many(self, frames: list[bytes]) -> None:
        self.writes += 1
        for f in FrameDecoder(1 << 20).feed(b"".join(frames)):
            self.frames.append((f.op, f.flags, f.msg_id))

    def fail(self, error: ProtocolError, seq: int = 0) -> list[str]:
        """The session's answer, as far as these tests care: ERROR, then closed."""
        self.failed.append(error.code.value)
        return ["closed"]

    def apply(self, out: list[str]) -> None:
        if "closed" in out:
            self.close()

    def close(self) -> None:
        self.state = SessionState.CLOSED
        assert self.guarantee is not None
        self.guarantee.closed(cast(Connection, self))

    def pushes(self) -> list[int]:
        """The PUSH frames written so far (what this loop turn queued included)."""
        assert self.guarantee is not None
        self.guarantee.flush()
        return [msg_id for op, _, msg_id in self.frames if op == Op.PUSH]


class FakeHub:
    def __init__(self) -> None:
        self.users: dict[str, list[FakeConn]] = {}

    def resolve(self, target: Target) -> list[FakeConn]:
        return [c for u in target.users for c in self.users.get(u, [])]


class FakeStore:
    """Enough of an OfflineStore: pending messages per recipient, acks recorded."""

    def __init__(self) -> None:
        self.kept: dict[str, list[Message]] = {}
        self.acks: list[tuple[list[str], list[int]]] = []

    async def pending(
        self, recipients: Iterable[str], now_ms: int, *, after: int = 0, limit: int = 500
    ) -> list[Message]:
        found = {m.msg_id: m for r in recipients for m in self.kept.get(r, []) if m.msg_id > after}
        return [found[i] for i in sorted(found)][:limit]

    async def ack_many(self, acks: list[tuple[list[str], list[int]]]) -> None:
        self.acks.extend((list(recipients), list(msg_ids)) for recipients, msg_ids in acks)


class FakeGateway:
    def __init__(self, **changes: Any) -> None:
        self.settings = Settings(retry_interval_s=INTERVAL, max_retries=2).replace(**changes)
        self.hub = FakeHub()
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def settle(self) -> None:
        while self.tasks:
            await asyncio.gather(*self.tasks)


def make(store: FakeStore | None = None, **changes: Any) -> tuple[Guarantee, FakeGateway, Tracer]:
    gateway = FakeGateway(**changes)
    settings = gateway.settings
    tracer = Tracer(max_retries=settings.max_retries)
    metrics = GatewayMetrics(CollectorRegistry())
    guarantee = Guarantee(
        cast(Any, gateway.hub),
        Outbox(settings.outbox_soft_kib, settings.outbox_hard_kib, metrics),
        cast(Any, store),
        tracer,
        gateway.spawn,
        node=settings.node_id,
        retry_interval_s=settings.retry_interval_s,
        max_retries=settings.max_retries,
    )
    return guarantee, gateway, tracer


def connect(guarantee: Guarantee, gateway: FakeGateway, user: str, **kw: str) -> FakeConn:
    conn = FakeConn(user, **kw)
    conn.guarantee = guarantee
    gateway.hub.users.setdefault(user, []).append(conn)
    return conn


def message(msg_id: int, user: str = "alice", ttl_s: int = 60) -> Message:
    return Message(
        msg_id,
        Target(users=[user]),
        b"x",
        Priority.HIGH,
        guaranteed=True,
        ttl_s=ttl_s,
        accepted_ms=int(time.time() * 1000),
    )


def events(tracer: Tracer, msg_id: int) -> list[str]:
    trace = tracer.trace(msg_id)
    return [e.event for e in trace.events] if trace else []


async def test_written_with_ack_required_and_resent_exactly_max_retries_times() -> None:
    guarantee, gateway, tracer = make()
    conn = connect(guarantee, gateway, "alice")
    start = time.monotonic()
    guarantee.deliver(message(1))
    assert conn.pushes() == [1]
    assert conn.frames == [(Op.PUSH, Flag.ACK_REQUIRED | Flag.HIGH_PRIORITY, 1)]
    guarantee.advance(start + INTERVAL * 0.9)
    assert conn.pushes() == [1]  # not before the interval
    guarantee.advance(start + INTERVAL * 1.1)
    guarantee.advance(start + INTERVAL * 2.2)
    assert conn.pushes() == [1, 1, 1]
    guarantee.advance(start + INTERVAL * 3.3)  # one interval after the last retry: give up
    guarantee.advance(start + INTERVAL * 10)
    assert conn.pushes() == [1, 1, 1]
    assert conn.unacked is None and guarantee.inflight == 0
    assert events(tracer, 1) == ["written", "retried", "retried", "unacked"]
    reach = tracer.reach()
    assert (reach.deliveries, reach.acked, reach.retries) == (1, 0, 2)


async def test_an_ack_stops_the_retries_and_frees_the_map() -> None:
    store = FakeStore()
    guarantee, gateway, tracer = make(store)
    conn = connect(guarantee, gateway, "alice")
    start = time.monotonic()
    guarantee.deliver(message(1))
    guarantee.deliver(message(2))
    assert conn.unacked is not None and len(conn.unacked) == 2
    guarantee.advance(start + INTERVAL * 1.1)  # both resent once
    guarantee.acked(cast(Connection, conn), [1, 2])
    assert conn.unacked is None  # an idle connection holds no dict
    guarantee.advance(start + INTERVAL * 10)
    await gateway.settle()
    assert conn.pushes() == [1, 2, 1, 2]
    assert events(tracer, 1) == ["written", "retried", "acked"]
    reach = tracer.reach()
    assert (reach.deliveries, reach.acked, reach.first_try_acked) == (2, 2, 0)


async def test_acks_reach_the_store_once_per_loop_turn() -> None:
    store = FakeStore()
    guarantee, gateway, _ = make(store)
    conn = connect(guarantee, gateway, "alice", device="a-phone")
    guarantee.deliver(message(1))
    guarantee.acked(cast(Connection, conn), [1])
    guarantee.acked(cast(Connection, conn), [99])  # unknown here: still removed from the store
    await gateway.settle()
    assert store.acks == [(recipients_of_conn("alice", "a-phone"), [1, 99])]


async def test_a_burst_to_a_connection_is_one_write_at_the_end_of_the_loop_turn() -> None:
    guarantee, gateway, _ = make()
    alice, bob = connect(guarantee, gateway, "alice"), connect(guarantee, gateway, "bob")
    for i in range(1, 11):
        guarantee.deliver(message(i, "alice" if i % 2 else "bob"))
    assert alice.writes == 0
    await asyncio.sleep(0)  # the end of the loop turn
    assert (alice.writes, bob.writes) == (1, 1)
    assert alice.pushes() == [1, 3, 5, 7, 9] and bob.pushes() == [2, 4, 6, 8, 10]


async def test_a_connection_closed_before_the_write_gets_nothing() -> None:
    guarantee, gateway, tracer = make()
    conn = connect(guarantee, gateway, "alice")
    guarantee.deliver(message(1))
    conn.close()
    assert conn.pushes() == [] and guarantee.inflight == 0
    assert events(tracer, 1) == ["written", "closed"]  # it stays in the store


async def test_a_message_unacked_on_a_connection_is_not_written_twice() -> None:
    guarantee, gateway, _ = make()
    conn = connect(guarantee, gateway, "alice")
    guarantee.deliver(message(1))
    guarantee.deliver(message(1))  # a live push racing the store's redelivery
    assert conn.pushes() == [1]


async def test_each_connection_of_the_user_is_tracked_on_its_own() -> None:
    guarantee, gateway, tracer = make()
    phone = connect(guarantee, gateway, "alice", device="phone", conn_id="c1")
    laptop = connect(guarantee, gateway, "alice", device="laptop", conn_id="c2")
    start = time.monotonic()
    guarantee.deliver(message(1))
    guarantee.acked(cast(Connection, phone), [1])
    guarantee.advance(start + INTERVAL * 1.1)
    assert phone.pushes() == [1] and laptop.pushes() == [1, 1]
    trace = tracer.trace(1)
    assert trace is not None
    assert trace.events[0].detail == {"node": "g1", "targeted": 2, "written": 2}


async def test_a_closed_connection_forgets_its_messages() -> None:
    guarantee, gateway, tracer = make()
    conn = connect(guarantee, gateway, "alice")
    start = time.monotonic()
    guarantee.deliver(message(1))
    assert conn.pushes() == [1]
    conn.close()
    guarantee.advance(start + INTERVAL * 5)
    assert conn.pushes() == [1] and guarantee.inflight == 0
    assert events(tracer, 1) == ["written", "closed"]
    assert tracer.reach().acked == 0


async def test_nothing_is_written_past_the_ttl() -> None:
    guarantee, gateway, tracer = make()
    conn = connect(guarantee, gateway, "alice")
    expired = Message(1, Target(users=["alice"]), b"", guaranteed=True, ttl_s=1, accepted_ms=1)
    guarantee.deliver(expired)
    assert conn.pushes() == []
    assert tracer.trace(1) is not None


async def test_a_retry_stops_when_the_ttl_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    guarantee, gateway, tracer = make(retry_interval_s=0.5)
    conn = connect(guarantee, gateway, "alice")
    start = time.monotonic()
    now_ms = int(time.time() * 1000)
    short = Message(1, Target(users=["alice"]), b"", guaranteed=True, ttl_s=1, accepted_ms=now_ms)
    guarantee.deliver(short)
    # The retry clock is driven by hand; the TTL is wall time: move it past the end.
    monkeypatch.setattr(guarantee_module, "_now_ms", lambda: now_ms + 1000)
    guarantee.advance(start + 0.6)
    assert conn.pushes() == [1]
    trace = tracer.trace(1)
    assert trace is not None and trace.events[-1].detail == {
        "conn": "c-alice",
        "retries": 0,
        "reason": "ttl",
    }


async def test_a_client_far_behind_is_closed_server_busy() -> None:
    guarantee, gateway, _ = make()
    conn = connect(guarantee, gateway, "alice")
    assert conn.transport is not None
    conn.transport.buffered = 5 << 20  # past the hard limit (outbox_hard_kib)
    guarantee.deliver(message(1))
    assert conn.failed == [ErrorCode.SERVER_BUSY.value] and conn.pushes() == []
    assert guarantee.inflight == 0


async def test_past_max_unacked_a_message_waits_in_the_store() -> None:
    guarantee, gateway, _ = make()
    conn = connect(guarantee, gateway, "alice")
    for i in range(1, MAX_UNACKED + 2):
        guarantee.deliver(message(i))
    assert len(conn.pushes()) == MAX_UNACKED
    assert guarantee.metrics.overflow._value.get() == 1


async def test_redelivery_oldest_first_in_windows() -> None:
    store = FakeStore()
    count = REDELIVERY_WINDOW + 300
    store.kept["u:alice"] = [message(i) for i in range(count, 0, -1)]
    guarantee, gateway, tracer = make(store)
    conn = connect(guarantee, gateway, "alice")
    guarantee.opened(cast(Connection, conn))
    assert not guarantee.idle
    full = REDELIVERY_WINDOW
    await eventually(lambda: len(conn.pushes()) >= full, what="a full window", interval=0)
    # The window is full: the rest waits for ACKs.
    assert conn.pushes() == list(range(1, REDELIVERY_WINDOW + 1))
    guarantee.acked(cast(Connection, conn), list(range(1, REDELIVERY_WINDOW // 2 + 1)))
    await asyncio.wait_for(asyncio.gather(*gateway.tasks), 5)
    assert conn.pushes() == list(range(1, count + 1))
    assert events(tracer, count) == ["from_store"]
    guarantee.acked(cast(Connection, conn), list(range(1, count + 1)))
    await gateway.settle()
    assert guarantee.idle
    assert tracer.reach().from_store == count


async def test_redelivery_stops_when_the_connection_goes() -> None:
    store = FakeStore()
    store.kept["u:alice"] = [message(i) for i in range(1, REDELIVERY_WINDOW + 100)]
    guarantee, gateway, _ = make(store)
    conn = connect(guarantee, gateway, "alice")
    guarantee.opened(cast(Connection, conn))
    full = REDELIVERY_WINDOW
    await eventually(lambda: len(conn.pushes()) >= full, what="a full window", interval=0)
    conn.close()
    await asyncio.wait_for(gateway.settle(), 5)
    assert len(conn.pushes()) == REDELIVERY_WINDOW
    assert guarantee.idle


@pytest.mark.parametrize(("interval", "tick"), [(2.0, 0.05), (0.05, 0.005), (0.2, 0.02)])
async def test_the_tick_follows_the_interval(interval: float, tick: float) -> None:
    guarantee, _, _ = make(retry_interval_s=interval)
    assert guarantee.tick_s == pytest.approx(tick)
    assert guarantee.wheel.span_s >= interval
