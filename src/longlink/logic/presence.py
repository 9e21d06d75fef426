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

The liveness machine of a connection is a session rule: it lives in
:mod:`longlink.protocol.liveness`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from longlink.protocol.tables import grid

__all__ = [
    "TABLE",
    "Effect",
    "RoomEvent",
    "RoomState",
    "on_close",
    "on_leave",
    "step",
    "to_enter",
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


S, F = RoomState, Effect

#: (state, event) -> (new state, effect): the table of the module docstring.
TABLE: dict[tuple[RoomState, RoomEvent], tuple[RoomState, Effect]] = grid(
    RoomEvent,  # ASSERT, LEAVE, CLOSE
    {
        S.ABSENT: [(S.PRESENT, F.ENTER), (S.ABSENT, F.NONE), (S.GONE, F.NONE)],
        S.PRESENT: [(S.PRESENT, F.NONE), (S.ABSENT, F.EXIT), (S.GONE, F.EXIT)],
        S.GONE: [(S.GONE, F.NONE)] * 3,
    },
)


def step(state: RoomState, event: RoomEvent) -> tuple[RoomState, Effect]:
    """One transition of the room table."""
    return TABLE[state, event]


def _state(entered: tuple[str, ...], room: str) -> RoomState:
    return RoomState.PRESENT if room in entered else RoomState.ABSENT


def _firing(
    entered: tuple[str, ...], rooms: Iterable[str], event: RoomEvent, effect: Effect
) -> list[str]:
    """The rooms of ``rooms`` in which ``event`` fires ``effect`` by the table.

    Nothing is committed: the caller updates ``entered`` (ENTER adds the room,
    EXIT removes it), which keeps each stay's ENTER and EXIT to one each.
    """
    return [room for room in rooms if step(_state(entered, room), event)[1] == effect]


def to_enter(entered: tuple[str, ...], rooms: Iterable[str]) -> list[str]:
    """The rooms of ``rooms`` for which ASSERT fires ENTER (those not yet entered).

    The caller commits each one it could hand on by adding it to ``entered``.
    """
    return _firing(entered, rooms, RoomEvent.ASSERT, Effect.ENTER)


def on_leave(entered: tuple[str, ...], room: str) -> tuple[tuple[str, ...], bool]:
    """LEAVE of ``room``: the new ``entered`` and whether EXIT fires."""
    if _firing(entered, (room,), RoomEvent.LEAVE, Effect.EXIT):
        return tuple(r for r in entered if r != room), True
    return entered, False


def on_close(entered: tuple[str, ...]) -> tuple[str, ...]:
    """CLOSE of the connection: the rooms whose EXIT fires (``entered`` becomes empty)."""
    return tuple(_firing(entered, entered, RoomEvent.CLOSE, Effect.EXIT))
