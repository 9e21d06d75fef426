"""Control layer: identity (business tickets), connection tokens, endpoint choice.

See ARCHITECTURE.md ("control") and PROTOCOL.md §2.1. Nothing here holds a
connection; the connect flow (:mod:`longlink.control.connect`) reads the nodes' reports
through a small seam. The HTTP route lives in :mod:`longlink.api.app`.
"""

from longlink.control.connect import (
    ConnectDenied,
    Connected,
    ConnectError,
    ConnectInvalid,
    Connector,
    ConnectRequest,
    NoNodes,
)
from longlink.control.endpoints import DEFAULT_STALE_MS, choose_endpoints, node_healthy
from longlink.control.tickets import TicketError, TicketExpired, TicketInvalid, TicketVerifier
from longlink.control.tokens import (
    TokenClaims,
    TokenError,
    TokenExpired,
    TokenInvalid,
    TokenIssuer,
)

__all__ = [
    "DEFAULT_STALE_MS",
    "ConnectDenied",
    "ConnectError",
    "ConnectInvalid",
    "ConnectRequest",
    "Connected",
    "Connector",
    "NoNodes",
    "TicketError",
    "TicketExpired",
    "TicketInvalid",
    "TicketVerifier",
    "TokenClaims",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "TokenIssuer",
    "choose_endpoints",
    "node_healthy",
]
