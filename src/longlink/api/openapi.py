"""The OpenAPI 3.1 document served at ``/openapi.json`` (PROTOCOL.md §2), written by hand.

Kept beside the routes in :mod:`longlink.api.app`; a test checks that every
route of the app is described here and the other way round.
"""

from __future__ import annotations

import copy
from typing import Any

from longlink import __version__
from longlink.api.schemas import MAX_BATCH
from longlink.protocol.ids import MAX_ID_LENGTH

__all__ = ["openapi_document"]

_ID: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    "description": "1..128 characters, no control characters (the server may set a shorter"
    " max_id_length and an id_pattern)",
}
_IDS: dict[str, Any] = {
    "type": "array",
    "items": _ID,
    "minItems": 1,
    "description": "at most max_targets ids (default 1000)",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(
    properties: dict[str, Any], required: list[str] | None = None, *, closed: bool = False
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


def _body(schema: str, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(schema)}}}


def _ok(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses}


_RETRY_AFTER = {
    "Retry-After": {
        "description": "whole seconds to wait (at least 1)",
        "schema": {"type": "integer", "minimum": 1},
    }
}

_ERROR_RESPONSES: dict[str, tuple[str, dict[str, Any]]] = {
    "E400": (
        "invalid: bad JSON (bad_request) or a field breaking a rule, named in the message",
        {},
    ),
    "E401": (
        "no or unknown API key (unauthorized), or a bad / expired ticket"
        " (bad_ticket, ticket_expired)",
        {"WWW-Authenticate": {"schema": {"type": "string"}}},
    ),
    "E403": (
        "outside the key's scopes (forbidden); the message names the scope: targets,"
        " room_prefixes, high_priority, guaranteed or max_ttl_s",
        {},
    ),
    "E404": ("not found (not_found)", {}),
    "E405": ("method not allowed (method_not_allowed)", {}),
    "E413": ("body or payload too large (too_large)", {}),
    "E429": ("over the key's rate limit (rate_limited)", _RETRY_AFTER),
    "E501": ("this process cannot do that (not_supported)", {}),
    "E503": (
        "overloaded: a low priority push while a queue is past the overload mark, or a full"
        " queue; or no healthy node (no_nodes)",
        _RETRY_AFTER,
    ),
}

_SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {
            "error": _obj(
                {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "msg_ids": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "503 on a batch: ids of the messages queued before"
                        " the queue filled",
                    },
                },
                ["code", "message"],
            )
        },
        ["error"],
    ),
    "PushTarget": {
        "description": "exactly one kind",
        "oneOf": [
            _obj({"users": _IDS}, ["users"], closed=True),
            _obj({"devices": _IDS}, ["devices"], closed=True),
            _obj({"rooms": _IDS}, ["rooms"], closed=True),
            _obj({"areas": _IDS}, ["areas"], closed=True),
            _obj({"all": {"const": True}}, ["all"], closed=True),
        ],
    },
    "Push": {
        **_obj(
            {
                "to": _ref("PushTarget"),
                "data": {"description": "any JSON value; the client receives it JSON-encoded"},
                "data_b64": {
                    "type": "string",
                    "contentEncoding": "base64",
                    "description": "standard base64; the client receives the decoded bytes",
                },
                "priority": {"enum": ["low", "high"], "default": "low"},
                "guaranteed": {"type": "boolean", "default": False},
                "ttl_s": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "default settings.default_ttl_s (capped at the key's"
                    " max_ttl_s), between settings.min_ttl_s and settings.max_ttl_s",
                },
            },
            ["to"],
            closed=True,
        ),
        "oneOf": [{"required": ["data"]}, {"required": ["data_b64"]}],
    },
    "PushBatch": _obj(
        {
            "messages": {
                "type": "array",
                "items": _ref("Push"),
                "minItems": 1,
                "maxItems": MAX_BATCH,
                "description": "at most max_batch messages (default 1000)",
            }
        },
        ["messages"],
        closed=True,
    ),
    "PushAccepted": _obj({"msg_id": {"type": "string", "pattern": "^[0-9]+$"}}, ["msg_id"]),
    "PushBatchAccepted": _obj(
        {"msg_ids": {"type": "array", "items": {"type": "string", "pattern": "^[0-9]+$"}}},
        ["msg_ids"],
    ),
    "Connect": _obj(
        {
            "ticket": {"type": "string", "description": "HS256 JWT: sub, device?, exp"},
            "user": {**_ID, "description": "demo mode only, instead of a ticket"},
            "device": {**_ID, "description": "demo mode only; default a random id"},
            "region": _ID,
            "transports": {
                "type": "array",
                "items": {"enum": ["ws", "tcp"]},
                "minItems": 1,
            },
        }
    ),
    "Endpoint": _obj(
        {
            "node": {"type": "string"},
            "region": {"type": "string"},
            "ws": {"type": "string", "examples": ["ws://127.0.0.1:7000/ws"]},
            "tcp": {"type": "string", "examples": ["127.0.0.1:7001"]},
        },
        ["node", "region"],
    ),
    "Connected": _obj(
        {
            "token": {"type": "string"},
            "expires_at": {"type": "integer", "description": "unix seconds"},
            "heartbeat_s": {"type": "integer"},
            "endpoints": {"type": "array", "items": _ref("Endpoint"), "minItems": 1},
        },
        ["token", "expires_at", "heartbeat_s", "endpoints"],
    ),
    "Online": _obj(
        {
            "total": {"type": "integer"},
            "rooms": {"type": "object", "additionalProperties": {"type": "integer"}},
            "areas": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        ["total", "rooms", "areas"],
    ),
    "Room": _obj(
        {
            "room": {"type": "string"},
            "area": {"type": ["string", "null"]},
            "online": {"type": "integer"},
            "announce": {
                "type": "boolean",
                "description": "present (true) when the room announces enters and exits",
            },
        },
        ["room", "area", "online"],
    ),
    "RoomArea": {
        **_obj(
            {
                "area": {**_ID, "type": ["string", "null"]},
                "announce": {
                    "type": "boolean",
                    "description": "send EVENT enter/exit frames to the room's connections",
                },
            },
            closed=True,
        ),
        "minProperties": 1,
    },
    "User": _obj(
        {
            "user": {"type": "string"},
            "connections": {
                "type": "array",
                "items": _obj(
                    {
                        "conn_id": {"type": "string"},
                        "node": {"type": "string"},
                        "device": {"type": "string"},
                        "rooms": {"type": "array", "items": {"type": "string"}},
                        "connected_ms": {"type": "integer"},
                    },
                    ["conn_id", "node", "device", "rooms"],
                ),
            },
        },
        ["user", "connections"],
    ),
    "Kick": _obj(
        {"reason": {"type": "string", "maxLength": 256, "default": "kicked"}}, closed=True
    ),
    "Kicked": _obj({"kicked": {"type": "integer"}}, ["kicked"]),
    "Node": _obj(
        {
            "node": {"type": "string"},
            "region": {"type": "string"},
            "ws": {"type": ["string", "null"]},
            "tcp": {"type": ["string", "null"]},
            "connections": {"type": "integer"},
            "load": {"type": "number"},
            "reported_ms": {"type": "integer"},
            "draining": {"type": "boolean"},
            "healthy": {
                "type": "boolean",
                "description": "reported within 5 s and not draining",
            },
        },
        ["node", "region", "connections", "load", "reported_ms", "draining", "healthy"],
    ),
    "Nodes": _obj({"nodes": {"type": "array", "items": _ref("Node")}}, ["nodes"]),
    "Drain": _obj({"draining": {"type": "boolean", "default": True}}, closed=True),
    "Drained": _obj({"node": {"type": "string"}, "draining": {"type": "boolean"}}),
    "Health": _obj({"status": {"const": "ok"}}, ["status"]),
    "MessageTrace": _obj(
        {
            "msg_id": {"type": "string", "pattern": "^[0-9]+$"},
            "events": {
                "type": "array",
                "description": "time-ordered; the event's detail fields sit beside at_ms and"
                " event (docs/guaranteed-delivery.md has the table)",
                "items": _obj(
                    {
                        "at_ms": {"type": "integer", "description": "unix ms"},
                        "event": {
                            "enum": [
                                "accepted",
                                "stored",
                                "queued",
                                "dispatched",
                                "written",
                                "retried",
                                "acked",
                                "unacked",
                                "closed",
                                "from_store",
                                "expired",
                            ]
                        },
                    },
                    ["at_ms", "event"],
                ),
            },
            "dropped_events": {"type": "integer", "description": "past the per-message cap"},
        },
        ["msg_id", "events", "dropped_events"],
    ),
    "Reach": _obj(
        {
            "window_s": {"type": "integer"},
            "max_retries": {"type": "integer"},
            "deliveries": {
                "type": "integer",
                "description": "guaranteed (message, connection) deliveries that ended",
            },
            "acked": {"type": "integer"},
            "first_try_acked": {"type": "integer"},
            "from_store": {"type": "integer", "description": "deliveries from the offline store"},
            "retries": {"type": "integer"},
            "first_try_reach": {"type": ["number", "null"]},
            "final_reach": {
                "type": ["number", "null"],
                "description": "acked within the live connection's retries / deliveries",
            },
            "mean_retries": {"type": ["number", "null"]},
            "predicted_final_reach": {
                "type": ["number", "null"],
                "description": "1 - (1 - first_try_reach)^(max_retries + 1)",
            },
        },
        [
            "window_s",
            "max_retries",
            "deliveries",
            "acked",
            "first_try_acked",
            "from_store",
            "retries",
            "first_try_reach",
            "final_reach",
            "mean_retries",
            "predicted_final_reach",
        ],
    ),
}

