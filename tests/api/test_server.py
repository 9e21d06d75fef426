"""HttpServer: a real uvicorn listener on a free port, on the test's event loop."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from longlink.api.server import HttpServer

from .conftest import Harness, bearer


async def test_serves_the_app_on_a_free_port(h: Harness) -> None:
    async with HttpServer(h.app, "127.0.0.1", 0) as server:
        assert server.port > 0
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            response = await client.post(
                "/v1/push", json={"to": {"users": ["u1"]}, "data": 1}, headers=bearer()
            )
            assert response.status_code == 202
            response = await client.get("/nope")
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"
            assert "server" not in response.headers
    # Closed: the port no longer accepts.
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)


async def test_close_is_idempotent_and_waits_for_keep_alive_clients(h: Harness) -> None:
    server = HttpServer(h.app, port=0)
    with pytest.raises(RuntimeError):
        _ = server.port
    await server.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        assert (await client.get("/healthz")).status_code == 200  # connection kept alive
        await asyncio.wait_for(asyncio.gather(server.close(), server.close()), 5)
        await server.close()
    with pytest.raises(RuntimeError):
        await server.start()


async def test_port_in_use_fails_to_start(h: Harness) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        server = HttpServer(h.app, "127.0.0.1", taken.getsockname()[1])
        with pytest.raises(OSError):
            await server.start()
        await server.close()
    finally:
        taken.close()


async def test_installs_no_signal_handlers(h: Harness) -> None:
    import signal

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    async with HttpServer(h.app, port=0):
        during = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert during == before
