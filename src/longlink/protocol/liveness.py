"""Heartbeat liveness of a connection (PROTOCOL.md §1.3 rule 3), a pure state machine.

Both sides use it: the server session to close a silent client, the client
session to drop a silent connection and reconnect.

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

from longlink.protocol.tables import grid

__all__ = [
    "GONE_AFTER",
    "LIVENESS",
    "SUSPECT_AFTER",
    "Change",
    "Liveness",
    "next_check",
    "observe",
    "watch",
]


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

#: (state, what the silence says) -> (new state, change): the liveness table.
LIVENESS: dict[tuple[Liveness, Liveness], tuple[Liveness, Change]] = grid(
    Liveness,  # heard (ALIVE), silent >= 1.5 (SUSPECT), silent >= 2.5 (GONE)
    {
        L.ALIVE: [(L.ALIVE, C.NONE), (L.SUSPECT, C.SUSPECTED), (L.GONE, C.LOST)],
        L.SUSPECT: [(L.ALIVE, C.RECOVERED), (L.SUSPECT, C.NONE), (L.GONE, C.LOST)],
        L.GONE: [(L.GONE, C.NONE)] * 3,
    },
)


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
