"""The served schemas and the server agree (the components are generated from the structs).

A body valid by its request schema is accepted; one made invalid at a single
place is refused 400 with that place named; every answer is valid by its
response schema; the document uses only JSON Schema the checks understand.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from longlink.api.openapi import openapi_document

from .conftest import bearer, gateway_node, open_harness
from .json_schema import ANNOTATIONS, KEYWORDS, REPLACEMENTS, SchemaSet, field_name

DOC = openapi_document()
SCHEMAS = SchemaSet(DOC)
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: route → (method, path template); the bodies tested against their schemas.
BODIES = {
    "push": ("post", "/v1/push"),
    "batch": ("post", "/v1/push/batch"),
    "connect": ("post", "/v1/connect"),
    "room": ("put", "/v1/rooms/{room}"),
    "kick": ("post", "/v1/users/{user}/kick"),
}


def request_schema(route: str) -> dict[str, Any]:
    method, path = BODIES[route]
    schema: dict[str, Any] = DOC["paths"][path][method]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    return schema


def answer_schema(path: str, method: str, status: int) -> dict[str, Any]:
    answer = DOC["paths"][path][method]["responses"][str(status)]
    if "$ref" in answer:
        answer = SCHEMAS.resolve(answer)
    schema: dict[str, Any] = answer["content"]["application/json"]["schema"]
    return schema


def plain_path(text: str) -> bool:
    """Usable in a URL path as is once quoted (no dot segments for the client to fold)."""
    return all(part not in (".", "..") for part in text.split("/"))


ROOMS = SCHEMAS.valid(DOC["paths"]["/v1/rooms/{room}"]["parameters"][0]["schema"]).filter(
    plain_path
)


async def kick_nobody(user: str, reason: str) -> int:
    return 0


async def send(route: str, body: Any, room: str = "lobby") -> httpx.Response:
    """``body`` to ``route`` of a fresh app with one healthy node (demo mode, all scopes)."""
    method, path = BODIES[route]
    url = path.format(room=quote(room, safe=""), user="alice")
    async with open_harness(kick=kick_nobody) as h:
        await h.registry.report_node(gateway_node())
        headers = {**bearer(), "Content-Type": "application/json"}
        return await h.client.request(method, url, content=json.dumps(body), headers=headers)


@st.composite
def invalid_bodies(draw: st.DrawFn, schema: dict[str, Any]) -> tuple[tuple[str | int, ...], Any]:
    """A valid body with one place made invalid by its own schema: ``(place, body)``."""
    body = draw(SCHEMAS.valid(schema))
    spots = [
        (path, spot)
        for path, spot in SCHEMAS.spots(body, schema)
        if any(not SCHEMAS.is_valid(value, spot) for value in REPLACEMENTS)
    ]
    assume(spots)
    path, spot = draw(st.sampled_from(spots))
    value = draw(st.sampled_from([v for v in REPLACEMENTS if not SCHEMAS.is_valid(v, spot)]))
    broken = copy.deepcopy(body)
    holder: Any = broken
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = value
    assert not SCHEMAS.is_valid(broken, schema)
    return path, broken


# ------------------------------------------------------------------ valid bodies


@pytest.mark.parametrize("route", ["push", "batch", "kick"])
@EXAMPLES
@given(data=st.data())
def test_a_body_valid_by_the_schema_is_accepted(route: str, data: st.DataObject) -> None:
    body = data.draw(SCHEMAS.valid(request_schema(route)), label="body")
    response = asyncio.run(send(route, body))
    method, path = BODIES[route]
    status = 200 if route == "kick" else 202
    assert response.status_code == status, response.text
    assert SCHEMAS.problem(response.json(), answer_schema(path, method, status)) is None


@EXAMPLES
@given(body=SCHEMAS.valid(request_schema("room")), room=ROOMS)
def test_a_room_body_valid_by_the_schema_is_accepted(body: Any, room: str) -> None:
    response = asyncio.run(send("room", body, room))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert SCHEMAS.problem(answer, answer_schema("/v1/rooms/{room}", "put", 200)) is None
    assert answer["room"] == room


@EXAMPLES
@given(body=SCHEMAS.valid(request_schema("connect")))
def test_a_connect_body_valid_by_the_schema_is_accepted(body: dict[str, Any]) -> None:
    """Demo mode: a user connects. A ticket is only checked for its signature (401)."""
    response = asyncio.run(send("connect", body))
    if body.get("ticket") is None:
        assert response.status_code == 200, response.text
        schema = answer_schema("/v1/connect", "post", 200)
    else:
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "bad_ticket"
        schema = answer_schema("/v1/connect", "post", 401)
    assert SCHEMAS.problem(response.json(), schema) is None


# ------------------------------------------------------------------ invalid bodies


@pytest.mark.parametrize("route", ["push", "batch", "connect", "room", "kick"])
@EXAMPLES
@given(data=st.data())
def test_a_body_invalid_by_the_schema_is_refused_naming_the_field(
    route: str, data: st.DataObject
) -> None:
    path, body = data.draw(invalid_bodies(request_schema(route)), label="place, body")
    response = asyncio.run(send(route, body))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    message: str = error["message"]
    if path[-1] == "bogus_field":
        assert message.startswith(f"{field_name(path[:-1]) or 'body'}: "), message
        assert "bogus_field" in message, message
    else:
        assert message.startswith(f"{field_name(path)}: "), message
    assert SCHEMAS.problem(response.json(), answer_schema(*BODIES[route][::-1], 400)) is None


# ------------------------------------------------------------------ answers


async def test_every_answer_is_valid_by_its_schema() -> None:
    async with open_harness() as h:
        await h.registry.report_node(gateway_node("g1"))
        headers = bearer()
        msg_id = (await h.push({"to": {"users": ["alice"]}, "data": 1})).json()["msg_id"]
        await h.client.put("/v1/rooms/lobby", json={"announce": True}, headers=headers)
        calls = [
            ("get", "/v1/online", "/v1/online"),
            ("get", "/v1/rooms/lobby", "/v1/rooms/{room}"),
            ("get", "/v1/rooms/lobby/history", "/v1/rooms/{room}/history"),
            ("get", "/v1/users/alice", "/v1/users/{user}"),
            ("get", "/v1/nodes", "/v1/nodes"),
            ("post", "/v1/nodes/g1/drain", "/v1/nodes/{node}/drain"),
            ("get", f"/v1/messages/{msg_id}", "/v1/messages/{msg_id}"),
            ("get", "/v1/stats/reach", "/v1/stats/reach"),
            ("get", "/v1/stats", "/v1/stats"),
            ("get", "/healthz", "/healthz"),
        ]
        for method, url, path in calls:
            response = await h.client.request(method, url, headers=headers)
            assert response.status_code == 200, (url, response.text)
            problem = SCHEMAS.problem(response.json(), answer_schema(path, method, 200))
            assert problem is None, (url, problem, response.json())


# ------------------------------------------------------------------ the document


def _schemas_in(node: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    """Every schema object under ``node`` (a schema, or a document part holding schemas)."""
    if not isinstance(node, dict):
        return []
    found = [(where, node)]
    for key in ("properties",):
        for name, sub in node.get(key, {}).items():
            found += _schemas_in(sub, f"{where}.{name}")
    for key in ("items", "not", "if", "then", "else"):
        if key in node:
            found += _schemas_in(node[key], f"{where}/{key}")
    for key in ("anyOf", "oneOf", "allOf"):
        for index, sub in enumerate(node.get(key, ())):
            found += _schemas_in(sub, f"{where}/{key}[{index}]")
    return found


def test_the_document_is_openapi_3_1_with_json_schema_the_checks_understand() -> None:
    assert DOC["openapi"] == "3.1.0"
    assert DOC["info"]["title"] and DOC["info"]["version"]
    roots = [(f"#/components/schemas/{n}", s) for n, s in DOC["components"]["schemas"].items()]
    for path, item in DOC["paths"].items():
        assert path.startswith("/")
        for parameter in item.get("parameters", []):
            assert parameter["in"] in ("path", "query") and parameter["name"] in path
            roots.append((f"{path} {parameter['name']}", parameter["schema"]))
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert operation["responses"], (path, method)
            for status, answer in operation["responses"].items():
                for media in answer.get("content", {}).values():
                    roots.append((f"{path} {method} {status}", media["schema"]))
    for root, schema in roots:
        for where, node in _schemas_in(schema, root):
            assert set(node) <= KEYWORDS | ANNOTATIONS, (where, set(node) - KEYWORDS - ANNOTATIONS)
            for name in node.get("required", ()):
                assert (
                    name in node.get("properties", {}) or "$ref" in node or "properties" not in node
                )
