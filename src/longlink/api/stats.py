"""``GET /v1/stats``: the figures of this process's Prometheus registry, as one JSON object.

The admin dashboard (``/admin``) reads it every second or two and derives
rates from two reads; everything here is a counter or a gauge the other
layers already keep (docs/dispatch.md lists them), summed over their labels.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

from prometheus_client import CollectorRegistry

from longlink.api.responses import Stats

__all__ = ["read_stats"]

_Samples = dict[str, list[tuple[dict[str, str], float]]]
_ENCODINGS = ("none", "zlib", "br")


def _samples(registry: CollectorRegistry) -> _Samples:
    found: _Samples = defaultdict(list)
    for metric in registry.collect():
        for sample in metric.samples:
            found[sample.name].append((sample.labels, sample.value))
    return found


def _total(samples: _Samples, name: str, **labels: str) -> int:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return int(
        sum(
            value
            for have, value in samples.get(name, ())
            if all(have.get(key) == wanted for key, wanted in labels.items())
        )
    )


def _by(samples: _Samples, name: str, label: str, values: Iterable[str]) -> dict[str, int]:
    return {value: _total(samples, name, **{label: value}) for value in values}


def read_stats(registry: CollectorRegistry, *, node: str, roles: Iterable[str]) -> Stats:
    """The :class:`~longlink.api.responses.Stats` of ``registry`` now."""
    s = _samples(registry)
    return Stats(
        at_ms=int(time.time() * 1000),
        node=node,
        roles=list(roles),
        accepted=_total(s, "longlink_push_accepted_total"),
        messages_in=_total(s, "longlink_dispatch_messages_in_total"),
        unrouted=_total(s, "longlink_unrouted_messages_total"),
        deliveries=_total(s, "longlink_deliveries_total"),
        frames_written=_total(s, "longlink_push_writes_total"),
        connections=_total(s, "longlink_connections"),
        room_batches=_total(s, "longlink_dispatch_batches_total"),
        batched_messages=_total(s, "longlink_dispatch_batch_messages_sum"),
        batch_bytes=_by(
            s, "longlink_dispatch_batch_bytes_total", "encoding", ("none", "zlib", "br")
        ),
        queue_depth=_by(s, "longlink_queue_depth", "priority", ("low", "high")),
        slow_drops=_total(s, "longlink_slow_client_drops_total"),
        upstream=_total(s, "longlink_presence_events_total", type="upstream"),
        quality_reports=_by(
            s, "longlink_quality_reports_total", "outcome", ("accepted", "dropped")
        ),
        kernel_samples=_total(s, "longlink_quality_kernel_samples_total"),
    )
