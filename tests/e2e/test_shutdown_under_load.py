"""SIGTERM while pushes are being accepted (issue 14, item 8): every 202 delivered or stored.

A client stays connected (it reconnects by itself after the drain KICK)
while pushes — plain and guaranteed, low and high priority — are accepted
as fast as the API takes them; SIGTERM lands in the middle. Every push that
got 202 must have reached the client before the process exited, or, for a
guaranteed one, reach it from the offline store once the server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import httpx

from longlink.client import Client
from tests.conftest import API_KEY, WAIT
from tests.e2e.test_cli import start_server

TOKEN_SECRET = "token-secret-for-the-shutdown-test-0123456789"


async def test_sigterm_under_load_loses_no_accepted_push(tmp_path: Path) -> None:
    env = {"LONGLINK_TOKEN_SECRET": TOKEN_SECRET, "LONGLINK_DRAIN_TIMEOUT_S": "3"}
    proc, ports = await start_server(tmp_path, **env)
    url = f"http://127.0.0.1:{ports['http']}"
    accepted: dict[int, bool] = {}  # msg id -> guaranteed
    got: set[int] = set()
    client = Client(url, user="carol", device="phone", transport="tcp", reconnect=False)
    await client.connect()

    async def receive() -> None:
        with contextlib.suppress(Exception):
            while True:
                got.add((await client.next_message(timeout=WAIT * 2)).msg_id)

    async def push_until_refused() -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=WAIT) as http:
            for n in range(100_000):
                guaranteed = n % 3 == 0
                body = {
                    "to": {"users": ["carol"]},
                    "data": n,
                    "guaranteed": guaranteed,
                    "priority": "high" if n % 2 else "low",
                }
                try:
                    answer = await http.post("/v1/push", json=body)
                except httpx.HTTPError:
                    return  # the listener is gone
                if answer.status_code != 202:
                    return
                accepted[int(answer.json()["msg_id"])] = guaranteed
                if n == 200:
                    proc.send_signal(signal.SIGTERM)

    receiver = asyncio.ensure_future(receive())
    await push_until_refused()
    assert await asyncio.wait_for(proc.wait(), WAIT * 3) == 0
    await asyncio.wait_for(receiver, WAIT * 3)
    await client.close()
    plain_lost = [m for m, g in accepted.items() if not g and m not in got]
    assert len(accepted) > 200
    assert not plain_lost, f"{len(plain_lost)} plain pushes of {len(accepted)} lost"

    missing = {m for m, g in accepted.items() if g and m not in got}
    proc, ports = await start_server(tmp_path, **env)
    try:
        url = f"http://127.0.0.1:{ports['http']}"
        async with Client(url, user="carol", device="phone", transport="tcp") as again:
            while missing:
                missing.discard((await again.next_message(timeout=WAIT)).msg_id)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), WAIT * 2) == 0
