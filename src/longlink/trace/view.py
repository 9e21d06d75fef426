"""Reading the message trace: one process's view, and merging the parts of many.

The API reads traces and reach figures through a :class:`TraceView`.
:class:`LocalTraceView` answers from this process's
:class:`~longlink.trace.tracer.Tracer` (the embedded deployment);
:class:`~longlink.trace.redis.RedisTraceView` gathers every process's part over
Redis and merges them with :func:`merge_traces` and :func:`merge_reach`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from longlink.trace.tracer import MessageTrace, Reach, Tracer

__all__ = ["LocalTraceView", "TraceView", "merge_reach", "merge_traces"]

#: Causal order of the events, to place the parts of different processes whose
#: first events share a millisecond (a message is dispatched before it is written).
_STAGE = {
    "accepted": 0,
    "stored": 1,
    "queued": 2,
    "dispatched": 3,
    "written": 4,
    "from_store": 4,
    "retried": 5,
    "acked": 6,
    "unacked": 6,
    "closed": 6,
    "expired": 7,
}


def merge_traces(msg_id: int, parts: Iterable[MessageTrace | None]) -> MessageTrace | None:
    """One trace from the parts of several processes (``None`` parts: they never saw it).

    Events come in ``at_ms`` order; the sort is stable and the parts are laid
    out by their first event (time, then stage), so the events of one process
    keep their order and a same-millisecond tie between processes follows the
    message's path. ``dropped_events`` are summed. ``None`` when no part
    knows the message. The processes' clocks order the events: on several
    machines keep them synchronised (NTP).
    """
    known = [part for part in parts if part is not None and part.events]
    if not known:
        return None
    if len(known) == 1:
        return known[0]
    known.sort(key=lambda part: (part.events[0].at_ms, _STAGE.get(part.events[0].event, 8)))
    events = [event for part in known for event in part.events]
    events.sort(key=lambda event: event.at_ms)
    return MessageTrace(msg_id, events, sum(part.dropped_events for part in known))


def merge_reach(first: Reach, *others: Reach) -> Reach:
    """The counts of every part summed, ratios recomputed; window and retries of ``first``."""
    parts = (first, *others)
    return Reach.from_counts(
        window_s=first.window_s,
        max_retries=first.max_retries,
        deliveries=sum(part.deliveries for part in parts),
        acked=sum(part.acked for part in parts),
        first_try_acked=sum(part.first_try_acked for part in parts),
        from_store=sum(part.from_store for part in parts),
        retries=sum(part.retries for part in parts),
    )


class TraceView(Protocol):
    """Where the API reads message traces and reach figures.

    An implementation answers within about a second whatever happens to the
    other processes (what it could not gather in time is left out), and never
    raises for an unreachable peer or bus.
    """

    async def trace(self, msg_id: int) -> MessageTrace | None:
        """The merged trace of ``msg_id``; ``None`` when no process knows it."""
        ...

    async def reach(self, window_s: int | None = None) -> Reach:
        """Reach over the last ``window_s`` seconds (default and bound: ``reach_window_s``)."""
        ...


class LocalTraceView:
    """The trace as this process recorded it: the whole of it when every role runs here.

    The view of the embedded deployment (``LONGLINK_BUS=memory``); in a
    multi-process deployment it shows only this process's events.
    """

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    async def trace(self, msg_id: int) -> MessageTrace | None:
        return self.tracer.trace(msg_id)

    async def reach(self, window_s: int | None = None) -> Reach:
        return self.tracer.reach(window_s)
