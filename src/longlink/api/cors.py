"""CORS on the client-facing HTTP routes (PROTOCOL.md §1.5), framework-free.

A page on another origin calls ``POST /v1/connect`` with a JSON body, so the
browser first sends a preflight (``OPTIONS``) and then reads the answer only
if it names the page's origin. Which origins may is one policy for every
listener, :class:`~longlink.control.origins.Origins`
(``LONGLINK_ALLOWED_ORIGINS``; ``*`` by default in demo mode, none
otherwise). :class:`Cors` turns it into headers:

==========================  =================================================
request                     answer
==========================  =================================================
no ``Origin`` header        served as before, no CORS headers (not a
                            browser's cross-origin request)
allowed ``Origin``          served; every answer, errors included, carries
                            ``Access-Control-Allow-Origin`` (the origin, or
                            ``*`` when any origin is allowed; then no
                            ``Vary``); the preflight is 204 with the allowed
                            method, header and a max age
``Origin`` not allowed      403 ``forbidden`` naming the origin, without CORS
                            headers, preflight included (the browser stops)
==========================  =================================================

No credentials are involved (``/v1/connect`` takes a ticket in its body),
so ``Access-Control-Allow-Credentials`` is never sent.
"""

from __future__ import annotations

from longlink.api import errors
from longlink.api.errors import ApiError
from longlink.control.origins import Origins

__all__ = ["PREFLIGHT_MAX_AGE_S", "Cors"]

#: Seconds a browser may keep a preflight answer.
PREFLIGHT_MAX_AGE_S = 600


class Cors:
    """The CORS headers of one route (``methods``, request ``headers``) for ``origins``."""

    __slots__ = ("allow_headers", "methods", "origins")

    def __init__(
        self, origins: Origins, *, methods: str = "POST", allow_headers: str = "Content-Type"
    ) -> None:
        self.origins = origins
        self.methods = methods
        self.allow_headers = allow_headers

    def headers(self, origin: str | None) -> dict[str, str]:
        """The CORS headers of an answer to a request with this ``Origin`` (None: none sent).

        Raises :class:`~longlink.api.errors.ApiError` 403 ``forbidden`` when the
        origin is not allowed: the route must not serve it.
        """
        if origin is None:
            return {}
        allowed = self.origins.cors_origin(origin)
        if allowed is None:
            raise ApiError(
                403,
                errors.FORBIDDEN,
                f"origin {origin!r} is not allowed; the server's operator lists the"
                " browser origins it serves in LONGLINK_ALLOWED_ORIGINS",
            )
        if allowed == "*":
            return {"Access-Control-Allow-Origin": "*"}
        # The answer names one origin of several: caches must key it by Origin.
        return {"Access-Control-Allow-Origin": allowed, "Vary": "Origin"}

    def preflight(self, origin: str | None) -> dict[str, str]:
        """The headers of the 204 answering ``OPTIONS`` (raises like :meth:`headers`)."""
        if origin is None:  # not a preflight: say what the route takes
            return {"Allow": f"{self.methods}, OPTIONS"}
        return {
            **self.headers(origin),
            "Access-Control-Allow-Methods": self.methods,
            "Access-Control-Allow-Headers": self.allow_headers,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
        }
