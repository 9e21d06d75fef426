"""A kick revokes the user's tokens (issue 14, failure 7), on both registry backends."""

from __future__ import annotations

import json

import httpx
import pytest

from longlink.client.raw import RawConnection
from longlink.node import Node
from longlink.protocol import Op
from longlink.protocol.messages import Auth, encode_body
from tests.conftest import WAIT
from tests.e2e.raw_sessions import address, open_session, token_for


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_a_token_stops_working_after_a_kick(
    node: Node, api: httpx.AsyncClient, transport: str
) -> None:
    token = await token_for(node, "mallory")
    raw, _ = await open_session(node, "mallory", transport=transport)
    kicked = await api.post("/v1/users/mallory/kick", json={"reason": "abuse"})
    assert kicked.status_code == 200 and kicked.json()["kicked"] == 1
    assert (await raw.recv_frame(timeout=WAIT)).op == Op.KICK
    await raw.close()
    # The token issued before the kick is refused from now on ...
    async with await RawConnection.open(transport, address(node, transport)) as again:
        await again.send_frame(Op.AUTH, encode_body(Auth(token=token)))
        frame = await again.recv_frame(timeout=WAIT)
        assert frame.op == Op.ERROR and json.loads(frame.body)["code"] == "auth_failed"
        assert "revoked" in json.loads(frame.body)["message"]
        assert await again.wait_closed(timeout=WAIT)
    # ... while a token issued afterwards works, and other users are untouched.
    fresh, _ = await open_session(node, "mallory", transport=transport)
    await fresh.close()
    other, _ = await open_session(node, "alice", transport=transport)
    await other.close()
