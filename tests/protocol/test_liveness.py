"""The liveness machine (protocol/liveness.py), checked against its rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from longlink.protocol.liveness import (
    GONE_AFTER,
    LIVENESS,
    SUSPECT_AFTER,
    Change,
    Liveness,
    next_check,
    observe,
    watch,
)


def test_table_is_total() -> None:
    assert set(LIVENESS) == {(a, b) for a in Liveness for b in Liveness}


def test_liveness_thresholds() -> None:
    assert observe(0, 30) == Liveness.ALIVE
    assert observe(SUSPECT_AFTER * 30 - 0.01, 30) == Liveness.ALIVE
    assert observe(SUSPECT_AFTER * 30, 30) == Liveness.SUSPECT
    assert observe(GONE_AFTER * 30 - 0.01, 30) == Liveness.SUSPECT
    assert observe(GONE_AFTER * 30, 30) == Liveness.GONE


def test_alive_suspect_gone_and_recovery() -> None:
    assert watch(Liveness.ALIVE, 40, 30) == (Liveness.ALIVE, Change.NONE)
    assert watch(Liveness.ALIVE, 50, 30) == (Liveness.SUSPECT, Change.SUSPECTED)
    assert watch(Liveness.SUSPECT, 5, 30) == (Liveness.ALIVE, Change.RECOVERED)
    assert watch(Liveness.SUSPECT, 74, 30) == (Liveness.SUSPECT, Change.NONE)
    assert watch(Liveness.SUSPECT, 75, 30) == (Liveness.GONE, Change.LOST)
    assert watch(Liveness.ALIVE, 100, 30) == (Liveness.GONE, Change.LOST)  # a stalled wheel
    assert watch(Liveness.GONE, 0, 30) == (Liveness.GONE, Change.NONE)


@given(
    st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=30),
    st.integers(min_value=1, max_value=30),
)
def test_lost_exactly_once_and_only_after_the_deadline(silences: list[float], hb: int) -> None:
    state = Liveness.ALIVE
    lost = 0
    for silence in silences:
        state, change = watch(state, silence, hb)
        if change == Change.LOST:
            lost += 1
            assert silence >= GONE_AFTER * hb
    assert lost <= 1
    assert (state == Liveness.GONE) == (lost == 1)


def test_next_check_is_the_next_threshold() -> None:
    assert next_check(Liveness.ALIVE, 100.0, 30) == 100.0 + SUSPECT_AFTER * 30
    assert next_check(Liveness.SUSPECT, 100.0, 30) == 100.0 + GONE_AFTER * 30
