"""The gateway node: its parts wired together, its listeners and their lifetime.

The parts (each receives what it needs, none holds the gateway):

==================  ==========================================================
part                does
==================  ==========================================================
``hub``             open connections indexed by id, user, device, room
``outbox``          one write budget per connection (gateway/outbox.py)
``heartbeats``      the wheel of session deadlines and the clock
``presence``        enter/exit events, announcements, kicks, upstream
``guarantee``       ACK_REQUIRED, retries, redelivery from the store
``recovery``        missed room messages before live ones (gateway/recovery.py)
``delivery``        the write paths (fan-out planned by gateway/fanout.py)
``sessions``        the host of every connection's session (AUTH, JOIN, …)
``commands``        the node channel's handler (messages and commands)
``reporter``        the node's report to the registry every second
``quality``         clients' REPORTs and TCP_INFO samples, windows per transport
``door``            the WebSocket port's front door: WebSocket or HTTP stream
``relay``           HTTP stream POSTs to the process that owns the session
==================  ==========================================================

Lifetime (``async with Gateway(...)``):

1. start: bind TCP and WebSocket listeners (the latter also serves the
   HTTP stream, gateway/port.py), the stream relay's socket when the ports
   are shared, attach to the node channel, report the node to the registry,
   start the tick, report, retry and door loops;
2. run: connections come and go; dispatch writes to the node channel;
3. close (idempotent), in this order: stop accepting; KICK every client with
   reason ``drain`` so SDKs reconnect through control to another node; wait
   up to ``drain_timeout_s`` for their transports to flush and close (those
   still at the port's front door are closed at once); close the relay;
   detach from the node channel; stop the loops; forget the node in the
   registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from longlink.bus.base import NodeChannel
from longlink.clientip import ProxyRule
from longlink.control.origins import Origins
from longlink.control.tokens import TokenIssuer
from longlink.gateway.commands import NodeCommands
from longlink.gateway.delivery import Delivery
from longlink.gateway.events import Presence
from longlink.gateway.guarantee import Guarantee
from longlink.gateway.heartbeats import Heartbeats
from longlink.gateway.hub import Hub
from longlink.gateway.metrics import GatewayMetrics
from longlink.gateway.outbox import Outbox
from longlink.gateway.port import Door
from longlink.gateway.quality import Quality
from longlink.gateway.recovery import Recovery
from longlink.gateway.relay import Relay, default_dir
from longlink.gateway.reporter import NodeReporter
from longlink.gateway.sessions import Sessions
from longlink.gateway.stream import StreamInbox
from longlink.gateway.tcp import TcpConnection
from longlink.history.base import RoomHistory
from longlink.logic.base import Registry
from longlink.logic.events import EventSink
from longlink.protocol.ids import IdRule
from longlink.protocol.limits import RateLimit
from longlink.protocol.server import SessionRules
from longlink.settings import Settings
from longlink.store.base import OfflineStore
from longlink.trace import Tracer

log = logging.getLogger("longlink.gateway")


def session_rules(settings: Settings, *, upstream_enabled: bool) -> SessionRules:
    """The rules every session of a gateway with ``settings`` follows."""
    return SessionRules(
        node=settings.node_id,
        max_rooms=settings.max_rooms,
        ids=IdRule(settings.max_id_length, settings.id_pattern),
        auth_timeout_s=settings.auth_timeout_s,
        heartbeat_s=settings.heartbeat_s,
        min_heartbeat_s=settings.min_heartbeat_s,
        max_heartbeat_s=settings.max_heartbeat_s,
        max_frame=settings.max_frame,
        upstream=RateLimit(settings.upstream_rate, settings.upstream_burst),
        control=RateLimit(settings.control_rate, settings.control_burst),
        upstream_enabled=upstream_enabled,
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
        history: RoomHistory | None = None,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.settings = s = settings
        #: TLS on both listeners (PROTOCOL §1.5); the object is reloaded in place (SIGHUP).
        self.ssl = ssl
        self.registry = registry
        self.channel = channel
        registry_metrics = metrics or CollectorRegistry()
        self.metrics = GatewayMetrics(registry_metrics)
        self.tracer = tracer if tracer is not None else Tracer.from_settings(settings)
        node = settings.node_id
        self.hub = Hub()
        self.outbox = Outbox(s.outbox_soft_kib, s.outbox_hard_kib, self.metrics)
        self.heartbeats = Heartbeats()
        # Connection quality: REPORTs and TCP_INFO samples (docs/quality.md).
        self.quality = Quality(self.hub, registry_metrics, per_second=s.quality_samples_per_s)
        # Enter/exit, upstream and kicks; ``events`` is the webhook sender (or None).
        self.presence = Presence(
            self.hub, registry, channel, events, self.spawn, node=node, metrics=registry_metrics
        )
        # Guaranteed messages: ACK_REQUIRED, retries, redelivery from ``store`` at AUTH_OK.
        self.guarantee = Guarantee(
            self.hub,
            self.outbox,
            store,
            self.tracer,
            self.spawn,
            node=node,
            retry_interval_s=s.retry_interval_s,
            max_retries=s.max_retries,
            metrics=registry_metrics,
        )
        # Recovery from ``history`` (PROTOCOL.md §1.4 rule 3); without one, since gets false.
        self.recovery = Recovery(
            self.hub, history, registry_metrics, hold_max=self.outbox.hard_limit
        )
        # Write paths, dedup (docs/dispatch.md).
        self.delivery = Delivery(
            self.hub,
            self.outbox,
            self.guarantee,
            self.tracer,
            self.metrics,
            self.spawn,
            node=node,
            dedup_window_s=s.dedup_window_s,
            dedup_size=s.dedup_size,
            recovery=self.recovery,
            write_join=s.write_join,
        )
        self.sessions = Sessions(
            session_rules(settings, upstream_enabled=events is not None),
            self.outbox,
            tokens,
            registry,
            self.hub,
            self.presence,
            self.guarantee,
            self.heartbeats,
            self.quality,
            self.metrics,
            self.spawn,
            kick_same_device=s.kick_same_device,
            origins=Origins.parse(s.allowed_origins, demo=s.demo),
            recovery=self.recovery,
            max_conns_per_ip=s.max_conns_per_ip,
            proxies=ProxyRule(s.trusted_proxies),
        )
        # The HTTP stream (PROTOCOL.md §1.5) on the WebSocket port: its front door, the
        # POSTs' way to their session, and (ports shared) to the process that owns it.
        inbox = StreamInbox(self.hub, self.outbox.behind, s.max_frame)
        self.relay = (
            Relay(
                inbox,
                Path(s.stream_relay_dir) if s.stream_relay_dir else default_dir(),
                self.sessions.owner,
                max_body=4 * s.max_frame,
            )
            if s.reuse_port or s.stream_relay_dir
            else None
        )
        self.door = Door(
            self.sessions,
            inbox,
            self.metrics,
            owner=self.sessions.owner,
            relay=self.relay,
            clock=lambda: self.heartbeats.clock,
        )
        self.commands = NodeCommands(self.hub, self.delivery, self.presence)
        self.reporter = NodeReporter(
            registry,
            self.hub,
            self.sessions,
            self.quality,
            lambda: (*self.endpoints, self.stream_endpoint),
            node=node,
            region=s.region,
            cost=s.node_cost,
            full=s.node_full,
        )
        self.tcp_port = 0
        self.ws_port = 0
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._closed = False

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

        async def listen(factory: Callable[[], asyncio.Protocol], port: int) -> asyncio.Server:
            return await loop.create_server(
                factory,
                s.host,
                port,
                reuse_address=True,
                reuse_port=reuse_port,
                backlog=4096,
                ssl=self.ssl,
                ssl_handshake_timeout=s.auth_timeout_s if self.ssl is not None else None,
            )

        sessions = self.sessions
        tcp = await listen(lambda: TcpConnection(sessions), s.tcp_port)
        ws = await listen(self.door.protocol, s.ws_port)
        self._servers = [tcp, ws]
        if self.relay is not None:
            await self.relay.start()
        self.tcp_port = tcp.sockets[0].getsockname()[1]
        self.ws_port = ws.sockets[0].getsockname()[1]
        await self.channel.attach(s.node_id, self.commands.deliver)
        await self.reporter.report()
        self._loops = [
            asyncio.create_task(self.heartbeats.run(), name="gateway-tick"),
            asyncio.create_task(self.reporter.run(), name="gateway-report"),
            asyncio.create_task(self.guarantee.run(), name="gateway-retries"),
            asyncio.create_task(self.quality.run(), name="gateway-quality"),
            asyncio.create_task(self.door.run(), name="gateway-door"),
        ]

    async def close(self) -> None:
        """Drain and stop (see the module docstring for the order); idempotent."""
        if self._closed:
            return
        self._closed = True
        sessions = self.sessions
        sessions.accepting = False
        for server in self._servers:
            server.close()
        self.door.close()
        for conn in list(sessions.unauthenticated):
            conn.apply(conn.close())
        self.commands.drain()
        deadline = time.monotonic() + self.settings.drain_timeout_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sessions.all_released.wait(), self.settings.drain_timeout_s)
        for conn in list(sessions.transports):
            if conn.transport is not None:
                conn.transport.abort()  # past the drain timeout: cut what is left
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        if self.relay is not None:
            await self.relay.close()
        await self.guarantee.close()  # ACKs received so far reach the store
        await self.channel.detach(self.settings.node_id)
        for task in self._loops:
            task.cancel()
        for task in [*self._loops, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.registry.forget_node(self.settings.node_id)

    def check_serving(self) -> None:
        """Readiness (``/readyz``): RuntimeError unless every listener accepts connections
        and the gateway's loops (heartbeats, node report, retries) run."""
        if self._closed:
            raise RuntimeError("the gateway is closing")
        for server in self._servers:
            if not server.is_serving():
                raise RuntimeError("a listener does not accept connections")
        for task in self._loops:
            if task.done():
                raise RuntimeError(f"{task.get_name()} stopped")

    @property
    def endpoints(self) -> tuple[str, str]:
        """(ws url, tcp address) clients should use for this node.

        With TLS the URL is ``wss://``; control then marks the node's endpoints
        ``"tls": true`` (the TCP port speaks TLS too). Behind a proxy the
        operator names the public ones (``LONGLINK_ADVERTISE_WS``, ``_TCP``;
        docs/configuration.md).
        """
        s = self.settings
        host = s.advertised_host
        scheme = "wss" if self.ssl is not None else "ws"
        return (
            s.advertise_ws or f"{scheme}://{host}:{self.ws_port}/ws",
            s.advertise_tcp or f"{host}:{self.tcp_port}",
        )

    @property
    def stream_endpoint(self) -> str:
        """The HTTP stream's URL for this node (PROTOCOL.md §1.5): ``POST`` opens a session.

        ``https://`` with TLS; ``LONGLINK_ADVERTISE_STREAM`` behind a proxy.
        """
        s = self.settings
        scheme = "https" if self.ssl is not None else "http"
        return s.advertise_stream or f"{scheme}://{s.advertised_host}:{self.ws_port}/v1/stream"

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a short step (registry I/O) as a tracked task (awaited on close)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
