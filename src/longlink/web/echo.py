"""The demo's echo: in demo mode, what a viewer sends (UPSTREAM) is pushed back to the room.

A live room needs its viewers to see each other's danmaku (bullet comments),
and a demo has no business backend to relay them. :class:`DemoEcho` is an
:class:`~longlink.logic.events.EventSink`, wired by the composition root
(``longlink.node``) only in demo mode (``LONGLINK_DEMO=1``, unless
``LONGLINK_DEMO_ECHO=0``), in the place of the webhook sender (a configured
webhook still gets every event, through it). For each ``upstream`` event from
a connection in one of the demo rooms (:data:`DEMO_ROOMS`, the two rooms of
the page at ``/``) it pushes, through the normal push path
(:class:`~longlink.api.push.Pusher`: a real message id, the room tag, the
trace, the room's history), one low-priority message to that room::

    {"user": "<sender>", "text": "<the UPSTREAM bytes as UTF-8, cut to 200 characters>"}

Other rooms get no echo: a demo-mode server keeps its rooms' traffic to
what the push API sends them. Demo rooms announce enters and exits (EVENT
frames), set by the node at start in demo mode.

Limits, so that a demo left open on a network cannot be used as a loudspeaker:

* per connection: :data:`CONN_RATE` echoes per second, bursts of
  :data:`CONN_BURST` (the session's own upstream limit, 10/s, comes first);
* for the whole process: :data:`TOTAL_RATE` per second, bursts of :data:`TOTAL_BURST`;
* at most :data:`QUEUE_SIZE` echoes wait for the queue.

An UPSTREAM over a limit is refused like one the webhook could not take:
ERROR ``rate_limited`` (not fatal), and it is not forwarded. An UPSTREAM from
a connection in no demo room, or whose bytes are blank, is answered
UPSTREAM_OK and echoes nothing. Enter and exit events only pass through to
the webhook.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import msgspec
from prometheus_client import CollectorRegistry, Counter

from longlink.api.push import Pusher, PushNotQueued
from longlink.api.schemas import PushRequest
from longlink.logic.events import UPSTREAM, EventSink, WebhookEvent
from longlink.model import IdsUnavailable, Priority, Target
from longlink.protocol.limits import RateLimit, Verdict

__all__ = [
    "CONN_BURST",
    "CONN_RATE",
    "DEMO_ROOMS",
    "MAX_TEXT",
    "QUEUE_SIZE",
    "TOTAL_BURST",
    "TOTAL_RATE",
    "DemoEcho",
    "Echo",
    "EchoLimits",
]

log = logging.getLogger("longlink.demo")

#: The rooms of the demo page: in demo mode they echo UPSTREAM and announce enters and exits.
DEMO_ROOMS = ("demo-lobby", "demo-music")
#: Echoes per second per connection, and at once.
CONN_RATE, CONN_BURST = 2.0, 5
#: Echoes per second for the whole process, and at once.
TOTAL_RATE, TOTAL_BURST = 50.0, 100
#: Characters of one echo's text kept; longer text is cut.
MAX_TEXT = 200
#: Echoes waiting to be queued; past it UPSTREAM gets ``rate_limited``.
QUEUE_SIZE = 256
#: Connections whose rate state is kept at most (the oldest is forgotten first).
MAX_TRACKED = 10_000
#: Lifetime of an echo (seconds): a danmaku is worth nothing a minute later.
ECHO_TTL_S = 60
#: Echoes handed to the push path at once.
_CHUNK = 100


class Echo(msgspec.Struct, frozen=True):
    """The body of an echoed message, as the room receives it."""

    user: str
    text: str


class EchoLimits:
    """The per-connection and total rate limits of the echo, pure (``now`` in seconds).

    A refused echo costs nothing: neither bucket is charged, so one noisy
    connection never eats the total for the others.
    """

    __slots__ = ("_conn", "_tats", "_total", "_total_tat", "max_tracked")

    def __init__(
        self,
        conn: RateLimit | None = None,
        total: RateLimit | None = None,
        *,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self._conn = conn or RateLimit(CONN_RATE, CONN_BURST)
        self._total = total or RateLimit(TOTAL_RATE, TOTAL_BURST)
        self._tats: OrderedDict[str, float] = OrderedDict()
        self._total_tat = 0.0
        self.max_tracked = max_tracked

    def admit(self, conn_id: str, now: float) -> bool:
        """One echo from ``conn_id`` at ``now``: allowed (and charged) or not."""
        conn_tat, verdict = self._conn.take(self._tats.get(conn_id, 0.0), now)
        if verdict != Verdict.ALLOW:
            return False
        total_tat, verdict = self._total.take(self._total_tat, now)
        if verdict != Verdict.ALLOW:
            return False
        self._total_tat = total_tat
        self._tats[conn_id] = conn_tat
        self._tats.move_to_end(conn_id)
        while len(self._tats) > self.max_tracked:
            self._tats.popitem(last=False)
        return True

    @property
    def tracked(self) -> int:
        """Connections whose rate state is kept now (at most ``max_tracked``)."""
        return len(self._tats)


def echo_of(event: WebhookEvent) -> PushRequest | None:
    """The push echoing an ``upstream`` event, or None when there is nothing to echo."""
    rooms = [room for room in event.rooms or () if room in DEMO_ROOMS]
    if not rooms or event.data_b64 is None:
        return None
    try:
        data = base64.b64decode(event.data_b64, validate=True)
    except binascii.Error:
        return None
    text = data.decode("utf-8", "replace").strip()[:MAX_TEXT]
    if not text:
        return None
    return PushRequest(
        target=Target(rooms=rooms),
        payload=msgspec.json.encode(Echo(event.user, text)),
        priority=Priority.LOW,
        guaranteed=False,
        ttl_s=ECHO_TTL_S,
    )


class DemoEcho:
    """An :class:`~longlink.logic.events.EventSink` echoing UPSTREAM to the room (module doc).

    ``forward`` (the webhook sender, if one is configured) gets every event
    this sink accepts. Use it as an async context manager: the pushes run in
    one task, stopped (what still waits is dropped) on exit.
    """

    def __init__(
        self,
        pusher: Pusher,
        *,
        metrics: CollectorRegistry,
        forward: EventSink | None = None,
        limits: EchoLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.pusher = pusher
        self.forward = forward
        self.limits = limits or EchoLimits()
        self._clock = clock
        self._queue: asyncio.Queue[PushRequest] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        outcomes = Counter(
            "longlink_demo_echoes",
            "Demo mode: UPSTREAM messages echoed to their room (echoed), refused over the"
            " echo's rate limits or queue (limited), or not queued (failed)",
            ["outcome"],
            registry=metrics,
        )
        self._echoed = outcomes.labels("echoed")
        self._limited = outcomes.labels("limited")
        self._failed = outcomes.labels("failed")

    async def __aenter__(self) -> DemoEcho:
        self._task = asyncio.create_task(self._run(), name="demo-echo")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop echoing; idempotent. Later UPSTREAM is refused (``rate_limited``)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def offer(self, event: WebhookEvent) -> bool:
        """Accept ``event``; an upstream one is echoed within the limits (False: refused)."""
        if event.type == UPSTREAM:
            push = echo_of(event)
            if push is not None:
                if (
                    self._closed
                    or self._queue.full()
                    or not self.limits.admit(event.conn_id, self._clock())
                ):
                    self._limited.inc()
                    return False
                self._queue.put_nowait(push)
        return self.forward.offer(event) if self.forward is not None else True

    async def _run(self) -> None:
        queue = self._queue
        while True:
            chunk = [await queue.get()]
            while len(chunk) < _CHUNK and not queue.empty():
                chunk.append(queue.get_nowait())
            try:
                await self.pusher.push(chunk)
            except PushNotQueued as exc:
                self._echoed.inc(len(exc.queued))
                self._failed.inc(exc.refused)
                log.debug("demo echo: %s", exc)
            except IdsUnavailable as exc:
                self._failed.inc(len(chunk))
                log.debug("demo echo: %s", exc)
            except Exception:  # the queue's backend failed: these are lost, the next may pass
                self._failed.inc(len(chunk))
                log.exception("demo echo: pushing %d messages failed", len(chunk))
            else:
                self._echoed.inc(len(chunk))
