"""Secrets rotate on SIGHUP without dropping clients; a bad list is refused loudly (issue 14, 7)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import jwt

from longlink.client import Client
from longlink.client.raw import RawConnection
from longlink.protocol import Op
from longlink.protocol.messages import Auth, encode_body
from tests.conftest import API_KEY, WAIT
from tests.e2e.test_cli import READY
from tests.e2e.test_tls import stderr_line

OLD = "old-token-secret-" + "o" * 32
NEW = "new-token-secret-" + "n" * 32
TICKET_OLD = "old-ticket-secret-" + "o" * 32
TICKET_NEW = "new-ticket-secret-" + "n" * 32


async def test_sighup_rotates_token_and_ticket_secrets(tmp_path: Path) -> None:
    config = tmp_path / "longlink.toml"
    config.write_text(f'token_secrets = "k1:{OLD}"\nticket_secrets = "t1:{TICKET_OLD}"\n')
    env = {
        **os.environ,
        "LONGLINK_HTTP_PORT": "0", "LONGLINK_WS_PORT": "0", "LONGLINK_TCP_PORT": "0",
        "LONGLINK_API_KEY": API_KEY, "LONGLINK_DATA_DIR": str(tmp_path),
        "LONGLINK_LOG_LEVEL": "warning",
    }  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longlink", "serve", "--config", str(config),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        match = READY.match((await asyncio.wait_for(proc.stdout.readline(), WAIT * 2)).decode())
        assert match
        http, _, tcp = (int(p) for p in match.groups())
        url = f"http://127.0.0.1:{http}"

        def ticket(kid: str, secret: str, user: str) -> str:
            claims = {"sub": user, "exp": int(__import__("time").time()) + 60}
            return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})

        async with httpx.AsyncClient(base_url=url, timeout=WAIT) as api:
            grant = await api.post("/v1/connect", json={"ticket": ticket("t1", TICKET_OLD, "a")})
            assert grant.status_code == 200, grant.text
            old_token = grant.json()["token"]
            async with Client(url, ticket=ticket("t1", TICKET_OLD, "b"), transport="tcp") as b:
                # Rotate: the new secrets sign, the old ones still verify.
                config.write_text(
                    f'token_secrets = "k2:{NEW},k1:{OLD}"\n'
                    f'ticket_secrets = "t2:{TICKET_NEW},t1:{TICKET_OLD}"\n'
                )
                proc.send_signal(signal.SIGHUP)
                assert b"reloaded" in await stderr_line(proc, b"reload")
                grant = await api.post(
                    "/v1/connect", json={"ticket": ticket("t2", TICKET_NEW, "c")}
                )
                assert grant.status_code == 200, grant.text
                assert jwt.get_unverified_header(grant.json()["token"])["kid"] == "k2"
                async with await RawConnection.open("tcp", f"127.0.0.1:{tcp}") as raw:
                    await raw.send_frame(Op.AUTH, encode_body(Auth(token=old_token)), seq=1)
                    assert (await raw.recv_frame(timeout=WAIT)).op == Op.AUTH_OK
                # A malformed list is refused loudly; the running secrets stay.
                config.write_text('token_secrets = "k3"\n')
                proc.send_signal(signal.SIGHUP)
                assert b"reload failed" in await stderr_line(proc, b"reload")
                grant = await api.post(
                    "/v1/connect", json={"ticket": ticket("t2", TICKET_NEW, "d")}
                )
                assert grant.status_code == 200
                # The client connected before all this was never dropped.
                headers = {"Authorization": f"Bearer {API_KEY}"}
                push = {"to": {"users": ["b"]}, "data": "still here"}
                assert (await api.post("/v1/push", json=push, headers=headers)).status_code == 202
                assert (await b.next_message(timeout=WAIT)).json() == "still here"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
