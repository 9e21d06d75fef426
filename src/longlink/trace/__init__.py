"""The message trace: what happened to a message, and the reach of guaranteed ones.

``GET /v1/messages/{msg_id}`` and ``GET /v1/stats/reach`` read it.

* :mod:`longlink.trace.tracer`: :class:`Tracer` records, in the memory of
  each process, the events of every message's path (no I/O on the hot path).
* :mod:`longlink.trace.view`: :class:`TraceView`, how the API reads them;
  :class:`LocalTraceView` (this process alone) and the merge of the parts of
  several processes.
* :mod:`longlink.trace.redis`: ``RedisTraceView``, the view of a deployment on
  Redis (imported from there, so this package needs no Redis client).
"""

from longlink.trace.tracer import EVENTS, FIELDS, SCOPES, MessageTrace, Reach, TraceEvent, Tracer
from longlink.trace.view import LocalTraceView, TraceView, merge_reach, merge_traces

__all__ = [
    "EVENTS",
    "FIELDS",
    "SCOPES",
    "LocalTraceView",
    "MessageTrace",
    "Reach",
    "TraceEvent",
    "TraceView",
    "Tracer",
    "merge_reach",
    "merge_traces",
]
