"""Errors the client SDK raises, one tree under :class:`ClientError`::

    LonglinkError                      (longlink.protocol)
     └── ClientError
          ├── AuthError              the server refused the credentials (code)
          ├── ServerError            the server answered a request with ERROR (code)
          ├── ControlError           POST /v1/connect failed (code, status, retry_after)
          ├── ConnectFailed          no endpoint could be reached or authenticated
          └── ConnectionClosed       the client is closed or not connected (reason)

Request timeouts raise the built-in :class:`TimeoutError`. Malformed frames
from the server are not raised to the caller: the SDK drops the connection and
reconnects (or stops, see :class:`ConnectionClosed`).
"""

from __future__ import annotations

from typing import TypeVar

from longlink.protocol import ErrorCode, ProtocolError
from longlink.protocol.errors import LonglinkError
from longlink.protocol.messages import decode_body

_T = TypeVar("_T")


class ClientError(LonglinkError):
    """Root of every error the client SDK raises on purpose."""


class AuthError(ClientError):
    """The credentials were refused.

    Raised by :meth:`Client.connect` when the server answers AUTH with ERROR
    (``code`` is the contract's code, e.g. ``auth_failed``), and when
    ``POST /v1/connect`` answers 401 or 403 (``code`` from the JSON error body).
    Retrying with the same credentials will not help: get a new ticket.
    """

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class ServerError(ClientError):
    """The server answered a request (JOIN, LEAVE, UPSTREAM) with ERROR.

    ``code`` is one of PROTOCOL.md §1.2 (``room_limit``, ``not_allowed``,
    ``rate_limited``, …). The connection stays up unless the code is fatal, in
    which case the client reconnects on its own.
    """

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class ControlError(ClientError):
    """``POST /v1/connect`` failed for a reason other than bad credentials.

    ``status`` is the HTTP status (``None`` when the server could not be
    reached), ``code`` the JSON error code (PROTOCOL.md §2) or ``unreachable``
    / ``bad_response``, ``retry_after`` the server's ``Retry-After`` in seconds.
    """

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether asking again later may succeed (network, 429, 5xx)."""
        return self.status is None or self.status == 429 or self.status >= 500


class ConnectFailed(ClientError):
    """No endpoint from ``/v1/connect`` could be opened and authenticated."""


class ConnectionClosed(ClientError):
    """The client has no connection: it was closed, or it stopped for good.

    Raised by :meth:`Client.next_message`, ``__anext__`` and
    :meth:`Client.next_event` once the client is closed (by :meth:`Client.close`,
    a KICK other than ``drain``, a terminal auth error, or a lost connection
    with ``reconnect=False``), and by requests in flight when the connection
    drops. ``reason`` says why.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_reply(body: bytes, kind: type[_T]) -> _T:
    """The body of a reply as ``kind``; a malformed one is the server's ``bad_frame``."""
    try:
        return decode_body(body, kind)
    except ProtocolError as exc:
        raise ServerError(ErrorCode.BAD_FRAME.value, str(exc)) from exc
