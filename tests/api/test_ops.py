"""``/readyz`` (every backend answers) and ``/docs`` (Swagger UI from local files)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from longlink.api.app import build_app
from longlink.api.ops import ASSETS, swagger_ui_dir
from longlink.node import Node
from tests.conftest import WAIT, node_settings
from tests.redis_server import RedisServer, require_redis

from .conftest import Harness, open_harness


async def test_readyz_without_checks_is_ready(h: Harness) -> None:
    response = await h.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "checks": {}}
    assert response.headers["cache-control"] == "no-store"


async def test_readyz_names_the_failing_check() -> None:
    async def ok() -> None:
        return None

    async def broken() -> None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")

    async def hangs() -> None:
        await asyncio.Event().wait()

    async with open_harness() as h:
        checks = (("store", ok), ("redis", broken), ("slow", hangs))
        services = dataclasses.replace(h.services, readiness=checks, metrics=CollectorRegistry())
        app = build_app(services)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api.test"
        ) as client:
            response = await asyncio.wait_for(client.get("/readyz"), WAIT)
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["checks"] == {
        "store": "ok",
        "redis": "Error 111 connecting to 127.0.0.1:6399. Connection refused.",
        "slow": "no answer within 2 s",
    }
    assert body["error"]["code"] == "not_ready"
    assert body["error"]["message"].startswith("redis: Error 111")


async def test_readyz_of_a_node_checks_its_backends(tmp_path: Path) -> None:
    async with Node(node_settings(tmp_path)) as node, httpx.AsyncClient() as http:
        response = await http.get(f"{node.http_url}/readyz", timeout=WAIT)
        health = await http.get(f"{node.http_url}/healthz", timeout=WAIT)
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"store": "ok", "gateway": "ok", "message_ids": "ok"}
    assert health.status_code == 200


async def test_readyz_is_not_ready_while_redis_is_down(tmp_path: Path) -> None:
    require_redis()
    (tmp_path / "redis").mkdir()
    redis = RedisServer(str(tmp_path / "redis"), appendonly=True)
    redis.start()
    try:
        settings = node_settings(tmp_path, bus=redis.url, roles=("api", "control"))
        async with Node(settings) as node, httpx.AsyncClient(base_url=node.http_url) as http:
            ready = await http.get("/readyz", timeout=WAIT)
            assert ready.status_code == 200, ready.text
            assert set(ready.json()["checks"]) == {"redis", "store", "message_ids"}
            redis.stop(kill=True)
            down = await http.get("/readyz", timeout=WAIT * 2)
            assert down.status_code == 503
            assert down.json()["checks"]["redis"] != "ok"
            alive = await http.get("/healthz", timeout=WAIT)
            assert alive.status_code == 200  # alive, not ready
            redis.start()
            again = await http.get("/readyz", timeout=WAIT * 2)
            assert again.status_code == 200, again.text
    finally:
        redis.stop()


async def test_docs_page_and_its_files_are_served_locally(h: Harness) -> None:
    page = await h.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    html = page.text
    assert "https://" not in html and "http://" not in html  # no CDN
    for name in ("swagger-ui.css", "swagger-ui-bundle.js", "longlink-docs.js"):
        assert f'"docs/{name}"' in html
    init = await h.client.get("/docs/longlink-docs.js")
    assert 'url: "openapi.json"' in init.text
    for name, media_type in ASSETS.items():
        response = await h.client.get(f"/docs/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == media_type
        assert response.content == (swagger_ui_dir() / name).read_bytes()
    bundle = (swagger_ui_dir() / "swagger-ui-bundle.js").read_text()
    assert "SwaggerUIBundle" in bundle and '"5.' in bundle  # Swagger UI 5 reads OpenAPI 3.1


async def test_docs_serve_nothing_else(h: Harness) -> None:
    for path in ("/docs/swagger-editor-bundle.js", "/docs/..%2Fcore.py", "/docs/LICENSE"):
        response = await h.client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


async def test_openapi_names_the_server_and_the_new_routes(h: Harness) -> None:
    doc = (await h.client.get("/openapi.json")).json()
    assert doc["servers"] == [{"url": "/", "description": "the server that serves this document"}]
    assert {"/readyz", "/docs", "/docs/{file}"} <= set(doc["paths"])
    assert doc["paths"]["/readyz"]["get"]["security"] == []
