"""The reconnect schedule: exponential caps, full jitter, reproducible with a seed."""

from __future__ import annotations

import random

import pytest

from longlink.client import Backoff


def test_caps_double_up_to_the_maximum() -> None:
    backoff = Backoff(0.2, 10.0)
    assert [backoff.cap(n) for n in range(8)] == pytest.approx(
        [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]
    )
    assert backoff.cap(10_000) == 10.0


def test_full_jitter_is_deterministic_with_a_seeded_rng() -> None:
    backoff = Backoff(0.2, 10.0, random.Random(42))
    delays = [backoff.next_delay() for _ in range(8)]
    reference = random.Random(42)
    caps = [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]
    assert delays == [reference.uniform(0.0, cap) for cap in caps]
    assert all(0.0 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert backoff.attempt == 8


def test_same_seed_same_schedule() -> None:
    a = Backoff(0.5, 4.0, random.Random(1))
    b = Backoff(0.5, 4.0, random.Random(1))
    assert [a.next_delay() for _ in range(6)] == [b.next_delay() for _ in range(6)]


def test_reset_starts_over() -> None:
    backoff = Backoff(1.0, 100.0, random.Random(3))
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() <= 1.0


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_bad_bounds_are_refused(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, maximum)