_KEYED: list[dict[str, list[str]]] = [{"apiKey": []}]


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _ID}


def _paths() -> dict[str, Any]:
    return {
        "/v1/connect": {
            "post": {
                "summary": "Get a connection token and the best gateway endpoints (clients)",
                "security": [],
                "requestBody": _body("Connect"),
                "responses": {
                    "200": _ok("Connected", "token and endpoints, best first"),
                    **_errors(400, 401, 413, 503),
                },
            }
        },
        "/v1/push": {
            "post": {
                "summary": "Queue one push",
                "requestBody": _body("Push"),
                "responses": {
                    "202": _ok("PushAccepted", "queued"),
                    **_errors(400, 401, 403, 413, 429, 503),
                },
            }
        },
        "/v1/push/batch": {
            "post": {
                "summary": "Queue up to 1000 pushes (each counts against the rate limit)",
                "requestBody": _body("PushBatch"),
                "responses": {
                    "202": _ok("PushBatchAccepted", "queued, ids in request order"),
                    **_errors(400, 401, 403, 413, 429, 503),
                },
            }
        },
        "/v1/online": {
            "get": {
                "summary": "Online counts: total, per room, per area",
                "responses": {"200": _ok("Online", "counts"), **_errors(401)},
            }
        },
        "/v1/rooms/{room}": {
            "parameters": [_path_param("room")],
            "get": {
                "summary": "A room's area and online count",
                "responses": {"200": _ok("Room", "the room"), **_errors(400, 401)},
            },
            "put": {
                "summary": "Put a room in an area (null: in none); set whether it announces",
                "requestBody": _body("RoomArea"),
                "responses": {"200": _ok("Room", "the room"), **_errors(400, 401, 413)},
            },
        },
        "/v1/users/{user}": {
            "parameters": [_path_param("user")],
            "get": {
                "summary": "A user's live connections",
                "responses": {"200": _ok("User", "connections"), **_errors(400, 401)},
            },
        },
        "/v1/users/{user}/kick": {
            "parameters": [_path_param("user")],
            "post": {
                "summary": "Close the user's connections with KICK",
                "requestBody": _body("Kick", required=False),
                "responses": {"200": _ok("Kicked", "how many"), **_errors(400, 401, 413, 501)},
            },
        },
        "/v1/nodes": {
            "get": {
                "summary": "Gateway nodes with load and health",
                "responses": {"200": _ok("Nodes", "every reporting node"), **_errors(401)},
            }
        },
        "/v1/nodes/{node}/drain": {
            "parameters": [_path_param("node")],
            "post": {
                "summary": 'Stop sending clients to a node ({"draining": false} undoes it)',
                "requestBody": _body("Drain", required=False),
                "responses": {"200": _ok("Drained", "done"), **_errors(400, 401, 404, 413)},
            },
        },
        "/v1/messages/{msg_id}": {
            "parameters": [
                {
                    "name": "msg_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]{1,20}$"},
                }
            ],
            "get": {
                "summary": "A message's path with timestamps (kept trace_ttl_s, bounded)",
                "responses": {
                    "200": _ok("MessageTrace", "the trace"),
                    **_errors(400, 401, 404),
                },
            },
        },
        "/v1/stats/reach": {
            "get": {
                "summary": "Reach of guaranteed messages over a sliding window",
                "parameters": [
                    {
                        "name": "window_s",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1},
                        "description": "seconds (default and cap: reach_window_s)",
                    }
                ],
                "responses": {"200": _ok("Reach", "reach figures"), **_errors(400, 401)},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "security": [],
                "responses": {"200": _ok("Health", "alive")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus text format",
                "security": [],
                "responses": {
                    "200": {
                        "description": "metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/sdk/longlink.js": {
            "get": {
                "summary": "The JavaScript SDK, an ES module (docs/protocol.md)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "the module; ETag, re-validated with If-None-Match",
                        "content": {"text/javascript": {"schema": {"type": "string"}}},
                    },
                    "304": {"description": "not modified"},
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI 3.1 document of the HTTP API."""
    responses = {
        name: {
            "description": description,
            "headers": headers,
            "content": {"application/json": {"schema": _ref("Error")}},
        }
        for name, (description, headers) in _ERROR_RESPONSES.items()
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "longlink HTTP API",
            "version": __version__,
            "description": "Control (clients) and push (business backends) API; see PROTOCOL.md §2."
            ' Every error is {"error": {"code", "message"}}; unknown routes answer 404'
            " and wrong methods 405 in that shape.",
        },
        "security": _KEYED,
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key"}
            },
            "schemas": copy.deepcopy(_SCHEMAS),
            "responses": responses,
        },
        "paths": _paths(),
    }
