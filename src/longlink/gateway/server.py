"""The gateway node: listeners, the connection hub, heartbeat wheel and node reports.

Lifetime (``async with Gateway(...)``):

1. start: bind TCP and WebSocket listeners, attach to the node channel,
   report the node to the registry, start the tick and report loops;
2. run: connections come and go; dispatch calls :meth:`Gateway.deliver`;
3. close (idempotent), in this order: stop accepting; KICK every client with
   reason ``drain`` so SDKs reconnect through control to another node; wait
   up to ``drain_timeout_s`` for their transports to flush and close; detach
   from the node channel; stop the loops; forget the node in the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from longlink.bus.base import NodeChannel
from longlink.control.tokens import TokenIssuer
from longlink.gateway.connection import Connection
from longlink.gateway.delivery import Delivery
from longlink.gateway.events import CLOSED, DRAIN, Presence
from longlink.gateway.guarantee import Guarantee
from longlink.gateway.hub import Hub
from longlink.gateway.tcp import TcpConnection
from longlink.gateway.websocket import WsConnection
from longlink.gateway.wheel import TimingWheel
from longlink.lifetime import cancel_requested
from longlink.logic.base import NodeInfo, Registry, SessionInfo
from longlink.logic.events import EventSink
from longlink.model import Envelope, Message, NodeCommand, RoomBatch
from longlink.protocol import ErrorCode, Frame, ProtocolError
from longlink.protocol.session import SessionState
from longlink.settings import Settings
from longlink.store.base import OfflineStore
from longlink.trace import Tracer

log = logging.getLogger("longlink.gateway")

TICK_S = 0.1
WHEEL_SLOTS = 1024
HEARTBEAT_GRACE = 2.5  # PROTOCOL §1.3 rule 3
REPORT_INTERVAL_S = 1.0


class GatewayMetrics:
    """Prometheus collectors of the access layer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Gauge(
            "longlink_connections", "Open client connections", ["transport"], registry=registry
        )
        self.accepted = Counter(
            "longlink_connections_accepted",
            "Connections accepted",
            ["transport"],
            registry=registry,
        )
        self.errors = Counter(
            "longlink_protocol_errors", "ERROR frames sent", ["code"], registry=registry
        )
        self.pushes_written = Counter(
            "longlink_push_writes", "PUSH frames written to connections", registry=registry
        )
        self.slow_drops = Counter(
            "longlink_slow_client_drops",
            "Pushes dropped because a client's write buffer was full",
            ["priority"],
            registry=registry,
        )


