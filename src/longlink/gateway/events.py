"""The gateway's presence: enter/exit events, room announcements, liveness, upstream, replacement.

:class:`Presence` drives the pure machines of :mod:`longlink.logic.presence`
with what happens to connections, and hands the events they fire to the
:class:`~longlink.logic.events.EventSink` (the webhook sender), never
waiting for it. The gateway calls it:

=====================================  ==========================================
when                                   call
=====================================  ==========================================
AUTH_OK sent (rooms from AUTH)         :meth:`Presence.entered`
JOIN recorded                          :meth:`Presence.entered`
HEARTBEAT                              :meth:`Presence.heartbeat` (re-asserts rooms)
LEAVE                                  :meth:`Presence.left`
close, reset, error, kick, drain,      :meth:`Presence.closed` (with the reason)
heartbeats lost
the session's liveness changed         :meth:`Presence.liveness_changed` (counts)
UPSTREAM (within its rate limit)       :meth:`Presence.upstream`
AUTH of a device already connected     :meth:`Presence.replace_older`
=====================================  ==========================================

Per connection it keeps one slot of the :class:`Connection`: ``entered``
(the rooms whose ENTER fired, a tuple sharing the room strings). Liveness and
the upstream rate limit are the session's (:mod:`longlink.protocol.server`).
No task and no timer per connection.

Rooms set to announce (``PUT /v1/rooms/{room}`` ``{"announce": true}``) get an
EVENT frame ``{"type": "enter"|"exit", "room", "user"}`` on every node holding
connections of the room, sent through the node channel as a ``room_event``
command.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from longlink.bus.base import NodeChannel
from longlink.gateway.hub import Hub
from longlink.logic.base import Registry
from longlink.logic.events import ENTER, EXIT, UPSTREAM, EventSink, WebhookEvent
from longlink.logic.presence import on_close, on_leave, to_enter
from longlink.model import NodeCommand, Target
from longlink.protocol import ErrorCode, Op, ProtocolError, encode_frame
from longlink.protocol.liveness import Change, Liveness
from longlink.protocol.messages import Event, encode_body
from longlink.protocol.server import SessionState

if TYPE_CHECKING:
    from longlink.gateway.connection import Connection

__all__ = ["Presence", "PresenceMetrics"]

log = logging.getLogger("longlink.gateway")

#: Exit reasons (the ``reason`` of an exit event).
LEAVE, CLOSED, TIMEOUT, KICKED, REPLACED, DRAIN = (
    "leave",
    "closed",
    "timeout",
    "kicked",
    "replaced",
    "drain",
)


class PresenceMetrics:
    """Prometheus collectors of presence."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "longlink_presence_events",
            "Events fired by the gateway (enter, exit, upstream), whether or not a webhook is set",
            ["type"],
            registry=registry,
        )
        self.suspect = Gauge(
            "longlink_connections_suspect",
            "Open connections that missed a heartbeat (silent for 1.5 intervals)",
            registry=registry,
        )
        self.upstream_limited = Counter(
            "longlink_upstream_limited",
            "UPSTREAM frames refused with rate_limited",
            registry=registry,
        )


