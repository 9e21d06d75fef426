"""The JSON answers of the HTTP API as msgspec structs (PROTOCOL.md §2).

The routes render these structs, and :mod:`longlink.api.openapi` generates the
response schemas from them, so the document and the answers cannot drift
apart. Answers whose struct lives with the layer that computes it are
imported from there: :class:`~longlink.control.connect.Connected` (control),
:class:`~longlink.logic.base.Online` (logic), :class:`~longlink.trace.Reach`
(trace), :class:`~longlink.api.errors.ErrorBody` (every refusal).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from longlink.logic.base import NodeInfo
from longlink.logic.quality import CONNECT_BUCKETS_MS, RTT_BUCKETS_MS, SLOT_S, SLOTS, percentile
from longlink.trace import EVENTS

__all__ = [
    "Drained",
    "Health",
    "HistoryMessage",
    "Kicked",
    "MessageTraceAnswer",
    "NodeList",
    "NodeStatus",
    "PushAccepted",
    "PushBatchAccepted",
    "QualityReport",
    "QualityRow",
    "Quantiles",
    "RoomHistoryAnswer",
    "RoomStatus",
    "Stats",
    "TraceStep",
    "UserConnection",
    "UserConnections",
    "quality_report",
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


class HistoryMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    """One kept room message: ``data`` as pushed (JSON), or ``data_b64`` (bytes)."""

    msg_id: MsgId
    at: Annotated[int, Meta(description="acceptance, unix ms")]
    data: (
        Annotated[Any, Meta(description="the push's data: the client got its JSON encoding")]
        | UnsetType
    ) = UNSET
    data_b64: (
        Annotated[
            str,
            Meta(
                description="the pushed bytes, standard base64",
                extra_json_schema={"contentEncoding": "base64"},
            ),
        ]
        | UnsetType
    ) = UNSET

    #: Exactly one of data and data_b64 (as JSON Schema, merged into the OpenAPI component).
    json_schema_rules: ClassVar[dict[str, Any]] = {
        "oneOf": [{"required": ["data"]}, {"required": ["data_b64"]}]
    }


class RoomHistoryAnswer(msgspec.Struct, frozen=True):
    """``GET /v1/rooms/{room}/history`` (PROTOCOL.md §1.4 rule 4): kept messages, oldest first.

    With ``since``: the messages after that one, and ``recovered`` true when
    the history still held it; otherwise every kept message and false.
    """

    messages: list[HistoryMessage]
    recovered: bool


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


class Quantiles(msgspec.Struct, frozen=True, omit_defaults=True):
    """Quantiles of a distribution in milliseconds (null: nothing measured)."""

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None


class QualityRow(msgspec.Struct, frozen=True):
    """One transport of one node over the quality window (PROTOCOL.md §1.6 rule 3)."""

    region: str
    node: str
    transport: str
    connections: int
    #: Heartbeat round trips the clients reported (the kernel's when none was).
    rtt_ms: Quantiles
    #: The kernel's smoothed RTT of sampled sockets (TCP_INFO).
    kernel_rtt_ms: Quantiles
    connect_ms: Quantiles
    reconnects_per_hour: float
    failures_per_hour: float
    rtt_samples: int
    kernel_samples: int
    #: The distributions behind the quantiles (extension, for the dashboard): samples per
    #: bucket of ``rtt_bounds_ms`` (the same source as ``rtt_ms``) and ``connect_bounds_ms``;
    #: the last count is everything above the last bound.
    rtt_counts: list[int]
    connect_counts: list[int]


class QualityReport(msgspec.Struct, frozen=True):
    """``GET /v1/quality``: per region, node and transport."""

    window_s: float
    rows: list[QualityRow]
    #: Upper bounds (ms) of the buckets of every row's ``rtt_counts`` and ``connect_counts``.
    rtt_bounds_ms: list[int]
    connect_bounds_ms: list[int]


def _quantiles(counts: list[int], bounds: tuple[int, ...], *qs: float) -> Quantiles:
    values = [percentile(counts, bounds, q) for q in qs]
    return Quantiles(**dict(zip(("p50", "p90", "p99"), values, strict=False)))


def quality_report(nodes: list[NodeInfo]) -> QualityReport:
    """The rows of ``GET /v1/quality`` from the nodes' reports (every process's, merged
    by the registry), ordered by region, node and transport."""
    rows: list[QualityRow] = []
    window = 0.0
    for node in sorted(nodes, key=lambda n: (n.region, n.node)):
        for transport, snap in sorted(node.quality.items()):
            window = max(window, snap.window_s)
            client_rtt = snap.rtt if sum(snap.rtt) else snap.kernel_rtt
            rows.append(
                QualityRow(
                    region=node.region,
                    node=node.node,
                    transport=transport,
                    connections=snap.connections,
                    rtt_ms=_quantiles(client_rtt, RTT_BUCKETS_MS, 0.5, 0.9, 0.99),
                    kernel_rtt_ms=_quantiles(snap.kernel_rtt, RTT_BUCKETS_MS, 0.5, 0.9, 0.99),
                    connect_ms=_quantiles(snap.connect, CONNECT_BUCKETS_MS, 0.5, 0.9),
                    reconnects_per_hour=snap.per_hour(snap.reconnects),
                    failures_per_hour=snap.per_hour(snap.failures),
                    rtt_samples=sum(snap.rtt),
                    kernel_samples=sum(snap.kernel_rtt),
                    rtt_counts=_counts(client_rtt, RTT_BUCKETS_MS),
                    connect_counts=_counts(snap.connect, CONNECT_BUCKETS_MS),
                )
            )
    return QualityReport(
        window_s=window or SLOTS * SLOT_S,
        rows=rows,
        rtt_bounds_ms=list(RTT_BUCKETS_MS),
        connect_bounds_ms=list(CONNECT_BUCKETS_MS),
    )


def _counts(counts: list[int], bounds: tuple[int, ...]) -> list[int]:
    """One count per bucket of ``bounds`` and the overflow (zeros when nothing was measured)."""
    return list(counts) if len(counts) == len(bounds) + 1 else [0] * (len(bounds) + 1)


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


#: Figures of one counter by label value (``{"none": …, "zlib": …, "br": …}``).
Counts = dict[str, int]


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v1/stats``: this process's counters since it started (its ``/metrics``, summed).

    Rates are differences between two reads over their ``at_ms``. A figure of
    a role this process does not run stays 0; several processes each answer
    for themselves (Prometheus is the place to sum a deployment).
    """

    #: Unix ms of the read.
    at_ms: int
    node: str
    roles: list[str]
    #: Messages queued by the push API (all keys).
    accepted: int
    #: Messages taken from the queues by dispatch (API pushes, and the demo's echoes).
    messages_in: int
    #: Messages whose target had no connection anywhere.
    unrouted: int
    #: Messages written to connections (a batch of n written to c connections: n x c).
    deliveries: int
    #: Frames carrying pushes written to connections (a room batch is one).
    frames_written: int
    #: Open client connections on this process's gateway.
    connections: int
    #: Room batches made by dispatch, and the messages in them (their ratio: aggregation).
    room_batches: int
    batched_messages: int
    #: Bytes of room batch bodies by encoding: ``none`` before compression, ``zlib``, ``br``.
    batch_bytes: Counts
    #: Messages waiting in the queues, by priority.
    queue_depth: Counts
    #: Pushes dropped because a client's write buffer was full.
    slow_drops: int
    #: UPSTREAM messages taken from clients.
    upstream: int
    #: REPORT frames (PROTOCOL.md §1.6) by outcome: ``accepted``, ``dropped`` (malformed, too big).
    quality_reports: Counts
    #: TCP_INFO samples the gateway took of its connections.
    kernel_samples: int
