"""Quality windows (logic/quality.py): buckets, the sliding window, merges, percentiles."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from longlink.logic.quality import (
    RTT_BUCKETS_MS,
    SLOT_S,
    SLOTS,
    QualitySnapshot,
    QualityWindow,
    percentile,
)


def test_percentiles_are_bucket_upper_bounds() -> None:
    window = QualityWindow()
    window.report(0.0, [3] * 50 + [40] * 40 + [900] * 10, 120, 2, 1)
    snap = window.snapshot(0.0, connections=7)
    assert snap.connections == 7 and snap.reconnects == 2 and snap.failures == 1
    assert (snap.rtt_ms(0.5), snap.rtt_ms(0.9), snap.rtt_ms(0.99)) == (5.0, 50.0, 1000.0)
    assert percentile([], RTT_BUCKETS_MS, 0.5) is None
    assert snap.per_hour(snap.reconnects) == round(2 * 3600 / (SLOTS * SLOT_S), 1)


def test_old_slots_leave_the_window() -> None:
    window = QualityWindow()
    window.report(0.0, [900] * 10, None, 0, 0)
    window.report(SLOTS * SLOT_S + 1, [10] * 10, None, 0, 0)
    snap = window.snapshot(SLOTS * SLOT_S + 1, connections=1)
    assert sum(snap.rtt) == 10 and snap.rtt_ms(0.9) == 10.0


def test_kernel_samples_stand_in_when_no_client_reported() -> None:
    window = QualityWindow()
    window.kernel(0.0, rtt_us=15_000, new_retransmits=2)
    snap = window.snapshot(0.0, connections=1)
    assert snap.rtt_ms(0.5) == 20.0 and snap.retransmits == 2


@given(st.lists(st.tuples(st.floats(0, 10_000), st.integers(0, 100_000)), max_size=300))
def test_memory_is_bounded_whatever_comes(samples: list[tuple[float, int]]) -> None:
    window = QualityWindow()
    for now, rtt in sorted(samples):
        window.report(now, [rtt], rtt, 1, 0)
        assert len(window._slots) <= SLOTS
    merged = QualitySnapshot().merge(window.snapshot(10_000.0, 0))
    assert sum(merged.rtt) <= len(samples)
