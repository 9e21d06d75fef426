"""The gateway's write path, on fake transports: groups, slices, order, dedup, outbox policy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from longlink.bus.memory import MemoryNodeChannel
from longlink.control.tokens import TokenIssuer
from longlink.dispatch.compression import BatchEncoder
from longlink.gateway import delivery as delivery_module
from longlink.gateway.connection import Connection
from longlink.gateway.fanout import ws_message
from longlink.gateway.server import Gateway
from longlink.gateway.stream import StreamConnection
from longlink.gateway.tcp import TcpConnection
from longlink.gateway.websocket import WsConnection
from longlink.logic.memory import MemoryRegistry
from longlink.model import Message, Priority, RoomBatch, Target, message_push
from longlink.protocol import Codec, FrameDecoder, Op
from longlink.protocol import websocket as wsp
from longlink.protocol.client import unpack_pushes
from longlink.protocol.server import SessionState
from longlink.settings import Settings
from tests.conftest import WAIT, eventually


class FakeTransport:
    """Records writes; ``buffered`` plays the kernel and the transport's write buffer."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0
        self.closing = False
        self.aborted = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.aborted = self.closing = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    settings = Settings(node_id="g1", outbox_soft_kib=64, outbox_hard_kib=256, trace_scope="off")
    yield Gateway(settings, MemoryRegistry(), MemoryNodeChannel(), TokenIssuer("s" * 32, 60))


_serial = 0


def connect(
    gateway: Gateway, rooms: list[str], *, ws: bool = False, codec: int = 0, stream: bool = False
) -> Connection:
    """An open connection with a fake transport, indexed in ``rooms``."""
    global _serial
    _serial += 1
    host = gateway.sessions
    conn: Connection = (
        StreamConnection(host, []) if stream else WsConnection(host) if ws else TcpConnection(host)
    )
    conn.transport = FakeTransport()  # type: ignore[assignment]
    if isinstance(conn, WsConnection):
        conn.handshake = None
        conn.reader = wsp.WsReader(1 << 16)
    conn.conn_id = f"c{_serial}"
    conn.user = f"u{_serial}"
    conn.device = f"d{_serial}"
    conn.codec = codec
    conn.rooms = tuple(rooms)
    conn.state = SessionState.OPEN
    gateway.hub.add(conn, rooms)
    return conn


def writes(conn: Connection) -> list[bytes]:
    return conn.transport.writes  # type: ignore[union-attr]


def received(conn: Connection) -> list[int]:
    """Msg ids of every push written to ``conn``, in order."""
    data = b"".join(writes(conn))
    if isinstance(conn, StreamConnection):
        data = dechunk(data)
    if isinstance(conn, WsConnection):
        reader = wsp.WsReader(1 << 24, require_mask=False)
        frames = [
            f for _, payload in reader.feed(data) for f in FrameDecoder(1 << 24).feed(payload)
        ]
    else:
        frames = FrameDecoder(1 << 24).feed(data)
    return [m.msg_id for f in frames if f.op == Op.PUSH for m in unpack_pushes(f)]


def dechunk(data: bytes) -> bytes:
    """The body of an HTTP chunked stream's chunks (PROTOCOL.md §1.5), each checked."""
    body = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        length = int(size, 16)
        assert data[length : length + 2] == b"\r\n"
        body, data = body + data[:length], data[length + 2 :]
    return body


def messages(first: int, count: int, room: str = "r", **extra: Any) -> list[Message]:
    now_us = time.time_ns() // 1000
    return [
        Message(
            msg_id=first + i,
            target=Target(rooms=[room]),
            payload=b'{"text":"danmaku %d"}' % i,
            accepted_ms=now_us // 1000,
            accepted_us=now_us,
            **extra,
        )
        for i in range(count)
    ]


def batch(first: int, count: int, room: str = "r") -> RoomBatch:
    return BatchEncoder(min_bytes=64).encode(room, messages(first, count, room))[0]


async def idle(gateway: Gateway) -> None:
    # The writer task has no event to await: look every loop turn.
    await eventually(lambda: gateway.delivery.idle, what="the writer to be idle", interval=0)


