"""The enter/exit machine (logic/presence.py), checked against its rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from longlink.logic.presence import (
    TABLE,
    Effect,
    RoomEvent,
    RoomState,
    on_close,
    on_leave,
    step,
    to_enter,
)

EVENTS = st.lists(st.sampled_from(list(RoomEvent)), max_size=60)


def test_table_is_total() -> None:
    assert set(TABLE) == {(s, e) for s in RoomState for e in RoomEvent}


@given(EVENTS)
def test_enters_and_exits_alternate_and_stop_when_gone(events: list[RoomEvent]) -> None:
    state = RoomState.ABSENT
    fired: list[Effect] = []
    gone_at: int | None = None
    for event in events:
        state, effect = step(state, event)
        if effect != Effect.NONE:
            assert gone_at is None  # rule 3: nothing after GONE
            fired.append(effect)
        if state == RoomState.GONE and gone_at is None:
            gone_at = len(fired)
    # rules 1, 2: ENTER, EXIT, ENTER, ... starting with ENTER
    assert fired == [Effect.ENTER if i % 2 == 0 else Effect.EXIT for i in range(len(fired))]
    if state == RoomState.GONE:
        assert len(fired) % 2 == 0  # every stay closed by its exit
    # one ENTER per stay: as many as ASSERTs that found the room absent
    assert fired.count(Effect.ENTER) <= events.count(RoomEvent.ASSERT)


@given(st.integers(min_value=1, max_value=50))
def test_heartbeats_reassert_without_firing(n: int) -> None:
    state, effect = step(RoomState.ABSENT, RoomEvent.ASSERT)
    assert (state, effect) == (RoomState.PRESENT, Effect.ENTER)
    for _ in range(n):
        state, effect = step(state, RoomEvent.ASSERT)
        assert effect == Effect.NONE
    assert step(state, RoomEvent.CLOSE) == (RoomState.GONE, Effect.EXIT)


ROOMS = st.sampled_from(["a", "b", "c", "d"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("assert"), st.lists(ROOMS, max_size=4), st.booleans()),
        st.tuples(st.just("leave"), ROOMS, st.just(True)),
        st.tuples(st.just("close"), st.just(""), st.just(True)),
    ),
    max_size=40,
)


@given(OPS)
def test_compact_representation_follows_the_table(ops: list[tuple[str, object, bool]]) -> None:
    """``entered`` tuples driven like the gateway drives them match per-room table states."""
    entered: tuple[str, ...] = ()
    states = dict.fromkeys("abcd", RoomState.ABSENT)
    gone = False
    for kind, arg, accepted in ops:
        if gone:
            break
        if kind == "assert":
            assert isinstance(arg, list)
            fresh = to_enter(entered, dict.fromkeys(arg))
            for room in fresh:
                new, effect = step(states[room], RoomEvent.ASSERT)
                assert effect == Effect.ENTER
                if accepted:  # rule 5: not accepted, not committed
                    states[room] = new
                    entered = (*entered, room)
            for room in set(arg) - set(fresh):
                assert step(states[room], RoomEvent.ASSERT)[1] == Effect.NONE
        elif kind == "leave":
            assert isinstance(arg, str)
            new, effect = step(states[arg], RoomEvent.LEAVE)
            entered, fired = on_leave(entered, arg)
            assert fired == (effect == Effect.EXIT)
            states[arg] = new
        else:
            exits = on_close(entered)
            assert set(exits) == {r for r, s in states.items() if s == RoomState.PRESENT}
            assert len(exits) == len(set(exits))
            gone = True
        assert set(entered) == {r for r, s in states.items() if s == RoomState.PRESENT}
        assert len(entered) == len(set(entered))
