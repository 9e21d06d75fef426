"""longlink.trace: merging the parts of several processes; the local view."""

from __future__ import annotations

import pytest

from longlink.trace import (
    LocalTraceView,
    MessageTrace,
    Reach,
    TraceEvent,
    Tracer,
    merge_reach,
    merge_traces,
)


def part(*events: tuple[int, str], dropped: int = 0) -> MessageTrace:
    return MessageTrace(7, [TraceEvent(at, name) for at, name in events], dropped)


def test_events_of_all_parts_come_in_time_order_and_drops_are_summed() -> None:
    gateway = part((105, "written"), (140, "acked"), dropped=2)
    api = part((100, "accepted"), (101, "stored"), (102, "queued"))
    dispatch = part((104, "dispatched"), dropped=1)
    merged = merge_traces(7, [gateway, None, api, dispatch])
    assert merged is not None
    assert [(e.at_ms, e.event) for e in merged.events] == [
        (100, "accepted"), (101, "stored"), (102, "queued"),
        (104, "dispatched"), (105, "written"), (140, "acked"),
    ]  # fmt: skip
    assert merged.dropped_events == 3 and merged.msg_id == 7


def test_a_same_millisecond_tie_between_processes_follows_the_path() -> None:
    # On one machine the api, a dispatch worker and a gateway often share a millisecond.
    gateway = part((100, "written"), (100, "acked"))
    dispatch = part((100, "dispatched"))
    api = part((100, "accepted"), (100, "queued"))
    merged = merge_traces(7, [gateway, dispatch, api])
    assert merged is not None
    assert [e.event for e in merged.events] == [
        "accepted", "queued", "dispatched", "written", "acked"
    ]  # fmt: skip


def test_within_one_process_the_recorded_order_is_kept() -> None:
    merged = merge_traces(7, [part((100, "acked"), (100, "written")), None])
    assert merged is not None
    assert [e.event for e in merged.events] == ["acked", "written"]


def test_no_part_knows_the_message() -> None:
    assert merge_traces(7, []) is None
    assert merge_traces(7, [None, None]) is None


def test_reach_from_counts_and_summed() -> None:
    empty = Reach.from_counts(
        window_s=60, max_retries=2, deliveries=0, acked=0, first_try_acked=0, from_store=0,
        retries=0,
    )  # fmt: skip
    assert empty.first_try_reach is None and empty.final_reach is None
    assert empty.mean_retries is None and empty.predicted_final_reach is None
    a = Reach.from_counts(
        window_s=60, max_retries=2, deliveries=4, acked=3, first_try_acked=2, from_store=1,
        retries=3,
    )  # fmt: skip
    b = Reach.from_counts(
        window_s=300, max_retries=5, deliveries=6, acked=5, first_try_acked=4, from_store=0,
        retries=2,
    )  # fmt: skip
    total = merge_reach(a, b, empty)
    assert (total.window_s, total.max_retries) == (60, 2)  # the asker's
    assert (total.deliveries, total.acked, total.first_try_acked) == (10, 8, 6)
    assert (total.from_store, total.retries) == (1, 5)
    assert total.first_try_reach == 0.6 and total.final_reach == 0.8
    assert total.mean_retries == 0.5
    assert total.predicted_final_reach == pytest.approx(1 - 0.4**3)
    assert merge_reach(a) == a


async def test_the_local_view_reads_the_tracer() -> None:
    tracer = Tracer()
    view = LocalTraceView(tracer)
    tracer.record(1, "queued")
    tracer.outcome(0, True)
    assert await view.trace(1) == tracer.trace(1)
    assert await view.trace(2) is None
    assert await view.reach(10) == tracer.reach(10)
