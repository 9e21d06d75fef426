"""Enter/exit of a connection in a room, and heartbeat liveness: two pure state machines.

No I/O and no clock: the gateway says what happened, these tables say what
the new state is and which event fires (PROTOCOL.md §1.3 rule 3, §2.3).

Room presence, one machine per (connection, room)
-------------------------------------------------

=========  ===========================  ===================  ==========================
state      ASSERT                       LEAVE                CLOSE
           (AUTH rooms, JOIN,           (LEAVE frame)        (close, reset, kick, drain,
           every HEARTBEAT)                                  heartbeat loss)
=========  ===========================  ===================  ==========================
ABSENT     PRESENT, fire ENTER          ABSENT               GONE
PRESENT    PRESENT (nothing: the room   ABSENT, fire EXIT    GONE, fire EXIT
           is only re-asserted)
GONE       GONE                         GONE                 GONE
=========  ===========================  ===================  ==========================

Rules the table guarantees (tests/logic/test_presence.py checks them):

1. ENTER fires once per stay, however often heartbeats re-assert the room
   (Bilibili's "compensation by heartbeat", made idempotent).
2. EXIT fires once per stay and only after that stay's ENTER; events of one
   (connection, room) alternate ENTER, EXIT, ENTER, … starting with ENTER.
3. GONE is final: nothing fires once the connection is gone.
4. A LEAVE ends the stay; a later JOIN starts a new one (a new ENTER).
5. A fired event the caller could not hand on (its queue was full) is simply
   not committed: for ENTER the state stays ABSENT, so the next heartbeat's
   ASSERT fires it again. That is what the heartbeat compensates.

The gateway keeps the machine compactly: a connection's ``entered`` tuple
holds the rooms in PRESENT (a room of the connection not in it is ABSENT),
and a closed connection is GONE. :func:`to_enter`, :func:`on_leave` and
:func:`on_close` apply the table to that representation.

Liveness, one machine per connection
------------------------------------

Measured in heartbeat intervals of silence (nothing received):

=========  ===================  ========================  ===================
state      heard (< 1.5)        silent ≥ 1.5              silent ≥ 2.5
=========  ===================  ========================  ===================
ALIVE      ALIVE                SUSPECT (``SUSPECTED``)   GONE (``LOST``)
SUSPECT    ALIVE (``RECOVERED``) SUSPECT                  GONE (``LOST``)
GONE       GONE                 GONE                      GONE
=========  ===================  ========================  ===================

A connection is SUSPECT once one heartbeat is missed (it was due after one
interval; half an interval of grace absorbs network jitter) and GONE at 2.5
intervals (PROTOCOL.md §1.3 rule 3), which CLOSEs it in every room.
:func:`next_check` says when a timing wheel should look again, so no
connection needs a timer of its own.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

__all__ = [
    "GONE_AFTER",
    "LIVENESS",
    "SUSPECT_AFTER",
    "TABLE",
    "Change",
    "Effect",
    "Liveness",
    "RoomEvent",
    "RoomState",
    "next_check",
    "observe",
    "on_close",
    "on_leave",
    "step",
    "to_enter",
    "watch",
]


class RoomState(enum.IntEnum):
    ABSENT = 0
    PRESENT = 1
    GONE = 2


class RoomEvent(enum.IntEnum):
    ASSERT = 0
    LEAVE = 1
    CLOSE = 2


class Effect(enum.IntEnum):
    NONE = 0
    ENTER = 1
    EXIT = 2


S, E, F = RoomState, RoomEvent, Effect

#: (state, event) -> (new state, effect): the table of the module docstring.
TABLE: dict[tuple[RoomState, RoomEvent], tuple[RoomState, Effect]] = {
    (S.ABSENT, E.ASSERT): (S.PRESENT, F.ENTER),
    (S.ABSENT, E.LEAVE): (S.ABSENT, F.NONE),
    (S.ABSENT, E.CLOSE): (S.GONE, F.NONE),
    (S.PRESENT, E.ASSERT): (S.PRESENT, F.NONE),
    (S.PRESENT, E.LEAVE): (S.ABSENT, F.EXIT),
    (S.PRESENT, E.CLOSE): (S.GONE, F.EXIT),
    (S.GONE, E.ASSERT): (S.GONE, F.NONE),
    (S.GONE, E.LEAVE): (S.GONE, F.NONE),
    (S.GONE, E.CLOSE): (S.GONE, F.NONE),
}


def step(state: RoomState, event: RoomEvent) -> tuple[RoomState, Effect]:
    """One transition of the room table."""
    return TABLE[state, event]


def _state(entered: tuple[str, ...], room: str) -> RoomState:
    return RoomState.PRESENT if room in entered else RoomState.ABSENT


def to_enter(entered: tuple[str, ...], rooms: Iterable[str]) -> list[str]:
    """The rooms of ``rooms`` for which ASSERT fires ENTER (those not yet entered).

    The caller commits each one it could hand on by adding it to ``entered``.
    """
    return [
        room for room in rooms if step(_state(entered, room), RoomEvent.ASSERT)[1] == Effect.ENTER
    ]


def on_leave(entered: tuple[str, ...], room: str) -> tuple[tuple[str, ...], bool]:
    """LEAVE of ``room``: the new ``entered`` and whether EXIT fires."""
    new, effect = step(_state(entered, room), RoomEvent.LEAVE)
    if effect == Effect.EXIT:
        assert new == RoomState.ABSENT
        return tuple(r for r in entered if r != room), True
    return entered, False


def on_close(entered: tuple[str, ...]) -> tuple[str, ...]:
    """CLOSE of the connection: the rooms whose EXIT fires (``entered`` becomes empty)."""
    return tuple(r for r in entered if step(RoomState.PRESENT, RoomEvent.CLOSE)[1] == Effect.EXIT)


# ------------------------------------------------------------------ liveness


class Liveness(enum.IntEnum):
    ALIVE = 0
    SUSPECT = 1
    GONE = 2


class Change(enum.IntEnum):
    NONE = 0
    SUSPECTED = 1
    RECOVERED = 2
    LOST = 3


#: Intervals of silence after which a connection is SUSPECT (one heartbeat missed).
SUSPECT_AFTER = 1.5
#: Intervals of silence after which it is GONE (PROTOCOL.md §1.3 rule 3).
GONE_AFTER = 2.5

L, C = Liveness, Change

#: (state, what the silence says) -> (new state, change).
LIVENESS: dict[tuple[Liveness, Liveness], tuple[Liveness, Change]] = {
    (L.ALIVE, L.ALIVE): (L.ALIVE, C.NONE),
    (L.ALIVE, L.SUSPECT): (L.SUSPECT, C.SUSPECTED),
    (L.ALIVE, L.GONE): (L.GONE, C.LOST),
    (L.SUSPECT, L.ALIVE): (L.ALIVE, C.RECOVERED),
    (L.SUSPECT, L.SUSPECT): (L.SUSPECT, C.NONE),
    (L.SUSPECT, L.GONE): (L.GONE, C.LOST),
    (L.GONE, L.ALIVE): (L.GONE, C.NONE),
    (L.GONE, L.SUSPECT): (L.GONE, C.NONE),
    (L.GONE, L.GONE): (L.GONE, C.NONE),
}


def observe(silence_s: float, interval_s: float) -> Liveness:
    """What ``silence_s`` seconds without a frame say about a connection."""
    if silence_s >= GONE_AFTER * interval_s:
        return Liveness.GONE
    if silence_s >= SUSPECT_AFTER * interval_s:
        return Liveness.SUSPECT
    return Liveness.ALIVE


def watch(state: Liveness, silence_s: float, interval_s: float) -> tuple[Liveness, Change]:
    """One liveness transition after ``silence_s`` seconds of silence."""
    return LIVENESS[state, observe(silence_s, interval_s)]


def next_check(state: Liveness, last_seen: float, interval_s: float) -> float:
    """When to look at the connection again: its next threshold from ``last_seen``."""
    factor = SUSPECT_AFTER if state == Liveness.ALIVE else GONE_AFTER
    return last_seen + factor * interval_s
