"""Service layer: the HTTP API (push, queries) and the control route (PROTOCOL.md §2).

:func:`build_app` builds the Starlette app over a :class:`Services`;
:class:`HttpServer` serves it on the running event loop. The handlers
(:mod:`longlink.api.app`) parse requests (:mod:`longlink.api.schemas`) and
render answers (:mod:`longlink.api.responses`); the push itself is
:class:`longlink.api.push.Pusher`, the connect flow
:class:`longlink.control.connect.Connector`.
"""

from longlink.api.app import build_app
from longlink.api.errors import ApiError
from longlink.api.server import HttpServer
from longlink.api.services import KickFunc, Services

__all__ = ["ApiError", "HttpServer", "KickFunc", "Services", "build_app"]
