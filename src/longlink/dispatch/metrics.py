"""Prometheus collectors of the dispatch layer (names listed in docs/dispatch.md)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from longlink.dispatch.compression import EncodeStats
from longlink.model import Priority
from longlink.protocol import Codec

ZLIB, BROTLI = Codec.ZLIB.label, Codec.BROTLI.label

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class DispatchMetrics:
    """Counters, gauges and histograms of one :class:`~longlink.dispatch.Dispatcher`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages_in = Counter(
            "longlink_dispatch_messages_in",
            "Messages taken from the queues by dispatch",
            ["priority"],
            registry=registry,
        )
        self.dispatched = Counter(
            "longlink_dispatched_messages",
            "Messages routed to gateway nodes",
            ["priority"],
            registry=registry,
        )
        self.unrouted = Counter(
            "longlink_unrouted_messages",
            "Messages whose target had no connection anywhere",
            ["priority"],
            registry=registry,
        )
        self.latency = Histogram(
            "longlink_dispatch_latency_seconds",
            "From acceptance at the API to hand-over to the gateway nodes",
            ["priority"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batches = Counter(
            "longlink_dispatch_batches",
            "Room batches made (one per room flush; each is one frame per connection)",
            registry=registry,
        )
        self.batch_messages = Histogram(
            "longlink_dispatch_batch_messages",
            "Messages per room batch (sum / count is the aggregation ratio)",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_bytes = Counter(
            "longlink_dispatch_batch_bytes",
            "Bytes of room batch bodies: encoding none is before compression, "
            "zlib and br after (uncompressed when compression did not pay)",
            ["encoding"],
            registry=registry,
        )
        self.compress_seconds = Counter(
            "longlink_dispatch_compress_seconds",
            "Time spent compressing room batches",
            ["codec"],
            registry=registry,
        )
        self.high_copies = Counter(
            "longlink_dispatch_high_copies",
            "High-priority message copies handed to the nodes, by path",
            ["path"],
            registry=registry,
        )
        self.ratio = Gauge(
            "longlink_dispatch_aggregation_ratio",
            "Messages per room batch since start",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "longlink_dispatch_queue_depth",
            "Messages waiting in the queue, as dispatch sees it",
            ["priority"],
            registry=registry,
        )
        self.pending = Gauge(
            "longlink_dispatch_pending_messages",
            "Messages held in open room windows",
            registry=registry,
        )
        self._batched_messages = 0
        self._batch_count = 0
        self.ratio.set_function(self._ratio)

    def watch(
        self,
        depth: Callable[[Priority], int],
        pending: Callable[[], int],
    ) -> None:
        """Read queue depths and held messages when scraped."""
        for priority in Priority:
            self.queue_depth.labels(priority.value).set_function(
                lambda p=priority: float(depth(p))  # type: ignore[misc]
            )
        self.pending.set_function(lambda: float(pending()))

    def batch(self, messages: int, stats: EncodeStats) -> None:
        """Count one room batch of ``messages`` encoded with ``stats``."""
        self._batch_count += 1
        self._batched_messages += messages
        self.batches.inc()
        self.batch_messages.observe(messages)
        raw = stats.raw_bytes
        self.batch_bytes.labels("none").inc(raw)
        self.batch_bytes.labels(ZLIB).inc(stats.zlib_bytes or raw)
        self.batch_bytes.labels(BROTLI).inc(stats.brotli_bytes or raw)
        if stats.zlib_s:
            self.compress_seconds.labels(ZLIB).inc(stats.zlib_s)
        if stats.brotli_s:
            self.compress_seconds.labels(BROTLI).inc(stats.brotli_s)

    def _ratio(self) -> float:
        return self._batched_messages / self._batch_count if self._batch_count else 0.0
