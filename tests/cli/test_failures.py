"""Every error a command can meet becomes one line and its exit code (no I/O here)."""

from __future__ import annotations

import json

import click
import httpx
import pytest

from longlink.backend import ApiCallError, BackendError, ConnectionFailed
from longlink.cli.failures import Exit, Failure, failure_of, failure_of_stop, reported
from longlink.client import AuthError, ConnectFailed, ConnectionClosed, ControlError, ServerError
from longlink.protocol.client import ErrorEvent, Kicked
from longlink.settings import ConfigError

URL = "http://127.0.0.1:8080"


def refused() -> ConnectionFailed:
    error = ConnectionFailed("GET /v1/online: ...", sent=False)
    try:
        raise httpx.ConnectError("all attempts failed") from ConnectionRefusedError(111, "no")
    except httpx.ConnectError as exc:
        error.__cause__ = exc
    return error


@pytest.mark.parametrize(
    ("error", "exit", "code"),
    [
        (refused(), Exit.UNREACHABLE, "unreachable"),
        (ConnectionFailed("x", sent=True), Exit.UNREACHABLE, "unreachable"),
        (ApiCallError.from_response(401, b"", {}), Exit.AUTH, "http_401"),
        (ApiCallError(403, "forbidden", "rooms outside chat-"), Exit.FORBIDDEN, "forbidden"),
        (ApiCallError(400, "bad_request", "ttl_s: too small"), Exit.INVALID, "bad_request"),
        (ApiCallError(413, "too_large", "payload"), Exit.INVALID, "too_large"),
        (ApiCallError(404, "not_found", "no trace"), Exit.NOT_FOUND, "not_found"),
        (ApiCallError(429, "rate_limited", "slow down", retry_after=2), Exit.BUSY, "rate_limited"),
        (ApiCallError(503, "overloaded", "queue"), Exit.BUSY, "overloaded"),
        (ApiCallError(501, "not_supported", "no gateway"), Exit.ERROR, "not_supported"),
        (BackendError("expected a JSON object"), Exit.ERROR, "error"),
        (ControlError("unreachable", "x"), Exit.UNREACHABLE, "unreachable"),
        (ControlError("no_nodes", "none", status=503), Exit.BUSY, "no_nodes"),
        (ControlError("bad_request", "demo mode is off", status=400), Exit.INVALID, "bad_request"),
        (ControlError("rate_limited", "", status=429, retry_after=1), Exit.BUSY, "rate_limited"),
        (AuthError("bad_ticket", "invalid ticket"), Exit.AUTH, "bad_ticket"),
        (AuthError("auth_failed", "invalid connection token"), Exit.AUTH, "auth_failed"),
        (AuthError("token_expired"), Exit.AUTH, "token_expired"),
        (AuthError("room_limit", "at most 8 rooms"), Exit.ROOM_LIMIT, "room_limit"),
        (AuthError("server_busy"), Exit.BUSY, "server_busy"),
        (ServerError("not_allowed", "upstream is off"), Exit.FORBIDDEN, "not_allowed"),
        (ServerError("too_large"), Exit.INVALID, "too_large"),
        (ConnectFailed("no endpoint could be reached"), Exit.UNREACHABLE, "unreachable"),
        (ConnectionClosed("connection closed"), Exit.DISCONNECTED, "disconnected"),
        (ConfigError("x: bad"), Exit.CONFIG, "config"),
    ],
)  # fmt: skip
def test_each_error_has_its_exit_code(error: Exception, exit: Exit, code: str) -> None:
    failure = failure_of(error, URL)
    assert failure is not None
    assert (failure.exit, failure.exit_code, failure.code) == (exit, int(exit), code)
    assert "\n" not in failure.message and failure.message


def test_messages_say_what_to_do() -> None:
    down = failure_of(refused(), URL)
    assert down is not None and "cannot reach http://127.0.0.1:8080 (connection refused)" in (
        down.message
    )
    assert "make run" in down.message and "LONGLINK_URL" in down.message
    key = failure_of(ApiCallError(401, "unauthorized", "unknown API key"), URL)
    assert key is not None and "LONGLINK_API_KEY" in key.message
    demo = failure_of(ControlError("bad_request", "demo mode is off", status=400), URL)
    assert demo is not None and "--ticket" in demo.message
    rooms = failure_of(AuthError("room_limit", "at most 8 rooms"), URL)
    assert rooms is not None and "--room" in rooms.message
    busy = failure_of(ApiCallError(429, "rate_limited", "x", retry_after=2.0), URL)
    assert busy is not None and "retry in 2 s" in busy.message


def test_unknown_errors_are_not_hidden() -> None:
    assert failure_of(ValueError("a bug"), URL) is None


@pytest.mark.parametrize(
    ("reason", "kicked", "error", "exit"),
    [
        ("kicked: banned", Kicked("banned"), None, Exit.KICKED),
        ("kicked: drain", Kicked("drain"), None, Exit.DISCONNECTED),
        ("closed after ERROR auth_failed", None, ErrorEvent("auth_failed", "x"), Exit.AUTH),
        ("closed after ERROR server_busy", None, ErrorEvent("server_busy", "x"), Exit.BUSY),
        ("authentication refused: bad_ticket: expired", None, None, Exit.AUTH),
        ("/v1/connect refused: bad_request: demo off", None, None, Exit.INVALID),
        ("connection closed", None, None, Exit.DISCONNECTED),
        ("silent for 75.0s", None, None, Exit.DISCONNECTED),
    ],
)
def test_why_a_connected_client_stopped(
    reason: str, kicked: Kicked | None, error: ErrorEvent | None, exit: Exit
) -> None:
    assert failure_of_stop(reason, kicked, error).exit == exit


def test_reported_shows_json_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Failure) as caught, reported(URL, as_json=True):
        raise ApiCallError(404, "not_found", "no trace of message 5")
    caught.value.show()
    line = json.loads(capsys.readouterr().err)
    assert line == {
        "error": {"code": "not_found", "message": "not_found: no trace of message 5", "exit": 7}
    }
    with pytest.raises(Failure) as plain, reported(URL):
        raise ConfigError("bad.toml: unknown setting 'x'")
    plain.value.show()
    assert capsys.readouterr().err == (
        "longlink: invalid configuration: bad.toml: unknown setting 'x'\n"
    )
    assert isinstance(plain.value, click.ClickException) and plain.value.exit_code == 12


def test_exit_codes_are_distinct_and_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    assert len({int(e) for e in Exit}) == len(Exit)
    for exit in Exit:
        assert f"| {int(exit)} | `{exit.name.lower()}` |" in doc, exit
