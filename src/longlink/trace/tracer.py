"""Message trace and reach figures (``GET /v1/messages/{id}``, ``GET /v1/stats/reach``).

:class:`Tracer` keeps, per message id, the time-ordered events of its path
through the layers, each with a unix-ms timestamp and a small detail object:

============  ===========  ====================================================
event         recorded by  detail
============  ===========  ====================================================
accepted      api          target (kind), priority, guaranteed, ttl_s
stored        api          guaranteed only: committed to the offline store
queued        api          on the queue of its priority
dispatched    dispatch     nodes: the gateway nodes it was handed to ([] = none)
written       gateway      node, targeted (local connections), written
retried       gateway      conn, retry (1, 2, …): a guaranteed message sent again
acked         gateway      conn, retries: the client acknowledged it
unacked       gateway      conn, retries: retries used up on that connection
                           (the message stays in the offline store)
closed        gateway      conn, retries: the connection went before an ACK
from_store    gateway      conn: delivered from the offline store after AUTH_OK
expired       store sweep  its TTL ended while it was kept offline
============  ===========  ====================================================

Bounded: at most ``max_messages`` traces (the oldest go first), each kept
``ttl_s`` seconds after its first event and holding at most ``max_events``
events (later ones are counted in ``dropped_events``). ``scope`` chooses what
is traced: ``all`` messages, ``guaranteed`` ones only, or nothing (``off``).

It also keeps the *reach* of guaranteed deliveries: each guaranteed message
written to a connection ends as acked (after some retries) or not (retries
used up, connection closed, TTL over). Per-second counts over a sliding
window of ``reach_window_s`` give first-try reach, final reach (within the
live connection's retries) and mean retries.

Recording stays in the memory of the process that saw the event (no I/O on
the hot path). Reading goes through a :class:`~longlink.trace.view.TraceView`:
:class:`~longlink.trace.view.LocalTraceView`
answers from this process's tracer (the embedded, single-process deployment);
:class:`longlink.trace.redis.RedisTraceView` asks every process on the Redis bus
for its part and merges them (:mod:`longlink.trace.view`).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from longlink.model import Message, MsgIdGenerator
from longlink.settings import ConfigError, Settings

__all__ = [
    "EVENTS",
    "FIELDS",
    "SCOPES",
    "MessageTrace",
    "Reach",
    "TraceEvent",
    "Tracer",
]

SCOPES = ("all", "guaranteed", "off")
#: Every event the layers record, in the order of a message's path (the table above).
EVENTS = (
    "accepted",
    "stored",
    "queued",
    "dispatched",
    "written",
    "retried",
    "acked",
    "unacked",
    "closed",
    "from_store",
    "expired",
)

Detail = dict[str, Any]
#: A detail given as values only: their names come from :data:`FIELDS` (cheaper to record).
Values = tuple[Any, ...]

#: Names of the values of each event whose detail is recorded as a tuple.
FIELDS: dict[str, tuple[str, ...]] = {
    "accepted": ("target", "priority", "guaranteed", "ttl_s"),
    "dispatched": ("nodes",),
    "written": ("node", "targeted", "written"),
    "retried": ("conn", "retry"),
    "acked": ("conn", "retries"),
    "unacked": ("conn", "retries", "reason"),
    "closed": ("conn", "retries"),
    "from_store": ("conn",),
}


class TraceEvent(msgspec.Struct, frozen=True):
    """One step of a message's path (the detail fields are flattened into the JSON)."""

    at_ms: int
    event: str
    detail: Detail | None = None

    def to_json(self) -> Detail:
        return {"at_ms": self.at_ms, "event": self.event, **(self.detail or {})}


class MessageTrace(msgspec.Struct, frozen=True):
    """A message's trace as ``GET /v1/messages/{msg_id}`` returns it."""

    msg_id: int
    events: list[TraceEvent]
    dropped_events: int = 0

    def to_json(self) -> Detail:
        return {
            "msg_id": str(self.msg_id),
            "events": [event.to_json() for event in self.events],
            "dropped_events": self.dropped_events,
        }


class Reach(msgspec.Struct, frozen=True):
    """Reach of guaranteed deliveries over the last ``window_s`` seconds.

    ``deliveries`` counts (message, connection) pairs whose outcome is known.
    ``first_try_reach`` = acked without a retry / deliveries; ``final_reach``
    = acked / deliveries (within the connection's retries, before the offline
    store's redelivery); ``predicted_final_reach`` = 1 − (1 − first)^(n+1),
    what independent losses would give with ``max_retries`` n.
    """

    window_s: int
    max_retries: int
    deliveries: int
    acked: int
    first_try_acked: int
    from_store: int
    retries: int
    first_try_reach: float | None
    final_reach: float | None
    mean_retries: float | None
    predicted_final_reach: float | None

    @classmethod
    def from_counts(
        cls,
        *,
        window_s: int,
        max_retries: int,
        deliveries: int,
        acked: int,
        first_try_acked: int,
        from_store: int,
        retries: int,
    ) -> Reach:
        """The figures of these counts, ratios computed (``None`` with no deliveries)."""
        first_reach = first_try_acked / deliveries if deliveries else None
        predicted = 1 - (1 - first_reach) ** (max_retries + 1) if first_reach is not None else None
        return cls(
            window_s=window_s,
            max_retries=max_retries,
            deliveries=deliveries,
            acked=acked,
            first_try_acked=first_try_acked,
            from_store=from_store,
            retries=retries,
            first_try_reach=first_reach,
            final_reach=acked / deliveries if deliveries else None,
            mean_retries=retries / deliveries if deliveries else None,
            predicted_final_reach=predicted,
        )


