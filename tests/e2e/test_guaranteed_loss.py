"""Loss injection: measured reach against 1 − r^(n+1), then 100% after reconnects.

A client wrapper drops each incoming guaranteed PUSH frame with probability
``loss`` (a seeded RNG): the first copy and every retry alike, independently.
Bilibili's figure for single-shot reach ``s = 1 − loss`` and ``n`` retries is a
final reach of ``1 − (1 − s)^(n+1)``. Over ``N`` messages the number that
never got through on the live connection is binomial; the test checks it
within 4 standard deviations (+1 for the discreteness), and first-try reach
likewise. Then the connection is cut again and again (KICK ``drain``: the SDK
reconnects) until the offline store has redelivered everything: the app must
end up with every message exactly once.

Runs on both backends (the offline store in SQLite, or in Redis). Run with
``-s`` to see the table docs/guaranteed-delivery.md quotes.
"""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from longlink.client import Client, Reconnected
from longlink.client.connection import _Link
from longlink.client.transport import Transport
from longlink.gateway.connection import Connection
from longlink.node import Node
from longlink.protocol import Flag, Frame, Op
from longlink.protocol.client import Output
from tests.conftest import API_KEY, WAIT, eventually, fresh_bus, node_settings
from tests.e2e.test_guaranteed import store_holds

N = 2000
# Long enough that an ACK is back before the retry even on a loaded machine (a late ACK
# would count as a retry and skew first-try reach); short enough for a quick test.
RETRY = 0.5
MAX_RETRIES = 2
BATCH = 100
MAX_ROUNDS = 30


class LossyTransport:
    """An SDK transport that loses a fraction of incoming ACK_REQUIRED PUSH frames."""

    def __init__(self, inner: Transport, loss: float, rng: random.Random, tally: dict[str, int]):
        self.inner = inner
        self.loss = loss
        self.rng = rng
        self.tally = tally

    async def send(self, data: bytes) -> None:
        await self.inner.send(data)

    async def recv(self) -> Frame:
        while True:
            frame = await self.inner.recv()
            if frame.op == Op.PUSH and frame.flags & Flag.ACK_REQUIRED:
                self.tally["frames"] += 1
                if self.rng.random() < self.loss:
                    self.tally["dropped"] += 1
                    continue
            return frame

    async def close(self) -> None:
        await self.inner.close()

    def abort(self) -> None:
        self.inner.abort()


class LossyClient(Client):
    """The SDK with a lossy transport under every connection it makes.

    Overrides the SDK's private ``_establish`` (the one place a connection
    is made): good enough for a test harness, not an extension point.
    """

    def __init__(self, url: str, loss: float, seed: int, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.tally = {"frames": 0, "dropped": 0}
        self._loss = loss
        self._rng = random.Random(seed)

    async def _establish(self) -> tuple[_Link, Output]:
        link, opened = await super()._establish()
        link.transport = LossyTransport(link.transport, self._loss, self._rng, self.tally)
        return link, opened


def within(observed: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    """``observed`` successes of ``n`` trials of probability ``p``, within ``sigmas``."""
    return abs(observed - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("loss", [0.03, 0.2, 0.5])
async def test_reach_under_loss_matches_the_formula_and_the_store_completes_it(
    tmp_path: Path, loss: float, bus: str
) -> None:
    await fresh_bus(bus)
    settings = node_settings(tmp_path, bus=bus, retry_interval_s=RETRY, max_retries=MAX_RETRIES)
    async with (
        Node(settings) as node,
        httpx.AsyncClient(
            base_url=node.http_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=WAIT
        ) as api,
        LossyClient(
            node.http_url,
            loss,
            seed=int(loss * 1000),
            user="lossy",
            device="lossy-dev",
            transport="tcp",
            backoff_initial_s=0.01,
            backoff_max_s=0.05,
        ) as client,
    ):
        assert node.gateway is not None
        gateway = node.gateway
        seen: list[int] = []

        async def app() -> None:
            async for message in client:
                seen.append(message.msg_id)

        reader = asyncio.create_task(app())
        sent: list[int] = []
        for start in range(0, N, BATCH):
            batch = {
                "messages": [
                    {"to": {"users": ["lossy"]}, "data": {"n": i}, "guaranteed": True}
                    for i in range(start, start + BATCH)
                ]
            }
            response = await api.post("/v1/push/batch", json=batch)
            assert response.status_code == 202, response.text
            sent.extend(int(i) for i in response.json()["msg_ids"])

        # Live phase: every message ends on the connection, acked or given up.
        async def live_done() -> bool:
            return node.tracer.reach().deliveries >= N

        await eventually(live_done, what="an outcome for every message on the live connection")
        reach = node.tracer.reach()
        live_seen = len(set(seen))
        first, final = 1 - loss, 1 - loss ** (MAX_RETRIES + 1)
        assert reach.deliveries == N
        assert reach.acked == live_seen  # the server's count is what the app saw
        assert within(reach.acked, N, final), (reach.acked, N * final)
        assert within(reach.first_try_acked, N, first), (reach.first_try_acked, N * first)
        dropped_rate = client.tally["dropped"] / client.tally["frames"]

        # Reconnects: the offline store redelivers what the live connection missed.
        rounds = 0
        while len(set(seen)) < N:
            rounds += 1
            assert rounds <= MAX_ROUNDS, f"{N - len(set(seen))} still missing"
            conns: list[Connection] = list(gateway.hub.users.get("lossy", ()))
            for conn in conns:
                conn.apply(conn.kick("drain"))  # the SDK reconnects at once (KICK drain)
            while not isinstance(await client.next_event(timeout=WAIT), Reconnected):
                pass

            async def round_done() -> bool:
                return gateway.guarantee.idle

            await eventually(round_done, what="the redelivery round to end")
        await store_holds(node, 0)
        assert len(seen) == N and sorted(seen) == sorted(sent)  # each once, none lost
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)

    def band(p: float) -> str:
        spread = (4 * math.sqrt(N * p * (1 - p)) + 1) / N
        return f"{max(0.0, p - spread):.4f}–{min(1.0, p + spread):.4f}"

    # The row of the table in docs/guaranteed-delivery.md (run with -s to see it).
    print(
        f"\n| {loss:.2f} | {N} | {dropped_rate:.3f} "
        f"| {reach.first_try_acked / N:.4f} | {first:.4f} ({band(first)}) "
        f"| {reach.acked / N:.4f} | {final:.6f} ({band(final)}) "
        f"| {reach.mean_retries:.3f} | {rounds} | {len(set(seen)) / N:.0%} "
        f"| {len(seen) - len(set(seen))} |"
    )
