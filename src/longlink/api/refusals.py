"""Refusals rendered as PROTOCOL.md §2 errors: ``{"error": {"code", "message"}}``.

The app's exception handlers: an :class:`~longlink.api.errors.ApiError` as it
is, Starlette's own 404/405 in the same shape, a backend outage as 503 with
``Retry-After`` and anything else as 500 without a traceback in the answer.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from longlink.api import errors
from longlink.api.errors import ApiError, encode_error
from longlink.control.connect import ConnectDenied, ConnectError, ConnectInvalid, NoNodes

__all__ = [
    "RETRY_AFTER_S",
    "connect_refusal",
    "on_api_error",
    "on_http_error",
    "on_internal_error",
    "on_outage",
]

JSON = "application/json"
#: Seconds a client is told to wait after 503 (queue full, no node).
RETRY_AFTER_S = 1
log = logging.getLogger("longlink.api")

#: The HTTP status of each refusal of the connect flow (its code is the error's).
_CONNECT_STATUS: dict[type[ConnectError], int] = {
    ConnectInvalid: 400,
    ConnectDenied: 401,
    NoNodes: 503,
}


def connect_refusal(exc: ConnectError) -> ApiError:
    """The §2 error answer of a refused connect."""
    status = _CONNECT_STATUS.get(type(exc), 400)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if isinstance(exc, NoNodes) else None
    return ApiError(status, exc.code, exc.message, headers=headers)


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return Response(encode_error(exc), status_code=exc.status, media_type=JSON, headers=exc.headers)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown route, wrong method) in the API's error shape."""
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        error = ApiError(404, errors.NOT_FOUND, f"no route for {where}")
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        error = ApiError(
            405, errors.METHOD_NOT_ALLOWED, f"{where} is not allowed; allowed: {allowed}"
        )
    else:
        error = ApiError(exc.status_code, f"http_{exc.status_code}", str(exc.detail))
    error.headers.update(exc.headers or {})
    return await on_api_error(request, error)


async def on_outage(request: Request, exc: Exception) -> Response:
    """A backend is unreachable (Redis restarting): 503 with Retry-After, no traceback."""
    log.warning("%s %s: backend unavailable: %s", request.method, request.url.path, exc)
    error = ApiError(
        503,
        errors.UNAVAILABLE,
        "a backend is unavailable; retry later",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
    return await on_api_error(request, error)


async def on_internal_error(request: Request, exc: Exception) -> Response:
    error = ApiError(500, errors.INTERNAL, "internal error; see the server log")
    return await on_api_error(request, error)
