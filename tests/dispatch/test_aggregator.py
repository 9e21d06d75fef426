"""The aggregation policy: windows, cold rooms, size caps, pass-through, order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longlink.dispatch.aggregator import (
    FANOUT_SHARE,
    FRAME_OVERHEAD,
    Aggregator,
    RoomFlush,
    aggregatable,
)
from longlink.model import Message, Priority, Target

W = 0.05


def msg(msg_id: int, room: str = "r", size: int = 10, **extra: object) -> Message:
    target = extra.pop("target", None) or Target(rooms=[room])
    return Message(msg_id=msg_id, target=target, payload=b"x" * size, **extra)  # type: ignore[arg-type]


def flushes(out: list[RoomFlush | Message]) -> list[tuple[str, list[int]]]:
    return [
        (o.room, [m.msg_id for m in o.messages]) if isinstance(o, RoomFlush) else ("-", [o.msg_id])
        for o in out
    ]


def test_cold_room_goes_out_at_once() -> None:
    agg = Aggregator(W)
    assert flushes(agg.add(msg(1), now=10.0)) == [("r", [1])]
    assert agg.next_deadline() is None
    # A room idle for a whole window is cold again.
    assert flushes(agg.add(msg(2), now=10.0 + W)) == [("r", [2])]


def test_warm_room_waits_for_the_window_after_its_last_flush() -> None:
    agg = Aggregator(W)
    agg.add(msg(1), now=10.0)
    assert agg.add(msg(2), now=10.01) == []
    assert agg.add(msg(3), now=10.02) == []
    assert agg.next_deadline() == 10.0 + W
    assert agg.due(10.0 + W / 2) == []
    assert flushes(agg.due(10.0 + W)) == [("r", [2, 3])]  # in arrival order
    assert agg.pending_messages == 0
    # The next message waits a window from that flush: one flush per window at most.
    assert agg.add(msg(4), now=10.0 + W + 0.001) == []
    assert agg.next_deadline() == pytest.approx(10.0 + 2 * W)


def test_no_message_waits_longer_than_the_window() -> None:
    agg = Aggregator(W)
    agg.add(msg(1), now=0.0)
    agg.add(msg(2), now=0.049)
    deadline = agg.next_deadline()
    assert deadline is not None and deadline - 0.049 <= W


def test_size_caps_flush_early() -> None:
    agg = Aggregator(W, max_messages=3, max_bytes=10_000)
    agg.add(msg(1), now=0.0)
    assert agg.add(msg(2), now=0.001) == []
    assert agg.add(msg(3), now=0.002) == []
    assert flushes(agg.add(msg(4), now=0.003)) == [("r", [2, 3, 4])]
    assert agg.next_deadline() is None  # the stale deadline is skipped
    assert agg.due(1.0) == []

    by_bytes = Aggregator(W, max_messages=1000, max_bytes=3 * (100 + FRAME_OVERHEAD))
    by_bytes.add(msg(1, size=100), now=0.0)
    by_bytes.add(msg(2, size=100), now=0.001)
    by_bytes.add(msg(3, size=100), now=0.002)
    assert flushes(by_bytes.add(msg(4, size=100), now=0.003)) == [("r", [2, 3, 4])]


def test_rooms_are_independent() -> None:
    agg = Aggregator(W)
    agg.add(msg(1, "a"), now=0.0)
    agg.add(msg(2, "b"), now=0.02)
    agg.add(msg(3, "a"), now=0.03)
    agg.add(msg(4, "b"), now=0.04)
    assert flushes(agg.due(0.05)) == [("a", [3])]
    assert flushes(agg.due(0.07)) == [("b", [4])]


def test_other_targets_flush_everything_first_then_pass_through() -> None:
    agg = Aggregator(W)
    agg.add(msg(1, "a"), now=0.0)
    agg.add(msg(2, "a"), now=0.01)
    agg.add(msg(3, "b"), now=0.0)
    agg.add(msg(4, "b"), now=0.01)
    out = agg.add(msg(5, target=Target(all=True)), now=0.02)
    assert flushes(out) == [("a", [2]), ("b", [4]), ("-", [5])]
    assert agg.pending_messages == 0


def test_what_aggregates() -> None:
    assert aggregatable(msg(1))
    assert not aggregatable(msg(1, priority=Priority.HIGH))
    assert not aggregatable(msg(1, guaranteed=True))
    assert not aggregatable(msg(1, target=Target(rooms=["a", "b"])))
    assert not aggregatable(msg(1, target=Target(users=["u"])))
    assert not aggregatable(msg(1, target=Target(areas=["x"])))


def test_flush_all_and_idle_rooms_are_forgotten() -> None:
    agg = Aggregator(W)
    for i in range(3000):
        agg.add(msg(i, f"room-{i}"), now=0.0)
    assert agg.pending_rooms == 0  # all cold: flushed at once
    agg.due(1.0)  # long after: their state is dropped
    assert len(agg._rooms) == 0
    agg.add(msg(1, "x"), now=2.0)
    agg.add(msg(2, "x"), now=2.01)
    assert flushes(agg.flush_all(2.02)) == [("x", [2])]


events = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "*"]),  # "*": a push to everyone
        st.floats(min_value=0, max_value=0.03),  # time since the previous event
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(events=events, cap=st.integers(min_value=1, max_value=6))
def test_properties(events: list[tuple[str, float]], cap: int) -> None:
    """Every message comes out once, in order per room and relative to pass-throughs,
    no later than one window after it came in, and a room's flushes are a window apart
    unless a cap or a pass-through forced them."""
    agg = Aggregator(W, max_messages=cap)
    now = 0.0
    out: list[tuple[float, RoomFlush | Message]] = []
    arrived: dict[int, float] = {}
    for msg_id, (room, gap) in enumerate(events):
        # Windows that close before this message arrives go out first, as the driver does.
        while (deadline := agg.next_deadline()) is not None and deadline <= now + gap:
            out.extend((deadline, o) for o in agg.due(deadline))
        now += gap
        message = msg(msg_id, target=Target(all=True)) if room == "*" else msg(msg_id, room)
        arrived[msg_id] = now
        out.extend((now, o) for o in agg.add(message, now))
    out.extend((now + 1, o) for o in agg.flush_all(now + 1))

    sequence: list[int] = []
    for at, item in out:
        ids = [m.msg_id for m in item.messages] if isinstance(item, RoomFlush) else [item.msg_id]
        sequence.extend(ids)
        if at <= now:
            assert all(at - arrived[i] <= W + 1e-9 for i in ids)
    assert sorted(sequence) == list(range(len(events)))
    # Per room, and for each connection (in a room and in "everyone"), order is kept.
    for room in "abc":
        seen = [i for i in sequence if events[i][0] in (room, "*")]
        assert seen == sorted(seen)


def test_a_room_whose_fanout_takes_long_gets_a_longer_window() -> None:
    fanout = {"big": 0.08, "small": 0.001}
    agg = Aggregator(W, fanout_s=lambda room: fanout.get(room, 0.0))
    assert agg.window_for("small") == W
    assert agg.window_for("big") == pytest.approx(0.08 / FANOUT_SHARE)
    agg.add(msg(1, "big"), now=0.0)  # cold: at once
    agg.add(msg(2, "big"), now=0.01)
    assert agg.next_deadline() == pytest.approx(0.08 / FANOUT_SHARE)
    # Cold again only after the longer window.
    assert agg.due(0.08 / FANOUT_SHARE)
    assert agg.add(msg(3, "big"), now=0.08 / FANOUT_SHARE + W) == []
