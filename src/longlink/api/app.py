"""The HTTP app: control (``/v1/connect``), push and query routes (PROTOCOL.md §2).

:func:`build_app` turns a :class:`~longlink.api.services.Services` into a
Starlette app; :class:`~longlink.api.server.HttpServer` serves it. JSON goes
in and out through msgspec. Every refusal is an
:class:`~longlink.api.errors.ApiError` rendered as
``{"error": {"code", "message"}}``, unknown routes (404) and wrong methods
(405) included.

Every route needs an API key (``Authorization: Bearer``) except
``/v1/connect`` (clients, authenticated by their ticket), ``/healthz``,
``/readyz``, ``/docs``, ``/metrics``, ``/openapi.json``, the SDK and the pages (``/``,
``/admin``, ``/web/*``: the dashboard asks for the key itself). ``/v1/connect`` answers
CORS, preflight included, for the allowed browser origins (:mod:`longlink.api.cors`).

The push routes never wait for delivery: a message is answered 202 once the
queue holds it (ARCHITECTURE.md, service layer "must not block on delivery").
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import msgspec
from msgspec import UnsetType
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from longlink.api import errors
from longlink.api.admission import RELOADABLE_SETTINGS, PushGate
from longlink.api.cors import Cors
from longlink.api.errors import ApiError
from longlink.api.keys import ApiKey
from longlink.api.openapi import MAX_HISTORY_LIMIT, openapi_document
from longlink.api.ops import ops_routes
from longlink.api.params import (
    history_path,
    path_id,
    query_int,
    query_msg_id,
    read_body,
)
from longlink.api.push import Pusher, PushNotQueued
from longlink.api.refusals import (
    RETRY_AFTER_S,
    connect_refusal,
    on_api_error,
    on_http_error,
    on_internal_error,
    on_outage,
)
from longlink.api.responses import (
    Drained,
    Health,
    HistoryMessage,
    Kicked,
    NodeList,
    NodeStatus,
    PushAccepted,
    PushBatchAccepted,
    RoomHistoryAnswer,
    RoomStatus,
    UserConnection,
    UserConnections,
    quality_report,
)
from longlink.api.schemas import (
    DrainBody,
    KickBody,
    PushRequest,
    RoomAreaBody,
    decode_body,
    parse_connect,
    parse_push,
    parse_push_batch,
)
from longlink.api.services import Services
from longlink.api.stats import read_stats
from longlink.clientip import AddressRate, ProxyRule
from longlink.control.connect import (
    ConnectError,
    Connector,
    ConnectRequest,
)
from longlink.control.endpoints import node_healthy
from longlink.control.origins import Origins
from longlink.control.tickets import TicketVerifier
from longlink.history.base import HistoryEntry, after
from longlink.model import IdsUnavailable, NodeCommand
from longlink.settings import ConfigError, Settings
from longlink.trace import LocalTraceView, TraceView
from longlink.web.pages import page_routes
from longlink.web.sdk_file import sdk_route

__all__ = ["BODY_LIMIT", "RELOADABLE_SETTINGS", "build_app", "read_body", "reload_app"]

JSON = "application/json"
# The push routes' body limits are settings (max_push_body, max_batch_body; api.schemas.Limits).
#: Largest body of every other route.
BODY_LIMIT = 64 << 10

_encoder = msgspec.json.Encoder()
log = logging.getLogger("longlink.api")
#: The access log (longlink.logs): pushes accepted, at DEBUG.
access = logging.getLogger("longlink.access")


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(content), status_code=status, media_type=JSON, headers=headers)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _history_message(entry: HistoryEntry) -> HistoryMessage:
    if entry.json:
        # The bytes the client got are the push's data JSON-encoded: put back as they are.
        data = msgspec.Raw(entry.payload)
        return HistoryMessage(msg_id=str(entry.msg_id), at=entry.at_ms, data=data)
    text = base64.b64encode(entry.payload).decode("ascii")
    return HistoryMessage(msg_id=str(entry.msg_id), at=entry.at_ms, data_b64=text)


class _Api:
    """The route handlers, bound to one :class:`Services`: they parse requests and render answers.

    The use cases are elsewhere: the connect flow in
    :class:`~longlink.control.connect.Connector`, the push in
    :class:`~longlink.api.push.Pusher`; admission (keys, scopes, rates,
    overload) in :class:`~longlink.api.admission.PushGate`.
    """

    def __init__(self, services: Services, trace_view: TraceView) -> None:
        self.services = services
        self.trace_view = trace_view
        self.settings = settings = services.settings
        # Keys, limits, overload, per-key metrics; swapped by reload_app (SIGHUP).
        self.gate = PushGate(settings, services.queue, services.metrics, services.clock)
        self.connector = Connector(
            nodes=services.registry,
            tokens=services.tokens,
            tickets=ticket_verifier(settings),
            demo=settings.demo,
            heartbeat_s=settings.heartbeat_s,
            bad_rtt_ms=settings.quality_bad_rtt_ms,
        )
        self.pusher = Pusher(
            queue=services.queue, ids=services.ids, tracer=services.tracer, store=services.store
        )
        # Browsers (PROTOCOL §1.5): the one origin policy, also the gateway's.
        self.cors = Cors(Origins.parse(settings.allowed_origins, demo=settings.demo))
        self.openapi = _encoder.encode(openapi_document())
        # Per client address (docs/security.md): X-Forwarded-For from trusted proxies only.
        self.proxies = ProxyRule(settings.trusted_proxies)
        self.connect_rate = AddressRate(settings.connect_rate, settings.connect_burst)

    def client_ip(self, request: Request) -> str | None:
        """The client's address (``X-Forwarded-For`` when the peer is a trusted proxy)."""
        peer = request.client.host if request.client is not None else None
        return self.proxies.client_ip(peer, request.headers.get("x-forwarded-for"))

    def _key(self, request: Request) -> ApiKey:
        return self.gate.authenticate(request.headers.get("authorization"))

    # -------------------------------------------------------------- control

    async def connect(self, request: Request) -> Response:
        """``POST /v1/connect`` (PROTOCOL.md §2.1); CORS for the allowed origins (§1.5).

        ``OPTIONS`` is the CORS preflight: 204, or 403 for an origin not allowed.
        """
        origin = request.headers.get("origin")
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=self.cors.preflight(origin))
        cors = self.cors.headers(origin)
        try:
            ip = self.client_ip(request)
            if ip is not None and not self.connect_rate.allow(ip, self.services.clock()):
                raise ApiError(
                    429,
                    errors.RATE_LIMITED,
                    f"at most {self.settings.connect_rate:g} connects per second per address",
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            body = parse_connect(await read_body(request, BODY_LIMIT))
            wanted = ConnectRequest(
                ticket=body.ticket,
                user=body.user,
                device=body.device,
                region=body.region,
                transports=tuple(body.transports) if body.transports is not None else None,
                failed=tuple(body.failed or ()),
            )
            try:
                connected = await self.connector.connect(wanted)
            except ConnectError as exc:
                raise connect_refusal(exc) from exc
        except ApiError as exc:
            exc.headers.update(cors)  # the page may read why it was refused
            raise
        return _json(connected, headers=cors)

    # -------------------------------------------------------------- push

    async def push(self, request: Request) -> Response:
        """``POST /v1/push`` (PROTOCOL.md §2.2): 202 ``{"msg_id"}``."""
        gate, key = self.gate, None
        try:
            key = gate.authenticate(request.headers.get("authorization"))
            push = parse_push(await read_body(request, gate.limits.push_body), gate.limits)
            pushes = gate.admit(key, [push], batch=False)
            ids = await self._queue(key, pushes)
        except ApiError as exc:
            gate.refused(key, exc)
            raise
        return _json(PushAccepted(str(ids[0])), 202)

    async def push_batch(self, request: Request) -> Response:
        """``POST /v1/push/batch`` (PROTOCOL.md §2.2): 202 ``{"msg_ids"}``, all or none checked."""
        gate, key = self.gate, None
        try:
            key = gate.authenticate(request.headers.get("authorization"))
            body = await read_body(request, gate.limits.batch_body)
            pushes = gate.admit(key, parse_push_batch(body, gate.limits), batch=True)
            ids = await self._queue(key, pushes)
        except ApiError as exc:
            gate.refused(key, exc)
            raise
        return _json(PushBatchAccepted([str(i) for i in ids]), 202)

    async def _queue(self, key: ApiKey, pushes: list[PushRequest]) -> list[int]:
        """Hand ``pushes`` to the push use case; count them per key; 503 when not all are queued."""
        try:
            ids = await self.pusher.push(pushes)
        except IdsUnavailable as exc:  # the id lease lapsed (docs/message-ids.md)
            raise ApiError(
                503,
                errors.UNAVAILABLE,
                f"{exc}; retry later",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from exc
        except PushNotQueued as exc:
            self.gate.accepted_many(key, pushes[: len(exc.queued)])
            self.gate.queue_full(key, exc.priority, exc.refused)
            raise ApiError(
                503,
                errors.OVERLOADED,
                exc.message,
                headers={"Retry-After": str(RETRY_AFTER_S)},
                extra={"msg_ids": [str(i) for i in exc.queued]} if exc.queued else None,
            ) from exc
        self.gate.accepted_many(key, pushes)
        if access.isEnabledFor(logging.DEBUG):
            _log_pushes(key, pushes, ids)
        return ids

    # -------------------------------------------------------------- message trace

    async def message_trace(self, request: Request) -> Response:
        """``GET /v1/messages/{msg_id}``: the message's path with timestamps (404 unknown)."""
        self._key(request)
        raw: str = request.path_params["msg_id"]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 20 or int(raw) >= 1 << 64:
            raise ApiError(400, errors.BAD_REQUEST, "msg_id: expected a decimal message id")
        trace = await self.trace_view.trace(int(raw))
        if trace is None:
            raise ApiError(
                404, errors.NOT_FOUND, f"no trace of message {raw} (unknown, or past retention)"
            )
        return _json(trace.to_json())

    async def reach(self, request: Request) -> Response:
        """``GET /v1/stats/reach[?window_s=N]``: reach of guaranteed deliveries."""
        self._key(request)
        raw = request.query_params.get("window_s")
        window: int | None = None
        if raw is not None:
            if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 10**9:
                raise ApiError(400, errors.BAD_REQUEST, "window_s: expected whole seconds >= 1")
            window = int(raw)
        return _json(await self.trace_view.reach(window))

    async def stats(self, request: Request) -> Response:
        """``GET /v1/stats``: this process's counters (the admin dashboard's figures)."""
        self._key(request)
        settings = self.settings
        return _json(read_stats(self.services.metrics, node=settings.node_id, roles=settings.roles))

    # -------------------------------------------------------------- queries

    async def online(self, request: Request) -> Response:
        """``GET /v1/online``: ``{"total", "rooms", "areas"}``."""
        self._key(request)
        return _json(await self.services.registry.online())

    async def _room(self, room: str) -> Response:
        registry = self.services.registry
        online = await registry.room_online([room])
        return _json(
            RoomStatus(
                room=room,
                area=await registry.room_area(room),
                online=online.get(room, 0),
                announce=bool(await registry.announced_rooms([room])),
            )
        )

    async def room(self, request: Request) -> Response:
        """``GET /v1/rooms/{room}`` ``{"room", "area", "online"}``; ``PUT`` ``{"area"}`` sets it."""
        self._key(request)
        return await self._room_call(request, path_id(request, "room", self.gate.limits.id_problem))

    async def _room_call(self, request: Request, room: str) -> Response:
        limits = self.gate.limits
        if request.method == "PUT":
            body = decode_body(await read_body(request, BODY_LIMIT), RoomAreaBody)
            if isinstance(body.area, UnsetType) and isinstance(body.announce, UnsetType):
                raise ApiError(400, errors.BAD_REQUEST, "body: give area, announce or both")
            problem = limits.id_problem(body.area) if isinstance(body.area, str) else None
            if problem:
                raise ApiError(400, errors.BAD_REQUEST, f"area: {problem}")
            if not isinstance(body.area, UnsetType):
                await self.services.registry.set_room_area(room, body.area)
            if not isinstance(body.announce, UnsetType):
                await self.services.registry.set_room_announce(room, body.announce)
        return await self._room(room)

    async def room_history(self, request: Request) -> Response:
        """``GET /v1/rooms/{room}/history?since=&limit=`` (PROTOCOL.md §1.4 rule 4).

        The kept messages after ``since`` (all of them without it), oldest
        first, at most ``limit``; ``recovered`` answers ``since``. The key
        needs the push scope of the room (targets ``rooms``, room_prefixes).
        A room whose id ends in ``/history`` is reached with its slash
        percent-encoded: ``GET /v1/rooms/news%2Fhistory`` is that room itself.
        """
        key = self._key(request)
        limits = self.gate.limits
        room, history = history_path(request)
        problem = limits.id_problem(room)
        if problem:
            raise ApiError(400, errors.BAD_REQUEST, f"room: {problem}")
        if not history:
            return await self._room_call(request, room)
        key.check_room(room)
        since = query_msg_id(request, "since")
        limit = query_int(request, "limit", 1, MAX_HISTORY_LIMIT)
        store = self.services.history
        kept = (await store.read([room]))[room] if store is not None and store.size > 0 else []
        missed, recovered = after(kept, since)
        if limit is not None:
            missed = missed[:limit]
        return _json(RoomHistoryAnswer([_history_message(e) for e in missed], recovered))

    async def get_user(self, request: Request) -> Response:
        """``GET /v1/users/{user}``: the user's live connections."""
        self._key(request)
        user = path_id(request, "user", self.gate.limits.id_problem)
        sessions = await self.services.registry.user_sessions(user)
        connections = [
            UserConnection(s.conn_id, s.node, s.device, list(s.rooms), s.connected_ms)
            for s in sessions
        ]
        return _json(UserConnections(user, connections))

    async def kick_user(self, request: Request) -> Response:
        """``POST /v1/users/{user}/kick`` ``{"reason"?}``: ``{"kicked": n}``."""
        self._key(request)
        user = path_id(request, "user", self.gate.limits.id_problem)
        body = decode_body(await read_body(request, BODY_LIMIT), KickBody, empty_ok=True)
        # The user's tokens issued so far are refused at AUTH from now on, for as long as
        # any of them can live (docs/security.md, "Revocation").
        await self.services.registry.revoke_user(user, _now_ms(), self.settings.token_ttl_s)
        if self.services.kick is not None:
            kicked = await self.services.kick(user, body.reason)
        elif self.services.channel is not None:
            # One kick_user command per node that holds the user's connections.
            sessions = await self.services.registry.user_sessions(user)
            command = NodeCommand("kick_user", user=user, reason=body.reason)
            for node in sorted({s.node for s in sessions}):
                await self.services.channel.send(node, [command])
            kicked = len(sessions)
        else:
            raise ApiError(
                501, errors.NOT_SUPPORTED, "this process runs no gateway it could kick from"
            )
        return _json(Kicked(kicked))

    async def nodes(self, request: Request) -> Response:
        """``GET /v1/nodes``: every reporting node with load, ``healthy`` and ``draining``."""
        self._key(request)
        now_ms = _now_ms()
        nodes = [
            NodeStatus(**msgspec.structs.asdict(node), healthy=node_healthy(node, now_ms))
            for node in await self.services.registry.nodes()
        ]
        return _json(NodeList(nodes))

    async def quality(self, request: Request) -> Response:
        """``GET /v1/quality``: connection quality per region, node and transport (§1.6)."""
        self._key(request)
        now_ms = _now_ms()
        nodes = [n for n in await self.services.registry.nodes() if node_healthy(n, now_ms)]
        return _json(quality_report(nodes))

    async def drain(self, request: Request) -> Response:
        """``POST /v1/nodes/{node}/drain`` (``{"draining": false}`` undoes it)."""
        self._key(request)
        node = path_id(request, "node")
        body = decode_body(await read_body(request, BODY_LIMIT), DrainBody, empty_ok=True)
        if not await self.services.registry.set_draining(node, body.draining):
            raise ApiError(404, errors.NOT_FOUND, f"node {node!r} is unknown")
        if body.draining and self.services.channel is not None:
            # Control stops listing the node; the node asks its clients to move.
            await self.services.channel.send(node, [NodeCommand("drain")])
        return _json(Drained(node, body.draining))

    # -------------------------------------------------------------- operations

    async def healthz(self, request: Request) -> Response:
        """``GET /healthz``: liveness."""
        return _json(Health())

    async def prometheus(self, request: Request) -> Response:
        """``GET /metrics``: Prometheus text format of ``Services.metrics``."""
        return Response(generate_latest(self.services.metrics), media_type=CONTENT_TYPE_LATEST)

    async def openapi_json(self, request: Request) -> Response:
        """``GET /openapi.json``."""
        return Response(self.openapi, media_type=JSON)


def _log_pushes(key: ApiKey, pushes: list[PushRequest], ids: list[int]) -> None:
    """The access log's ``push`` records (longlink.logs): the key's name, never the key."""
    for push, msg_id in zip(pushes, ids, strict=False):
        target = push.target
        kind = target.kind
        count = 1 if kind == "all" else len(getattr(target, kind))
        access.debug(
            "push %d accepted key=%s to=%s:%d priority=%s guaranteed=%s bytes=%d",
            msg_id,
            key.name,
            kind,
            count,
            push.priority.value,
            push.guaranteed,
            len(push.payload),
            extra={
                "event": "push",
                "msg_id": str(msg_id),
                "key": key.name,
                "target": kind,
                "targets": count,
                "priority": push.priority.value,
                "guaranteed": push.guaranteed,
                "bytes": len(push.payload),
            },
        )


def build_app(services: Services, trace_view: TraceView | None = None) -> Starlette:
    """The HTTP app of PROTOCOL.md §2 over ``services``.

    Registers the API's counters in ``services.metrics`` (so build one app per
    registry). Serve it with :class:`~longlink.api.server.HttpServer`. The
    trace routes read ``trace_view`` (default: ``services.tracer`` alone; a
    multi-process deployment gives :class:`~longlink.trace.redis.RedisTraceView`).
    """
    api = _Api(services, trace_view or LocalTraceView(services.tracer))
    routes = [
        Route("/v1/connect", api.connect, methods=["POST", "OPTIONS"]),
        Route("/v1/push", api.push, methods=["POST"]),
        Route("/v1/push/batch", api.push_batch, methods=["POST"]),
        Route("/v1/online", api.online, methods=["GET"]),
        # The history route comes first: a room id may contain "/" ({room:path}).
        Route("/v1/rooms/{room:path}/history", api.room_history, methods=["GET"]),
        Route("/v1/rooms/{room:path}", api.room, methods=["GET", "PUT"]),
        # The kick route comes first: a user id may contain "/" ({user:path}).
        Route("/v1/users/{user:path}/kick", api.kick_user, methods=["POST"]),
        Route("/v1/users/{user:path}", api.get_user, methods=["GET"]),
        Route("/v1/nodes", api.nodes, methods=["GET"]),
        Route("/v1/quality", api.quality, methods=["GET"]),
        Route("/v1/nodes/{node}/drain", api.drain, methods=["POST"]),
        Route("/v1/messages/{msg_id}", api.message_trace, methods=["GET"]),
        Route("/v1/stats/reach", api.reach, methods=["GET"]),
        Route("/v1/stats", api.stats, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/metrics", api.prometheus, methods=["GET"]),
        Route("/openapi.json", api.openapi_json, methods=["GET"]),
        sdk_route(),
        *page_routes(),  # the demo at /, the dashboard at /admin (web/pages.py)
        *ops_routes(services),  # /readyz, /docs
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: on_api_error,
            HTTPException: on_http_error,
            **dict.fromkeys(services.outages, on_outage),
            500: on_internal_error,
        },
    )
    app.state.gate = api.gate
    app.state.connector = api.connector
    return app


def ticket_verifier(settings: Settings) -> TicketVerifier | None:
    """The ticket verifier ``settings`` configure (None without a ticket secret);
    ConfigError when the secrets are malformed."""
    if not settings.ticket_secret and not settings.ticket_secrets.strip():
        return None
    try:
        return TicketVerifier(
            settings.ticket_secret, settings.max_ticket_ttl_s, settings.ticket_secrets
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def reload_app(app: Starlette, settings: Settings) -> None:
    """Give a running app the API keys, push limits, overload mark and ticket secrets of
    ``settings``.

    The swap is atomic: requests see the old set or the new one. A removed
    key gets 401 from the next request on; a key kept under the same name
    and rate keeps its rate bucket. Raises
    :class:`~longlink.settings.ConfigError` and changes nothing when the
    limits are impossible. Every other setting needs a restart.
    """
    tickets = ticket_verifier(settings)
    gate: PushGate = app.state.gate
    gate.reload(settings)
    connector: Connector = app.state.connector
    connector.tickets = tickets
