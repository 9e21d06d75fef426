"""The composition root: one longlink process, ``async with Node(settings) as node``.

A node runs the roles named in ``settings.roles`` on the backends named by
``settings.bus`` (``memory``: the embedded, single-process backends).

Start order: backends → trace responder (on Redis) → webhook sender (when
``webhook_url`` is set) → demo echo (demo mode: upstream pushed back to the
room, web/echo.py) → registry sweeper (on a registry that offers
:class:`~longlink.logic.base.NodeSweep`) → gateway (listeners, node report)
→ dispatch → id lease (api, control) → HTTP. Shutdown runs the other way: HTTP
stops taking pushes; the message-id node number is given back; dispatch
stops; the gateway drains its clients; the demo echo stops; the webhook sender delivers what is
queued; the trace responder stops answering; the queue closes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from longlink.api.app import RELOADABLE_SETTINGS, build_app, reload_app
from longlink.api.guard import HttpLimits
from longlink.api.push import Pusher
from longlink.api.server import HttpServer
from longlink.api.services import ReadyCheck, Services
from longlink.bus.base import MessageQueue, NodeChannel
from longlink.bus.keys import CLUSTER_SHARDS
from longlink.bus.memory import MemoryNodeChannel, MemoryQueue
from longlink.bus.redis import OUTAGES, RedisNodeChannel, RedisQueue
from longlink.bus.redis import SCHEMES as REDIS_SCHEMES
from longlink.bus.redis import connect as redis_connect
from longlink.control.tokens import TokenIssuer
from longlink.dispatch import Dispatcher
from longlink.gateway.server import Gateway
from longlink.history.base import RoomHistory
from longlink.history.memory import MemoryHistory
from longlink.history.redis import RedisHistory
from longlink.idlease import IdLease, NodeNumbers
from longlink.idlease.memory import MemoryNumbers
from longlink.idlease.redis import RedisNumbers
from longlink.logic.base import NodeSweep, Registry
from longlink.logic.events import EventSink
from longlink.logic.memory import MemoryRegistry
from longlink.logic.redis import RedisRegistry
from longlink.logic.sweep import RegistrySweeper
from longlink.model import MsgIdGenerator
from longlink.settings import ConfigError, Settings
from longlink.store.base import OfflineStore, StoreError
from longlink.store.redis import RedisStore
from longlink.store.sqlite import SqliteStore
from longlink.store.sweep import Sweeper
from longlink.tls import reload_certificate, server_context
from longlink.trace import LocalTraceView, Tracer, TraceView
from longlink.trace.redis import RedisTraceView
from longlink.web.echo import DEMO_ROOMS, DemoEcho
from longlink.webhook import WebhookSender

#: Settings of the tokens and tickets that :meth:`Node.reload` applies.
TOKEN_SETTINGS = (
    "token_secret",
    "token_secrets",
    "ticket_secret",
    "ticket_secrets",
    "max_ticket_ttl_s",
)


@dataclass
class Backends:
    """The shared seams a node works on; several nodes may share one set.

    :meth:`memory` builds the embedded ones (single process). A node closes
    the backends it built itself, never ones it was given. ``store`` keeps
    guaranteed messages (None: they are not durable, for tests); ``tracer``
    is the message trace and reach figures; ``history`` keeps each room's
    recent messages (the node channel writes it, the gateway and the API
    read it). On Redis, a node that built its
    backends answers the trace queries of the other processes for its
    tracer and asks them for theirs (``longlink.trace.redis``); a node given
    backends reads its tracer only (several nodes may share that tracer).

    Capabilities are declared here, never guessed from a backend's class:
    ``sweep`` is set when the registry can lose a node without notice and
    offers :class:`~longlink.logic.base.NodeSweep` (the node then runs a
    sweeper); ``numbers`` leases message-id node numbers to the nodes that
    mint ids (:mod:`longlink.idlease`).
    """

    queue: MessageQueue
    channel: NodeChannel
    registry: Registry
    store: OfflineStore | None = None
    tracer: Tracer = field(default_factory=Tracer)
    numbers: NodeNumbers = field(default_factory=MemoryNumbers)
    sweep: NodeSweep | None = None
    history: RoomHistory | None = None
    client: Any = None  # the Redis client of Backends.redis, closed with the backends
    #: What the backends raise while unreachable (the API answers 503, not 500).
    outages: tuple[type[Exception], ...] = ()
    #: Awaited once when a node starts on these backends (Redis: the queue's epoch).
    start: Callable[[], Awaitable[None]] | None = None

    @classmethod
    def memory(cls, settings: Settings) -> Backends:
        history = MemoryHistory(
            settings.history_size, settings.history_ttl_s, settings.history_max_bytes
        )
        return cls(
            queue=MemoryQueue(settings.queue_size),
            channel=MemoryNodeChannel(history=history),
            registry=MemoryRegistry(),
            store=SqliteStore.in_dir(settings.data_dir, synchronous=settings.store_sync),
            tracer=Tracer.from_settings(settings),
            history=history,
        )

    @classmethod
    def on_redis(cls, settings: Settings) -> Backends:
        """Every seam on the Redis that ``settings.bus`` names (one, Sentinel's, or a cluster)."""
        scheme = settings.bus.partition("://")[0]
        try:
            client = redis_connect(settings.bus)
        except ValueError as exc:
            raise ConfigError(f"bus {settings.bus!r}: {exc}") from exc
        shards = settings.queue_shards or (CLUSTER_SHARDS if scheme == "redis+cluster" else 1)
        replicas = settings.store_wait_replicas
        if replicas < 0:  # auto: a Sentinel deployment has a replica to wait for
            replicas = 1 if scheme == "redis+sentinel" else 0
        if replicas and scheme == "redis+cluster":
            raise ConfigError("store_wait_replicas: not on a Redis Cluster (docs/deployment.md)")
        registry = RedisRegistry(client, node_ttl_ms=settings.node_ttl_ms)
        history = RedisHistory(client, settings.history_size, settings.history_ttl_s)
        queue = RedisQueue(
            client,
            maxsize=settings.queue_size,
            consumer=f"{settings.node_id}-{os.getpid()}",
            claim_idle_ms=settings.claim_idle_ms,
            shards=shards,
            consumer_ttl_ms=settings.consumer_ttl_ms,
        )
        return cls(
            queue=queue,
            channel=RedisNodeChannel(client, history=history),
            registry=registry,
            store=RedisStore(client, wait_replicas=replicas, wait_ms=settings.store_wait_ms),
            tracer=Tracer.from_settings(settings),
            numbers=RedisNumbers(client),
            sweep=registry,
            history=history,
            client=client,
            outages=OUTAGES,
            start=queue.start,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Backends:
        """The backends ``settings.bus`` names: ``memory`` or Redis (PROTOCOL.md §3)."""
        if settings.bus == "memory":
            return cls.memory(settings)
        if settings.bus.startswith(REDIS_SCHEMES):
            return cls.on_redis(settings)
        raise ConfigError(
            f"bus {settings.bus!r}: use 'memory', 'redis://HOST:PORT/DB', "
            "'redis+cluster://HOST:PORT[,HOST:PORT…]' or "
            "'redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER/DB'"
        )

    async def close(self) -> None:
        await self.queue.close()
        if self.store is not None:
            await self.store.close()
        if self.client is not None:
            await self.client.aclose()


class Node:
    """Every role of one process, wired to one set of backends."""

    def __init__(self, settings: Settings, backends: Backends | None = None) -> None:
        self.settings = settings
        self.metrics = CollectorRegistry()
        self._given = backends
        self.backends: Backends
        self.queue: MessageQueue
        self.channel: NodeChannel
        self.registry: Registry
        self.ids = MsgIdGenerator()  # mints once the id lease holds a number (api, control)
        self.store: OfflineStore | None = None
        self.tracer: Tracer
        self.trace_view: TraceView
        try:
            self.tokens = TokenIssuer(
                settings.token_secret, settings.token_ttl_s, settings.token_secrets
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self.gateway: Gateway | None = None
        self.webhook: WebhookSender | None = None
        self.echo: DemoEcho | None = None
        self.dispatcher: Dispatcher | None = None
        self.http: HttpServer | None = None
        self.app: Starlette | None = None
        #: The listeners' TLS context (None: TLS off); reloaded in place on SIGHUP.
        self.tls: ssl.SSLContext | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Node:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop every role in reverse start order; idempotent."""
        await self._stack.aclose()

    async def _start(self) -> None:
        settings = self.settings
        self.tls = server_context(settings)
        if self._given is not None:
            self.backends = self._given
        else:
            try:
                self.backends = Backends.from_settings(settings)
            except (StoreError, ValueError) as exc:
                raise ConfigError(f"offline store: {exc}") from exc
            self._stack.push_async_callback(self.backends.close)
        self.queue = self.backends.queue
        if self.backends.start is not None:
            await self.backends.start()
        self.channel = self.backends.channel
        self.registry = self.backends.registry
        self.store = self.backends.store
        self.tracer = self.backends.tracer
        if self._given is None and self.backends.client is not None:
            # One responder per tracer; stopped after HTTP (the API asks through it).
            self.trace_view = await self._stack.enter_async_context(
                RedisTraceView(self.backends.client, self.tracer, name=settings.node_id)
            )
        else:
            self.trace_view = LocalTraceView(self.tracer)
        if self.store is not None:
            # Expired guaranteed messages leave the store once a second (traced "expired").
            await self._stack.enter_async_context(Sweeper(self.store, self.tracer))
        roles = set(settings.roles)
        if settings.webhook_url and roles & {"gateway", "control"}:
            # Entered before the gateway, so closed after it: the exits of the
            # drained clients are still delivered (up to drain_timeout_s).
            self.webhook = await self._stack.enter_async_context(
                WebhookSender.from_settings(settings, self.metrics)
            )
        events: EventSink | None = self.webhook
        if (
            settings.demo
            and settings.demo_echo
            and "gateway" in roles
            and roles & {"api", "control"}
        ):
            # Demo mode: upstream is pushed back to the sender's room (web/echo.py), through
            # the push path with this process's ids; a webhook still gets every event.
            pusher = Pusher(queue=self.queue, ids=self.ids, tracer=self.tracer, store=self.store)
            self.echo = await self._stack.enter_async_context(
                DemoEcho(pusher, metrics=self.metrics, forward=self.webhook)
            )
            events = self.echo
        if settings.demo:
            # The demo page's rooms announce enters and exits (EVENT frames).
            for room in DEMO_ROOMS:
                await self.registry.set_room_announce(room, True)
        sweep = self.backends.sweep
        if sweep is not None and roles & {"control", "api"}:
            # A gateway killed outright leaves sessions behind: remove them, fire exits.
            await self._stack.enter_async_context(
                RegistrySweeper(
                    sweep,
                    self.webhook,
                    node=settings.node_id,
                    stale_after_s=settings.sweep_after_s,
                )
            )
        if "gateway" in roles:
            self.gateway = await self._stack.enter_async_context(
                Gateway(
                    settings,
                    self.registry,
                    self.channel,
                    self.tokens,
                    self.metrics,
                    events=events,
                    store=self.store,
                    tracer=self.tracer,
                    history=self.backends.history,
                    ssl=self.tls,
                )
            )
        if "dispatch" in roles:
            self.dispatcher = await self._stack.enter_async_context(
                Dispatcher(
                    self.queue,
                    self.registry,
                    self.channel,
                    self.metrics,
                    self.tracer,
                    settings=settings,
                    # In one process the low-priority backlog waits in the queue (503 at
                    # the API when full), not in this node's write queue; and a room whose
                    # fan-out takes long gets a longer window (docs/dispatch.md).
                    pace=self.gateway.delivery.wait_ready if self.gateway else None,
                    fanout_s=self.gateway.delivery.fanout_s if self.gateway else None,
                )
            )
        if roles & {"api", "control"}:
            # The HTTP app (push included) mints ids: it holds a number no live process
            # holds. Refused at start when the configured id_node is held by one.
            owner = f"{settings.node_id} pid {os.getpid()} on {socket.gethostname()}"
            await self._stack.enter_async_context(
                IdLease(
                    self.backends.numbers,
                    self.ids,
                    owner=f"{owner} #{secrets.token_hex(3)}",
                    number=settings.id_node,
                )
            )
            services = Services(
                settings=settings,
                queue=self.queue,
                registry=self.registry,
                ids=self.ids,
                tokens=self.tokens,
                channel=self.channel,
                metrics=self.metrics,
                store=self.store,
                tracer=self.tracer,
                history=self.backends.history,
                outages=self.backends.outages,
                readiness=self._readiness(),
            )
            self.app = build_app(services, self.trace_view)
            self.http = await self._stack.enter_async_context(
                HttpServer(
                    self.app,
                    settings.host,
                    settings.http_port,
                    limits=HttpLimits.from_settings(settings),
                    ssl=self.tls,
                )
            )

    def _readiness(self) -> tuple[ReadyCheck, ...]:
        """The checks of ``GET /readyz``: every backend and listener this process runs."""
        checks: list[ReadyCheck] = []
        client = self.backends.client
        if client is not None:
            checks.append(("redis", client.ping))
        store = self.store
        if store is not None:
            checks.append(("store", store.count))
        gateway = self.gateway
        if gateway is not None:

            async def listeners() -> None:
                gateway.check_serving()

            checks.append(("gateway", listeners))

        async def ids() -> None:
            if self.ids.node is None:
                raise RuntimeError("no message-id node number is held (docs/message-ids.md)")

        checks.append(("message_ids", ids))
        return tuple(checks)

    def reload(self, settings: Settings) -> list[str]:
        """Apply a re-read configuration (the CLI calls this on SIGHUP).

        API keys, push limits, the overload mark, token and ticket secrets
        (rotation by ``kid``), the maximum ticket lifetime and the TLS
        certificate change at once. Everything is checked before anything
        changes: :class:`~longlink.settings.ConfigError` (nothing applied) when
        ``settings`` cannot be applied. Returns the names of the other settings
        that differ from the running ones: they need a restart.
        """
        try:
            TokenIssuer(settings.token_secret, settings.token_ttl_s, settings.token_secrets)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        live = {*RELOADABLE_SETTINGS, *TOKEN_SETTINGS}
        if self.tls is not None:
            # A new certificate for new connections; the open ones keep theirs.
            reload_certificate(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), settings)
            live |= {"tls_cert", "tls_key"}
        if self.app is not None:
            reload_app(self.app, settings)  # atomic: raises before changing anything
        self.tokens.reload(settings.token_secret, settings.token_secrets)
        if self.tls is not None:
            reload_certificate(self.tls, settings)
        return [
            f.name
            for f in dataclasses.fields(Settings)
            if f.name not in live and getattr(settings, f.name) != getattr(self.settings, f.name)
        ]

    @property
    def ports(self) -> dict[str, int]:
        """The bound ports by listener (``http``, ``ws``, ``tcp``), for the ready line."""
        ports: dict[str, int] = {}
        if self.http is not None:
            ports["http"] = self.http.port
        if self.gateway is not None:
            ports["ws"] = self.gateway.ws_port
            ports["tcp"] = self.gateway.tcp_port
        return ports

    def ready_line(self) -> str:
        """``longlink ready http=H ws=W tcp=T`` (PROTOCOL.md §3)."""
        return "longlink ready " + " ".join(f"{k}={v}" for k, v in self.ports.items())

    @property
    def http_url(self) -> str:
        assert self.http is not None
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.settings.advertised_host}:{self.http.port}"
