"""Recovery end to end on one node (PROTOCOL.md §1.4 rules 1-3), frame by frame.

A raw connection sees exactly what the gateway writes: AUTH_OK (or JOIN_OK)
with ``recovered`` first, then the missed messages as room batches, then the
live ones; nothing missing, nothing twice. Both buses, both transports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from longlink.client.raw import RawConnection
from longlink.history.base import HistoryEntry, Kept, RoomHistory
from longlink.node import Backends, Node
from longlink.protocol import Flag, Frame, Op
from longlink.protocol.client import unpack_pushes
from longlink.protocol.messages import Auth, AuthOk, JoinBody, JoinOk, decode_body, encode_body
from tests.conftest import API_KEY, WAIT, eventually, fresh_bus, node_settings
from tests.e2e.raw_sessions import address, request, token_for

TRANSPORTS = ["ws", "tcp"]


@pytest.fixture
async def small_node(tmp_path: Any, bus: str) -> AsyncIterator[Node]:
    """A node that keeps 5 messages per room."""
    await fresh_bus(bus)
    async with Node(node_settings(tmp_path, bus=bus, history_size=5)) as running:
        yield running


@pytest.fixture
async def api(small_node: Node) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=small_node.http_url, headers=headers) as client:
        yield client


async def push(api: httpx.AsyncClient, room: str, data: Any, **extra: Any) -> int:
    response = await api.post("/v1/push", json={"to": {"rooms": [room]}, "data": data, **extra})
    assert response.status_code == 202, response.text
    return int(response.json()["msg_id"])


async def kept(api: httpx.AsyncClient, room: str, last: int) -> list[int]:
    """Wait until the room's history holds message ``last``; the ids it holds then."""
    ids: list[int] = []

    async def holds() -> bool:
        response = await api.get(f"/v1/rooms/{room}/history")
        ids[:] = [int(m["msg_id"]) for m in response.json()["messages"]]
        return last in ids

    await eventually(holds, what=f"message {last} kept in {room}")
    return ids


async def auth(
    node: Node, transport: str, rooms: list[str], since: dict[str, int] | None = None
) -> tuple[RawConnection, AuthOk]:
    token = await token_for(node, "alice")
    raw = await RawConnection.open(transport, address(node, transport))
    body = Auth(
        token=token,
        rooms=rooms,
        since={room: str(i) for room, i in (since or {}).items()},
    )
    reply = await request(raw, Op.AUTH, encode_body(body))
    assert reply.op == Op.AUTH_OK, reply
    return raw, decode_body(reply.body, AuthOk)


async def messages(
    raw: RawConnection, count: int, *, exact: bool = True
) -> list[tuple[str | None, int]]:
    """The next ``count`` pushed messages as (room, msg id), or more when ``exact`` is false
    and the last frame held more; every room message is room-tagged."""
    got: list[tuple[str | None, int]] = []
    while len(got) < count:
        frame: Frame = await raw.recv_frame(timeout=WAIT)
        if frame.op != Op.PUSH:
            continue
        assert frame.flags & Flag.BATCH  # PROTOCOL §1.4 rule 1: rooms travel in batches
        got.extend((m.room, m.msg_id) for m in unpack_pushes(frame))
    assert len(got) == count or not exact, got
    return got


async def nothing_more(raw: RawConnection, api: httpx.AsyncClient, room: str) -> None:
    """The next message is a fresh marker: nothing else was sent (pushes keep their order)."""
    marker = await push(api, room, "marker")
    assert await messages(raw, 1) == [(room, marker)]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_dropped_connection_gets_exactly_what_it_missed_then_live(
    small_node: Node, api: httpx.AsyncClient, transport: str
) -> None:
    raw, ok = await auth(small_node, transport, ["r"])
    assert ok.recovered is None  # no since, nothing to answer
    first = [await push(api, "r", i) for i in range(2)]
    assert await messages(raw, 2) == [("r", i) for i in first]
    raw.abort()
    missed = [await push(api, "r", i) for i in range(2, 5)]
    await kept(api, "r", missed[-1])
    raw2, ok2 = await auth(small_node, transport, ["r"], since={"r": first[-1]})
    assert ok2.recovered == {"r": True}
    assert await messages(raw2, 3) == [("r", i) for i in missed]
    await nothing_more(raw2, api, "r")
    await raw2.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_since_older_than_the_history_gives_false_and_what_is_kept(
    small_node: Node, api: httpx.AsyncClient, transport: str
) -> None:
    ids = [await push(api, "r", i) for i in range(8)]
    assert await kept(api, "r", ids[-1]) == ids[3:]
    raw, ok = await auth(small_node, transport, ["r", "other"], since={"r": ids[0], "other": 7})
    assert ok.recovered == {"r": False, "other": False}
    assert await messages(raw, 5) == [("r", i) for i in ids[3:]]
    await nothing_more(raw, api, "r")
    await raw.close()


