"""Errors the backend client raises, one tree under :class:`BackendError`::

    LonglinkError                     (longlink.protocol)
     └── BackendError
          ├── ConnectionFailed        no answer from the server (sent: may it have arrived?)
          └── ApiCallError            the server answered with an error (status, code, message)
               ├── BadRequest         400: a field breaks a rule; the message names it
               ├── Unauthorized       401: no or unknown API key
               ├── Forbidden          403: outside the key's scopes; the message names the scope
               ├── NotFound           404
               ├── TooLarge           413: payload or body over the limit
               ├── RateLimited        429: over the key's rate limit (retry_after)
               └── Overloaded         503: the service sheds load (retry_after)

The client retries :class:`RateLimited` and :class:`Overloaded` by itself
(see :class:`~longlink.backend.calls.RetryPolicy`); you see them once the
retries are spent. The other errors will not go away by retrying the same call.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any

from longlink.protocol.errors import LonglinkError

__all__ = [
    "ApiCallError",
    "BackendError",
    "BadRequest",
    "ConnectionFailed",
    "Forbidden",
    "NotFound",
    "Overloaded",
    "RateLimited",
    "TooLarge",
    "Unauthorized",
]


class BackendError(LonglinkError):
    """Root of every error the backend client raises on purpose."""


class ConnectionFailed(BackendError):
    """The server gave no answer: unreachable, timed out, or the connection broke.

    ``sent`` is False when the request certainly never reached the server
    (the connection could not be opened): any call may then be retried.
    When True, a push may have been queued although no answer came back.
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class ApiCallError(BackendError):
    """The server refused a call: ``status``, its stable ``code`` and a message for humans.

    ``retry_after`` is the ``Retry-After`` header in seconds (None without
    one). ``msg_ids`` lists the messages a batch got queued before a 503.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        msg_ids: list[int] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.msg_ids = msg_ids or []

    @classmethod
    def from_response(cls, status: int, body: bytes, headers: Mapping[str, str]) -> ApiCallError:
        """The error for an answer with ``status`` (PROTOCOL.md §2 error shape)."""
        code, message, msg_ids = f"http_{status}", "", []
        try:
            detail: Any = json.loads(body)["error"]
            code, message = str(detail["code"]), str(detail["message"])
            msg_ids = [int(i) for i in detail.get("msg_ids", [])]
        except (ValueError, TypeError, KeyError):
            message = body[:200].decode("utf-8", "replace") or "no error body"
        kind = _BY_STATUS.get(status, cls)
        return kind(
            status,
            code,
            message,
            retry_after=parse_retry_after(headers.get("retry-after")),
            msg_ids=msg_ids,
        )


class BadRequest(ApiCallError):
    """400: bad JSON, or a field breaking a rule (the message names the field)."""


class Unauthorized(ApiCallError):
    """401: no or unknown API key."""


class Forbidden(ApiCallError):
    """403: outside the key's scopes (the message names the scope)."""


class NotFound(ApiCallError):
    """404: no such route or node."""


class TooLarge(ApiCallError):
    """413: the payload or the body is over the server's limit."""


class RateLimited(ApiCallError):
    """429: the key is over its rate limit; nothing was queued. Wait ``retry_after``."""


class Overloaded(ApiCallError):
    """503: the service sheds load; nothing was queued except ``msg_ids``."""


_BY_STATUS: dict[int, type[ApiCallError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    413: TooLarge,
    429: RateLimited,
    503: Overloaded,
}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds or an HTTP date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
