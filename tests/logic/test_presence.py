"""The enter/exit and liveness machines (logic/presence.py), checked against their rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from longlink.logic.presence import (
    GONE_AFTER,
    LIVENESS,
    SUSPECT_AFTER,
    TABLE,
    Change,
    Effect,
    Liveness,
    RoomEvent,
    RoomState,
    next_check,
    observe,
    on_close,
    on_leave,
    step,
    to_enter,
    watch,
)

EVENTS = st.lists(st.sampled_from(list(RoomEvent)), max_size=60)


def test_table_is_total() -> None:
    assert set(TABLE) == {(s, e) for s in RoomState for e in RoomEvent}
    assert set(LIVENESS) == {(a, b) for a in Liveness for b in Liveness}


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


# ------------------------------------------------------------------ liveness


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
