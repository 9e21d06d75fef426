"""The timing wheel: deadlines without a timer per connection."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from longlink.gateway.wheel import TimingWheel


def test_item_comes_back_once_its_bucket_passes() -> None:
    wheel: TimingWheel[str] = TimingWheel(0.1, 16, now=100.0)
    wheel.schedule("a", 100.35)
    assert wheel.advance(100.3) == []
    assert wheel.advance(100.4) == ["a"]
    assert wheel.advance(101.0) == []
    assert len(wheel) == 0


def test_cancel_removes_the_item() -> None:
    wheel: TimingWheel[str] = TimingWheel(0.1, 16, now=0.0)
    slot = wheel.schedule("a", 0.5)
    wheel.cancel("a", slot)
    wheel.cancel("a", slot)  # harmless twice
    assert wheel.advance(2.0) == []


def test_past_deadline_fires_on_the_next_tick() -> None:
    wheel: TimingWheel[str] = TimingWheel(0.1, 16, now=10.0)
    wheel.advance(10.55)
    wheel.schedule("late", 3.0)
    assert wheel.advance(10.75) == ["late"]


def test_deadline_beyond_the_span_comes_back_early_to_be_rescheduled() -> None:
    wheel: TimingWheel[str] = TimingWheel(0.1, 8, now=0.0)
    wheel.schedule("far", 100.0)
    due = wheel.advance(0.8)
    assert due == ["far"]  # the caller checks the real deadline and schedules again


def test_long_stall_returns_every_item_once() -> None:
    wheel: TimingWheel[int] = TimingWheel(0.1, 8, now=0.0)
    for i in range(20):
        wheel.schedule(i, 0.05 * i)
    due = wheel.advance(1000.0)
    assert sorted(due) == list(range(20))


@settings(max_examples=200, deadline=None)
@given(
    deadlines=st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=50),
    steps=st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=1, max_size=40),
)
def test_never_early_and_never_lost(deadlines: list[float], steps: list[float]) -> None:
    """With rescheduling, each item fires at or after its deadline, within one tick."""
    tick = 0.1
    wheel: TimingWheel[int] = TimingWheel(tick, 8, now=0.0)
    for i, at in enumerate(deadlines):
        wheel.schedule(i, at)
    fired: dict[int, float] = {}
    now = 0.0
    for step in [*steps, *([1.0] * 10)]:
        now += step
        for item in wheel.advance(now):
            if now >= deadlines[item]:
                fired[item] = now
            else:
                wheel.schedule(item, deadlines[item])
    assert set(fired) == set(range(len(deadlines)))
    for item, at in fired.items():
        assert at >= deadlines[item]


def test_many_items_spread_over_buckets() -> None:
    rng = random.Random(7)
    wheel: TimingWheel[int] = TimingWheel(0.1, 1024, now=0.0)
    deadlines = {i: rng.uniform(0, 60) for i in range(10_000)}
    for item, at in deadlines.items():
        wheel.schedule(item, at)
    due = wheel.advance(30.0)
    assert all(deadlines[i] <= 30.1 for i in due)
    assert len(due) + len(wheel) == 10_000
