"""The gateway's sessions: what a connection's session asks for, carried out.

:class:`Sessions` is the :class:`~longlink.gateway.connection.SessionHost`
of every connection. It receives the session outputs that are not frames
(:mod:`longlink.protocol.server`) and does the work they ask for:

=====================  =====================================================
output                 work
=====================  =====================================================
``AuthRequest``        verify the token; register the session; hold the
                       rooms named in ``since`` and read their history;
                       index it in the hub; then ``opened`` (AUTH_OK with
                       ``recovered``); replay what was missed; enter its
                       rooms; redeliver its guaranteed messages
``JoinRequest``        registry join; with ``since``: hold, read, ``joined``
                       (JOIN_OK with ``recovered``), replay; else hub join
                       and ``joined``; enter
``LeaveRequest``       hub leave, exit; registry leave; then ``left``
``HeartbeatRequest``   HEARTBEAT_OK with the rooms' online counts; re-enter
``Acked``              guaranteed delivery's ACK (gateway/guarantee.py)
``UpstreamRequest``    to the event sink (gateway/events.py)
``ReportReceived``     counted, and into the quality windows (gateway/quality.py)
``LivenessChanged``    counted (suspect connections)
``ErrorSent``          counted by code
``Closed``             unindex, exit every room (with the reason), forget
                       unacked messages, unregister; close the transport
=====================  =====================================================

It also holds the browser origins the transports serve (their handshakes
ask it), owns the connections' ids, the set of connections not yet
authenticated, the transports still open (what a drain waits for) and the
online counts of the rooms held here (refreshed every second by the node
reporter). Recovery (PROTOCOL.md §1.4 rule 3) is done by
:mod:`~longlink.gateway.recovery`; the order of its steps around AUTH_OK and
JOIN_OK is kept here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from longlink.clientip import ProxyRule
from longlink.control.origins import Origins
from longlink.control.tokens import TokenExpired, TokenInvalid, TokenIssuer
from longlink.gateway.connection import KINDS, Connection
from longlink.gateway.events import Presence
from longlink.gateway.guarantee import Guarantee
from longlink.gateway.heartbeats import Heartbeats
from longlink.gateway.hub import Hub
from longlink.gateway.metrics import GatewayMetrics
from longlink.gateway.outbox import Outbox
from longlink.gateway.quality import Quality
from longlink.gateway.recovery import Plan, Recovery
from longlink.logic.base import Registry, SessionInfo
from longlink.protocol import ErrorCode, ProtocolError
from longlink.protocol.server import (
    Acked,
    AuthRequest,
    Closed,
    ErrorSent,
    Event,
    HeartbeatRequest,
    JoinRequest,
    LeaveRequest,
    LivenessChanged,
    ReportReceived,
    SessionRules,
    UpstreamRequest,
)

log = logging.getLogger("longlink.gateway")
#: The access log (longlink.logs): connections opened and closed, at DEBUG.
access = logging.getLogger("longlink.access")

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Sessions:
    """The host of every connection's session on one gateway (module docstring)."""

    def __init__(
        self,
        rules: SessionRules,
        outbox: Outbox,
        tokens: TokenIssuer,
        registry: Registry,
        hub: Hub,
        presence: Presence,
        guarantee: Guarantee,
        heartbeats: Heartbeats,
        quality: Quality,
        metrics: GatewayMetrics,
        spawn: Spawn,
        *,
        kick_same_device: bool,
        origins: Origins | None = None,
        recovery: Recovery,
        max_conns_per_ip: int = 0,
        proxies: ProxyRule | None = None,
    ) -> None:
        self.rules = rules
        #: Browser origins whose WebSocket upgrades are served (PROTOCOL §1.5); none by default.
        self.origins = origins if origins is not None else Origins()
        self.outbox = outbox
        self.tokens = tokens
        self.registry = registry
        self.hub = hub
        self.presence = presence
        self.guarantee = guarantee
        self.heartbeats = heartbeats
        self.quality = quality
        self.metrics = metrics
        self.spawn = spawn
        self.kick_same_device = kick_same_device
        self.recovery = recovery
        #: Connections per (listener kind, client address); trusted proxies are not counted.
        self.max_conns_per_ip = max_conns_per_ip
        self.proxies = proxies or ProxyRule()
        self.per_ip: dict[tuple[int, str], int] = {}
        #: Online counts of rooms as last read from the registry.
        self.online: dict[str, int] = {}
        #: Connections not authenticated yet.
        self.unauthenticated: set[Connection] = set()
        #: Connections whose transport is still open (a drain waits for these).
        self.transports: set[Connection] = set()
        self.all_released = asyncio.Event()
        self.all_released.set()
        self.accepting = True
        self._seq = 0
        self._prefix = f"{rules.node}-{os.getpid():x}{int(time.time()) & 0xFFFF:04x}-"
        self._errors = {code.value: metrics.errors.labels(code.value) for code in ErrorCode}

    @property
    def clock(self) -> float:
        return self.heartbeats.clock

    @property
    def owner(self) -> str:
        """What every conn_id of this process starts with (before its last ``-``): the
        HTTP stream's POSTs find their process by it (gateway/relay.py)."""
        return self._prefix[:-1]

    # ------------------------------------------------------------------ transports

    def accepted(self, conn: Connection) -> None:
        if not self.accepting or not self._admit_address(conn):
            conn.close()
            conn.shutdown()
            return
        self.transports.add(conn)
        self.all_released.clear()
        self._seq += 1
        conn.conn_id = f"{self._prefix}{self._seq:x}"
        conn.last_seen = self.clock
        self.unauthenticated.add(conn)
        self.heartbeats.watch(conn)  # the AUTH deadline (PROTOCOL §1.3 rule 1)
        kind = KINDS[conn.kind]
        self.metrics.accepted.labels(kind).inc()
        self.metrics.connections.labels(kind).inc()

    def _admit_address(self, conn: Connection) -> bool:
        """Count ``conn`` against its address's share of its listener; False when over it."""
        admitted, conn.peer = self.admit_peer(conn.kind, conn.transport)
        return admitted

    def admit_peer(
        self, kind: int, transport: asyncio.BaseTransport | None
    ) -> tuple[bool, str | None]:
        """Count a new connection of listener ``kind`` against its address's share:
        ``(admitted, the address counted or None)``; give the address back with
        :meth:`release_peer` when the connection ends (the port's front door,
        gateway/port.py, counts its connections this way too)."""
        if not self.max_conns_per_ip or transport is None:
            return True, None
        peer = transport.get_extra_info("peername")
        ip = peer[0] if isinstance(peer, tuple) and peer else None
        if not isinstance(ip, str) or self.proxies.trusted(ip):
            return True, None
        key = (kind, ip)
        count = self.per_ip.get(key, 0)
        if count >= self.max_conns_per_ip:
            self.metrics.refused.labels(KINDS[kind], "per_ip").inc()
            return False, None
        self.per_ip[key] = count + 1
        return True, ip

    def release_peer(self, kind: int, ip: str) -> None:
        """A connection counted by :meth:`admit_peer` ended."""
        key = (kind, ip)
        count = self.per_ip.get(key, 0) - 1
        if count > 0:
            self.per_ip[key] = count
        else:
            self.per_ip.pop(key, None)

    def released(self, conn: Connection) -> None:
        if conn.peer is not None:
            self.release_peer(conn.kind, conn.peer)
            conn.peer = None
        self.transports.discard(conn)
        if not self.transports:
            self.all_released.set()

    # ------------------------------------------------------------------ session outputs

    def handle(self, conn: Connection, event: Event) -> None:
        kind = type(event)
        if kind is Acked:
            self.guarantee.acked(conn, event.msg_ids)  # type: ignore[union-attr]
        elif kind is HeartbeatRequest:
            self._heartbeat(conn, event)  # type: ignore[arg-type]
        elif kind is ErrorSent:
            self._errors[event.code].inc()  # type: ignore[union-attr]
        elif kind is Closed:
            self._closed(conn, event.reason)  # type: ignore[union-attr]
        elif kind is AuthRequest:
            self._auth(conn, event)  # type: ignore[arg-type]
        elif kind is JoinRequest:
            self.spawn(self._join(conn, event))  # type: ignore[arg-type]
        elif kind is LeaveRequest:
            self._leave(conn, event)  # type: ignore[arg-type]
        elif kind is UpstreamRequest:
            self.presence.upstream(conn, event.data, event.seq)  # type: ignore[union-attr]
        elif kind is LivenessChanged:
            self.presence.liveness_changed(event.change)  # type: ignore[union-attr]
        elif kind is ReportReceived:
            report = event.report  # type: ignore[union-attr]
            self.metrics.reports.labels("dropped" if report is None else "accepted").inc()
            if report is not None:
                self.quality.report(conn, report, self.clock)

    def _heartbeat(self, conn: Connection, event: HeartbeatRequest) -> None:
        # PROTOCOL §1.3 rule 3: answer with the online counts of the rooms.
        counts = self.room_counts(conn.rooms)
        self.metrics.heartbeats.inc()
        conn.apply([conn.heartbeat_ok(event.seq, counts, interval=event.asked)])
        self.presence.heartbeat(conn)  # re-asserts the rooms (idempotent enter)

    def room_counts(self, rooms: Iterable[str]) -> dict[str, int]:
        """Online counts of ``rooms`` as last read from the registry (refreshed every second)."""
        return {room: self.online.get(room, 0) for room in rooms}

    # ------------------------------------------------------------------ AUTH

    def _auth(self, conn: Connection, request: AuthRequest) -> None:
        try:
            claims = self.tokens.verify(request.token)
        except TokenExpired:
            error = ProtocolError(ErrorCode.TOKEN_EXPIRED, "connection token expired")
            conn.apply(conn.fail(error, request.seq))
            return
        except TokenInvalid:
            error = ProtocolError(ErrorCode.AUTH_FAILED, "invalid connection token")
            conn.apply(conn.fail(error, request.seq))
            return
        conn.user = claims.user
        conn.device = claims.device
        self.spawn(self._step(conn, self._admit(conn, request, claims.issued_ms), request.seq))

    async def _admit(self, conn: Connection, request: AuthRequest, issued_ms: int) -> None:
        """Refuse a token a kick revoked (docs/security.md); else open the session."""
        revoked = await self.registry.revoked_before(conn.user)
        if revoked and issued_ms < revoked:
            error = ProtocolError(ErrorCode.AUTH_FAILED, "connection token revoked")
            conn.apply(conn.fail(error, request.seq))
            return
        if not conn.closed:
            await self._open(conn, request)

    async def _open(self, conn: Connection, request: AuthRequest) -> None:
        """Register the session, then index it (AUTH_OK follows at once: routable)."""
        rooms = list(request.rooms)
        info = SessionInfo(
            conn_id=conn.conn_id,
            node=self.rules.node,
            user=conn.user,
            device=conn.device,
            rooms=rooms,
            connected_ms=int(time.time() * 1000),
        )
        registry = self.registry
        await registry.add_session(info)
        if conn.closed:
            await registry.remove_session(conn.conn_id)
            return
        if rooms:
            self.online.update(await registry.room_online(rooms))
            if conn.closed:
                await registry.remove_session(conn.conn_id)
                return
        if self.kick_same_device:
            await self.presence.replace_older(conn, info.connected_ms)
            if conn.closed:
                await registry.remove_session(conn.conn_id)
                return
        # PROTOCOL §1.4 rule 3: the rooms named in since are held, not indexed, until
        # their missed messages are written (gateway/recovery.py).
        try:
            plan = await self._recover(conn, request.since)
        except BaseException:
            with contextlib.suppress(Exception):  # the registry may be what failed
                await registry.remove_session(conn.conn_id)
            raise
        if conn.closed:
            await registry.remove_session(conn.conn_id)
            return
        self.unauthenticated.discard(conn)
        self.hub.add(conn, [room for room in rooms if room not in request.since])
        recovered = plan.recovered if plan is not None else None
        conn.apply(
            conn.opened(conn.conn_id, conn.user, conn.device, request.seq, self.clock, recovered)
        )
        if conn.closed:
            return
        if plan is not None:
            self.recovery.replay(conn, plan)
        self.heartbeats.watch(conn)  # from now on: the liveness deadline
        if access.isEnabledFor(logging.DEBUG):
            access.debug(
                "conn %s open user=%s device=%s transport=%s rooms=%s",
                conn.conn_id,
                conn.user,
                conn.device,
                KINDS[conn.kind],
                ",".join(conn.rooms),
                extra={
                    "event": "conn_open",
                    "conn_id": conn.conn_id,
                    "user": conn.user,
                    "device": conn.device,
                    "transport": KINDS[conn.kind],
                    "rooms": list(conn.rooms),
                },
            )
        self.presence.entered(conn, conn.rooms)
        self.guarantee.opened(conn)  # PROTOCOL §1.3 rule 5: stored messages, oldest first

    # ------------------------------------------------------------------ rooms

    async def _join(self, conn: Connection, request: JoinRequest) -> None:
        room = request.room

        async def join() -> None:
            online = await self.registry.join(conn.conn_id, room)
            self.online[room] = online
            if conn.closed:
                return
            if request.since is None:
                self.hub.join(conn, room)
                conn.apply(conn.joined(room, online, request.seq, self.clock))
            elif room in conn.rooms:  # joined already: it missed nothing
                conn.apply(conn.joined(room, online, request.seq, self.clock, recovered=True))
            else:
                plan = await self._recover(conn, {room: request.since})
                if conn.closed or plan is None:
                    return
                recovered = plan.recovered[room]
                conn.apply(conn.joined(room, online, request.seq, self.clock, recovered))
                if conn.closed:
                    return
                self.recovery.replay(conn, plan)
            self.presence.entered(conn, (room,))

        await self._step(conn, join(), request.seq)

    async def _recover(self, conn: Connection, since: dict[str, int]) -> Plan | None:
        """Hold the rooms of ``since`` and read their history (gateway/recovery.py steps 1-2).

        None when ``since`` names no room. A failed read forgets the holds and raises.
        """
        if not since:
            return None
        recovery = self.recovery
        recovery.hold(conn, since)
        try:
            return await recovery.read(since)
        except BaseException:
            recovery.forget(conn, since)
            raise

    def _leave(self, conn: Connection, request: LeaveRequest) -> None:
        room = request.room
        self.recovery.forget(conn, (room,))
        self.hub.leave(conn, room)
        self.presence.left(conn, room)

        async def leave() -> None:
            self.online[room] = await self.registry.leave(conn.conn_id, room)
            conn.apply(conn.left(room, request.seq, self.clock))

        self.spawn(self._step(conn, leave(), request.seq))

    async def _step(self, conn: Connection, step: Coroutine[Any, Any, None], seq: int) -> None:
        """Run one asynchronous step of ``conn``'s session; a failure closes it with
        ``server_busy`` answering the request ``seq`` (the client reconnects)."""
        try:
            await step
        except Exception:
            log.exception("conn %s: step failed", conn.conn_id)
            error = ProtocolError(ErrorCode.SERVER_BUSY, "internal error, try again")
            conn.apply(conn.fail(error, seq))

    # ------------------------------------------------------------------ close

    def _closed(self, conn: Connection, reason: str) -> None:
        """The session is over (closed by either side): clean up once, close the transport."""
        self.heartbeats.forget(conn)
        self.unauthenticated.discard(conn)
        self.recovery.forget(conn)
        self.metrics.connections.labels(KINDS[conn.kind]).dec()
        if self.hub.conns.get(conn.conn_id) is conn:
            if access.isEnabledFor(logging.DEBUG):
                access.debug(
                    "conn %s closed user=%s reason=%s",
                    conn.conn_id,
                    conn.user,
                    reason,
                    extra={
                        "event": "conn_close",
                        "conn_id": conn.conn_id,
                        "user": conn.user,
                        "reason": reason,
                    },
                )
            self.hub.remove(conn)
            self.presence.closed(conn, reason)  # exits fire once (a kick fired them already)
            self.guarantee.closed(conn)  # its unacked messages stay in the offline store
            self.spawn(self._unregister(conn.conn_id))
        conn.shutdown()

    async def _unregister(self, conn_id: str) -> None:
        try:
            await self.registry.remove_session(conn_id)
        except Exception as exc:  # the registry is away (Redis down, a primary restarting)
            # Its entry stays until the node's sweep; routes to it find no connection.
            log.warning("could not unregister %s: %s", conn_id, exc)

    # ------------------------------------------------------------------ the registry again

    async def resync(self, node_now_ms: int) -> None:
        """The registry lost this node (Redis restarted empty): register every session again."""
        conns = list(self.hub.conns.values())
        log.warning(
            "registry lost node %s: registering %d sessions again", self.rules.node, len(conns)
        )
        for conn in conns:
            if conn.closed:
                continue
            await self.registry.add_session(
                SessionInfo(
                    conn_id=conn.conn_id,
                    node=self.rules.node,
                    user=conn.user,
                    device=conn.device,
                    rooms=list(conn.rooms),
                    connected_ms=node_now_ms,
                )
            )