class Gateway:
    """One access node: accepts clients over TCP and WebSocket and writes their pushes."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        channel: NodeChannel,
        tokens: TokenIssuer,
        metrics: CollectorRegistry | None = None,
        events: EventSink | None = None,
        store: OfflineStore | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.channel = channel
        self.tokens = tokens
        metrics = metrics or CollectorRegistry()
        self.metrics = GatewayMetrics(metrics)
        self.hub = Hub()
        # Enter/exit, upstream and liveness; ``events`` is the webhook sender (or None).
        self.presence = Presence(self, events, metrics)
        # Guaranteed messages: ACK_REQUIRED, retries, redelivery from ``store`` at AUTH_OK.
        self.tracer = tracer if tracer is not None else Tracer.from_settings(settings)
        self.guarantee = Guarantee(self, store, self.tracer, metrics)
        self.delivery = Delivery(self, metrics)  # write paths, dedup, outbox (docs/dispatch.md)
        self.clock = time.monotonic()
        self.wheel: TimingWheel[Connection] = TimingWheel(TICK_S, WHEEL_SLOTS, self.clock)
        self.tcp_port = 0
        self.ws_port = 0
        self._online: dict[str, int] = {}
        self._conn_seq = 0
        self._conn_prefix = f"{settings.node_id}-{os.getpid():x}{int(time.time()) & 0xFFFF:04x}-"
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._accepted: set[Connection] = set()  # not yet authenticated
        self._transports: set[Connection] = set()  # connection_lost not yet called
        self._all_released = asyncio.Event()
        self._all_released.set()
        self._closed = False
        self._cpu = (time.monotonic(), time.process_time())

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind the listeners and begin serving; ports are then in ``tcp_port``/``ws_port``."""
        loop = asyncio.get_running_loop()
        s = self.settings
        # reuse_port: several gateway processes listen on one port and the kernel spreads
        # new connections over them (SO_REUSEPORT; docs/deployment.md).
        reuse_port = s.reuse_port or None

        async def listen(factory: Callable[[], Connection], port: int) -> asyncio.Server:
            return await loop.create_server(
                factory, s.host, port, reuse_address=True, reuse_port=reuse_port, backlog=4096
            )

        tcp = await listen(lambda: TcpConnection(self), s.tcp_port)
        ws = await listen(lambda: WsConnection(self), s.ws_port)
        self._servers = [tcp, ws]
        self.tcp_port = tcp.sockets[0].getsockname()[1]
        self.ws_port = ws.sockets[0].getsockname()[1]
        await self.channel.attach(s.node_id, self.deliver)
        await self._report()
        self._loops = [
            asyncio.create_task(self._tick_loop(), name="gateway-tick"),
            asyncio.create_task(self._report_loop(), name="gateway-report"),
            asyncio.create_task(self.guarantee.run(), name="gateway-retries"),
        ]

    async def close(self) -> None:
        """Drain and stop (see the module docstring for the order); idempotent."""
        if self._closed:
            return
        self._closed = True
        for server in self._servers:
            server.close()
        for conn in list(self._accepted):
            conn.close_session()
        for conn in list(self.hub.conns.values()):
            self.presence.kick(conn, "drain", DRAIN)
        deadline = time.monotonic() + self.settings.drain_timeout_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_released.wait(), self.settings.drain_timeout_s)
        for conn in list(self._transports):
            if conn.transport is not None:
                conn.transport.abort()  # past the drain timeout: cut what is left
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        await self.guarantee.close()  # ACKs received so far reach the store
        await self.channel.detach(self.settings.node_id)
        for task in self._loops:
            task.cancel()
        for task in [*self._loops, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.registry.forget_node(self.settings.node_id)

    @property
    def endpoints(self) -> tuple[str, str]:
        """(ws url, tcp address) clients should use for this node."""
        host = self.settings.advertised_host
        return f"ws://{host}:{self.ws_port}/ws", f"{host}:{self.tcp_port}"

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a short step (registry I/O) as a tracked task."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ connection events

    def accepted(self, conn: Connection) -> None:
        if self._closed:
            conn.shutdown()
            conn.state = SessionState.CLOSED
            return
        self._transports.add(conn)
        self._all_released.clear()
        self._conn_seq += 1
        conn.conn_id = f"{self._conn_prefix}{self._conn_seq:x}"
        conn.last_seen = self.clock
        self._accepted.add(conn)
        conn.wheel_slot = self.wheel.schedule(conn, self.clock + self.settings.auth_timeout_s)
        kind = _KIND[conn.kind]
        self.metrics.accepted.labels(kind).inc()
        self.metrics.connections.labels(kind).inc()

    def lost(self, conn: Connection) -> None:
        """The session is over (closed by either side); idempotent."""
        previous = conn.state
        if previous == SessionState.CLOSED:
            return
        conn.state = SessionState.CLOSED
        conn.deferred = None
        self.wheel.cancel(conn, conn.wheel_slot)
        self._accepted.discard(conn)
        self.metrics.connections.labels(_KIND[conn.kind]).dec()
        if previous == SessionState.OPEN:
            self.hub.remove(conn)
            self.presence.closed(conn, CLOSED)  # exits fire once (a kick fired them already)
            self.guarantee.closed(conn)  # its unacked messages stay in the offline store
            self.spawn(self._unregister(conn.conn_id))

    def released(self, conn: Connection) -> None:
        """The transport is gone (asyncio called connection_lost)."""
        self._transports.discard(conn)
        if not self._transports:
            self._all_released.set()

    async def _unregister(self, conn_id: str) -> None:
        await self.registry.remove_session(conn_id)

    async def open_session(self, conn: Connection, rooms: list[str]) -> None:
        """Register the session, then index it (AUTH_OK follows at once: routable)."""
        info = SessionInfo(
            conn_id=conn.conn_id,
            node=self.settings.node_id,
            user=conn.user,
            device=conn.device,
            rooms=list(rooms),
            connected_ms=int(time.time() * 1000),
        )
        await self.registry.add_session(info)
        if conn.closed:
            await self.registry.remove_session(conn.conn_id)
            return
        if rooms:
            self._online.update(await self.registry.room_online(rooms))
            if conn.closed:
                await self.registry.remove_session(conn.conn_id)
                return
        if self.settings.kick_same_device:
            await self.presence.replace_older(conn, info.connected_ms)
            if conn.closed:
                await self.registry.remove_session(conn.conn_id)
                return
        self._accepted.discard(conn)
        self.hub.add(conn, rooms)

    def opened(self, conn: Connection) -> None:
        """AUTH_OK has been sent: watch the heartbeat from now on; the rooms are entered."""
        self._reschedule(conn)
        self.presence.entered(conn, conn.rooms)
        self.guarantee.opened(conn)  # PROTOCOL §1.3 rule 5: stored messages, oldest first

    async def join(self, conn: Connection, room: str) -> int:
        online = await self.registry.join(conn.conn_id, room)
        if conn.state == SessionState.OPEN:
            self.hub.join(conn, room)
            self.presence.entered(conn, (room,))
        self._online[room] = online
        return online

    async def leave(self, conn: Connection, room: str) -> None:
        self.hub.leave(conn, room)
        self.presence.left(conn, room)
        self._online[room] = await self.registry.leave(conn.conn_id, room)

    def room_counts(self, rooms: Iterable[str]) -> dict[str, int]:
        """Online counts of ``rooms`` as last read from the registry (refreshed every second)."""
        return {room: self._online.get(room, 0) for room in rooms}

    def acked(self, conn: Connection, msg_ids: list[int]) -> None:
        """ACK from a client (one id or a list): see gateway/guarantee.py."""
        self.guarantee.acked(conn, msg_ids)

    def upstream(self, conn: Connection, frame: Frame) -> None:
        """UPSTREAM from a client: to the webhook (``not_allowed`` when none is configured)."""
        self.presence.upstream(conn, frame)

    def kick_user(self, user: str, reason: str) -> int:
        """Close every connection of ``user`` on this node with KICK; returns how many."""
        conns = list(self.hub.users.get(user, ()))
        for conn in conns:
            self.presence.kick(conn, reason)
        return len(conns)

    def deliver(self, envelopes: Sequence[Envelope]) -> None:
        """Node-channel handler: write messages and room batches, obey commands, in order."""
        messages: list[Message | RoomBatch] = []
        for envelope in envelopes:
            if isinstance(envelope, NodeCommand):
                if messages:
                    self.delivery.deliver(messages)
                    messages = []
                self.command(envelope)
            else:
                messages.append(envelope)
        if messages:
            self.delivery.deliver(messages)

    def command(self, command: NodeCommand) -> None:
        """Carry out a :class:`NodeCommand` sent to this node."""
        if command.action == "kick_user":
            self.kick_user(command.user, command.reason or "kicked")
        elif command.action == "drain":
            self.drain()
        elif command.action == "kick_conn":
            self.presence.kick_conn(command.conn_id, command.reason or "kicked")
        elif command.action == "room_event":
            self.presence.room_event(command.room, command.body)
        else:
            log.warning("unknown node command %r", command.action)

    def drain(self) -> None:
        """KICK every client with reason ``drain`` so SDKs reconnect to another node.

        The node keeps accepting (control stops sending clients here once the
        registry marks it draining) and keeps delivering to what is left.
        """
        for conn in list(self.hub.conns.values()):
            self.presence.kick(conn, "drain", DRAIN)

    # ------------------------------------------------------------------ loops

    async def _tick_loop(self) -> None:
        while not cancel_requested():
            await asyncio.sleep(TICK_S)
            self.clock = time.monotonic()
            for conn in self.wheel.advance(self.clock):
                conn.wheel_slot = -1
                self._check_deadline(conn)

    def _check_deadline(self, conn: Connection) -> None:
        state = conn.state
        if state == SessionState.CLOSED:
            return
        if state == SessionState.OPEN:
            # alive -> suspect (1.5 intervals) -> gone (2.5), logic/presence.py
            at = self.presence.watch(conn, self.clock)
            if at is None:
                # PROTOCOL §1.3 rule 3: nothing for 2.5 intervals: close, leave the rooms.
                log.info("conn %s: heartbeat lost", conn.conn_id)
                conn.close_session()
            else:
                conn.wheel_slot = self.wheel.schedule(conn, at)
            return
        deadline = conn.last_seen + self.settings.auth_timeout_s
        if state == SessionState.AWAIT_AUTH and self.clock >= deadline:
            conn.fail(ProtocolError(ErrorCode.AUTH_REQUIRED, "no AUTH in time"))
        else:  # AUTHENTICATING: the registry is answering; look again shortly
            conn.wheel_slot = self.wheel.schedule(conn, max(deadline, self.clock + TICK_S))

    def _reschedule(self, conn: Connection) -> None:
        self.wheel.cancel(conn, conn.wheel_slot)
        conn.wheel_slot = self.wheel.schedule(conn, self.presence.first_check(conn))

    async def _report_loop(self) -> None:
        while not cancel_requested():
            await asyncio.sleep(REPORT_INTERVAL_S)
            try:
                await self._report()
                if self.hub.rooms:
                    self._online = await self.registry.room_online(list(self.hub.rooms))
            except Exception:
                log.exception("node report failed")

    async def _report(self) -> None:
        now, cpu = time.monotonic(), time.process_time()
        last_now, last_cpu = self._cpu
        self._cpu = (now, cpu)
        load = (cpu - last_cpu) / (now - last_now) if now > last_now else 0.0
        ws, tcp = self.endpoints
        known = await self.registry.report_node(
            NodeInfo(
                node=self.settings.node_id,
                region=self.settings.region,
                ws=ws,
                tcp=tcp,
                connections=len(self.hub.conns) + len(self._accepted),
                load=round(load, 3),
                reported_ms=int(time.time() * 1000),
            )
        )
        if not known and self.hub.conns:
            await self._resync()

    async def _resync(self) -> None:
        """The registry lost this node (Redis restarted empty): register every session again."""
        conns = list(self.hub.conns.values())
        log.warning(
            "registry lost node %s: registering %d sessions again",
            self.settings.node_id,
            len(conns),
        )
        now_ms = int(time.time() * 1000)
        for conn in conns:
            if conn.closed:
                continue
            await self.registry.add_session(
                SessionInfo(
                    conn_id=conn.conn_id,
                    node=self.settings.node_id,
                    user=conn.user,
                    device=conn.device,
                    rooms=list(conn.rooms),
                    connected_ms=now_ms,
                )
            )


_KIND = ("tcp", "ws")
