"""The backend client's calls, retry decisions and tickets, without I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest

from longlink.backend import (
    ApiCallError,
    BackendError,
    BadRequest,
    ConnectionFailed,
    Forbidden,
    NotFound,
    Overloaded,
    Push,
    RateLimited,
    RetryPolicy,
    TooLarge,
    Unauthorized,
    calls,
    sign_ticket,
)
from longlink.backend.calls import Attempts, Exchange, Raise, Return, Wait
from longlink.backend.errors import parse_retry_after
from longlink.control.tickets import TicketExpired, TicketVerifier

SECRET = "ticket-secret-for-the-backend-tests-0123456789"


# ------------------------------------------------------------------ push bodies


@pytest.mark.parametrize(
    ("push", "body"),
    [
        (Push({"users": ["a"]}, {"t": 1}), {"to": {"users": ["a"]}, "data": {"t": 1}}),
        (Push({"all": True}, None), {"to": {"all": True}, "data": None}),
        (Push({"rooms": ["r"]}, raw=b"\x00\x01"), {"to": {"rooms": ["r"]}, "data_b64": "AAE="}),
        (Push({"rooms": ["r"]}, data_b64="AAE="), {"to": {"rooms": ["r"]}, "data_b64": "AAE="}),
        (
            Push({"devices": ["d"]}, 1, priority="high", guaranteed=True, ttl_s=5),
            {
                "to": {"devices": ["d"]},
                "data": 1,
                "priority": "high",
                "guaranteed": True,
                "ttl_s": 5,
            },
        ),
    ],
)
def test_push_body(push: Push, body: dict[str, Any]) -> None:
    assert push.body() == body


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"data": 1, "raw": b"x"},
        {"data_b64": "AA==", "raw": b"x"},
        {"data": 1, "priority": "urgent"},
    ],
)
def test_push_needs_exactly_one_payload_and_a_known_priority(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Push({"users": ["a"]}, **kwargs)


def test_calls_paths_and_idempotence() -> None:
    assert calls.room_call("a/b c").path == "/v1/rooms/a%2Fb%20c"
    assert calls.user_call("ü").path == "/v1/users/%C3%BC"
    assert calls.kick_call("u/1", "bye").path == "/v1/users/u%2F1/kick"
    assert calls.set_room_area_call("r", None).body == {"area": None}
    drain = calls.drain_call("g/1", False)
    assert (drain.method, drain.path, drain.body) == (
        "POST",
        "/v1/nodes/g%2F1/drain",
        {"draining": False},
    )
    assert drain.idempotent
    assert calls.online_call().idempotent and calls.kick_call("u", "x").idempotent
    assert not calls.push_call(Push({"all": True}, 1)).idempotent
    batch = calls.push_batch_call([Push({"all": True}, 1), {"to": {"all": True}, "data": 2}])
    assert batch.body == {
        "messages": [{"to": {"all": True}, "data": 1}, {"to": {"all": True}, "data": 2}]
    }
    assert not batch.idempotent
    with pytest.raises(ValueError):
        calls.push_batch_call([])


def test_results() -> None:
    call = calls.push_call(Push({"all": True}, 1))
    assert call.result(202, b'{"msg_id": "123"}', {}) == 123
    assert calls.kick_call("u", "x").result(200, b'{"kicked": 2}', {}) == 2
    with pytest.raises(Forbidden) as info:
        call.result(403, b'{"error": {"code": "forbidden", "message": "to.rooms: ..."}}', {})
    assert (info.value.status, info.value.code, info.value.message) == (
        403,
        "forbidden",
        "to.rooms: ...",
    )


def test_batch_after_a_partial_503_sends_the_rest_and_joins_the_ids() -> None:
    messages = [{"to": {"all": True}, "data": i} for i in range(4)]
    call = calls.push_batch_call(messages)
    partial = Overloaded(503, "overloaded", "full", msg_ids=[10, 11])
    rest = call.retry_after_refusal(partial)
    assert rest.body == {"messages": messages[2:]}
    assert rest.result(202, b'{"msg_ids": ["12", "13"]}', {}) == [10, 11, 12, 13]
    again = rest.retry_after_refusal(Overloaded(503, "overloaded", "full", msg_ids=[12]))
    assert again.body == {"messages": messages[3:]}
    assert again.result(202, b'{"msg_ids": ["13"]}', {}) == [10, 11, 12, 13]
    assert call.retry_after_refusal(RateLimited(429, "rate_limited", "")) is call


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (413, TooLarge),
        (429, RateLimited),
        (503, Overloaded),
        (500, ApiCallError),
    ],
)
def test_error_class_by_status(status: int, kind: type[ApiCallError]) -> None:
    body = json.dumps({"error": {"code": "c", "message": "m", "msg_ids": ["7"]}}).encode()
    error = ApiCallError.from_response(status, body, {"retry-after": "3"})
    assert type(error) is kind
    assert (error.status, error.code, error.message) == (status, "c", "m")
    assert error.retry_after == 3.0 and error.msg_ids == [7]
    assert str(error) == f"{status} c: m"


def test_error_without_the_json_shape() -> None:
    error = ApiCallError.from_response(502, b"<html>bad gateway</html>", {})
    assert (error.code, error.message, error.retry_after) == (
        "http_502",
        "<html>bad gateway</html>",
        None,
    )
    assert ApiCallError.from_response(502, b"", {}).message == "no error body"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("2", 2.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("soon", None),
        ("Thu, 01 Jan 2026 00:00:10 GMT", 10.0),
        ("Thu, 01 Jan 2026 00:00:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=1767225600.0) == seconds


# ------------------------------------------------------------------ retry decisions

PUSH = calls.push_call(Push({"all": True}, 1))
GET = calls.online_call()


def limited(retry_after: float | None = 1.0) -> RateLimited:
    return RateLimited(429, "rate_limited", "", retry_after=retry_after)


def test_retry_after_is_honoured_within_attempts() -> None:
    attempts = Attempts(RetryPolicy(attempts=3), rand=lambda: 1.0)
    assert attempts.delay(PUSH, limited(2.0)) == 2.0
    assert attempts.delay(PUSH, Overloaded(503, "overloaded", "", retry_after=1.0)) == 1.0
    assert attempts.delay(PUSH, limited(1.0)) is None  # the third try was the last
    assert attempts.waited == 3.0


def test_total_wait_is_bounded() -> None:
    attempts = Attempts(RetryPolicy(attempts=10, max_wait_s=5))
    assert attempts.delay(PUSH, limited(3.0)) == 3.0
    assert attempts.delay(PUSH, limited(3.0)) is None  # 6 s > 5 s: raise instead of waiting


def test_without_retry_after_the_backoff_doubles_with_jitter() -> None:
    policy = RetryPolicy(attempts=10, backoff_s=1.0, max_backoff_s=4.0, max_wait_s=100)
    attempts = Attempts(policy, rand=lambda: 1.0)
    assert [attempts.delay(PUSH, limited(None)) for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    low = Attempts(policy, rand=lambda: 0.0)
    assert low.delay(PUSH, limited(None)) == 0.5


def test_connection_failures_are_retried_only_when_safe() -> None:
    sent = ConnectionFailed("reset", sent=True)
    unsent = ConnectionFailed("refused", sent=False)
    assert Attempts(RetryPolicy()).delay(PUSH, sent) is None  # a push may have been queued
    assert Attempts(RetryPolicy()).delay(GET, sent) is not None
    assert Attempts(RetryPolicy()).delay(PUSH, unsent) is not None
    assert Attempts(RetryPolicy()).delay(PUSH, BadRequest(400, "bad_request", "")) is None
    assert Attempts(RetryPolicy(attempts=1)).delay(GET, limited()) is None
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


# ------------------------------------------------------------------ exchange steps

Outcome = tuple[int, dict[str, Any], dict[str, str]] | ConnectionFailed
BATCH = [{"to": {"all": True}, "data": i} for i in range(3)]


def answer(status: int, headers: dict[str, str] | None = None, **body: Any) -> Outcome:
    return status, body, headers or {}


def refusal(status: int, code: str, retry_after: str | None = None, **extra: Any) -> Outcome:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return answer(status, headers, error={"code": code, "message": "", **extra})


def encoded(outcome: Outcome) -> tuple[int, bytes, dict[str, str]]:
    assert not isinstance(outcome, ConnectionFailed)
    status, body, headers = outcome
    return status, json.dumps(body).encode(), headers


def drive(exchange: Exchange[Any], outcomes: list[Outcome]) -> list[Any]:
    """Each step as ``("return", value)``, ``("wait", seconds)`` or ``("raise", error type)``."""
    steps: list[Any] = []
    for outcome in outcomes:
        if isinstance(outcome, ConnectionFailed):
            step = exchange.failed(outcome)
        else:
            step = exchange.answered(*encoded(outcome))
        if isinstance(step, Return):
            steps.append(("return", step.value))
        elif isinstance(step, Wait):
            steps.append(("wait", step.seconds))
        else:
            assert isinstance(step, Raise)
            steps.append(("raise", type(step.error)))
    return steps


SENT = ConnectionFailed("reset", sent=True)
UNSENT = ConnectionFailed("refused", sent=False)
QUEUED = answer(202, msg_id="5")


@pytest.mark.parametrize(
    ("call", "policy", "outcomes", "steps"),
    [
        pytest.param(PUSH, RetryPolicy(), [QUEUED], [("return", 5)], id="ok"),
        pytest.param(
            PUSH,
            RetryPolicy(),
            [refusal(429, "rate_limited", "2"), refusal(503, "overloaded", "1"), QUEUED],
            [("wait", 2.0), ("wait", 1.0), ("return", 5)],
            id="retry-after-honoured",
        ),
        pytest.param(
            PUSH,
            RetryPolicy(attempts=2),
            [refusal(429, "rate_limited", "1")] * 2,
            [("wait", 1.0), ("raise", RateLimited)],
            id="attempts-spent",
        ),
        pytest.param(
            PUSH,
            RetryPolicy(max_wait_s=10),
            [refusal(503, "overloaded", "60")],
            [("raise", Overloaded)],
            id="retry-after-past-the-budget",
        ),
        pytest.param(
            PUSH, RetryPolicy(), [refusal(413, "too_large")], [("raise", TooLarge)], id="final"
        ),
        pytest.param(
            PUSH,
            RetryPolicy(),
            [refusal(429, "rate_limited"), refusal(429, "rate_limited"), QUEUED],
            [("wait", 0.2), ("wait", 0.4), ("return", 5)],
            id="backoff-without-retry-after",
        ),
        pytest.param(
            PUSH, RetryPolicy(), [SENT], [("raise", ConnectionFailed)], id="push-may-have-arrived"
        ),
        pytest.param(
            PUSH,
            RetryPolicy(),
            [UNSENT, QUEUED],
            [("wait", 0.2), ("return", 5)],
            id="push-never-left",
        ),
        pytest.param(
            GET,
            RetryPolicy(),
            [SENT, SENT, answer(200, total=0)],
            [("wait", 0.2), ("wait", 0.4), ("return", {"total": 0})],
            id="query-repeated",
        ),
        pytest.param(
            GET,
            RetryPolicy(attempts=1),
            [UNSENT],
            [("raise", ConnectionFailed)],
            id="no-retry",
        ),
        pytest.param(
            calls.push_batch_call(BATCH),
            RetryPolicy(),
            [refusal(503, "overloaded", "1", msg_ids=["1"]), answer(202, msg_ids=["2", "3"])],
            [("wait", 1.0), ("return", [1, 2, 3])],
            id="partial-batch",
        ),
    ],
)
def test_exchange_steps(
    call: calls.Call[Any], policy: RetryPolicy, outcomes: list[Outcome], steps: list[Any]
) -> None:
    assert drive(Exchange(call, policy, rand=lambda: 1.0), outcomes) == steps


def test_exchange_sends_the_rest_of_a_partial_batch() -> None:
    exchange = Exchange(calls.push_batch_call(BATCH), RetryPolicy())
    step = exchange.answered(*encoded(refusal(503, "overloaded", "1", msg_ids=["1"])))
    assert step == Wait(1.0)
    assert exchange.call.body == {"messages": BATCH[1:]}
    assert exchange.answered(202, b'{"msg_ids": ["2", "3"]}', {}) == Return([1, 2, 3])


def test_exchange_raise_carries_the_error() -> None:
    exchange = Exchange(PUSH, RetryPolicy())
    step = exchange.failed(SENT)
    assert step == Raise(SENT)
    with pytest.raises(ConnectionFailed) as info:
        step.outcome()
    assert info.value is SENT


def test_an_unreadable_answer_raises_at_once() -> None:
    with pytest.raises(BackendError):
        Exchange(GET, RetryPolicy()).answered(200, b"[1, 2]", {})


# ------------------------------------------------------------------ tickets


def test_signed_ticket_is_accepted_by_the_server_side_verifier() -> None:
    verifier = TicketVerifier(SECRET)
    assert verifier.verify(sign_ticket(SECRET, "alice")) == ("alice", None)
    assert verifier.verify(sign_ticket(SECRET, "alice", "phone", ttl_s=60)) == ("alice", "phone")
    with pytest.raises(TicketExpired):
        verifier.verify(sign_ticket(SECRET, "alice", ttl_s=10, now=1_000_000))
    with pytest.raises(ValueError):
        sign_ticket("", "alice")
    with pytest.raises(ValueError):
        sign_ticket(SECRET, "alice", ttl_s=0)
