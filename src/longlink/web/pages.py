"""The pages of the HTTP app: the live-room demo at ``/`` and the admin dashboard at ``/admin``.

Two small hand-written pages with no build step and nothing from another
site: HTML, CSS and ES modules shipped as package data under
``longlink/web/pages/``, served from memory (:mod:`longlink.web.files`). The
page files are at ``/web/<name>``; only the names in :data:`ASSETS` exist.

* ``/`` — a live room (docs/demo.md): danmaku flying across a stage, an input
  that sends UPSTREAM (echoed to the room in demo mode, :mod:`longlink.web.echo`),
  the online count, enter/exit notices, two rooms, messages per second. It
  imports the JavaScript SDK from ``/sdk/longlink.js`` and connects through
  ``/v1/connect`` with a user name, so it needs demo mode (it says so otherwise).
* ``/admin`` — the operator's dashboard over the API (``/v1/nodes``,
  ``/v1/online``, ``/v1/stats``, ``/v1/stats/reach``, ``/v1/messages/{id}``,
  ``/v1/push``). It asks for an API key and keeps it in the page's memory
  only: never stored, sent nowhere but this server's API.

A Content-Security-Policy keeps each page to this server's own files; the
demo may also connect to the gateway's WebSocket (and HTTP stream) port, the
dashboard only to its own origin.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from longlink.web.files import StaticFile

__all__ = ["ADMIN_PATH", "ASSETS", "DEMO_PATH", "page_routes"]

DEMO_PATH = "/"
ADMIN_PATH = "/admin"
#: The page files served at ``/web/<name>``.
ASSETS = ("demo.js", "demo.css", "admin.js", "admin.css")

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " base-uri 'none'; form-action 'none'; frame-ancestors 'none'; connect-src {connect}"
)
#: The demo talks to /v1/connect here and to the gateway on its own port.
DEMO_CSP = _CSP.format(connect="'self' ws: wss: http: https:")
ADMIN_CSP = _CSP.format(connect="'self'")
_PAGE_HEADERS = {"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def page_routes() -> list[Route]:
    """The routes of ``/``, ``/admin`` and ``/web/{name}`` (GET, and HEAD with it)."""
    demo = StaticFile.named(
        "pages/demo.html", {**_PAGE_HEADERS, "Content-Security-Policy": DEMO_CSP}
    )
    admin = StaticFile.named(
        "pages/admin.html",
        {**_PAGE_HEADERS, "Content-Security-Policy": ADMIN_CSP, "Cache-Control": "no-store"},
    )
    assets = {name: StaticFile.named(f"pages/{name}") for name in ASSETS}

    async def serve_demo(request: Request) -> Response:
        return demo.response(request)

    async def serve_admin(request: Request) -> Response:
        return admin.response(request)

    async def serve_asset(request: Request) -> Response:
        name: str = request.path_params["name"]
        asset = assets.get(name)
        if asset is None:  # the app renders it as the API's 404 (no route)
            raise HTTPException(404)
        return asset.response(request)

    return [
        Route(DEMO_PATH, serve_demo, methods=["GET"]),
        Route(ADMIN_PATH, serve_admin, methods=["GET"]),
        Route("/web/{name}", serve_asset, methods=["GET"]),
    ]
