"""A 202 for a guaranteed push survives ``kill -9``: the real ``longlink serve``, restarted.

On both backends: the SQLite store in the data dir, or Redis (which lives on:
the restarted process finds the messages there).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx

from longlink.client import Client
from tests.conftest import API_KEY, WAIT, fresh_bus
from tests.e2e.test_cli import start_server

# Fixed, so a token issued before the kill would still verify after the restart.
TOKEN_SECRET = "token-secret-for-the-restart-test-0123456789"


async def test_sigkill_right_after_the_202_loses_nothing(tmp_path: Path, bus: str) -> None:
    await fresh_bus(bus)
    env = {"LONGLINK_TOKEN_SECRET": TOKEN_SECRET, "LONGLINK_BUS": bus}
    proc, ports = await start_server(tmp_path, **env)
    try:
        url = f"http://127.0.0.1:{ports['http']}"
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=WAIT) as api:
            single = await api.post(
                "/v1/push",
                json={"to": {"users": ["ivy"]}, "data": {"pay": 1}, "guaranteed": True},
            )
            batch: dict[str, Any] = {
                "messages": [
                    {"to": {"users": ["ivy"]}, "data": {"n": n}, "guaranteed": True}
                    for n in range(100)
                ]
            }
            many = await api.post("/v1/push/batch", json=batch)
            # Nothing in between: the process dies the moment the last 202 is read.
            proc.send_signal(signal.SIGKILL)
        assert single.status_code == 202 and many.status_code == 202
        expected = [int(single.json()["msg_id"])] + [int(i) for i in many.json()["msg_ids"]]
        assert await asyncio.wait_for(proc.wait(), WAIT) == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    proc, ports = await start_server(tmp_path, **env)
    try:
        url = f"http://127.0.0.1:{ports['http']}"
        async with Client(url, user="ivy") as client:
            got = [await client.next_message(timeout=WAIT) for _ in expected]
        assert [m.msg_id for m in got] == expected  # oldest first
        assert got[0].json() == {"pay": 1}
        assert [m.json()["n"] for m in got[1:]] == list(range(100))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), WAIT * 2) == 0
