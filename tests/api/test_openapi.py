"""The OpenAPI document describes exactly the app's routes, and its references resolve."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from longlink.api.openapi import openapi_document

from .conftest import Harness

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options"}


async def test_served(h: Harness) -> None:
    response = await h.client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    assert doc["openapi"] == "3.1.0"
    assert doc == openapi_document()


def test_document_is_a_fresh_copy() -> None:
    doc = openapi_document()
    doc["components"]["schemas"].clear()
    assert openapi_document()["components"]["schemas"]


async def test_every_route_is_described_and_nothing_else(h: Harness) -> None:
    routed: set[tuple[str, str]] = set()
    for route in h.app.routes:
        assert isinstance(route, Route)
        path = route.path.replace(":path}", "}")
        routed.update((m.lower(), path) for m in route.methods or () if m != "HEAD")
    doc = openapi_document()
    described = {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    assert routed == described


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_references_resolve() -> None:
    doc = openapi_document()
    refs = _refs(doc)
    assert refs
    for ref in refs:
        target: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        assert isinstance(target, dict)


def test_push_routes_list_their_error_statuses() -> None:
    responses = openapi_document()["paths"]["/v1/push"]["post"]["responses"]
    assert set(responses) == {"202", "400", "401", "403", "413", "429", "503"}
    retry = openapi_document()["components"]["responses"]["E429"]["headers"]
    assert "Retry-After" in retry
