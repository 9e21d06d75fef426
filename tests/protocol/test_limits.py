"""The per-connection UPSTREAM limit (GCRA in one float)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from longlink.protocol.limits import FLOOD_FACTOR, RateLimit, Verdict


def run(limit: RateLimit, times: list[float]) -> list[Verdict]:
    tat, verdicts = 0.0, []
    for now in times:
        tat, verdict = limit.take(tat, now)
        verdicts.append(verdict)
    return verdicts


def test_burst_then_limited_then_flood() -> None:
    limit = RateLimit(rate=10, burst=20)
    verdicts = run(limit, [100.0] * 70)
    assert verdicts[:20] == [Verdict.ALLOW] * 20
    first_flood = verdicts.index(Verdict.FLOOD)
    assert set(verdicts[20:first_flood]) == {Verdict.LIMITED}
    assert first_flood == int(FLOOD_FACTOR * 20) - 1


def test_steady_rate_is_allowed_forever() -> None:
    limit = RateLimit(rate=10, burst=1)
    assert set(run(limit, [i * 0.1 for i in range(1000)])) == {Verdict.ALLOW}


def test_a_client_that_backs_off_recovers() -> None:
    limit = RateLimit(rate=10, burst=5)
    tat = 0.0
    for _ in range(8):
        tat, verdict = limit.take(tat, 0.0)
    assert verdict == Verdict.LIMITED
    tat, verdict = limit.take(tat, 10.0)  # waited: the debt is paid
    assert verdict == Verdict.ALLOW


def test_zero_rate_means_no_limit() -> None:
    assert set(run(RateLimit(rate=0, burst=0), [0.0] * 10_000)) == {Verdict.ALLOW}


@given(
    st.floats(min_value=0.5, max_value=1000),
    st.integers(min_value=1, max_value=100),
    st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=300),
)
def test_never_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, gaps: list[float]
) -> None:
    limit = RateLimit(rate, burst)
    now, tat, allowed = 0.0, 0.0, 0
    for gap in gaps:
        now += gap
        tat, verdict = limit.take(tat, now)
        allowed += verdict == Verdict.ALLOW
    assert allowed <= burst + rate * now + 1
