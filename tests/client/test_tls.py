"""The SDK shares its TLS contexts: one per CA file in the process, not one per client."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from longlink.client import dialer as dialer_module
from longlink.client.connection import Client
from longlink.client.errors import ClientError
from longlink.client.tls import tls_context


def test_one_context_per_ca_file() -> None:
    assert tls_context() is tls_context()
    assert tls_context(None) is not None


async def test_clients_share_the_platform_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each client's HTTP client gets the shared context (``verify=True`` would load the CA
    store again: ~840 KiB a client)."""
    seen: list[Any] = []

    class Recording(httpx.AsyncClient):
        def __init__(self, **kwargs: Any) -> None:
            seen.append(kwargs.get("verify"))
            super().__init__(**kwargs)

    monkeypatch.setattr(dialer_module.httpx, "AsyncClient", Recording)
    clients = [Client("http://127.0.0.1:9", user=f"u{i}", reconnect=False) for i in range(3)]
    for client in clients:
        with pytest.raises(ClientError):  # nothing listens there
            await client.connect()
        await client.close()
    assert len(seen) == 3
    assert all(verify is tls_context() for verify in seen)
