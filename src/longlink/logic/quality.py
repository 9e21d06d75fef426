"""Connection-quality aggregates (PROTOCOL.md §1.6): bounded windows, merges, percentiles. Pure.

What clients report (REPORT, op 17) and what the kernel says about their
sockets (``TCP_INFO``) is folded, per transport, into fixed-bucket
histograms over a sliding window of :data:`SLOTS` slots of :data:`SLOT_S`
seconds. Memory is fixed: transports × slots × buckets counters, whatever
the number of connections or reports. A gateway sends its window's totals
(:class:`QualitySnapshot`) with its node report every second; control and
the API merge the snapshots of every node (of every process, through the
registry) for ``GET /v1/quality`` and to rank endpoints.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import msgspec

__all__ = [
    "CONNECT_BUCKETS_MS",
    "RTT_BUCKETS_MS",
    "SLOTS",
    "SLOT_S",
    "TRANSPORT_LABELS",
    "QualitySnapshot",
    "QualityWindow",
    "percentile",
]

#: Upper bounds of the RTT buckets, milliseconds (the last bucket is everything above).
RTT_BUCKETS_MS = (1, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000)
#: Upper bounds of the connect-time buckets, milliseconds.
CONNECT_BUCKETS_MS = (25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000)
SLOT_S = 10.0
SLOTS = 6  # a one-minute window: a node whose clients suffer ranks down within it
#: Transports kept apart; anything else a client names counts as "other" (bounded labels).
TRANSPORT_LABELS = ("ws", "tcp", "stream", "other")


def _bucket(bounds: Sequence[int], value: float) -> int:
    for index, bound in enumerate(bounds):
        if value <= bound:
            return index
    return len(bounds)


def percentile(counts: Sequence[int], bounds: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a bucketed distribution: the upper bound of the bucket
    holding it (the overflow bucket reports twice the last bound); None when empty."""
    total = sum(counts)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return float(bounds[index]) if index < len(bounds) else float(bounds[-1] * 2)
    return float(bounds[-1] * 2)


class QualitySnapshot(msgspec.Struct, omit_defaults=True):
    """One transport's quality on one node over the window (sent with the node report)."""

    connections: int = 0
    rtt: list[int] = []  # client-reported heartbeat round trips, RTT_BUCKETS_MS counts
    kernel_rtt: list[int] = []  # TCP_INFO smoothed RTT samples, RTT_BUCKETS_MS counts
    connect: list[int] = []  # connect times, CONNECT_BUCKETS_MS counts
    reconnects: int = 0
    failures: int = 0
    retransmits: int = 0
    window_s: float = SLOTS * SLOT_S

    def merge(self, other: QualitySnapshot) -> QualitySnapshot:
        """The sum of two snapshots (two processes of one node, or a total)."""
        return QualitySnapshot(
            connections=self.connections + other.connections,
            rtt=_add(self.rtt, other.rtt),
            kernel_rtt=_add(self.kernel_rtt, other.kernel_rtt),
            connect=_add(self.connect, other.connect),
            reconnects=self.reconnects + other.reconnects,
            failures=self.failures + other.failures,
            retransmits=self.retransmits + other.retransmits,
            window_s=max(self.window_s, other.window_s),
        )

    def rtt_ms(self, q: float) -> float | None:
        """The ``q`` quantile of the round trips: the clients' own if any, else the kernel's."""
        counts = self.rtt if sum(self.rtt) else self.kernel_rtt
        return percentile(counts, RTT_BUCKETS_MS, q)

    def per_hour(self, count: int) -> float:
        return round(count * 3600.0 / self.window_s, 1) if self.window_s else 0.0


def _add(a: list[int], b: list[int]) -> list[int]:
    if not a:
        return list(b)
    if not b:
        return list(a)
    return [x + y for x, y in zip(a, b, strict=True)]


class _Slot:
    __slots__ = ("connect", "failures", "kernel_rtt", "reconnects", "retransmits", "rtt", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.rtt = [0] * (len(RTT_BUCKETS_MS) + 1)
        self.kernel_rtt = [0] * (len(RTT_BUCKETS_MS) + 1)
        self.connect = [0] * (len(CONNECT_BUCKETS_MS) + 1)
        self.reconnects = 0
        self.failures = 0
        self.retransmits = 0


class QualityWindow:
    """The sliding window of one transport on one node (fixed memory)."""

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: list[_Slot] = []

    def _slot(self, now: float) -> _Slot:
        start = now - now % SLOT_S
        slots = self._slots
        if not slots or slots[-1].start < start:
            slots.append(_Slot(start))
            if len(slots) > SLOTS:
                del slots[0]
        return slots[-1]

    def report(
        self,
        now: float,
        rtts_ms: Iterable[int],
        connect_ms: int | None,
        reconnects: int,
        failures: int,
    ) -> None:
        """One client REPORT."""
        slot = self._slot(now)
        for rtt in rtts_ms:
            slot.rtt[_bucket(RTT_BUCKETS_MS, rtt)] += 1
        if connect_ms is not None:
            slot.connect[_bucket(CONNECT_BUCKETS_MS, connect_ms)] += 1
        slot.reconnects += reconnects
        slot.failures += failures

    def kernel(self, now: float, rtt_us: int, new_retransmits: int) -> None:
        """One TCP_INFO sample of a connection."""
        slot = self._slot(now)
        slot.kernel_rtt[_bucket(RTT_BUCKETS_MS, rtt_us / 1000)] += 1
        slot.retransmits += new_retransmits

    def snapshot(self, now: float, connections: int) -> QualitySnapshot:
        """The window's totals (slots older than the window are left out)."""
        oldest = now - SLOTS * SLOT_S
        live = [slot for slot in self._slots if slot.start > oldest]
        snap = QualitySnapshot(connections=connections)
        for slot in live:
            snap = snap.merge(
                QualitySnapshot(
                    rtt=slot.rtt,
                    kernel_rtt=slot.kernel_rtt,
                    connect=slot.connect,
                    reconnects=slot.reconnects,
                    failures=slot.failures,
                    retransmits=slot.retransmits,
                )
            )
        return snap
