"""Errors of the long-connection protocol (PROTOCOL.md §1.2).

Every malformed input raises :class:`ProtocolError` and nothing else, carrying
one of the contract's error codes so the gateway can answer with an ERROR
frame unchanged::

    LonglinkError
     └── ProtocolError        (code: ErrorCode, fatal: bool)
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Error codes sent in ERROR frames (PROTOCOL.md §1.2)."""

    BAD_FRAME = "bad_frame"
    TOO_LARGE = "too_large"
    AUTH_REQUIRED = "auth_required"
    AUTH_FAILED = "auth_failed"
    TOKEN_EXPIRED = "token_expired"
    NOT_ALLOWED = "not_allowed"
    ROOM_LIMIT = "room_limit"
    RATE_LIMITED = "rate_limited"
    SERVER_BUSY = "server_busy"


#: Codes after which the server closes the connection (PROTOCOL.md §1.3).
FATAL_CODES = frozenset(
    {
        ErrorCode.BAD_FRAME,
        ErrorCode.TOO_LARGE,
        ErrorCode.AUTH_REQUIRED,
        ErrorCode.AUTH_FAILED,
        ErrorCode.TOKEN_EXPIRED,
        ErrorCode.SERVER_BUSY,
    }
)


class LonglinkError(Exception):
    """Root of every error longlink raises on purpose."""


class HttpRefusal(LonglinkError):
    """An HTTP request on a gateway port to refuse with ``status`` and ``reason``,
    then close the connection (WebSocket upgrades, the HTTP stream)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


class ProtocolError(LonglinkError):
    """Malformed or forbidden input on the long connection.

    ``code`` is the contract's error code; ``fatal`` tells whether the
    connection must be closed after the ERROR frame is sent.
    """

    def __init__(self, code: ErrorCode, message: str, *, fatal: bool | None = None) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self._fatal = fatal

    @property
    def fatal(self) -> bool:
        """Whether the connection closes after the ERROR: the code's default
        (:data:`FATAL_CODES`) unless the raiser said otherwise (a flood of
        ``rate_limited`` is fatal)."""
        return self.code in FATAL_CODES if self._fatal is None else self._fatal
