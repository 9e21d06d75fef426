"""Routes for operators: ``/readyz`` and the API docs in the browser at ``/docs``.

``GET /readyz`` answers 200 ``{"ready": true, "checks": {name: "ok"}}`` once
every backend this process needs answers (the checks are
``Services.readiness``: Redis, the offline store, the gateway's listeners,
the message-id lease, as the process runs them), else 503 with the failing
checks and an ``error`` in the API's shape. ``/healthz`` stays liveness only:
a process that is up but cannot reach Redis is alive and not ready.

``GET /docs`` is Swagger UI over ``/openapi.json``, served from this process:
its files come from the ``swagger-ui-py`` package (Swagger UI 5, which reads
OpenAPI 3.1), never from a CDN, so the page works offline and behind a
firewall. Only the files the page uses are served (:data:`ASSETS`). Page and
assets are addressed relative to ``/docs``, so they also work under a path
prefix of a reverse proxy.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from longlink.api.services import ReadyCheck, Services

__all__ = ["ASSETS", "DOCS_PATH", "OPS_PATHS", "READY_PATH", "Readiness", "ops_routes"]

DOCS_PATH = "/docs"
READY_PATH = "/readyz"
#: Seconds one readiness check may take before it counts as failed.
CHECK_TIMEOUT_S = 2.0

#: Files of Swagger UI the page loads (all of them, and nothing else, are served).
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
INIT_SCRIPT = "longlink-docs.js"

_PAGE = b"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>longlink HTTP API</title>
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
  <link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/longlink-docs.js"></script>
</body>
</html>
"""

_INIT = b"""// Swagger UI over this server's OpenAPI document (api/ops.py).
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  displayRequestDuration: true,
  persistAuthorization: false,
  tryItOutEnabled: false,
});
"""

_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
_ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=86400"}


class Readiness(msgspec.Struct, frozen=True):
    """``GET /readyz``: whether every check passed, and each check's outcome."""

    ready: bool
    checks: dict[str, str]


def swagger_ui_dir() -> Path:
    """Where the ``swagger-ui-py`` package keeps Swagger UI's files.

    Found without importing the package (its ``__init__`` loads jinja2 and
    PyYAML, which the server does not use).
    """
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


async def _run(check: ReadyCheck) -> tuple[str, str]:
    name, probe = check
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await probe()
    except TimeoutError:
        return name, f"no answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as exc:  # any failure means "not ready": say which
        return name, (str(exc).splitlines() or [""])[0] or type(exc).__name__
    return name, "ok"


class _Ops:
    def __init__(self, services: Services) -> None:
        self.checks = tuple(services.readiness)
        self.encoder = msgspec.json.Encoder()
        self.assets: dict[str, bytes] = {}

    async def readyz(self, request: Request) -> Response:
        outcomes = dict(await asyncio.gather(*(_run(check) for check in self.checks)))
        failing = {name: outcome for name, outcome in outcomes.items() if outcome != "ok"}
        body: dict[str, Any] = msgspec.structs.asdict(Readiness(not failing, outcomes))
        if failing:
            what = "; ".join(f"{name}: {outcome}" for name, outcome in sorted(failing.items()))
            body["error"] = {"code": "not_ready", "message": what}
        return Response(
            self.encoder.encode(body),
            status_code=503 if failing else 200,
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def page(self, request: Request) -> Response:
        return Response(_PAGE, media_type="text/html; charset=utf-8", headers=_HEADERS)

    async def asset(self, request: Request) -> Response:
        name: str = request.path_params["file"]
        if name == INIT_SCRIPT:
            return Response(_INIT, media_type=ASSETS["swagger-ui-bundle.js"], headers=_HEADERS)
        media_type = ASSETS.get(name)
        if media_type is None:
            return Response(
                self.encoder.encode(
                    {"error": {"code": "not_found", "message": f"no file {DOCS_PATH}/{name}"}}
                ),
                status_code=404,
                media_type="application/json",
            )
        body = self.assets.get(name)
        if body is None:  # read once, on first use (the bundle is 1.5 MB)
            path = swagger_ui_dir() / name
            body = self.assets[name] = await asyncio.to_thread(path.read_bytes)
        return Response(body, media_type=media_type, headers=_ASSET_HEADERS)


def ops_routes(services: Services) -> list[Route]:
    """``/readyz``, ``/docs`` and ``/docs/{file}``; none needs an API key."""
    ops = _Ops(services)
    return [
        Route(READY_PATH, ops.readyz, methods=["GET"]),
        Route(DOCS_PATH, ops.page, methods=["GET"]),
        Route(DOCS_PATH + "/{file}", ops.asset, methods=["GET"]),
    ]


def _plain(summary: str, media_type: str, description: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": [],
            "responses": {
                "200": {"description": description, "content": {media_type: {"schema": {}}}}
            },
        }
    }


_READINESS_SCHEMA = {
    "type": "object",
    "required": ["ready", "checks"],
    "properties": {
        "ready": {"type": "boolean"},
        "checks": {
            "type": "object",
            "description": 'each check: "ok", or why it failed',
            "additionalProperties": {"type": "string"},
        },
        "error": {"type": "object", "description": "when not ready: code not_ready"},
    },
}

#: The OpenAPI path items of these routes (api/openapi.py adds them to the document).
OPS_PATHS: dict[str, Any] = {
    READY_PATH: {
        "get": {
            "summary": "Readiness: every backend this process needs answers",
            "security": [],
            "responses": {
                "200": {
                    "description": "ready",
                    "content": {"application/json": {"schema": _READINESS_SCHEMA}},
                },
                "503": {
                    "description": "not ready: the checks say which backend fails",
                    "content": {"application/json": {"schema": _READINESS_SCHEMA}},
                },
            },
        }
    },
    DOCS_PATH: _plain("API docs (Swagger UI over /openapi.json)", "text/html", "the page"),
    DOCS_PATH + "/{file}": {
        "get": {
            "summary": "A file of the API docs page",
            "security": [],
            "parameters": [
                {"name": "file", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {"description": "the file", "content": {"*/*": {"schema": {}}}},
                "404": {"$ref": "#/components/responses/E404"},
            },
        }
    },
}
