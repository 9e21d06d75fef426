"""Connection quality on one gateway: clients' REPORTs and the kernel's TCP_INFO (PROTOCOL.md §1.6).

Two sources feed one window per transport (:class:`~longlink.logic.quality.QualityWindow`)
and the Prometheus collectors:

* REPORT frames (op 17), validated and bounded by the session
  (:mod:`longlink.protocol.server`): heartbeat round trips, connect time,
  reconnects, failed transports;
* the kernel's own view of the sockets: every second the sampler reads
  ``TCP_INFO`` (smoothed RTT, RTT variance, segments being retransmitted,
  unacked segments) of the next :attr:`Quality.per_second` connections of a
  rotating pass over the hub — no timer and no state per connection, and a
  cost that does not grow with the number of connections.

The window's totals travel with the node report (``NodeInfo.quality``), so
``GET /v1/quality`` and control's endpoint ranking see every node of every
process (docs/quality.md).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram

from longlink.gateway.connection import KINDS
from longlink.gateway.hub import Hub
from longlink.lifetime import cancel_requested
from longlink.logic.quality import (
    CONNECT_BUCKETS_MS,
    RTT_BUCKETS_MS,
    TRANSPORT_LABELS,
    QualitySnapshot,
    QualityWindow,
)
from longlink.protocol.messages import Report

if TYPE_CHECKING:
    from longlink.gateway.connection import Connection

log = logging.getLogger("longlink.gateway")

#: ``struct tcp_info`` of Linux up to ``tcpi_total_retrans`` (104 bytes).
TCP_INFO = struct.Struct("=8B24I")
_RETRANS, _UNACKED, _RTT, _RTTVAR = 8 + 7, 8 + 4, 8 + 15, 8 + 16
SAMPLE_EVERY_S = 1.0


def transport_label(name: str) -> str:
    """A reported transport name as a bounded label."""
    return name if name in TRANSPORT_LABELS else "other"


class QualityMetrics:
    """Prometheus collectors of connection quality (labels bounded by TRANSPORT_LABELS)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rtt = Histogram(
            "longlink_quality_rtt_seconds",
            "Round-trip times: reported by clients (heartbeats) or read from TCP_INFO (kernel)",
            ["transport", "source"],
            buckets=[b / 1000 for b in RTT_BUCKETS_MS],
            registry=registry,
        )
        self.rttvar = Histogram(
            "longlink_quality_rtt_variance_seconds",
            "TCP_INFO RTT variance of sampled connections",
            ["transport"],
            buckets=[b / 1000 for b in RTT_BUCKETS_MS],
            registry=registry,
        )
        self.connect = Histogram(
            "longlink_quality_connect_seconds",
            "Connect time reported by clients (control call + transport + AUTH)",
            ["transport"],
            buckets=[b / 1000 for b in CONNECT_BUCKETS_MS],
            registry=registry,
        )
        self.reconnects = Counter(
            "longlink_quality_reconnects",
            "Reconnects reported by clients",
            ["transport"],
            registry=registry,
        )
        self.failures = Counter(
            "longlink_quality_failed_transports",
            "Transports clients reported as failed before this connection, by that transport",
            ["transport"],
            registry=registry,
        )
        self.retransmits = Counter(
            "longlink_quality_retransmits",
            "Segments being retransmitted in TCP_INFO samples",
            ["transport"],
            registry=registry,
        )
        self.samples = Counter(
            "longlink_quality_kernel_samples", "TCP_INFO samples taken", registry=registry
        )


class Quality:
    """Quality aggregates of one gateway (see the module docstring)."""

    def __init__(self, hub: Hub, registry: CollectorRegistry, *, per_second: int = 50) -> None:
        self.hub = hub
        self.metrics = QualityMetrics(registry)
        self.per_second = per_second
        self.windows = {label: QualityWindow() for label in TRANSPORT_LABELS}
        self._pass: list[Connection] = []
        self._next = 0

    # -------------------------------------------------------------- reports

    def report(self, conn: Connection, report: Report, now: float) -> None:
        """A validated REPORT from ``conn`` (counted against the connection's own transport)."""
        label = KINDS[conn.kind]
        metrics = self.metrics
        rtt = metrics.rtt.labels(label, "client")
        for sample in report.rtt_ms:
            rtt.observe(sample / 1000)
        if report.connect_ms is not None:
            metrics.connect.labels(label).observe(report.connect_ms / 1000)
        if report.reconnects:
            metrics.reconnects.labels(label).inc(report.reconnects)
        for failed in report.failed:
            metrics.failures.labels(transport_label(failed)).inc()
        self.windows[label].report(
            now, report.rtt_ms, report.connect_ms, report.reconnects, len(report.failed)
        )

    # -------------------------------------------------------------- the kernel's view

    async def run(self) -> None:
        """Sample :attr:`per_second` connections every second, until cancelled."""
        while not cancel_requested():
            await asyncio.sleep(SAMPLE_EVERY_S)
            try:
                self.sample(time.monotonic(), self.per_second)
            except Exception:
                log.exception("TCP_INFO sampling failed")

    def sample(self, now: float, count: int) -> int:
        """Read ``TCP_INFO`` of the next ``count`` connections of the pass (each at most once
        per call); returns how many were read."""
        taken = 0
        for _ in range(min(count, len(self.hub.conns))):
            if self._next >= len(self._pass):
                self._pass = list(self.hub.conns.values())  # a new pass over who is here now
                self._next = 0
                if not self._pass:
                    break
            conn = self._pass[self._next]
            self._next += 1
            if conn.closed or conn.transport is None:
                continue
            info = tcp_info(conn.transport.get_extra_info("socket"))
            if info is None:
                continue
            label = KINDS[conn.kind]
            metrics = self.metrics
            metrics.rtt.labels(label, "kernel").observe(info[_RTT] / 1e6)
            metrics.rttvar.labels(label).observe(info[_RTTVAR] / 1e6)
            if info[_RETRANS]:
                metrics.retransmits.labels(label).inc(info[_RETRANS])
            self.windows[label].kernel(now, info[_RTT], info[_RETRANS])
            taken += 1
        if taken:
            self.metrics.samples.inc(taken)
        if self._next >= len(self._pass):
            self._pass = []  # drop references to connections that may have gone
        return taken

    def snapshot(self, now: float) -> dict[str, QualitySnapshot]:
        """The window per transport that has connections or data (for the node report)."""
        counts = dict.fromkeys(TRANSPORT_LABELS, 0)
        for conn in self.hub.conns.values():
            counts[KINDS[conn.kind]] += 1
        snapshots = {}
        for label, window in self.windows.items():
            snap = window.snapshot(now, counts[label])
            if snap.connections or sum(snap.rtt) or sum(snap.kernel_rtt) or sum(snap.connect):
                snapshots[label] = snap
        return snapshots


def tcp_info(sock: object) -> tuple[int, ...] | None:
    """``struct tcp_info`` of a socket as a tuple (see :data:`TCP_INFO`), or None."""
    getsockopt = getattr(sock, "getsockopt", None)
    if getsockopt is None:
        return None
    try:
        raw = getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO.size)
    except OSError:
        return None
    if not isinstance(raw, bytes) or len(raw) < TCP_INFO.size:
        return None
    return TCP_INFO.unpack_from(raw)