#: How far a message id's clock may be behind the tracer's (ids come from other nodes).
ID_CLOCK_SLACK_MS = 1000
#: Distinct details kept for sharing; past this the cache starts over.
DETAIL_CACHE = 4096


#: Marks a detail kept as ``(PAIRS, (name, value), …)`` (given as a dict).
PAIRS = "\x00pairs"


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _detail(event: str, detail: Values | None) -> Detail | None:
    """The detail as the API shows it: names from :data:`FIELDS` or kept with the values."""
    if detail is None:
        return None
    if detail and detail[0] == PAIRS:
        pairs = detail[1:]
    else:
        names = FIELDS.get(event)
        if names is None or len(names) != len(detail):
            return {"values": [_thawed(v) for v in detail]}
        pairs = tuple(zip(names, detail, strict=True))
    return {name: _thawed(value) for name, value in pairs}


def _thawed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# A trace is one flat tuple: (created_ms, dropped, offset_ms, event, detail, offset_ms, …).
# Tuples of strings, ints and such tuples are untracked by the garbage collector,
# so 50,000 traces cost a full collection nothing (objects would cost it ~60 ms).
# Offsets from created_ms are small ints (shared by CPython below 257) and equal
# details are shared between traces: a trace costs about 0.5 KiB.
_CREATED, _DROPPED, _FIRST = 0, 1, 2