async def test_each_group_gets_its_codec_framed_once(gateway: Gateway) -> None:
    conns = {
        (ws, codec): [connect(gateway, ["r"], ws=ws, codec=codec) for _ in range(2)]
        for ws in (False, True)
        for codec in Codec
    }
    room_batch = batch(100, 30)
    gateway.commands.deliver([room_batch])
    for (ws, codec), group in conns.items():
        expected = room_batch.frame_for(codec)
        if ws:
            expected = ws_message(expected)
        first, second = (writes(conn) for conn in group)
        assert first == second == [expected]
        assert first[0] is second[0], "the same bytes object for the whole group"
        for conn in group:
            assert received(conn) == list(range(100, 130))
    assert gateway.delivery.stats.deliveries.labels("low")._value.get() == 30 * 12


async def test_high_priority_second_copy_is_dropped(gateway: Gateway) -> None:
    conn = connect(gateway, [])
    [message] = messages(7, 1, priority=Priority.HIGH)
    message = Message(7, Target(users=[conn.user]), b"!", priority=Priority.HIGH)
    gateway.commands.deliver([message])
    gateway.commands.deliver([message])  # the copy from the other dispatch path
    assert writes(conn) == [message_push(message)]
    assert gateway.delivery.stats.dedup_drops._value.get() == 1


async def test_a_big_room_is_written_in_slices_in_order_and_high_priority_cuts_in(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_module, "SLICE", 64)
    room = [connect(gateway, ["r"], ws=i % 2 == 0, codec=i % 3) for i in range(300)]
    vip = room[-1]
    gateway.commands.deliver([batch(1, 5)])  # too big for one slice: queued for the writer
    assert not gateway.delivery.idle and writes(room[0]) == []
    await asyncio.sleep(0)  # the writer takes its first slice, then yields
    gateway.commands.deliver([batch(6, 5), batch(11, 5)])  # waiting behind it: written together
    gateway.commands.deliver([Message(99, Target(users=[vip.user]), b"!", priority=Priority.HIGH)])
    assert received(vip) == [99]  # at once, ahead of the low-priority batches
    await idle(gateway)
    for conn in room:
        ids = received(conn)
        low = [i for i in ids if i != 99]
        assert low == list(range(1, 16)), conn.conn_id
        assert len(writes(conn)) <= 3 if conn is vip else len(writes(conn)) <= 2
    assert gateway.delivery.stats.coalesced._value.get() == 1


