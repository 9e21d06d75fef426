"""Errors of the HTTP API and their JSON shape (PROTOCOL.md §2).

Every refusal is an :class:`ApiError`; the app turns it into
``{"error": {"code": str, "message": str}}`` with its status and headers::

    LonglinkError
     └── ApiError    (status, code, message, headers)

This module imports no HTTP framework, so schemas and policies that raise
``ApiError`` stay framework-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from longlink.protocol.errors import LonglinkError

__all__ = ["ApiError", "ErrorBody", "ErrorDetail", "encode_error"]

# Error codes (PROTOCOL.md §2: statuses 400, 401, 403, 404, 413, 429, 503).
BAD_REQUEST = "bad_request"  # 400: bad JSON or a field that breaks a rule
UNAUTHORIZED = "unauthorized"  # 401: no or unknown API key
BAD_TICKET = "bad_ticket"  # 401: ticket malformed or wrongly signed
TICKET_EXPIRED = "ticket_expired"  # 401
FORBIDDEN = "forbidden"  # 403: outside the key's scopes
NOT_FOUND = "not_found"  # 404
METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
TOO_LARGE = "too_large"  # 413
RATE_LIMITED = "rate_limited"  # 429 (with Retry-After)
INTERNAL = "internal"  # 500
NOT_SUPPORTED = "not_supported"  # 501: this process cannot do that
OVERLOADED = "overloaded"  # 503: low priority past the overload mark, or a full queue
NO_NODES = "no_nodes"  # 503: no healthy gateway node (with Retry-After)
UNAVAILABLE = "unavailable"  # 503: no message-id node number held now (with Retry-After)


class ApiError(LonglinkError):
    """A request the API refuses: ``status``, a stable ``code`` and a message for humans.

    ``headers`` go on the response (``Retry-After``, ``WWW-Authenticate``);
    ``extra`` fields are added to the error object (e.g. the ids a partly
    queued batch got).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})
        self.extra: dict[str, Any] = dict(extra or {})


class ErrorDetail(msgspec.Struct, frozen=True, omit_defaults=True):
    """The inner object of an error answer."""

    code: str
    message: str
    #: 503 on a batch: the ids of the messages queued before the queue filled.
    msg_ids: list[str] | UnsetType = UNSET


class ErrorBody(msgspec.Struct, frozen=True):
    """``{"error": {"code", "message"}}``."""

    error: ErrorDetail


_encoder = msgspec.json.Encoder()


def encode_error(error: ApiError) -> bytes:
    """The JSON body of ``error``."""
    if error.extra:
        detail = {**error.extra, "code": error.code, "message": error.message}
        return _encoder.encode({"error": detail})
    return _encoder.encode(ErrorBody(ErrorDetail(error.code, error.message)))
