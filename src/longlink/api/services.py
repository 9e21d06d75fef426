"""What the HTTP app needs from the rest of the process, in one place.

The composition root (``longlink.node``) builds one :class:`Services` and
passes it to :func:`longlink.api.app.build_app`; tests build one from the
in-memory backends.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from longlink.bus.base import MessageQueue, NodeChannel
from longlink.control.tokens import TokenIssuer
from longlink.history.base import RoomHistory
from longlink.logic.base import Registry
from longlink.model import MsgIdGenerator
from longlink.settings import Settings
from longlink.store.base import OfflineStore
from longlink.trace import Tracer

__all__ = ["KickFunc", "ReadyCheck", "Services"]

#: ``await kick(user, reason)`` closes the user's connections with KICK; returns how many.
KickFunc = Callable[[str, str], Awaitable[int]]
#: A readiness check of ``GET /readyz``: a name and a probe that raises when not ready.
ReadyCheck = tuple[str, Callable[[], Awaitable[object]]]


@dataclass(slots=True)
class Services:
    """The backends and helpers the HTTP API works with.

    ``channel`` reaches the gateway nodes (kick and drain are node commands
    sent on it); ``kick`` overrides how a user is kicked. With neither,
    ``POST /v1/users/{user}/kick`` answers 501. ``metrics`` is the
    Prometheus registry ``/metrics`` serves; the app registers its own
    counters in it, so give each app its own registry (the default).
    ``clock`` (monotonic seconds) drives the API keys' rate limits.
    ``store`` keeps guaranteed messages before they are queued (without one,
    as in API-only tests, guaranteed messages are queued but not durable);
    ``tracer`` records the message trace and serves the reach figures;
    ``history`` is the room history ``GET /v1/rooms/{room}/history`` reads
    (None: every room's history is empty). ``outages`` are the exception
    types the backends raise while they are unreachable (Redis restarting):
    every route answers them 503 ``unavailable`` with ``Retry-After``, never 500.
    ``readiness`` are the checks of ``GET /readyz`` (api/ops.py).
    """

    settings: Settings
    queue: MessageQueue
    registry: Registry
    ids: MsgIdGenerator
    tokens: TokenIssuer
    kick: KickFunc | None = None
    channel: NodeChannel | None = None
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    clock: Callable[[], float] = time.monotonic
    store: OfflineStore | None = None
    tracer: Tracer = field(default_factory=Tracer)
    history: RoomHistory | None = None
    outages: tuple[type[Exception], ...] = ()
    readiness: tuple[ReadyCheck, ...] = ()
