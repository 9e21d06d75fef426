"""Delivery of events to the business webhook: bounded, signed, retried, never blocking.

:class:`WebhookSender` is an :class:`~longlink.logic.events.EventSink`. The
gateway calls :meth:`WebhookSender.offer` on its hot path; that only appends
to a bounded queue. A fixed number of *lanes* (``webhook_concurrency``, one
task each, not one per connection) POST the events, one event per request:

* An event goes to the lane of its connection (a hash of ``conn_id``), so the
  events of one connection are delivered in the order they happened (enter
  before exit). Events of different connections may arrive in any order.
* A 2xx answer delivers the event. A network error, a timeout, 408, 425,
  429 or 5xx is retried after ``webhook_retry_s`` seconds, doubling each
  time up to 30 s (with jitter, honouring ``Retry-After``), for at most
  ``webhook_max_attempts`` attempts; then the event is dropped and counted as
  ``failed``. Any other 4xx is a refusal: dropped at once as ``rejected``.
  A retry resends the same body (same ``id``), signed afresh.
* A full queue (``webhook_queue_size`` events in all lanes) refuses the event
  (``offer`` returns False, counted as ``dropped``) instead of slowing the
  gateway. While a lane retries, the events behind it wait: a webhook that
  is down long enough makes the queue fill and events drop.

Each lane keeps one keep-alive HTTP/1.1 connection
(:class:`~longlink.webhook.http1.Http1Connection`, chosen over httpx for its
CPU cost: the sender shares the gateway's process). One event per POST, as
PROTOCOL.md §2.3 shows them: docs/presence-and-events.md has the throughput
measured, which has not called for batching.

Lifetime: ``async with WebhookSender(...)``; :meth:`close` stops taking
events, gives the queued ones up to ``drain_s`` seconds, then cancels the
lanes and closes the HTTP client. Idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from longlink.lifetime import cancel_requested
from longlink.logic.events import WebhookEvent, encode_event
from longlink.settings import Settings
from longlink.webhook.http1 import Http1Connection, HttpAnswer, HttpError
from longlink.webhook.signature import SIGNATURE_HEADER, sign

__all__ = ["RETRY_MAX_S", "Poster", "WebhookMetrics", "WebhookSender"]

log = logging.getLogger("longlink.webhook")

#: Longest wait between two attempts.
RETRY_MAX_S = 30.0
#: 4xx answers that mean "try again later" rather than "never".
_RETRYABLE_4XX = frozenset({408, 425, 429})
_Item = tuple[WebhookEvent, float]


class Poster(Protocol):
    """How a lane POSTs (an :class:`Http1Connection`; tests give a fake)."""

    async def post(self, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """The answer, or :class:`HttpError` when none could be had."""
        ...

    async def close(self) -> None: ...


class WebhookMetrics:
    """Prometheus collectors of the webhook sender."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "longlink_webhook_events",
            "Events by outcome: delivered, rejected (4xx), failed (attempts ran out), "
            "dropped (queue full or closed)",
            ["type", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "longlink_webhook_retries", "Webhook attempts that were retried", registry=registry
        )
        self.queued = Gauge(
            "longlink_webhook_queued", "Events waiting for the webhook", registry=registry
        )
        self.latency = Histogram(
            "longlink_webhook_latency_seconds",
            "From the event to its delivery (retries included)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=registry,
        )


