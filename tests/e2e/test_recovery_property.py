"""Property: whatever the interleaving of pushes, drops and reconnects, a room whose
recovery never said ``false`` reaches the application as the pushed sequence (PROTOCOL.md §1.4).

Driven end to end, at full fidelity: a real node in process (embedded
backends, the real gateway on free ports) and the Python SDK, which
reconnects by itself with ``since``. Hypothesis picks the scenario: pushes
to two rooms (awaited one by one, or a burst running on while what follows
happens), connections dropped by the server (the transport aborted, as a
network loss looks), and waits for the client to be back. Then a marker is
pushed to each room and the application's messages are checked per room:

* never a duplicate, never out of order (a subsequence of what was pushed);
* exactly what was pushed (no gap) when every ``Recovery`` of that room
  said ``true``.

On the embedded bus a room's order is the order of msg ids (one API
process mints them as it queues). Each example runs its own node; the test
is bounded by ``LONGLINK_PROPERTY_EXAMPLES`` examples (default 20) of at
most 10 steps, each example within ``WAIT * 6`` seconds.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from longlink.client import Client, Message, Recovery
from longlink.node import Node
from tests.conftest import API_KEY, WAIT, eventually, node_settings

ROOMS = ("a", "b")
EXAMPLES = int(os.environ.get("LONGLINK_PROPERTY_EXAMPLES", "20"))
MARKER = "marker"

#: One step: (kind, room, count).
Step = tuple[str, str, int]
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.sampled_from(ROOMS), st.integers(1, 3)),
        st.tuples(st.just("burst"), st.sampled_from(ROOMS), st.integers(2, 8)),
        st.tuples(st.just("drop"), st.just(""), st.just(0)),
        st.tuples(st.just("back"), st.just(""), st.just(0)),
    ),
    min_size=1,
    max_size=10,
)


class Scenario:
    """One node, one SDK client in both rooms, an HTTP client for pushes."""

    def __init__(self, node: Node, client: Client, http: httpx.AsyncClient) -> None:
        self.node = node
        self.client = client
        self.http = http
        self.pushed: dict[str, list[int]] = {room: [] for room in ROOMS}
        self.bursts: list[asyncio.Task[None]] = []

    async def push(self, room: str, data: Any) -> int:
        body = {"to": {"rooms": [room]}, "data": data}
        response = await self.http.post("/v1/push", json=body)
        assert response.status_code == 202, response.text
        return int(response.json()["msg_id"])

    async def push_some(self, room: str, count: int) -> None:
        for i in range(count):
            self.pushed[room].append(await self.push(room, i))

    def back(self) -> bool:
        """Whether the gateway holds an open connection of the client (seen from the server:
        the SDK notices a loss a moment after the server does)."""
        assert self.node.gateway is not None
        return any(
            conn.transport is not None and not conn.transport.is_closing() and not conn.closed
            for conn in self.node.gateway.hub.users.get("prop", ())
        )

    def drop(self) -> None:
        """The server loses the client's connection (if it has one right now)."""
        assert self.node.gateway is not None
        for conn in list(self.node.gateway.hub.users.get("prop", ())):
            if conn.transport is not None:
                conn.transport.abort()

    async def run(self, steps: list[Step]) -> None:
        for kind, room, count in steps:
            if kind == "push":
                await self.push_some(room, count)
            elif kind == "burst":
                self.bursts.append(asyncio.create_task(self.push_some(room, count)))
                await asyncio.sleep(0)  # under way before the next step
            elif kind == "drop":
                self.drop()
            else:
                await eventually(self.back, what="the client back")
        await asyncio.gather(*self.bursts)

    async def received(self) -> tuple[dict[str, list[int]], list[Recovery]]:
        """Markers pushed to each room; every message up to them, and the recoveries.

        The markers go once the client is connected: pushed while it is away,
        with nothing received from the room yet, they could not be recovered.
        """
        await eventually(self.back, what="the client back")
        for room in ROOMS:
            await self.push(room, MARKER)
        got: dict[str, list[int]] = {room: [] for room in ROOMS}
        waiting = set(ROOMS)
        while waiting:
            message: Message = await self.client.next_message(timeout=WAIT * 2)
            assert message.room in ROOMS, message
            if message.json() == MARKER:
                waiting.discard(message.room)
            elif message.room in waiting:
                got[message.room].append(message.msg_id)
        recoveries: list[Recovery] = []
        while True:
            try:
                item = await self.client.next_event(timeout=0)
            except TimeoutError:
                break
            if isinstance(item, Recovery):
                recoveries.append(item)
        return got, recoveries


async def scenario(directory: Path, steps: list[Step]) -> None:
    settings_ = node_settings(directory, drain_timeout_s=0.5, aggregate_ms=5)
    async with Node(settings_) as node:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with (
            httpx.AsyncClient(base_url=node.http_url, headers=headers, timeout=WAIT) as http,
            Client(
                node.http_url,
                user="prop",
                rooms=ROOMS,
                backoff_initial_s=0.01,
                backoff_max_s=0.05,
            ) as client,
        ):
            run = Scenario(node, client, http)
            await run.run(steps)
            got, recoveries = await run.received()
    for room in ROOMS:
        pushed = sorted(run.pushed[room])  # one API process: queue order is id order
        seen = got[room]
        assert len(set(seen)) == len(seen), f"{room}: a message twice"
        assert _subsequence(seen, pushed), f"{room}: out of order or unknown"
        refused = [r for r in recoveries if r.room == room and not r.recovered]
        event(f"recoveries true: {sum(r.recovered for r in recoveries if r.room == room) > 0}")
        event(f"a recovery false: {bool(refused)}")
        if not refused:
            assert seen == pushed, f"{room}: a gap though every recovery said true"


def _subsequence(items: list[int], of: list[int]) -> bool:
    it = iter(of)
    return all(any(x == y for y in it) for x in items)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recovery-property")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(steps=STEPS)
def test_a_room_never_recovered_false_is_the_pushed_sequence(
    workdir: Path, steps: list[Step]
) -> None:
    directory = workdir / f"n{len(list(workdir.iterdir()))}"
    directory.mkdir()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(scenario(directory, steps), WAIT * 6))
