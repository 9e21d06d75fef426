"""``GET /sdk/longlink.js``: the JavaScript SDK, an ES module (PROTOCOL.md §1.5).

The file ships inside the Python package (package data), so any install of
longlink serves the SDK that matches its protocol. It is read once, when the
route is built, and served with an ETag (a re-validating browser gets 304)
and ``Access-Control-Allow-Origin: *``: a module script imported from another
origin needs CORS, and the SDK is public code that carries no credentials.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["SDK_PATH", "sdk_route", "sdk_source"]

#: Where the HTTP app serves the SDK.
SDK_PATH = "/sdk/longlink.js"
MEDIA_TYPE = "text/javascript; charset=utf-8"


def sdk_source() -> bytes:
    """The bytes of ``longlink.js`` as installed with the package."""
    return resources.files("longlink.web").joinpath("sdk", "longlink.js").read_bytes()


def sdk_route() -> Route:
    """The route serving the SDK at :data:`SDK_PATH` (GET, and HEAD with it)."""
    body = sdk_source()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "ETag": etag,
        "Cache-Control": "no-cache",  # re-validate: an upgraded server serves its own SDK
        "Access-Control-Allow-Origin": "*",
        "X-Content-Type-Options": "nosniff",
    }

    async def serve(request: Request) -> Response:
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=MEDIA_TYPE, headers=headers)

    return Route(SDK_PATH, serve, methods=["GET"])
