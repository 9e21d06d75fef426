"""The OpenAPI 3.1 document served at ``/openapi.json`` (PROTOCOL.md §2).

The schemas are generated from the msgspec structs the routes decode
(:mod:`longlink.api.schemas`) and render (:mod:`longlink.api.responses` and
the structs it names) with :func:`msgspec.json.schema_components`; a struct's
``json_schema_rules`` (the rules checked after decoding, stated as JSON
Schema) are merged into its component. Only the paths, their parameters and
the descriptions are written here. Tests check that every route of the app is
described and the other way round, and that requests valid by these schemas
are accepted and invalid ones refused naming the field.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import msgspec
import msgspec.inspect as mi

from longlink import __version__
from longlink.api.errors import ErrorBody
from longlink.api.ops import OPS_PATHS
from longlink.api.responses import (
    Drained,
    Health,
    Kicked,
    MessageTraceAnswer,
    MsgId,
    NodeList,
    PushAccepted,
    PushBatchAccepted,
    QualityReport,
    RoomHistoryAnswer,
    RoomStatus,
    Stats,
    UserConnections,
)
from longlink.api.schemas import (
    ConnectBody,
    DrainBody,
    Id,
    KickBody,
    PushBatchBody,
    PushBody,
    RoomAreaBody,
)
from longlink.control.connect import Connected
from longlink.logic.base import Online
from longlink.trace import Reach
from longlink.web.pages import ASSETS

__all__ = ["STRUCTS", "openapi_document"]

REF = "#/components/schemas/{name}"
#: Most messages one ``GET /v1/rooms/{room}/history`` answers.
MAX_HISTORY_LIMIT = 10_000

#: Every struct a route decodes or renders; their components are generated.
STRUCTS: tuple[type[msgspec.Struct], ...] = (
    ConnectBody,
    Connected,
    PushBody,
    PushAccepted,
    PushBatchBody,
    PushBatchAccepted,
    Online,
    RoomStatus,
    RoomAreaBody,
    RoomHistoryAnswer,
    UserConnections,
    KickBody,
    Kicked,
    NodeList,
    QualityReport,
    DrainBody,
    Drained,
    Health,
    MessageTraceAnswer,
    Reach,
    Stats,
    ErrorBody,
)


def _structs(types: Iterable[Any]) -> dict[str, type[msgspec.Struct]]:
    """Every struct class reachable from ``types``, by component name."""
    found: dict[str, type[msgspec.Struct]] = {}

    def visit(info: mi.Type) -> None:
        if isinstance(info, mi.StructType):
            if info.cls.__name__ not in found:
                found[info.cls.__name__] = info.cls
                for field in info.fields:
                    visit(field.type)
        elif isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            visit(info.item_type)
        elif isinstance(info, mi.DictType):
            visit(info.value_type)
        elif isinstance(info, mi.UnionType):
            for member in info.types:
                visit(member)

    for info in mi.multi_type_info(list(types)):
        visit(info)
    return found


def _components() -> dict[str, Any]:
    _, schemas = msgspec.json.schema_components(STRUCTS, ref_template=REF)
    for name, cls in _structs(STRUCTS).items():
        rules: dict[str, Any] | None = getattr(cls, "json_schema_rules", None)
        if rules:
            schemas[name].update(copy.deepcopy(rules))
    return schemas


_SCHEMAS = _components()


def _ref(cls: type[msgspec.Struct]) -> dict[str, str]:
    return {"$ref": REF.format(name=cls.__name__)}


def _body(cls: type[msgspec.Struct], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(cls)}}}


def _ok(cls: type[msgspec.Struct], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(cls)}}}


def _page(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


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
        " room_prefixes, high_priority, guaranteed or max_ttl_s; or, on /v1/connect, a"
        " browser origin not in LONGLINK_ALLOWED_ORIGINS",
        {},
    ),
    "E404": ("not found (not_found)", {}),
    "E405": ("method not allowed (method_not_allowed)", {}),
    "E413": ("body or payload too large (too_large)", {}),
    "E429": ("over the key's rate limit (rate_limited)", _RETRY_AFTER),
    "E501": ("this process cannot do that (not_supported)", {}),
    "E503": (
        "overloaded: a low priority push while a queue is past the overload mark, or a full"
        " queue (a batch's error then lists the msg_ids queued); or no healthy node (no_nodes);"
        " or this process holds no message-id node number now (unavailable)",
        _RETRY_AFTER,
    ),
}

_KEYED: list[dict[str, list[str]]] = [{"apiKey": []}]


def _path_param(name: str, schema: Any = Id) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": msgspec.json.schema(schema)}


def _paths() -> dict[str, Any]:
    return {
        "/v1/connect": {
            "post": {
                "summary": "Get a connection token and the best gateway endpoints (clients)",
                "security": [],
                "requestBody": _body(ConnectBody),
                "responses": {
                    "200": _ok(Connected, "token and endpoints, best first"),
                    **_errors(400, 401, 403, 413, 503),
                },
            },
            "options": {
                "summary": "CORS preflight (browsers; origins in LONGLINK_ALLOWED_ORIGINS)",
                "security": [],
                "responses": {
                    "204": {
                        "description": "allowed: Access-Control-Allow-Origin, -Methods, -Headers,"
                        " -Max-Age (no Origin header: Allow)"
                    },
                    **_errors(403),
                },
            },
        },
        "/v1/push": {
            "post": {
                "summary": "Queue one push",
                "requestBody": _body(PushBody),
                "responses": {
                    "202": _ok(PushAccepted, "queued"),
                    **_errors(400, 401, 403, 413, 429, 503),
                },
            }
        },
        "/v1/push/batch": {
            "post": {
                "summary": "Queue up to max_batch pushes (each counts against the rate limit)",
                "requestBody": _body(PushBatchBody),
                "responses": {
                    "202": _ok(PushBatchAccepted, "queued, ids in request order"),
                    **_errors(400, 401, 403, 413, 429, 503),
                },
            }
        },
        "/v1/online": {
            "get": {
                "summary": "Online counts: total, per room, per area",
                "responses": {"200": _ok(Online, "counts"), **_errors(401)},
            }
        },
        "/v1/rooms/{room}": {
            "parameters": [_path_param("room")],
            "get": {
                "summary": "A room's area and online count",
                "responses": {"200": _ok(RoomStatus, "the room"), **_errors(400, 401)},
            },
            "put": {
                "summary": "Put a room in an area (null: in none); set whether it announces",
                "requestBody": _body(RoomAreaBody),
                "responses": {"200": _ok(RoomStatus, "the room"), **_errors(400, 401, 413)},
            },
        },
        "/v1/rooms/{room}/history": {
            "parameters": [_path_param("room")],
            "get": {
                "summary": "A room's kept messages, oldest first (PROTOCOL.md §1.4 rule 4)",
                "description": "The room history: the last history_size room pushes within"
                " history_ttl_s. With since, the messages after that one and recovered true"
                " when the history still held it; otherwise every kept message and recovered"
                " false. The key needs the rooms target and the room within its room_prefixes."
                " A slash in the room id is percent-encoded (%2F) or written as is.",
                "parameters": [
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "schema": msgspec.json.schema(MsgId),
                        "description": "the last message already had",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY_LIMIT},
                        "description": "at most this many messages (the oldest after since)",
                    },
                ],
                "responses": {
                    "200": _ok(RoomHistoryAnswer, "the kept messages"),
                    **_errors(400, 401, 403),
                },
            },
        },
        "/v1/users/{user}": {
            "parameters": [_path_param("user")],
            "get": {
                "summary": "A user's live connections",
                "responses": {"200": _ok(UserConnections, "connections"), **_errors(400, 401)},
            },
        },
        "/v1/users/{user}/kick": {
            "parameters": [_path_param("user")],
            "post": {
                "summary": "Close the user's connections with KICK",
                "requestBody": _body(KickBody, required=False),
                "responses": {"200": _ok(Kicked, "how many"), **_errors(400, 401, 413, 501)},
            },
        },
        "/v1/nodes": {
            "get": {
                "summary": "Gateway nodes with load and health",
                "responses": {"200": _ok(NodeList, "every reporting node"), **_errors(401)},
            }
        },
        "/v1/quality": {
            "get": {
                "summary": "Connection quality per region, node and transport (last minute)",
                "description": "RTT quantiles from the clients' REPORTs (heartbeat round trips;"
                " the kernel's TCP_INFO when no client reported), connect times, reconnects and"
                " failed transports per hour (PROTOCOL.md §1.6 rule 3; docs/quality.md).",
                "responses": {
                    "200": _ok(QualityReport, "one row per node and transport"),
                    **_errors(401),
                },
            }
        },
        "/v1/nodes/{node}/drain": {
            "parameters": [_path_param("node")],
            "post": {
                "summary": 'Stop sending clients to a node ({"draining": false} undoes it)',
                "requestBody": _body(DrainBody, required=False),
                "responses": {"200": _ok(Drained, "done"), **_errors(400, 401, 404, 413)},
            },
        },
        "/v1/messages/{msg_id}": {
            "parameters": [_path_param("msg_id", MsgId)],
            "get": {
                "summary": "A message's path with timestamps (kept trace_ttl_s, bounded)",
                "responses": {
                    "200": _ok(MessageTraceAnswer, "the trace"),
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
                "responses": {"200": _ok(Reach, "reach figures"), **_errors(400, 401)},
            }
        },
        "/v1/stats": {
            "get": {
                "summary": "This process's counters since start (rates: the difference of two"
                " reads); the admin dashboard's figures",
                "responses": {"200": _ok(Stats, "counters"), **_errors(401)},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "security": [],
                "responses": {"200": _ok(Health, "alive")},
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
        "/": {
            "get": {
                "summary": "The live-room demo page (docs/demo.md); needs demo mode to connect",
                "security": [],
                "responses": {"200": _page("the page"), "304": {"description": "not modified"}},
            }
        },
        "/admin": {
            "get": {
                "summary": "The admin dashboard; it asks for an API key and keeps it in the page",
                "security": [],
                "responses": {"200": _page("the page"), "304": {"description": "not modified"}},
            }
        },
        "/web/{name}": {
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": list(ASSETS)},
                }
            ],
            "get": {
                "summary": "A script or style sheet of the pages",
                "security": [],
                "responses": {
                    "200": {
                        "description": "the file (ETag, re-validated with If-None-Match)",
                        "content": {
                            "text/javascript": {"schema": {"type": "string"}},
                            "text/css": {"schema": {"type": "string"}},
                        },
                    },
                    "304": {"description": "not modified"},
                    **_errors(404),
                },
            },
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
            "content": {"application/json": {"schema": _ref(ErrorBody)}},
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
        # Relative: the server that serves this document, wherever it is reached.
        "servers": [{"url": "/", "description": "the server that serves this document"}],
        "security": _KEYED,
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key"}
            },
            "schemas": copy.deepcopy(_SCHEMAS),
            "responses": responses,
        },
        "paths": {**_paths(), **OPS_PATHS},
    }
