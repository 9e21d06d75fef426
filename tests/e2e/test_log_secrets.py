"""No secret, ticket or token in any log line of a server logging at debug.

A real ``longlink serve`` (JSON logs at debug) goes through connect with a
ticket, AUTH, push, a guaranteed message and its ACK, JOIN and UPSTREAM (to a
signed webhook), a kick, the usual refusals (wrong key, bad ticket, bad
token) and a SIGTERM. Then every line it wrote is searched for the API key,
the ticket, token and webhook secrets, and every ticket and token seen.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import httpx

from longlink.backend import LonglinkBackend, sign_ticket
from longlink.client import Client, Kicked
from longlink.client.raw import RawConnection
from longlink.protocol import Op
from longlink.protocol.messages import Auth, encode_body
from tests.conftest import WAIT
from tests.e2e.test_cli import READY
from tests.e2e.webhook_receiver import WebhookReceiver

API_KEY = "api-key-that-must-never-be-logged-0123"
TICKET_SECRET = "ticket-secret-that-must-never-be-logged-0123"
TOKEN_SECRET = "token-secret-that-must-never-be-logged-0123"
WEBHOOK_SECRET = "webhook-secret-that-must-never-be-logged"


async def test_no_secret_or_token_in_any_log_line(tmp_path: Path) -> None:
    seen: list[str] = [API_KEY, TICKET_SECRET, TOKEN_SECRET, WEBHOOK_SECRET]
    log_path = tmp_path / "server.log"
    async with WebhookReceiver(WEBHOOK_SECRET) as hook:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LONGLINK_")},
            "LONGLINK_HTTP_PORT": "0",
            "LONGLINK_WS_PORT": "0",
            "LONGLINK_TCP_PORT": "0",
            "LONGLINK_API_KEY": API_KEY,
            "LONGLINK_TICKET_SECRET": TICKET_SECRET,
            "LONGLINK_TOKEN_SECRET": TOKEN_SECRET,
            "LONGLINK_WEBHOOK_URL": hook.url,
            "LONGLINK_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "LONGLINK_DATA_DIR": str(tmp_path),
            "LONGLINK_DRAIN_TIMEOUT_S": "1",
            "LONGLINK_LOG_LEVEL": "debug",
            "LONGLINK_LOG_FORMAT": "json",
        }
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "longlink", "serve",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=log,
            )  # fmt: skip
        try:
            assert proc.stdout is not None
            ready = (await asyncio.wait_for(proc.stdout.readline(), WAIT * 2)).decode()
            match = READY.match(ready.strip())
            assert match, ready
            url = f"http://127.0.0.1:{match.group(1)}"
            await _exercise(url, hook, seen)
            proc.send_signal(signal.SIGTERM)
            rest, _ = await asyncio.wait_for(proc.communicate(), WAIT * 2)
            assert proc.returncode == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    output = ready + rest.decode() + log_path.read_text()
    for secret in seen:
        assert secret not in output, f"{secret[:12]}… is in the log"
    assert "eyJ" not in output  # nothing shaped like a JWT (tickets and tokens are JWTs)
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line[:1] == "{"]
    events = {record.get("event") for record in records}
    assert {"conn_open", "conn_close", "push"} <= events, events  # logged, at debug
    assert {record["level"] for record in records if record.get("event")} == {"debug"}


async def _exercise(url: str, hook: WebhookReceiver, seen: list[str]) -> None:
    ticket = sign_ticket(TICKET_SECRET, "alice", "alice-phone")
    seen.append(ticket)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as http:
        # Connect with a ticket; AUTH with the token on a raw connection.
        grant = (await http.post("/v1/connect", json={"ticket": ticket})).json()
        seen.append(grant["token"])
        endpoint = grant["endpoints"][0]
        async with await RawConnection.open("tcp", endpoint["tcp"]) as raw:
            await raw.send_frame(Op.AUTH, encode_body(Auth(grant["token"], ["lobby"])))
            assert (await raw.recv_frame(timeout=WAIT)).op == Op.AUTH_OK
        # The refusals: a wrong key, a ticket signed with another secret, a forged token.
        wrong = await http.post("/v1/push", json={"to": {"all": True}, "data": 1})
        assert wrong.status_code == 401
        forged = sign_ticket("another-secret-of-more-than-32-bytes-0123", "mallory")
        seen.append(forged)
        assert (await http.post("/v1/connect", json={"ticket": forged})).status_code == 401
        async with await RawConnection.open("tcp", endpoint["tcp"]) as bad:
            await bad.send_frame(Op.AUTH, encode_body(Auth(forged, [])))
            assert (await bad.recv_frame(timeout=WAIT)).op == Op.ERROR

    second = sign_ticket(TICKET_SECRET, "alice", "alice-laptop")
    seen.append(second)
    async with (
        LonglinkBackend(url, API_KEY) as backend,
        Client(url, ticket=second, rooms=["lobby"]) as alice,
    ):
        msg_id = await backend.push({"users": ["alice"]}, {"n": 1}, guaranteed=True)
        assert (await alice.next_message(timeout=WAIT)).msg_id == msg_id  # acked when taken
        await alice.join("news")
        await alice.upstream(b"hello backend")
        await hook.wait_events(1, type="upstream")
        await hook.wait_events(1, type="enter", room="news")
        assert await backend.kick("alice", "bye") >= 1
        while not isinstance(await alice.next_event(timeout=WAIT), Kicked):
            pass
