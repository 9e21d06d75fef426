"""What went wrong, in one line that says what to do, and the exit code that tells scripts.

Every command turns the errors it can meet into a :class:`Failure`: an
:class:`Exit` code, a stable ``code`` word and one line of text. Click shows
it on stderr as ``longlink: <message>`` (or, with ``--json``, as
``{"error": {"code", "message", "exit"}}``) and exits with the code.
docs/cli.md has the table; keep the two in step.

This module has no I/O: the mapping from exceptions to failures is tested on
its own (tests/cli/test_failures.py).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import IO, Any

import click
import httpx

from longlink.backend.errors import ApiCallError, BackendError, ConnectionFailed
from longlink.client.errors import (
    AuthError,
    ClientError,
    ConnectFailed,
    ConnectionClosed,
    ControlError,
    ServerError,
)
from longlink.protocol.client import ErrorEvent, Kicked
from longlink.settings import ConfigError

__all__ = ["Exit", "Failure", "failure_of", "failure_of_stop", "reported"]


class Exit(IntEnum):
    """The exit codes of the ``longlink`` command (docs/cli.md)."""

    OK = 0
    ERROR = 1  # anything not below: an unexpected answer, an internal error
    USAGE = 2  # a bad command line (click's own code)
    UNREACHABLE = 3  # no answer: the server is down, the URL is wrong, a timeout
    AUTH = 4  # credentials missing or refused: API key, ticket, connection token
    FORBIDDEN = 5  # outside the API key's scopes, or not allowed on this server
    INVALID = 6  # the server refused the request as invalid (400, 413, bad_frame)
    NOT_FOUND = 7  # no such message, node or route (404)
    BUSY = 8  # rate limited or overloaded (429, 503, server_busy): try again later
    ROOM_LIMIT = 9  # more rooms than a connection may hold
    KICKED = 10  # the server kicked the connection
    DISCONNECTED = 11  # the connection was lost (listen --no-reconnect), or drained
    CONFIG = 12  # the configuration file or a LONGLINK_* variable is invalid


#: Failures worth trying again (listen retries them unless --no-reconnect).
RETRYABLE = frozenset({Exit.UNREACHABLE, Exit.BUSY, Exit.DISCONNECTED})


class Failure(click.ClickException):
    """A command failed: ``exit`` code, a stable ``code`` word, one line for people."""

    def __init__(self, exit: Exit, code: str, message: str) -> None:
        super().__init__(message)
        self.exit = exit
        self.exit_code = int(exit)  # type: ignore[misc]  # click reads it per instance
        self.code = code
        self.as_json = False

    @property
    def retryable(self) -> bool:
        return self.exit in RETRYABLE

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "exit": self.exit_code}}

    def show(self, file: IO[Any] | None = None) -> None:
        if self.as_json:
            click.echo(json.dumps(self.to_json(), ensure_ascii=False), file=file, err=True)
        else:
            click.echo(f"longlink: {self.message}", file=file, err=True)


# ------------------------------------------------------------------ the server's refusals

_KEY_HINT = "pass it with --key or LONGLINK_API_KEY (make run uses demo-key)"


def _why(error: BaseException | None) -> str:
    """A few words on why a connection failed, from the chain of causes."""
    first = error
    seen = 0
    while error is not None and seen < 10:
        seen += 1
        if isinstance(error, httpx.TimeoutException | TimeoutError):
            return "timed out"
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(error, socket.gaierror):
            return "unknown host"
        if isinstance(error, BaseExceptionGroup) and error.exceptions:
            error = error.exceptions[0]
            continue
        error = error.__cause__ or error.__context__
    if first is None:
        return "no answer"
    return (str(first).splitlines() or [""])[0] or type(first).__name__


def _unreachable(url: str, cause: BaseException | None, *, sent: bool = False) -> Failure:
    why = _why(cause)
    if sent:
        return Failure(
            Exit.UNREACHABLE,
            "unreachable",
            f"no answer from {url} ({why}); the request may have been taken: check before "
            "repeating it",
        )
    return Failure(
        Exit.UNREACHABLE,
        "unreachable",
        f"cannot reach {url} ({why}): is the server running? (make run; "
        "or point --url / LONGLINK_URL at it)",
    )


def _api_failure(error: ApiCallError) -> Failure:
    status, code, text = error.status, error.code, error.message
    said = f"{code}: {text}" if text else code
    if status == 401:
        return Failure(Exit.AUTH, code, f"the server refused the API key ({said}); {_KEY_HINT}")
    if status == 403:
        return Failure(
            Exit.FORBIDDEN, code, f"{said} (outside the API key's scopes: docs/api-keys.md)"
        )
    if status in (400, 413, 422):
        return Failure(Exit.INVALID, code, f"the server refused the request: {said}")
    if status == 404:
        return Failure(Exit.NOT_FOUND, code, said)
    if status in (429, 503):
        wait = f"retry in {error.retry_after:g} s" if error.retry_after else "retry later"
        return Failure(Exit.BUSY, code, f"the server is busy ({said}); {wait}")
    return Failure(Exit.ERROR, code, f"the server answered {status} {said}")


def _control_failure(error: ControlError, url: str) -> Failure:
    """``POST /v1/connect`` failed (not for the credentials)."""
    if error.status is None:
        return _unreachable(url, error.__cause__ or error)
    said = f"{error.code}: {error.message}" if error.message else error.code
    if error.code == "no_nodes":
        return Failure(Exit.BUSY, error.code, f"no gateway node is up ({said}); retry later")
    if error.status == 400 and "demo" in error.message:
        return Failure(
            Exit.INVALID,
            error.code,
            f"{said}: this server is not in demo mode; connect with --ticket "
            "(longlink ticket USER signs one)",
        )
    if error.status in (429, 503) or error.status >= 500:
        wait = f"retry in {error.retry_after:g} s" if error.retry_after else "retry later"
        return Failure(Exit.BUSY, error.code, f"the server is busy ({said}); {wait}")
    if error.status == 404:
        return Failure(
            Exit.NOT_FOUND, error.code, f"{url} has no /v1/connect ({said}): is it longlink?"
        )
    return Failure(Exit.INVALID, error.code, f"/v1/connect refused: {said}")


def _session_failure(code: str, message: str) -> Failure:
    """An ERROR code of the long connection (PROTOCOL.md §1.2)."""
    said = f"{code}: {message}" if message else code
    if code in ("auth_failed", "bad_ticket", "ticket_expired", "auth_required"):
        return Failure(
            Exit.AUTH,
            code,
            f"the credentials were refused ({said}); sign a new ticket with the server's "
            "ticket secret (longlink ticket USER)",
        )
    if code == "token_expired":
        return Failure(Exit.AUTH, code, f"the connection token expired ({said}); connect again")
    if code == "room_limit":
        return Failure(
            Exit.ROOM_LIMIT,
            code,
            f"too many rooms ({said}); give fewer --room (the server's LONGLINK_MAX_ROOMS)",
        )
    if code == "not_allowed":
        return Failure(Exit.FORBIDDEN, code, f"not allowed on this server ({said})")
    if code in ("rate_limited", "server_busy"):
        return Failure(Exit.BUSY, code, f"the server is busy ({said}); retry later")
    if code in ("bad_frame", "too_large", "bad_request"):
        return Failure(Exit.INVALID, code, f"the server refused a frame ({said})")
    return Failure(Exit.ERROR, code, f"the server answered {said}")


def failure_of(exc: BaseException, url: str) -> Failure | None:
    """The :class:`Failure` for an error of the backend client, the client SDK or the
    settings; None for anything else (a bug: let it show its traceback)."""
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, ConnectionFailed):
        return _unreachable(url, exc.__cause__, sent=exc.sent)
    if isinstance(exc, ApiCallError):
        return _api_failure(exc)
    if isinstance(exc, BackendError):
        return Failure(Exit.ERROR, "error", str(exc))
    if isinstance(exc, AuthError):
        return _session_failure(exc.code, exc.message)
    if isinstance(exc, ServerError):
        return _session_failure(exc.code, exc.message)
    if isinstance(exc, ControlError):
        return _control_failure(exc, url)
    if isinstance(exc, ConnectFailed):
        return Failure(
            Exit.UNREACHABLE,
            "unreachable",
            f"{url} answered, but its gateway could not be reached ({exc}); check "
            "LONGLINK_PUBLIC_HOST and the gateway ports",
        )
    if isinstance(exc, ConnectionClosed):
        return Failure(Exit.DISCONNECTED, "disconnected", f"connection lost: {exc.reason}")
    if isinstance(exc, ClientError):
        return Failure(Exit.ERROR, "error", str(exc))
    if isinstance(exc, ConfigError):
        return Failure(Exit.CONFIG, "config", f"invalid configuration: {exc}")
    return None


def failure_of_stop(reason: str, kicked: Kicked | None, error: ErrorEvent | None) -> Failure:
    """Why a connected client stopped for good, from the last KICK or ERROR it got.

    ``reason`` is the client's own (:class:`~longlink.client.Disconnected`);
    a KICK other than ``drain`` is final, a drain only means "go elsewhere".
    """
    if kicked is not None and kicked.reason != "drain":
        return Failure(Exit.KICKED, "kicked", f"kicked by the server: {kicked.reason}")
    if kicked is not None:
        return Failure(
            Exit.DISCONNECTED,
            "drained",
            "the node is draining (kicked: drain); without --no-reconnect listen moves to "
            "another node",
        )
    if error is not None:
        return _session_failure(error.code, error.message)
    # The client's reasons when a reconnect is refused (longlink.client.connection).
    head, _, rest = reason.partition(": ")
    if head == "authentication refused":
        code, _, message = rest.partition(": ")
        return _session_failure(code, message)
    if head == "/v1/connect refused":
        return Failure(Exit.INVALID, "connect_refused", reason)
    return Failure(Exit.DISCONNECTED, "disconnected", f"connection lost: {reason}")


@contextmanager
def reported(url: str = "", *, as_json: bool = False) -> Iterator[None]:
    """Turn the known errors raised inside into :class:`Failure` (shown as JSON when asked)."""
    try:
        yield
    except (BackendError, ClientError, ConfigError, Failure) as exc:
        failure = failure_of(exc, url)
        assert failure is not None
        failure.as_json = as_json
        if failure is exc:
            raise
        raise failure from exc
