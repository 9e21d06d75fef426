"""Hot reload of API keys and limits, called directly (the CLI calls it on SIGHUP)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from longlink.api.app import reload_app
from longlink.node import Node
from longlink.settings import ApiKeyConfig, ConfigError
from tests.conftest import API_KEY, WAIT, node_settings

from .conftest import KEY, error_of, make_settings, open_harness

BODY: dict[str, Any] = {"to": {"users": ["u1"]}, "data": 1}
OLD = ApiKeyConfig(name="old", key="old-secret")
NEW = ApiKeyConfig(name="new", key_sha256=hashlib.sha256(b"new-secret").hexdigest())


async def test_removed_key_is_refused_at_once_added_key_works_at_once() -> None:
    settings = make_settings(api_keys=(OLD,))
    async with open_harness(settings) as h:
        assert (await h.push(BODY, key="old-secret")).status_code == 202
        assert (await h.push(BODY, key="new-secret")).status_code == 401
        reload_app(h.app, settings.replace(api_keys=(NEW,)))
        response = await h.push(BODY, key="old-secret")
        assert response.status_code == 401
        assert error_of(response)["message"] == "unknown API key"
        assert (await h.push(BODY, key="new-secret")).status_code == 202
        assert (await h.push(BODY, key=KEY)).status_code == 202  # LONGLINK_API_KEY stays
        reload_app(h.app, settings.replace(api_key=None, api_keys=(NEW,)))
        assert (await h.push(BODY, key=KEY)).status_code == 401
        assert (
            await h.client.get("/v1/online", headers={"Authorization": f"Bearer {KEY}"})
        ).status_code == 401


async def test_changed_scopes_apply_at_once() -> None:
    settings = make_settings(api_keys=(OLD,))
    async with open_harness(settings) as h:
        narrowed = ApiKeyConfig(name="old", key="old-secret", targets=("rooms",))
        reload_app(h.app, settings.replace(api_keys=(narrowed,)))
        response = await h.push(BODY, key="old-secret")
        assert response.status_code == 403 and "targets" in error_of(response)["message"]


async def test_impossible_limits_keep_everything_as_it_was() -> None:
    settings = make_settings(api_keys=(OLD,))
    async with open_harness(settings) as h:
        with pytest.raises(ConfigError, match="max_targets"):
            reload_app(h.app, settings.replace(api_keys=(NEW,), max_targets=0))
        assert (await h.push(BODY, key="old-secret")).status_code == 202
        assert (await h.push(BODY, key="new-secret")).status_code == 401


async def test_limits_are_reloaded() -> None:
    settings = make_settings()
    async with open_harness(settings) as h:
        two = {"to": {"users": ["a", "b"]}, "data": 1}
        assert (await h.push(two)).status_code == 202
        reload_app(h.app, settings.replace(max_targets=1))
        assert (await h.push(two)).status_code == 400


async def test_a_kept_key_keeps_its_bucket_a_changed_rate_starts_full() -> None:
    limited = ApiKeyConfig(name="old", key="old-secret", rate=1, burst=1)
    settings = make_settings(api_keys=(limited,))
    async with open_harness(settings, clock=lambda: 0.0) as h:
        assert (await h.push(BODY, key="old-secret")).status_code == 202
        reload_app(h.app, settings.replace(api_keys=(limited, NEW)))
        assert (await h.push(BODY, key="old-secret")).status_code == 429  # no refill by reload
        faster = ApiKeyConfig(name="old", key="old-secret", rate=10, burst=1)
        reload_app(h.app, settings.replace(api_keys=(faster,)))
        assert (await h.push(BODY, key="old-secret")).status_code == 202


async def test_node_reload_applies_keys_and_names_what_needs_a_restart(tmp_path: Path) -> None:
    settings = node_settings(tmp_path)
    async with (
        Node(settings) as node,
        httpx.AsyncClient(base_url=node.http_url, timeout=WAIT) as http,
    ):
        fresh = settings.replace(api_keys=(OLD,), heartbeat_s=10, max_batch=5, token_secret="x")
        assert node.reload(fresh) == ["heartbeat_s"]
        headers = {"Authorization": "Bearer old-secret"}
        assert (await http.post("/v1/push", json=BODY, headers=headers)).status_code == 202
        headers = {"Authorization": f"Bearer {API_KEY}"}
        assert (await http.post("/v1/push", json=BODY, headers=headers)).status_code == 202


async def test_node_without_http_reloads_nothing(tmp_path: Path) -> None:
    settings = node_settings(tmp_path, roles=("dispatch",))
    async with Node(settings) as node:
        assert node.reload(settings.replace(api_keys=(OLD,))) == []
