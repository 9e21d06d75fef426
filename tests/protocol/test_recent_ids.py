"""RecentIds: the bounded window of message ids that drops duplicates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from longlink.protocol.client import RecentIds


def test_new_then_duplicate() -> None:
    seen = RecentIds(10)
    assert seen.add(1) is True
    assert seen.add(1) is False
    assert seen.add(2) is True
    assert 1 in seen and 2 in seen and 3 not in seen
    assert len(seen) == 2


def test_oldest_is_forgotten_past_the_bound() -> None:
    seen = RecentIds(3)
    for msg_id in (1, 2, 3, 4):
        assert seen.add(msg_id)
    assert len(seen) == 3
    assert 1 not in seen
    assert seen.add(1) is True  # forgotten, so new again
    assert 2 not in seen


def test_seeing_an_id_again_keeps_it() -> None:
    seen = RecentIds(3)
    seen.add(1)
    seen.add(2)
    seen.add(3)
    assert seen.add(1) is False  # 1 becomes the most recent
    seen.add(4)  # evicts 2, the least recent
    assert 1 in seen and 2 not in seen


def test_size_zero_remembers_nothing() -> None:
    seen = RecentIds(0)
    assert seen.add(1) and seen.add(1)
    assert len(seen) == 0


def test_negative_size_is_refused() -> None:
    with pytest.raises(ValueError):
        RecentIds(-1)


@given(st.lists(st.integers(min_value=1, max_value=50), max_size=200), st.integers(1, 20))
def test_never_exceeds_its_size_and_window_is_exact(ids: list[int], size: int) -> None:
    seen = RecentIds(size)
    recent: list[int] = []  # reference model: most recent last
    for msg_id in ids:
        expected_new = msg_id not in recent
        assert seen.add(msg_id) is expected_new
        if msg_id in recent:
            recent.remove(msg_id)
        recent.append(msg_id)
        del recent[:-size]
        assert len(seen) == len(recent) <= size
