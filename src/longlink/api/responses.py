"""The JSON answers of the HTTP API as msgspec structs (PROTOCOL.md §2).

The routes render these structs, and :mod:`longlink.api.openapi` generates the
response schemas from them, so the document and the answers cannot drift
apart. Answers whose struct lives with the layer that computes it are
imported from there: :class:`~longlink.control.connect.Connected` (control),
:class:`~longlink.logic.base.Online` (logic), :class:`~longlink.trace.Reach`
(trace), :class:`~longlink.api.errors.ErrorBody` (every refusal).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from longlink.logic.base import NodeInfo
from longlink.trace import EVENTS

__all__ = [
    "Drained",
    "Health",
    "Kicked",
    "MessageTraceAnswer",
    "NodeList",
    "NodeStatus",
    "PushAccepted",
    "PushBatchAccepted",
    "RoomStatus",
    "TraceStep",
    "UserConnection",
    "UserConnections",
]

#: A message id as JSON carries it: decimal digits in a string (64 bits do not fit a double).
MsgId = Annotated[str, Meta(pattern="^[0-9]{1,20}$", description="a message id, decimal")]


class PushAccepted(msgspec.Struct, frozen=True):
    """``POST /v1/push``, 202: the message is queued."""

    msg_id: MsgId


class PushBatchAccepted(msgspec.Struct, frozen=True):
    """``POST /v1/push/batch``, 202: every message is queued; ids in request order."""

    msg_ids: list[MsgId]


class RoomStatus(msgspec.Struct, frozen=True, omit_defaults=True):
    """``GET|PUT /v1/rooms/{room}``: the room's area and online count.

    ``announce`` is present (true) only when the room announces enters and
    exits, so a room that does not keeps the shape of PROTOCOL.md §2.2.
    """

    room: str
    area: str | None
    online: int
    announce: bool = False


class UserConnection(msgspec.Struct, frozen=True):
    """One live connection of a user."""

    conn_id: str
    node: str
    device: str
    rooms: list[str]
    #: Unix ms.
    connected_ms: int


class UserConnections(msgspec.Struct, frozen=True):
    """``GET /v1/users/{user}``: the user's live connections."""

    user: str
    connections: list[UserConnection]


class Kicked(msgspec.Struct, frozen=True):
    """``POST /v1/users/{user}/kick``: how many connections were closed with KICK."""

    kicked: int


class NodeStatus(NodeInfo, kw_only=True):
    """A gateway node's last report, and whether control sends clients to it."""

    healthy: Annotated[bool, Meta(description="reported within 5 s and not draining")]


class NodeList(msgspec.Struct, frozen=True):
    """``GET /v1/nodes``: every node that has reported."""

    nodes: list[NodeStatus]


class Drained(msgspec.Struct, frozen=True):
    """``POST /v1/nodes/{node}/drain``: the node's draining flag as now set."""

    node: str
    draining: bool


class Health(msgspec.Struct, frozen=True):
    """``GET /healthz``."""

    status: Literal["ok"] = "ok"


class TraceStep(msgspec.Struct, frozen=True):
    """One event of a message's path; its detail fields sit beside ``at_ms`` and ``event``.

    docs/guaranteed-delivery.md has the events and their details.
    """

    #: Unix ms.
    at_ms: int
    event: Annotated[str, Meta(extra_json_schema={"enum": list(EVENTS)})]


class MessageTraceAnswer(msgspec.Struct, frozen=True):
    """``GET /v1/messages/{msg_id}``: the message's path, time-ordered."""

    msg_id: MsgId
    events: list[TraceStep]
    #: Events past the per-message cap, not kept.
    dropped_events: int