class WebhookSender:
    """POSTs events to ``url``, signed with ``secret`` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        secret: str | None,
        *,
        queue_size: int = 10_000,
        concurrency: int = 4,
        max_attempts: int = 6,
        retry_s: float = 0.5,
        timeout_s: float = 5.0,
        drain_s: float = 5.0,
        metrics: CollectorRegistry | None = None,
        poster: Callable[[], Poster] | None = None,
    ) -> None:
        if concurrency < 1 or queue_size < 1 or max_attempts < 1:
            raise ValueError("concurrency, queue_size and max_attempts must be at least 1")
        self.url = url
        self._secret = secret
        self._max_attempts = max_attempts
        self._retry_s = retry_s
        self._drain_s = drain_s
        self._poster = poster or (
            lambda: Http1Connection(
                url,
                timeout_s=timeout_s,
                headers={"User-Agent": "longlink-webhook/1", "Content-Type": "application/json"},
            )
        )
        per_lane = max(1, queue_size // concurrency)
        self._lanes: list[asyncio.Queue[_Item]] = [
            asyncio.Queue(per_lane) for _ in range(concurrency)
        ]
        self._posters: list[Poster] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.metrics = WebhookMetrics(metrics or CollectorRegistry())
        self.metrics.queued.set_function(lambda: sum(q.qsize() for q in self._lanes))

    @classmethod
    def from_settings(
        cls, settings: Settings, metrics: CollectorRegistry | None = None
    ) -> WebhookSender:
        """A sender configured by the ``webhook_*`` settings (``webhook_url`` must be set)."""
        if not settings.webhook_url:
            raise ValueError("webhook_url is not set")
        return cls(
            settings.webhook_url,
            settings.webhook_secret,
            queue_size=settings.webhook_queue_size,
            concurrency=settings.webhook_concurrency,
            max_attempts=settings.webhook_max_attempts,
            retry_s=settings.webhook_retry_s,
            timeout_s=settings.webhook_timeout_s,
            drain_s=settings.drain_timeout_s,
            metrics=metrics,
        )

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> WebhookSender:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        """Start the lanes (on the running loop); each opens its connection when needed."""
        if self._tasks or self._closed:
            return
        if not self._secret:
            log.warning("webhook %s: no webhook secret set, events are sent unsigned", self.url)
        self._posters = [self._poster() for _ in self._lanes]
        self._tasks = [
            asyncio.create_task(self._lane(queue, poster), name=f"webhook-lane-{i}")
            for i, (queue, poster) in enumerate(zip(self._lanes, self._posters, strict=True))
        ]

    async def close(self) -> None:
        """Stop taking events, deliver what is queued for up to ``drain_s``, then stop."""
        if self._closed:
            return
        self._closed = True
        if self._tasks:
            waiting = [asyncio.ensure_future(q.join()) for q in self._lanes]
            _, pending = await asyncio.wait(waiting, timeout=self._drain_s)
            for future in pending:
                future.cancel()
            for task in self._tasks:
                task.cancel()
            for task in [*self._tasks, *waiting]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        left = sum(q.qsize() for q in self._lanes)
        if left:
            log.warning("webhook %s: %d events not delivered at shutdown", self.url, left)
        for poster in self._posters:
            await poster.close()

    # ------------------------------------------------------------------ the hot path

    def offer(self, event: WebhookEvent) -> bool:
        """Queue ``event`` for delivery; False (counted as dropped) when full or closed."""
        if not self._closed:
            lane = self._lanes[zlib.crc32(event.conn_id.encode()) % len(self._lanes)]
            with contextlib.suppress(asyncio.QueueFull):
                lane.put_nowait((event, time.monotonic()))
                return True
        self.metrics.events.labels(event.type, "dropped").inc()
        return False

    # ------------------------------------------------------------------ lanes

    async def _lane(self, queue: asyncio.Queue[_Item], poster: Poster) -> None:
        while not cancel_requested():
            event, offered = await queue.get()
            try:
                outcome = await self._deliver(event, poster)
            except Exception:  # a bug must not stop the lane
                log.exception("webhook: event %s could not be sent", event.id)
                outcome = "failed"
            finally:
                queue.task_done()
            self.metrics.events.labels(event.type, outcome).inc()
            if outcome == "delivered":
                self.metrics.latency.observe(time.monotonic() - offered)

    async def _deliver(self, event: WebhookEvent, poster: Poster) -> str:
        """Try until delivered, refused, or out of attempts; returns the outcome."""
        body = encode_event(event)
        headers = {"X-Longlink-Event-Id": event.id}
        for attempt in range(1, self._max_attempts + 1):
            headers["X-Longlink-Attempt"] = str(attempt)
            if self._secret:
                headers[SIGNATURE_HEADER] = sign(self._secret, body)
            retry_after: float | None = None
            try:
                answer = await poster.post(body, headers)
            except HttpError as exc:
                problem = str(exc)
            else:
                status = answer.status
                if 200 <= status < 300:
                    return "delivered"
                if 400 <= status < 500 and status not in _RETRYABLE_4XX:
                    log.warning("webhook refused event %s with %d", event.id, status)
                    return "rejected"
                problem = f"HTTP {status}"
                retry_after = _retry_after(answer.headers.get("retry-after"))
            if attempt == self._max_attempts:
                log.warning(
                    "webhook: event %s dropped after %d attempts (%s)", event.id, attempt, problem
                )
                break
            self.metrics.retries.inc()
            delay = min(RETRY_MAX_S, self._retry_s * 2 ** (attempt - 1))
            delay *= random.uniform(0.5, 1.0)  # jitter: retries of many lanes spread out
            if retry_after is not None:
                delay = max(delay, min(retry_after, RETRY_MAX_S))
            log.info(
                "webhook: event %s attempt %d: %s; retry in %.2fs",
                event.id,
                attempt,
                problem,
                delay,
            )
            await asyncio.sleep(delay)
        return "failed"


def _retry_after(value: Any) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds (a date is ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