async def test_join_with_since(small_node: Node, api: httpx.AsyncClient) -> None:
    ids = [await push(api, "r", i) for i in range(4)]
    await kept(api, "r", ids[-1])
    raw, _ = await auth(small_node, "tcp", [])
    reply = await request(raw, Op.JOIN, encode_body(JoinBody("r", str(ids[1]))))
    assert reply.op == Op.JOIN_OK
    assert decode_body(reply.body, JoinOk).recovered is True
    assert await messages(raw, 2) == [("r", i) for i in ids[2:]]
    # Joined again: it missed nothing, nothing is replayed.
    reply = await request(raw, Op.JOIN, encode_body(JoinBody("r", str(ids[0]))))
    assert decode_body(reply.body, JoinOk).recovered is True
    await nothing_more(raw, api, "r")
    # A JOIN without since is answered without recovered.
    reply = await request(raw, Op.JOIN, encode_body(JoinBody("s")))
    assert decode_body(reply.body, JoinOk).recovered is None
    await raw.close()


async def test_what_is_not_kept_is_not_replayed(small_node: Node, api: httpx.AsyncClient) -> None:
    raw, _ = await auth(small_node, "tcp", ["r"])
    first = await push(api, "r", "kept")
    assert await messages(raw, 1) == [("r", first)]
    raw.abort()
    await push(api, "r", "not kept", history=False)
    last = await push(api, "r", "kept too")
    await kept(api, "r", last)
    raw2, ok = await auth(small_node, "tcp", ["r"], since={"r": first})
    assert ok.recovered == {"r": True}
    assert await messages(raw2, 1) == [("r", last)]
    await raw2.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_gap_and_no_duplicate_while_messages_keep_coming(
    tmp_path: Any, bus: str, transport: str
) -> None:
    """Reconnects in the middle of a steady stream: the history is read while messages
    arrive, and the seam between replay and live loses and repeats nothing."""
    await fresh_bus(bus)
    async with (
        Node(node_settings(tmp_path, bus=bus, aggregate_ms=5)) as node,
        httpx.AsyncClient(
            base_url=node.http_url, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as http,
    ):
        pushed: list[int] = []
        seen: list[int] = []
        done = asyncio.Event()
        progress = asyncio.Event()  # the reader took more

        async def pusher() -> None:
            for i in range(150):
                # At most 30 ahead of the reader: the stream goes on through every reconnect
                # (a pusher that finished early would leave a round waiting for nothing).
                while len(pushed) - len(seen) >= 30:
                    progress.clear()
                    await asyncio.wait_for(progress.wait(), WAIT)
                pushed.append(await push(http, "stream", i))
            done.set()

        raw, _ = await auth(node, transport, ["stream"])
        task = asyncio.create_task(pusher())
        try:
            for _ in range(6):
                seen += [i for _, i in await messages(raw, 10, exact=False)]
                progress.set()
                raw.abort()
                raw, ok = await auth(node, transport, ["stream"], since={"stream": seen[-1]})
                assert ok.recovered == {"stream": True}
            while not (done.is_set() and len(seen) >= len(pushed)):
                seen += [i for _, i in await messages(raw, 1, exact=False)]
                progress.set()
            assert seen == pushed
            await nothing_more(raw, http, "stream")
        finally:
            task.cancel()
            await raw.close()


# ------------------------------------------------------------------ races made deterministic


class GatedHistory:
    """The node's history, read through a gate the test opens: messages arrive meanwhile.

    ``stale``: the read is taken when asked and returned when the gate opens (what
    arrives meanwhile is missing from it); otherwise it is taken when the gate opens.
    """

    def __init__(self, inner: RoomHistory, *, stale: bool) -> None:
        self.inner = inner
        self.size = inner.size
        self.ttl_s = inner.ttl_s
        self.stale = stale
        self.gate = asyncio.Event()
        self.asked = asyncio.Event()

    async def append(self, entries: Sequence[Kept]) -> None:
        await self.inner.append(entries)

    async def read(self, rooms: Sequence[str]) -> dict[str, list[HistoryEntry]]:
        snapshot = await self.inner.read(rooms)
        self.asked.set()
        await self.gate.wait()
        return snapshot if self.stale else await self.inner.read(rooms)

    async def close(self) -> None:
        await self.inner.close()


@contextlib.asynccontextmanager
async def gated_node(tmp_path: Any, *, stale: bool, **changes: Any) -> AsyncIterator[Node]:
    settings = node_settings(tmp_path, **changes)
    backends = Backends.memory(settings)
    assert backends.history is not None
    backends.history = GatedHistory(backends.history, stale=stale)
    try:
        async with Node(settings, backends) as node:
            yield node
    finally:
        await backends.close()


@pytest.mark.parametrize("stale", [False, True], ids=["read-after", "read-before"])
async def test_messages_arriving_while_the_history_is_read(tmp_path: Any, stale: bool) -> None:
    async with (
        gated_node(tmp_path, stale=stale) as node,
        httpx.AsyncClient(
            base_url=node.http_url, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as http,
    ):
        history = node.backends.history
        assert isinstance(history, GatedHistory)
        raw, _ = await auth(node, "ws", ["r"])
        first = await push(http, "r", 0)
        assert await messages(raw, 1) == [("r", first)]
        raw.abort()
        reconnecting = asyncio.create_task(auth(node, "ws", ["r"], since={"r": first}))
        await asyncio.wait_for(history.asked.wait(), WAIT)
        during = [await push(http, "r", i) for i in (1, 2)]  # held for the connection

        async def held() -> bool:  # (the API reads through the gate too: ask the inner one)
            return during[-1] in [e.msg_id for e in (await history.inner.read(["r"]))["r"]]

        await eventually(held, what="the messages kept")
        history.gate.set()
        raw2, ok = await reconnecting
        assert ok.recovered == {"r": True}
        assert await messages(raw2, 2) == [("r", i) for i in during]  # once each, in order
        await nothing_more(raw2, http, "r")
        await raw2.close()


async def test_a_hold_past_its_bound_closes_with_server_busy(tmp_path: Any) -> None:
    limits = {"outbox_soft_kib": 1, "outbox_hard_kib": 1}  # the hold may take 1 KiB
    async with (
        gated_node(tmp_path, stale=True, **limits) as node,
        httpx.AsyncClient(
            base_url=node.http_url, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as http,
    ):
        history = node.backends.history
        assert isinstance(history, GatedHistory)
        raw, _ = await auth(node, "tcp", ["r"])
        first = await push(http, "r", 0)
        assert await messages(raw, 1) == [("r", first)]
        raw.abort()
        token = await token_for(node, "alice")
        raw2 = await RawConnection.open("tcp", address(node, "tcp"))
        body = Auth(token=token, rooms=["r"], since={"r": str(first)})
        await raw2.send_frame(Op.AUTH, encode_body(body), seq=1)
        await asyncio.wait_for(history.asked.wait(), WAIT)
        for i in range(20):
            await push(http, "r", "x" * 100 + str(i))
        error = await raw2.recv_frame(timeout=WAIT)
        assert error.op == Op.ERROR and b"server_busy" in error.body
        assert await raw2.wait_closed()
        await raw2.close()
        await raw.close()
        history.gate.set()
        metrics = node.metrics.get_sample_value("longlink_recovery_hold_overflows_total")
        assert metrics == 1