class Tracer:
    """Bounded per-message traces and sliding-window reach figures (module docstring)."""

    def __init__(
        self,
        *,
        ttl_s: float = 600.0,
        max_messages: int = 50_000,
        max_events: int = 64,
        scope: str = "all",
        reach_window_s: int = 300,
        max_retries: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if scope not in SCOPES:
            raise ValueError(f"trace scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        self.ttl_ms = int(ttl_s * 1000)
        self.max_messages = max_messages if scope != "off" else 0
        self.max_events = max_events
        self.scope = scope
        self.reach_window_s = max(1, int(reach_window_s))
        self.max_retries = max_retries
        self._all = scope == "all"
        self._clock = clock
        self._traces: OrderedDict[int, tuple[Any, ...]] = OrderedDict()
        # [second, deliveries, acked, first_try_acked, retries, from_store] per second.
        self._buckets: deque[list[int]] = deque()
        # Details of "accepted" events, shared by messages alike.
        self._accepted: dict[Values, Values] = {}
        self._details: dict[Values, Values] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracer:
        """The tracer ``settings`` describe (``trace_*``, ``reach_window_s``, ``max_retries``)."""
        try:
            return cls(
                ttl_s=settings.trace_ttl_s,
                max_messages=settings.trace_max_messages,
                scope=settings.trace_scope,
                reach_window_s=settings.reach_window_s,
                max_retries=settings.max_retries,
            )
        except ValueError as exc:
            raise ConfigError(f"LONGLINK_TRACE_SCOPE: {exc}") from exc

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    # ------------------------------------------------------------------ recording

    def wants(self, message: Message) -> bool:
        """Whether ``message`` is traced under the scope."""
        return self.max_messages > 0 and (self._all or message.guaranteed)

    def accepted(self, message: Message) -> None:
        """Record ``accepted`` with the message's target kind, priority, guarantee and TTL."""
        if not (self.max_messages > 0 and (self._all or message.guaranteed)):
            return
        key = (message.target.kind, message.priority.value, message.guaranteed, message.ttl_s)
        detail = self._accepted.get(key)
        if detail is None:
            detail = key
            if len(self._accepted) < 1024:
                self._accepted[key] = key
        self.record(message.msg_id, "accepted", detail)

    def on(self, message: Message, event: str, detail: Detail | None = None) -> None:
        """Record ``event`` for ``message`` if the scope traces it."""
        if self.max_messages > 0 and (self._all or message.guaranteed):
            self.record(message.msg_id, event, detail)

    def on_many(
        self, messages: Iterable[Message], event: str, detail: Detail | None = None
    ) -> None:
        """Record the same ``event`` (one timestamp) for each traced message."""
        if self.max_messages <= 0:
            return
        at_ms = self.now_ms()
        frozen = self.freeze(event, detail) if detail is not None else None  # once for all
        for message in messages:
            if self._all or message.guaranteed:
                self.record(message.msg_id, event, frozen, at_ms)

    def record(
        self,
        msg_id: int,
        event: str,
        detail: Detail | Values | None = None,
        at_ms: int | None = None,
    ) -> None:
        """Append ``event`` to ``msg_id``'s trace (starting one if needed), whatever the scope.

        ``detail`` is a dict, or for the events of :data:`FIELDS` a tuple of
        the values in that order (cheaper). It is kept, not copied, and may be
        shared with other traces: never change it afterwards.
        """
        if self.max_messages <= 0:
            return
        now = self.now_ms() if at_ms is None else at_ms
        traces = self._traces
        trace = traces.get(msg_id)
        if isinstance(detail, dict):
            detail = self.freeze(event, detail)
        if trace is None:
            if len(traces) >= self.max_messages and traces:
                # Full: a message older than the oldest trace kept was dropped already;
                # a late event (an ACK) must not bring it back in place of a new one.
                oldest = next(iter(traces.values()))[_CREATED]
                if MsgIdGenerator.timestamp_ms(msg_id) < oldest - ID_CLOCK_SLACK_MS:
                    return
            traces[msg_id] = (now, 0, 0, event, detail)
            self._prune(now)
        elif len(trace) >= _FIRST + 3 * self.max_events:
            traces[msg_id] = (trace[_CREATED], trace[_DROPPED] + 1, *trace[_FIRST:])
        else:
            traces[msg_id] = (*trace, now - trace[_CREATED], event, detail)

    def freeze(self, event: str, detail: Detail) -> Values:
        """A dict detail as a shared tuple (values in FIELDS order, or name/value pairs)."""
        names = FIELDS.get(event)
        if names is not None and len(detail) == len(names) and all(n in detail for n in names):
            values = tuple(_frozen(detail[n]) for n in names)
        else:
            values = (PAIRS, *((k, _frozen(v)) for k, v in detail.items()))
        try:
            shared = self._details.get(values)
        except TypeError:  # an unhashable value: keep it unshared
            return values
        if shared is None:
            if len(self._details) >= DETAIL_CACHE:
                self._details.clear()
            shared = self._details[values] = values
        return shared

    def _prune(self, now_ms: int) -> None:
        traces = self._traces
        while len(traces) > self.max_messages:
            traces.popitem(last=False)
        horizon = now_ms - self.ttl_ms
        while traces:
            if next(iter(traces.values()))[_CREATED] > horizon:
                return
            traces.popitem(last=False)

    # ------------------------------------------------------------------ reading

    def trace(self, msg_id: int) -> MessageTrace | None:
        """The trace of ``msg_id``, ``None`` when unknown or past retention."""
        trace = self._traces.get(msg_id)
        if trace is None:
            return None
        base = trace[_CREATED]
        if base <= self.now_ms() - self.ttl_ms:
            del self._traces[msg_id]
            return None
        events = [
            TraceEvent(base + trace[i], trace[i + 1], _detail(trace[i + 1], trace[i + 2]))
            for i in range(_FIRST, len(trace), 3)
        ]
        events.sort(key=lambda e: e.at_ms)  # stable: same-ms events keep their order
        return MessageTrace(msg_id, events, trace[_DROPPED])

    @property
    def size(self) -> int:
        """How many messages have a trace (not ``__len__``: a tracer is never falsy)."""
        return len(self._traces)

    # ------------------------------------------------------------------ reach

    def outcome(self, retries: int, acked: bool, from_store: bool = False) -> None:
        """One guaranteed delivery to one connection ended: acked after ``retries``, or not."""
        second = int(self._clock())
        buckets = self._buckets
        if not buckets or buckets[-1][0] != second:
            buckets.append([second, 0, 0, 0, 0, 0])
            horizon = second - self.reach_window_s
            while buckets[0][0] <= horizon:
                buckets.popleft()
        bucket = buckets[-1]
        bucket[1] += 1
        if acked:
            bucket[2] += 1
            if retries == 0:
                bucket[3] += 1
        bucket[4] += retries
        if from_store:
            bucket[5] += 1

    def reach(self, window_s: int | None = None) -> Reach:
        """Reach figures over the last ``window_s`` seconds (at most ``reach_window_s``)."""
        window = self.reach_window_s if window_s is None else max(1, min(window_s, 10**9))
        window = min(window, self.reach_window_s)
        horizon = int(self._clock()) - window
        total = [0, 0, 0, 0, 0]
        for bucket in self._buckets:
            if bucket[0] > horizon:
                for i in range(5):
                    total[i] += bucket[i + 1]
        deliveries, acked, first, retries, from_store = total
        return Reach.from_counts(
            window_s=window,
            max_retries=self.max_retries,
            deliveries=deliveries,
            acked=acked,
            first_try_acked=first,
            from_store=from_store,
            retries=retries,
        )
