"""``GET /sdk/longlink.js``: the JavaScript SDK, an ES module (PROTOCOL.md §1.5).

The file ships inside the Python package (package data), so any install of
longlink serves the SDK that matches its protocol. It is read once, when the
route is built, and served with an ETag (a re-validating browser gets 304)
and ``Access-Control-Allow-Origin: *``: a module script imported from another
origin needs CORS, and the SDK is public code that carries no credentials.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from longlink.web.files import StaticFile, package_file

__all__ = ["SDK_PATH", "sdk_route", "sdk_source"]

#: Where the HTTP app serves the SDK.
SDK_PATH = "/sdk/longlink.js"
MEDIA_TYPE = "text/javascript; charset=utf-8"


def sdk_source() -> bytes:
    """The bytes of ``longlink.js`` as installed with the package."""
    return package_file("sdk", "longlink.js")


def sdk_route() -> Route:
    """The route serving the SDK at :data:`SDK_PATH` (GET, and HEAD with it)."""
    sdk = StaticFile(sdk_source(), MEDIA_TYPE, {"Access-Control-Allow-Origin": "*"})

    async def serve(request: Request) -> Response:
        return sdk.response(request)

    return Route(SDK_PATH, serve, methods=["GET"])
