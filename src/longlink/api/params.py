"""Reading requests: bodies within a limit, ids from paths, numbers from queries.

Every refusal is an :class:`~longlink.api.errors.ApiError` (400 or 413) naming
what was wrong, rendered by :mod:`longlink.api.refusals`.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote

from starlette.requests import ClientDisconnect, Request

from longlink.api import errors
from longlink.api.errors import ApiError
from longlink.protocol.ids import id_problem

__all__ = ["history_path", "path_id", "query_int", "query_msg_id", "read_body"]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 ``too_large`` past ``limit`` bytes.

    A ``Content-Length`` over the limit is refused before anything is read;
    a body streamed without one is counted as it arrives.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ApiError(400, errors.BAD_REQUEST, "Content-Length is not a number") from None
        if length > limit:
            raise ApiError(413, errors.TOO_LARGE, f"body is {length} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, errors.TOO_LARGE, f"body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, errors.BAD_REQUEST, "client disconnected") from None
    return b"".join(chunks)


def path_id(request: Request, name: str, check: Callable[[str], str | None] = id_problem) -> str:
    value: str = request.path_params[name]
    problem = check(value)
    if problem:
        raise ApiError(400, errors.BAD_REQUEST, f"{name}: {problem}")
    return value


def history_path(request: Request) -> tuple[str, bool]:
    """(room, whether the path asks for its history) of ``/v1/rooms/{room}/history``.

    Read from the raw path where the server gives it, so a slash written
    ``%2F`` stays part of the room: ``/v1/rooms/a%2Fhistory`` is room
    ``a/history`` itself, ``/v1/rooms/a%2Fb/history`` the history of ``a/b``.
    """
    raw = request.scope.get("raw_path")
    if not isinstance(raw, bytes):
        return str(request.path_params["room"]), True
    path = raw.split(b"?", 1)[0].decode("latin-1")
    rest = path.split("/v1/rooms/", 1)[-1]
    if rest.endswith("/history"):
        return unquote(rest.removesuffix("/history")), True
    return unquote(rest), False


def query_msg_id(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20 or int(raw) >= 1 << 64:
        raise ApiError(400, errors.BAD_REQUEST, f"{name}: expected a decimal message id")
    return int(raw)


def query_int(request: Request, name: str, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, errors.BAD_REQUEST, f"{name}: expected a whole number {low}..{high}")
    return int(raw)
