"""Two gateways on one pair of ports (``reuse_port``): the kernel spreads, pushes still find.

Both nodes share one set of backends (memory, or one Redis). Clients connect
straight to the shared port, not through control: the kernel picks the
process, and each gateway registers the sessions it actually holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from longlink.client import Client
from longlink.node import Backends, Node
from tests.conftest import API_KEY, WAIT, fresh_bus, node_settings

USERS = 24  # all on one process by chance: 2 in 2**24


@pytest.fixture
async def shared(tmp_path: Any, bus: str) -> AsyncIterator[tuple[Node, Node]]:
    await fresh_bus(bus)
    base = node_settings(
        tmp_path, bus=bus, reuse_port=True, stream_relay_dir=str(tmp_path / "relay")
    )
    backends = Backends.from_settings(base)
    try:
        async with Node(base.replace(node_id="pa"), backends) as a:
            gateway = a.gateway
            assert gateway is not None
            ports = {"ws_port": gateway.ws_port, "tcp_port": gateway.tcp_port}
            second = base.replace(node_id="pb", roles=("gateway",), **ports)
            async with Node(second, backends) as b:
                yield a, b
    finally:
        await backends.close()


@pytest.mark.parametrize("transport", ["tcp", "ws", "stream"])
async def test_gateways_on_one_port_share_the_clients_and_get_their_pushes(
    shared: tuple[Node, Node], transport: str
) -> None:
    a, b = shared
    assert a.gateway is not None and b.gateway is not None
    assert (a.gateway.ws_port, a.gateway.tcp_port) == (b.gateway.ws_port, b.gateway.tcp_port)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with (
        AsyncExitStack() as stack,
        httpx.AsyncClient(base_url=a.http_url, headers=headers, timeout=WAIT) as api,
    ):
        answer = await api.post("/v1/connect", json={"user": "u0"})
        assert len(answer.json()["endpoints"]) == 1, "one port: one endpoint"
        clients = [
            await stack.enter_async_context(
                Client(a.http_url, user=f"u{i}", rooms=["r"], transport=transport)
            )
            for i in range(USERS)
        ]
        held = (len(a.gateway.hub.conns), len(b.gateway.hub.conns))
        assert sum(held) == USERS and min(held) > 0, held
        for i in range(USERS):
            response = await api.post("/v1/push", json={"to": {"users": [f"u{i}"]}, "data": i})
            assert response.status_code == 202, response.text
        await api.post("/v1/push", json={"to": {"rooms": ["r"]}, "data": "room"})
        for i, client in enumerate(clients):
            assert (await client.next_message(timeout=WAIT)).json() == i
            assert (await client.next_message(timeout=WAIT)).json() == "room"
