"""The adaptive heartbeat machine (protocol/heartbeat.py) against its invariants."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from longlink.protocol.heartbeat import AdaptiveHeartbeat


def test_grows_after_a_streak_and_stops_at_the_granted_maximum() -> None:
    beat = AdaptiveHeartbeat(30, ceiling=300)
    for _ in range(3):
        assert beat.ask() is None
        beat.sent(None)
        beat.answered(None)
    assert beat.ask() == 45
    beat.sent(45)
    beat.answered(40)  # the server clamps: 40 is its maximum
    assert beat.interval == 40 and beat.ceiling == 40
    for _ in range(5):
        beat.sent(beat.ask())
        beat.answered(None)
    assert beat.ask() is None and beat.interval == 40


def test_one_miss_falls_back_to_the_base() -> None:
    beat = AdaptiveHeartbeat(10)
    for _ in range(3):
        beat.sent(beat.ask())
        beat.answered(None)
    beat.sent(beat.ask())
    beat.answered(15)
    assert beat.interval == 15
    assert beat.missed() == 10 and beat.interval == 10 and beat.run == 0
    assert beat.missed() is None  # already at the base: nothing to tell the server


def test_not_adaptive_stays_at_the_base() -> None:
    beat = AdaptiveHeartbeat(30, adaptive=False)
    for _ in range(10):
        beat.sent(beat.ask())
        beat.answered(None)
    assert beat.interval == 30 and beat.ask() is None


EVENTS = st.lists(
    st.sampled_from(["miss", "ok"]),
    max_size=200,
)


@given(st.integers(1, 120), st.integers(1, 600), EVENTS)
def test_never_leaves_its_bounds_and_a_miss_always_resets(
    base: int, server_max: int, events: list[object]
) -> None:
    beat = AdaptiveHeartbeat(base, ceiling=300)
    run_before = 0
    for event in events:
        if event == "miss":
            beat.missed()
            assert beat.interval == base and beat.run == 0
            continue
        ask = beat.ask()
        if ask is not None:
            assert ask > beat.interval and run_before >= beat.streak
        beat.sent(ask)
        # The server clamps what was asked for to its own bounds.
        beat.answered(None if ask is None else max(1, min(server_max, ask)))
        assert base <= beat.interval <= max(base, min(300, server_max))
        run_before = beat.run