async def test_single_room_messages_waiting_back_to_back_share_one_write(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Aggregation off, writer behind: each message keeps its own frame (a ROOM-tagged
    batch), but the frames waiting for the same room go out in one write per connection."""
    monkeypatch.setattr(delivery_module, "SLICE", 64)
    room = [connect(gateway, ["r"], ws=i % 2 == 0, codec=i % 3) for i in range(200)]
    other = [connect(gateway, ["s"]) for _ in range(100)]
    first, *rest = messages(1, 6)
    gateway.commands.deliver([first])  # too big for one slice: queued for the writer
    await asyncio.sleep(0)  # the writer takes its first slice, then yields
    gateway.commands.deliver([*rest, *messages(20, 2, room="s"), *messages(7, 2)])
    await idle(gateway)
    for conn in room:
        assert received(conn) == [1, 2, 3, 4, 5, 6, 7, 8], conn.conn_id
        assert len(writes(conn)) == 3  # 1; 2-6; 7-8 (after room s's turn)
        frames = b"".join(writes(conn))
        assert frames.count(b"r") >= 8  # every message carries its ROOM tag
    for conn in other:
        assert received(conn) == [20, 21] and len(writes(conn)) == 1
    assert gateway.delivery.stats.coalesced._value.get() == 4 + 1 + 1
    assert gateway.delivery.stats.deliveries.labels("low")._value.get() == 8 * 200 + 2 * 100


async def test_write_join_1_writes_each_room_message_on_its_own(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_module, "SLICE", 64)
    gateway.delivery.write_join = 1  # LONGLINK_WRITE_JOIN=1
    room = [connect(gateway, ["r"]) for _ in range(100)]
    first, *rest = messages(1, 4)
    gateway.commands.deliver([first])
    await asyncio.sleep(0)
    gateway.commands.deliver(rest)
    await idle(gateway)
    for conn in room:
        assert received(conn) == [1, 2, 3, 4] and len(writes(conn)) == 4
    assert gateway.delivery.stats.coalesced._value.get() == 0


async def test_stream_connections_get_every_write_path_as_chunks(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HTTP stream is a third group kind: room batches, joined single room messages and
    user pushes reach it as the same frames as TCP, each write one chunk."""
    monkeypatch.setattr(delivery_module, "SLICE", 64)
    streams = [connect(gateway, ["r"], stream=True, codec=i % 3) for i in range(100)]
    tcp = [connect(gateway, ["r"]) for _ in range(10)]
    gateway.commands.deliver([batch(100, 5)])
    await idle(gateway)
    first, *rest = messages(1, 4)
    gateway.commands.deliver([first])
    await asyncio.sleep(0)
    gateway.commands.deliver(rest)
    user = Message(msg_id=50, target=Target(users=[streams[0].user]), payload=b"u")
    gateway.commands.deliver([user])
    await idle(gateway)
    for conn in streams + tcp:
        expected = [100, 101, 102, 103, 104, 1, 2, 3, 4]
        assert received(conn) == ([*expected, 50] if conn is streams[0] else expected)
    assert writes(streams[1])[0] is writes(streams[4])[0], "one chunk per group"
    assert gateway.delivery.stats.coalesced._value.get() > 0


async def test_a_slow_client_loses_low_priority_then_is_closed(gateway: Gateway) -> None:
    slow, fine = connect(gateway, ["r"]), connect(gateway, ["r"])
    slow.transport.buffered = 100 * 1024  # type: ignore[union-attr]  # over the soft limit
    slow.pause_writing()  # what the transport does past its high-water mark
    gateway.commands.deliver([batch(1, 10)])
    assert received(slow) == [] and received(fine) == list(range(1, 11))
    assert slow.dropped == 10
    assert gateway.metrics.slow_drops.labels("low")._value.get() == 10
    high = Message(50, Target(rooms=["r"]), b"!" * 1000, priority=Priority.HIGH)
    gateway.commands.deliver([high])  # under the hard limit: still written
    assert received(slow) == [50]
    slow.transport.buffered = 256 * 1024  # type: ignore[union-attr]
    gateway.commands.deliver([Message(51, Target(rooms=["r"]), b"!", priority=Priority.HIGH)])
    assert slow.closed and slow.transport.closing  # type: ignore[union-attr]
    assert b"server_busy" in writes(slow)[-1]
    assert received(fine) == [*range(1, 11), 50, 51]
    assert gateway.metrics.slow_closes._value.get() == 1


async def test_a_client_that_catches_up_gets_low_priority_again(gateway: Gateway) -> None:
    conn = connect(gateway, ["r"])
    conn.pause_writing()
    gateway.commands.deliver([batch(1, 2)])
    conn.resume_writing()
    gateway.commands.deliver([batch(3, 2)])
    assert received(conn) == [3, 4] and conn.dropped == 2
    conn.pause_writing()
    conn.connection_lost(None)  # a closed connection is forgotten
    assert not gateway.outbox.behind


async def test_members_get_exactly_the_messages_accepted_while_they_were_in(
    gateway: Gateway,
) -> None:
    stayer = connect(gateway, ["r"])
    leaver = connect(gateway, ["r"])
    joiner = connect(gateway, [])
    now = time.time_ns() // 1000
    early = messages(1, 3)  # accepted before the leave and the join
    early = [
        Message(m.msg_id, m.target, m.payload, accepted_us=now + i) for i, m in enumerate(early)
    ]
    gateway.hub.leave(leaver, "r", at_us=now + 1)
    gateway.hub.join(joiner, "r", at_us=now + 2)
    late = Message(4, Target(rooms=["r"]), b"late", accepted_us=now + 10)
    room_batch = BatchEncoder().encode("r", [*early, late])[0]
    gateway.commands.deliver([room_batch])
    assert received(stayer) == [1, 2, 3, 4]
    assert received(leaver) == [1, 2]  # a tie (now + 1) counts as still in
    assert received(joiner) == [3, 4]
    # Settled: the next batch is for the members as they are.
    gateway.commands.deliver([BatchEncoder().encode("r", messages(20, 2))[0]])
    assert received(joiner)[-2:] == [20, 21] and received(leaver) == [1, 2]
    assert "r" not in gateway.hub.changes


async def test_guaranteed_messages_keep_their_place(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_module, "SLICE", 8)
    order: list[str] = []
    conns = [connect(gateway, ["r"]) for _ in range(20)]
    monkeypatch.setattr(gateway.guarantee, "deliver", lambda m: order.append(f"g{m.msg_id}"))
    gateway.commands.deliver([batch(1, 3)])
    gateway.commands.deliver([Message(9, Target(users=[conns[0].user]), b"g", guaranteed=True)])
    assert order == []  # behind the batch still being written
    await idle(gateway)
    assert order == ["g9"] and received(conns[-1]) == [1, 2, 3]


async def test_past_the_backlog_cap_low_priority_is_dropped_but_guaranteed_is_kept(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_module, "SLICE", 8)
    monkeypatch.setattr(delivery_module, "BACKLOG_MAX", 21)
    order: list[str] = []
    conns = [connect(gateway, ["r"]) for _ in range(20)]
    monkeypatch.setattr(gateway.guarantee, "deliver", lambda m: order.append(f"g{m.msg_id}"))
    user = Target(users=[conns[0].user])
    gateway.commands.deliver([batch(1, 3)])  # 20 writes queued: the backlog is near the cap
    gateway.commands.deliver([batch(4, 3)])  # 20 more would pass it: dropped, counted
    gateway.commands.deliver([Message(9, user, b"low")])  # one more write: the cap exactly
    gateway.commands.deliver([Message(10, user, b"g", guaranteed=True)])  # the store holds it: kept
    gateway.commands.deliver([Message(11, user, b"g", guaranteed=True)])
    gateway.commands.deliver([Message(12, user, b"low")])  # over the cap: dropped
    assert gateway.delivery.stats.overload_drops._value.get() == 4
    await idle(gateway)
    assert order == ["g10", "g11"]
    assert received(conns[0]) == [1, 2, 3, 9] and received(conns[-1]) == [1, 2, 3]


async def test_wait_ready_holds_while_the_backlog_is_large(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_module, "SLICE", 16)
    monkeypatch.setattr(delivery_module, "BACKLOG_PACE", 100)
    rooms = [f"r{i}" for i in range(5)]
    for room in rooms:  # five rooms of 50: five jobs that cannot be written together
        for _ in range(50):
            connect(gateway, [room])
    for i, room in enumerate(rooms):
        gateway.commands.deliver([batch(1 + 10 * i, 2, room=room)])
    assert gateway.delivery.backlog > 100
    waiter = asyncio.create_task(gateway.delivery.wait_ready())
    await asyncio.sleep(0)
    assert not waiter.done()
    async with asyncio.timeout(WAIT):
        await waiter
    assert gateway.delivery.backlog <= 100


async def test_closed_connections_are_skipped(gateway: Gateway) -> None:
    gone, here = connect(gateway, ["r"]), connect(gateway, ["r"])
    gone.state = SessionState.CLOSED
    gateway.commands.deliver([batch(1, 2)])
    assert writes(gone) == [] and received(here) == [1, 2]


async def test_the_time_a_big_room_takes_is_reported_to_dispatch(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_module, "SLICE", 16)
    monkeypatch.setattr(delivery_module, "FANOUT_MIN_S", 0.0)
    room = [connect(gateway, ["big"]) for _ in range(100)]
    connect(gateway, ["small"])
    gateway.commands.deliver([batch(1, 3, room="big")])
    await idle(gateway)
    gateway.commands.deliver([batch(10, 3, room="small")])
    assert gateway.delivery.fanout_s("big") > 0
    assert gateway.delivery.fanout_s("small") == 0.0  # written at once, never queued
    for conn in room:
        gateway.hub.remove(conn)
    assert gateway.delivery.fanout_s("big") == 0.0  # the room is gone
