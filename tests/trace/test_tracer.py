"""longlink.trace: bounded per-message traces and sliding-window reach figures."""

from __future__ import annotations

import time

import pytest

from longlink.model import EPOCH_MS, Message, Target
from longlink.settings import ConfigError, Settings
from longlink.trace import Tracer


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def msg(msg_id: int, guaranteed: bool = False) -> Message:
    return Message(msg_id, Target(users=["u"]), b"", guaranteed=guaranteed, ttl_s=30)


def test_events_come_back_in_time_order_with_their_details() -> None:
    clock = Clock()
    tracer = Tracer(clock=clock)
    tracer.accepted(msg(1, guaranteed=True))
    clock.now += 0.002
    tracer.record(1, "written", {"node": "g1", "targeted": 1, "written": 1})
    tracer.record(1, "dispatched", {"nodes": ["g1"]}, at_ms=1_000_000_001)
    trace = tracer.trace(1)
    assert trace is not None
    assert [e.event for e in trace.events] == ["accepted", "dispatched", "written"]
    assert trace.to_json() == {
        "msg_id": "1",
        "events": [
            {
                "at_ms": 1_000_000_000,
                "event": "accepted",
                "target": "users",
                "priority": "low",
                "guaranteed": True,
                "ttl_s": 30,
            },
            {"at_ms": 1_000_000_001, "event": "dispatched", "nodes": ["g1"]},
            {"at_ms": 1_000_000_002, "event": "written", "node": "g1", "targeted": 1, "written": 1},
        ],
        "dropped_events": 0,
    }
    assert tracer.trace(2) is None


def id_at(seconds: float, seq: int = 0) -> int:
    """A message id made at unix time ``seconds`` (as MsgIdGenerator makes them)."""
    return (int(seconds * 1000) - EPOCH_MS) << 22 | seq


def test_bounded_by_count_by_age_and_by_events_per_message() -> None:
    clock = Clock(time.time())
    tracer = Tracer(max_messages=3, ttl_s=10, max_events=2, clock=clock)
    m = [0]
    for i in range(1, 6):
        clock.now += 2
        m.append(id_at(clock.now))
        tracer.record(m[i], "queued")
    assert tracer.size == 3 and tracer.trace(m[2]) is None and tracer.trace(m[3]) is not None
    tracer.record(m[1], "acked")  # a late event of a dropped trace does not bring it back
    assert tracer.trace(m[1]) is None and tracer.trace(m[3]) is not None
    tracer.record(m[5], "a")
    tracer.record(m[5], "b")
    trace = tracer.trace(m[5])
    assert trace is not None and len(trace.events) == 2 and trace.dropped_events == 1
    clock.now += 10
    assert tracer.trace(m[5]) is None  # past retention
    tracer.record(id_at(clock.now), "queued")  # a new trace prunes the old ones
    assert tracer.size == 1


@pytest.mark.parametrize(("scope", "plain", "guaranteed"), [
    ("all", True, True), ("guaranteed", False, True), ("off", False, False)
])  # fmt: skip
def test_scope(scope: str, plain: bool, guaranteed: bool) -> None:
    tracer = Tracer(scope=scope)
    tracer.on(msg(1), "queued")
    tracer.on_many([msg(2, guaranteed=True)], "queued")
    tracer.accepted(msg(3))
    assert (tracer.trace(1) is not None, tracer.trace(2) is not None) == (plain, guaranteed)
    assert (tracer.trace(3) is not None) == plain


def test_a_bad_scope_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Tracer.from_settings(Settings(trace_scope="some"))


def test_reach_over_a_sliding_window() -> None:
    clock = Clock()
    tracer = Tracer(reach_window_s=60, max_retries=2, clock=clock)
    empty = tracer.reach()
    assert empty.deliveries == 0 and empty.final_reach is None
    for _ in range(6):
        tracer.outcome(0, True)
    tracer.outcome(1, True)
    tracer.outcome(2, True, from_store=True)
    tracer.outcome(2, False)
    tracer.outcome(0, False)  # the connection went before its ACK
    reach = tracer.reach()
    assert (reach.deliveries, reach.acked, reach.first_try_acked) == (10, 8, 6)
    assert reach.first_try_reach == 0.6 and reach.final_reach == 0.8
    assert reach.mean_retries == pytest.approx(0.5)
    assert reach.from_store == 1
    assert reach.predicted_final_reach == pytest.approx(1 - 0.4**3)
    clock.now += 30
    tracer.outcome(0, True)
    assert tracer.reach(window_s=10).deliveries == 1
    assert tracer.reach(window_s=10**6).window_s == 60  # capped by the configured window
    clock.now += 31
    assert tracer.reach().deliveries == 1  # the first second left the window


def test_details_given_as_values_are_named_by_the_event() -> None:
    tracer = Tracer()
    tracer.record(1, "acked", ("g1-a-1", 2))
    tracer.record(1, "dispatched", (("g1", "g2"),))
    tracer.record(1, "custom", ("x", 1))
    trace = tracer.trace(1)
    assert trace is not None
    assert [e.to_json() for e in trace.events] == [
        {"at_ms": trace.events[0].at_ms, "event": "acked", "conn": "g1-a-1", "retries": 2},
        {"at_ms": trace.events[1].at_ms, "event": "dispatched", "nodes": ["g1", "g2"]},
        {"at_ms": trace.events[2].at_ms, "event": "custom", "values": ["x", 1]},
    ]
