"""The composition root: one longlink process, ``async with Node(settings) as node``.

A node runs the roles named in ``settings.roles`` on the backends named by
``settings.bus`` (``memory``: the embedded, single-process backends).

Start order: backends → gateway (listeners, node report) → dispatch → HTTP.
Shutdown runs the other way: HTTP stops taking pushes; dispatch stops;
the gateway drains its clients; the queue closes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from longlink.api.app import build_app
from longlink.api.server import HttpServer
from longlink.api.services import Services
from longlink.bus.base import MessageQueue, NodeChannel
from longlink.bus.memory import MemoryNodeChannel, MemoryQueue
from longlink.control.tokens import TokenIssuer
from longlink.dispatch import Dispatcher
from longlink.gateway.server import Gateway
from longlink.logic.base import SessionRegistry
from longlink.logic.memory import MemoryRegistry
from longlink.model import MsgIdGenerator, node_number
from longlink.settings import ConfigError, Settings


@dataclass
class Backends:
    """The shared seams a node works on; several nodes may share one set.

    :meth:`memory` builds the embedded ones (single process). A node closes
    the backends it built itself, never ones it was given.
    """

    queue: MessageQueue
    channel: NodeChannel
    registry: SessionRegistry

    @classmethod
    def memory(cls, settings: Settings) -> Backends:
        return cls(
            queue=MemoryQueue(settings.queue_size),
            channel=MemoryNodeChannel(),
            registry=MemoryRegistry(),
        )

    async def close(self) -> None:
        await self.queue.close()


class Node:
    """Every role of one process, wired to one set of backends."""

    def __init__(self, settings: Settings, backends: Backends | None = None) -> None:
        self.settings = settings
        self.metrics = CollectorRegistry()
        self._given = backends
        self.backends: Backends
        self.queue: MessageQueue
        self.channel: NodeChannel
        self.registry: SessionRegistry
        self.tokens = TokenIssuer(settings.token_secret, settings.token_ttl_s)
        self.gateway: Gateway | None = None
        self.dispatcher: Dispatcher | None = None
        self.http: HttpServer | None = None
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
        if self._given is None and settings.bus != "memory":
            raise ConfigError(
                f"bus {settings.bus!r}: only the embedded 'memory' bus exists in this version"
            )
        if self._given is not None:
            self.backends = self._given
        else:
            self.backends = Backends.memory(settings)
            self._stack.push_async_callback(self.backends.close)
        self.queue = self.backends.queue
        self.channel = self.backends.channel
        self.registry = self.backends.registry
        roles = set(settings.roles)
        if "gateway" in roles:
            self.gateway = await self._stack.enter_async_context(
                Gateway(settings, self.registry, self.channel, self.tokens, self.metrics)
            )
        if "dispatch" in roles:
            self.dispatcher = await self._stack.enter_async_context(
                Dispatcher(self.queue, self.registry, self.channel, self.metrics)
            )
        if roles & {"api", "control"}:
            services = Services(
                settings=settings,
                queue=self.queue,
                registry=self.registry,
                ids=MsgIdGenerator(node_number(settings.node_id)),
                tokens=self.tokens,
                channel=self.channel,
                metrics=self.metrics,
            )
            self.http = await self._stack.enter_async_context(
                HttpServer(build_app(services), settings.host, settings.http_port)
            )

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
        return f"http://{self.settings.advertised_host}:{self.http.port}"
