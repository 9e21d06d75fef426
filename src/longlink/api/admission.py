"""What a push passes before it is queued, in order (PROTOCOL.md §2.2)::

    API key (401) → body and limits (400, 413) → scopes (403)
        → overload (503) → rate limit (429) → queue (503 when full)

:class:`PushGate` holds the parts of that path that a reload may change: the
:class:`~longlink.api.keys.ApiKeys`, the :class:`~longlink.api.schemas.Limits`
and the overload mark. :meth:`PushGate.reload` swaps them in one step, so a
request sees either the old set or the new one, never a mix; a request already
past authentication finishes with the key it was given.

Overload protection: the API never blocks on delivery, so when dispatch falls
behind the queues grow. Once either queue holds ``settings.overload_mark``
messages (``overload_depth``, by default 80% of ``queue_size``), pushes with
priority low get 503 ``overloaded`` with ``Retry-After``; high priority pushes
are still queued until their own queue is full (``queue_size``). Shedding low
first keeps room for what the business marked as urgent, and refusing before
the rate limit means a refused push does not spend the key's rate.

Metrics (in ``Services.metrics``), labelled by key *name*, never the secret:

* ``longlink_push_accepted_total{key, target, priority}`` — messages queued;
* ``longlink_push_refused_total{key, status, code}`` — requests refused
  (``key=""`` when no key was recognised);
* ``longlink_push_rate_limited_total{key}`` — messages refused by the rate limit;
* ``longlink_push_overloaded_total{key, priority}`` — messages refused with 503
  ``overloaded`` (past the mark, or a full queue);
* ``longlink_queue_depth{priority}``, ``longlink_queue_overload_mark`` and
  ``longlink_overloaded`` (1 while low priority pushes are refused) — gauges.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from longlink.api.errors import OVERLOADED, RATE_LIMITED, ApiError
from longlink.api.keys import ApiKey, ApiKeys
from longlink.api.schemas import LIMIT_SETTINGS, Limits, PushRequest
from longlink.bus.base import MessageQueue
from longlink.model import Priority
from longlink.settings import ConfigError, Settings

__all__ = ["OVERLOAD_RETRY_AFTER_S", "RELOADABLE_SETTINGS", "PushGate"]

#: Seconds a client is told to wait after 503 ``overloaded``.
OVERLOAD_RETRY_AFTER_S = 1

#: The settings :meth:`PushGate.reload` applies to a running process.
RELOADABLE_SETTINGS = ("api_key", "api_keys", "overload_depth", *LIMIT_SETTINGS)


class _PushMetrics:
    """The push API's counters and queue gauges, registered once per registry."""

    def __init__(self, registry: CollectorRegistry, gate: PushGate) -> None:
        self.accepted = Counter(
            "longlink_push_accepted",
            "Messages queued by the push API, by key, target kind and priority.",
            ["key", "target", "priority"],
            registry=registry,
        )
        self._accepted: dict[tuple[str, str, str], Counter] = {}
        self.refused = Counter(
            "longlink_push_refused",
            "Push requests refused by the push API, by key, HTTP status and error code.",
            ["key", "status", "code"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "longlink_push_rate_limited",
            "Messages refused because their key was over its rate limit.",
            ["key"],
            registry=registry,
        )
        self.overloaded = Counter(
            "longlink_push_overloaded",
            "Messages refused with 503 overloaded (queues past the overload mark, or full).",
            ["key", "priority"],
            registry=registry,
        )
        depth = Gauge(
            "longlink_queue_depth",
            "Messages waiting for dispatch, by priority.",
            ["priority"],
            registry=registry,
        )
        for priority in Priority:
            depth.labels(priority.value).set_function(_depth_of(gate, priority))
        mark = Gauge(
            "longlink_queue_overload_mark",
            "Queue depth from which low priority pushes get 503 overloaded.",
            registry=registry,
        )
        mark.set_function(lambda: float(gate.overload_mark))
        now = Gauge(
            "longlink_overloaded",
            "1 while low priority pushes are refused with 503 overloaded.",
            registry=registry,
        )
        now.set_function(lambda: float(gate.overloaded))

    def count_accepted(self, key: str, push: PushRequest) -> None:
        """One more message queued (label children cached: this runs per message)."""
        self.count_accepted_many(key, [push])

    def count_accepted_many(self, key: str, pushes: Sequence[PushRequest]) -> None:
        """Messages queued, counted per (kind, priority): a batch moves a counter or two."""
        counts: dict[tuple[str, str], int] = {}
        for push in pushes:
            kind = (push.target.kind, push.priority.value)
            counts[kind] = counts.get(kind, 0) + 1
        for (target, priority), count in counts.items():
            labels = (key, target, priority)
            child = self._accepted.get(labels)
            if child is None:
                child = self._accepted[labels] = self.accepted.labels(*labels)
            child.inc(count)


def _overload_mark(settings: Settings) -> int:
    if settings.overload_mark < 1:
        raise ConfigError("overload_depth: must be at least 1")
    return settings.overload_mark


def _depth_of(gate: PushGate, priority: Priority) -> Callable[[], float]:
    return lambda: float(gate.queue.depth(priority))


class PushGate:
    """The checks between an HTTP push and the queue, and their metrics.

    ``clock`` (monotonic seconds) drives the rate limits; tests inject one.
    """

    def __init__(
        self,
        settings: Settings,
        queue: MessageQueue,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self._clock = clock
        self.keys = ApiKeys(settings, clock)
        self.limits = Limits.from_settings(settings)
        self.overload_mark = _overload_mark(settings)
        self.metrics = _PushMetrics(registry, self)

    def reload(self, settings: Settings) -> None:
        """Take the keys, limits and overload mark of ``settings``; all or nothing.

        Raises :class:`~longlink.settings.ConfigError` (and changes nothing)
        when the limits are impossible.
        """
        limits, mark = Limits.from_settings(settings), _overload_mark(settings)
        keys = ApiKeys(settings, self._clock, previous=self.keys)
        self.keys, self.limits, self.overload_mark = keys, limits, mark

    # -------------------------------------------------------------- checks

    def authenticate(self, authorization: str | None) -> ApiKey:
        """The key of an ``Authorization`` header; 401 ``unauthorized`` otherwise."""
        return self.keys.authenticate(authorization)

    @property
    def overloaded(self) -> bool:
        """Whether a queue holds at least :attr:`overload_mark` messages."""
        mark = self.overload_mark
        return self.queue.depth(Priority.LOW) >= mark or self.queue.depth(Priority.HIGH) >= mark

    def admit(self, key: ApiKey, pushes: Sequence[PushRequest], batch: bool) -> list[PushRequest]:
        """``pushes`` as ``key`` may queue them, its rate charged; all or none.

        Raises 403 (scope), 503 ``overloaded`` (a low priority push while
        overloaded) or 429 (rate). ``batch`` prefixes fields with
        ``messages[i].``.
        """
        admitted = [
            key.check_scope(push, f"messages[{index}]." if batch else "")
            for index, push in enumerate(pushes)
        ]
        self._check_overload(key, admitted, batch)
        try:
            self.keys.take(key, len(admitted))
        except ApiError as exc:
            if exc.code == RATE_LIMITED:
                self.metrics.rate_limited.labels(key.name).inc(len(admitted))
            raise
        return admitted

    def _check_overload(self, key: ApiKey, pushes: Sequence[PushRequest], batch: bool) -> None:
        low = [i for i, push in enumerate(pushes) if push.priority is Priority.LOW]
        if not low or not self.overloaded:
            return
        self.metrics.overloaded.labels(key.name, Priority.LOW.value).inc(len(low))
        depth = max(self.queue.depth(Priority.LOW), self.queue.depth(Priority.HIGH))
        where = f"messages[{low[0]}]." if batch else ""
        raise ApiError(
            503,
            OVERLOADED,
            f"{where}priority: low priority pushes are refused while a queue holds {depth}"
            f" messages (overload mark {self.overload_mark}); retry later, or push with"
            " priority high",
            headers={"Retry-After": str(OVERLOAD_RETRY_AFTER_S)},
        )

    # -------------------------------------------------------------- outcomes

    def accepted(self, key: ApiKey, push: PushRequest) -> None:
        """Count a queued message."""
        self.metrics.count_accepted(key.name, push)

    def accepted_many(self, key: ApiKey, pushes: Sequence[PushRequest]) -> None:
        """Count queued messages: one counter step per kind of push, not per message."""
        self.metrics.count_accepted_many(key.name, pushes)

    def queue_full(self, key: ApiKey, priority: Priority, count: int) -> None:
        """``count`` admitted messages were not queued (their queue was full)."""
        self.keys.give_back(key, count)
        self.metrics.overloaded.labels(key.name, priority.value).inc(count)

    def refused(self, key: ApiKey | None, error: ApiError) -> None:
        """Count a refused request (``key`` None when it was not recognised)."""
        name = key.name if key is not None else ""
        self.metrics.refused.labels(name, str(error.status), error.code).inc()
