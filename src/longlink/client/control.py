"""``POST /v1/connect``: credentials in, a connection token and endpoints out (PROTOCOL.md §2.1).

The client calls this before every connection, first and reconnects alike, so
each connection gets a fresh token and the current best endpoints (a drained
or dead node is no longer listed).
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from longlink.client.errors import AuthError, ControlError


class Endpoint(msgspec.Struct, frozen=True):
    """One gateway node; ``ws`` is a ``ws://…`` (or ``wss://…``) URL, ``tcp`` a
    ``host:port``, ``stream`` the HTTP stream's ``http(s)://…/v1/stream`` URL;
    ``tls`` says the node's TCP port speaks TLS (PROTOCOL.md §1.5)."""

    node: str = ""
    region: str = ""
    ws: str | None = None
    tcp: str | None = None
    stream: str | None = None
    tls: bool = False

    def address(self, transport: str) -> str | None:
        """Where to reach this node with ``transport`` (``"ws"``, ``"tcp"`` or ``"stream"``),
        if it serves it."""
        if transport == "ws":
            return self.ws
        return self.stream if transport == "stream" else self.tcp


class Grant(msgspec.Struct, frozen=True):
    """The answer of ``/v1/connect``: a token for AUTH and endpoints, best first."""

    token: str
    endpoints: list[Endpoint]
    expires_at: int = 0
    heartbeat_s: int = 0
    #: Control's advice: the transports to try, best first (PROTOCOL.md §1.5); None: no advice.
    transports: list[str] | None = None


class _ErrorDetail(msgspec.Struct):
    code: str = "http_error"
    message: str = ""


class _ErrorAnswer(msgspec.Struct):
    error: _ErrorDetail


_grant_decoder = msgspec.json.Decoder(Grant)
_error_decoder = msgspec.json.Decoder(_ErrorAnswer)


def connect_request(
    *,
    ticket: str | None,
    user: str | None,
    device: str | None,
    region: str | None,
    transports: list[str],
    failed: list[str] | None = None,
) -> dict[str, Any]:
    """The JSON body of ``/v1/connect``: the ticket if given, else ``user`` (demo mode);
    ``transports`` the client speaks, ``failed`` those that failed it (PROTOCOL.md §1.5)."""
    body: dict[str, Any] = {}
    if ticket is not None:
        body["ticket"] = ticket
    else:
        body["user"] = user
        if device is not None:
            body["device"] = device
    if region is not None:
        body["region"] = region
    body["transports"] = list(transports)
    if failed:
        body["failed"] = list(failed)
    return body


async def fetch_grant(
    http: httpx.AsyncClient, base_url: str, body: dict[str, Any], *, timeout_s: float
) -> Grant:
    """POST ``body`` to ``{base_url}/v1/connect`` and return the grant.

    Raises :class:`AuthError` on 401/403 and :class:`ControlError` on any
    other failure (``ControlError.retryable`` tells whether to try again).
    """
    url = base_url.rstrip("/") + "/v1/connect"
    try:
        response = await http.post(url, json=body, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ControlError("unreachable", f"{url}: {exc!r}") from exc
    if response.status_code >= 400:
        raise _http_error(response)
    try:
        return _grant_decoder.decode(response.content)
    except msgspec.DecodeError as exc:
        raise ControlError(
            "bad_response", f"{url} answered {exc}", status=response.status_code
        ) from exc


def _http_error(response: httpx.Response) -> AuthError | ControlError:
    """The error for a 4xx/5xx answer, with the code of its JSON error body (§2)."""
    status = response.status_code
    try:
        detail = _error_decoder.decode(response.content).error
    except msgspec.DecodeError:
        detail = _ErrorDetail(code=f"http_{status}", message=response.text[:200])
    if status in (401, 403):
        return AuthError(detail.code, detail.message)
    retry_after: float | None = None
    header = response.headers.get("retry-after")
    if header is not None:
        try:
            retry_after = max(0.0, float(header))
        except ValueError:
            retry_after = None
    return ControlError(detail.code, detail.message, status=status, retry_after=retry_after)