class Presence:
    """Presence and events of one gateway (see the module docstring)."""

    def __init__(
        self,
        hub: Hub,
        registry: Registry,
        channel: NodeChannel,
        sink: EventSink | None,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        *,
        node: str,
        metrics: CollectorRegistry,
    ) -> None:
        self.hub = hub
        self.registry = registry
        self.channel = channel
        self.sink = sink
        self.spawn = spawn
        self.node = node
        self.metrics = PresenceMetrics(metrics)
        self._ids = f"{node}-{secrets.token_hex(4)}-"
        self._seq = 0
        self._events = {k: self.metrics.events.labels(k) for k in (ENTER, EXIT, UPSTREAM)}

    # ------------------------------------------------------------------ enter / exit

    def entered(self, conn: Connection, rooms: Iterable[str]) -> None:
        """ASSERT ``rooms``: fire ENTER for each not entered yet (idempotent)."""
        if conn.state != SessionState.OPEN:
            return
        fresh = to_enter(conn.entered, rooms)
        if not fresh:
            return
        # logic/presence.py rule 5: an ENTER that was not accepted is not committed;
        # the next heartbeat asserts the room again.
        committed = [room for room in fresh if self._fire(conn, ENTER, room)]
        if committed:
            entered = (*conn.entered, *committed)
            # Usually every room is entered: share the session's tuple (one less per connection).
            conn.entered = conn.rooms if entered == conn.rooms else entered
            self._announce(ENTER, conn.user, committed)

    def heartbeat(self, conn: Connection) -> None:
        """HEARTBEAT: the connection re-asserts its rooms."""
        self.entered(conn, conn.rooms)

    def liveness_changed(self, change: Change) -> None:
        """The session missed a heartbeat, or was heard again after missing one."""
        if change == Change.SUSPECTED:
            self.metrics.suspect.inc()
        elif change == Change.RECOVERED:
            self.metrics.suspect.dec()

    def left(self, conn: Connection, room: str) -> None:
        """LEAVE of ``room`` (already out of ``conn.rooms``): fire EXIT if it was entered."""
        conn.entered, fired = on_leave(conn.entered, room)
        if fired:
            self._fire(conn, EXIT, room, reason=LEAVE)
            self._announce(EXIT, conn.user, [room])

    def closed(self, conn: Connection, reason: str) -> None:
        """CLOSE: fire EXIT for every entered room; idempotent (GONE is final)."""
        if conn.liveness == Liveness.SUSPECT:
            self.metrics.suspect.dec()
        conn.liveness = Liveness.GONE
        rooms = on_close(conn.entered)
        if not rooms:
            return
        conn.entered = ()
        for room in rooms:
            self._fire(conn, EXIT, room, reason=reason)
        self._announce(EXIT, conn.user, list(rooms))

    # ------------------------------------------------------------------ kicks

    def kick(self, conn: Connection, reason: str, exit_reason: str = KICKED) -> None:
        """Fire the exits with ``exit_reason``, then KICK ``conn`` with ``reason``."""
        self.closed(conn, exit_reason)
        conn.apply(conn.kick(reason, exit_reason))

    def kick_conn(self, conn_id: str, reason: str) -> bool:
        """``kick_conn`` node command: KICK one local connection; False if it is not here."""
        conn = self.hub.conns.get(conn_id)
        if conn is None:
            return False
        self.kick(conn, reason, reason)
        return True

    async def replace_older(self, conn: Connection, connected_ms: int) -> None:
        """KICK (``replaced``) the user's older connections from the same device, anywhere.

        Older means an earlier ``(connected_ms, conn_id)``, so of two logins
        racing each other exactly one survives.
        """
        mine = (connected_ms, conn.conn_id)
        for session in await self.registry.user_sessions(conn.user):
            if session.device != conn.device or (session.connected_ms, session.conn_id) >= mine:
                continue
            log.info("conn %s replaces %s (device %s)", conn.conn_id, session.conn_id, conn.device)
            if session.node == self.node:
                self.kick_conn(session.conn_id, REPLACED)
            else:
                command = NodeCommand("kick_conn", conn_id=session.conn_id, reason=REPLACED)
                await self.channel.send(session.node, [command])

    # ------------------------------------------------------------------ upstream

    def upstream(self, conn: Connection, data: bytes, seq: int) -> None:
        """UPSTREAM within the session's rate limit: hand the bytes to the sink, answer
        UPSTREAM_OK, or ``rate_limited`` when the sink's queue is full (not fatal)."""
        sink = self.sink
        if sink is None:  # the session refuses UPSTREAM itself when no sink is configured
            conn.apply(conn.fail(ProtocolError(ErrorCode.NOT_ALLOWED, "upstream is off"), seq))
            return
        rooms = list(conn.rooms)
        event = self._event(
            conn,
            UPSTREAM,
            rooms[0] if rooms else None,
            rooms=rooms,
            data_b64=base64.b64encode(data).decode("ascii"),
        )
        self._events[UPSTREAM].inc()
        if not sink.offer(event):
            self.metrics.upstream_limited.inc()
            error = ProtocolError(ErrorCode.RATE_LIMITED, "the event queue is full; retry later")
            conn.apply(conn.fail(error, seq))
            return
        conn.apply([conn.upstream_ok(seq)])

    # ------------------------------------------------------------------ room announcements

    def room_event(self, room: str, body: bytes) -> int:
        """``room_event`` node command: EVENT ``body`` to the local connections of ``room``."""
        conns = self.hub.rooms.get(room)
        if not conns:
            return 0
        frame = encode_frame(Op.EVENT, body)
        sent = 0
        for conn in list(conns):
            if conn.state == SessionState.OPEN:
                conn.apply([frame])
                sent += 1
        return sent

    def _announce(self, kind: str, user: str, rooms: list[str]) -> None:
        self.spawn(self._announce_rooms(kind, user, rooms))

    async def _announce_rooms(self, kind: str, user: str, rooms: list[str]) -> None:
        registry = self.registry
        for room in sorted(await registry.announced_rooms(rooms)):
            body = encode_body(Event(type=kind, room=room, user=user))
            command = NodeCommand("room_event", room=room, body=body)
            for node in sorted(await registry.nodes_for(Target(rooms=[room]))):
                await self.channel.send(node, [command])

    # ------------------------------------------------------------------ events

    def _event(
        self,
        conn: Connection,
        kind: str,
        room: str | None,
        *,
        reason: str | None = None,
        rooms: list[str] | None = None,
        data_b64: str | None = None,
    ) -> WebhookEvent:
        self._seq += 1
        return WebhookEvent(
            id=f"{self._ids}{self._seq:x}",
            type=kind,
            user=conn.user,
            device=conn.device,
            room=room,
            conn_id=conn.conn_id,
            node=self.node,
            at=int(time.time() * 1000),
            reason=reason,
            rooms=rooms,
            data_b64=data_b64,
        )

    def _fire(self, conn: Connection, kind: str, room: str, reason: str | None = None) -> bool:
        """Hand one enter/exit event on; True when accepted (always, without a sink)."""
        self._events[kind].inc()
        if self.sink is None:
            return True
        return self.sink.offer(self._event(conn, kind, room, reason=reason))
