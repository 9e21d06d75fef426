"""The rule of recovery on one room's kept messages (PROTOCOL.md §1.4 rule 3)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from longlink.history.base import HistoryEntry, after


def kept(*msg_ids: int) -> list[HistoryEntry]:
    return [HistoryEntry(i, 0, b"") for i in msg_ids]


def test_the_messages_after_the_one_named() -> None:
    assert after(kept(5, 3, 9), 3) == (kept(9), True)
    assert after(kept(5, 3, 9), 9) == ([], True)


def test_a_message_no_longer_kept_gives_everything_and_false() -> None:
    assert after(kept(5, 3, 9), 4) == (kept(5, 3, 9), False)
    assert after([], 4) == ([], False)


def test_no_since_gives_everything_and_false() -> None:
    assert after(kept(1, 2), None) == (kept(1, 2), False)


@given(st.lists(st.integers(1, 10**6), unique=True), st.data())
def test_what_was_missed_is_exactly_what_follows(ids: list[int], data: st.DataObject) -> None:
    entries = kept(*ids)
    if ids:
        index = data.draw(st.integers(0, len(ids) - 1))
        missed, recovered = after(entries, ids[index])
        assert recovered and [e.msg_id for e in missed] == ids[index + 1 :]
