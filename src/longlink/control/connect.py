"""The connect flow (PROTOCOL.md §2.1): who the client is → where it goes → a token.

:class:`Connector` turns a :class:`ConnectRequest` (the values of a
``POST /v1/connect`` body, already decoded) into :class:`Connected`: a signed
connection token for the client's user and device, the heartbeat interval,
and the best healthy gateway endpoints for it. No HTTP here: the API route
decodes the body, calls :meth:`Connector.connect` and renders the result or
the refusal.

1. Identity: a business ticket, verified with the ticket secret
   (:class:`~longlink.control.tickets.TicketVerifier`); or, in demo mode
   only, a bare user name. A ticket wins when both are given.
2. Endpoints: :func:`~longlink.control.endpoints.choose_endpoints` over the
   nodes' reports (region first, then measured quality, then price until
   full, then least load; healthy only); and the transports to try, best
   first (:func:`~longlink.control.endpoints.advise_transports`: the HTTP
   stream before WebSocket for a client that reports WebSocket failures).
3. Token: for the user and the device the ticket or the client named, or a
   fresh ``dev-…`` id when neither did.

Refusals, each with the API error ``code`` it is answered with::

    LonglinkError
     └── ConnectError          (code, message)
          ├── ConnectInvalid   "bad_request": neither a ticket nor (demo) a user
          ├── ConnectDenied    "bad_ticket" | "ticket_expired": the ticket is refused,
          │                     or this server has no ticket secret
          └── NoNodes          "no_nodes": no healthy node offers the transports asked for
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import msgspec
from msgspec import UNSET, UnsetType

from longlink.control.endpoints import DEFAULT_BAD_RTT_MS, advise_transports, choose_endpoints
from longlink.control.tickets import TicketError, TicketVerifier
from longlink.control.tokens import TokenIssuer
from longlink.logic.base import NodeInfo
from longlink.protocol.errors import LonglinkError

__all__ = [
    "ConnectDenied",
    "ConnectError",
    "ConnectInvalid",
    "ConnectRequest",
    "Connected",
    "Connector",
    "Endpoint",
    "NoNodes",
    "NodeSource",
]


class ConnectError(LonglinkError):
    """The connect flow refused the client: ``code`` is the API error code, ``message`` says why."""

    code = "bad_request"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConnectInvalid(ConnectError):
    """The request names no identity this server accepts (HTTP 400 ``bad_request``)."""

    code = "bad_request"


class ConnectDenied(ConnectError):
    """The ticket is refused (HTTP 401 ``bad_ticket`` or ``ticket_expired``)."""

    code = "bad_ticket"


class NoNodes(ConnectError):
    """No healthy gateway node offers what the client asked for (HTTP 503 ``no_nodes``).

    The client retries later: a node reports within seconds of starting.
    """

    code = "no_nodes"


class NodeSource(Protocol):
    """Where the gateway nodes' reports are read (the registry is one)."""

    async def nodes(self) -> list[NodeInfo]:
        """Every node that has reported, healthy or not."""
        ...


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """What a client sends to connect (PROTOCOL.md §2.1), ids already checked.

    ``transports`` is a subset of ``("ws", "tcp", "stream")`` in the client's
    order; None means any. ``failed`` names transports that failed the client.
    """

    ticket: str | None = None
    user: str | None = None
    device: str | None = None
    region: str | None = None
    transports: tuple[str, ...] | None = None
    failed: tuple[str, ...] = ()


class Endpoint(msgspec.Struct, frozen=True, omit_defaults=True):
    """One gateway the client may connect to; a transport it did not ask for is left out."""

    node: str
    region: str
    ws: str | UnsetType = UNSET
    tcp: str | UnsetType = UNSET
    #: The HTTP stream's URL (PROTOCOL.md §1.5): ``POST`` it with the AUTH frame.
    stream: str | UnsetType = UNSET
    #: The node's listeners speak TLS (``wss://``, and TLS on the TCP port).
    tls: bool | UnsetType = UNSET


class Connected(msgspec.Struct, frozen=True):
    """The answer to a client that may connect: ``POST /v1/connect`` answers it as JSON."""

    token: str
    #: Unix seconds.
    expires_at: int
    heartbeat_s: int
    #: Best first; never empty.
    endpoints: list[Endpoint]
    #: The transports to try, best first (PROTOCOL.md §1.5): control's advice.
    transports: list[str] = []


class Connector:
    """The connect flow of one server: its ticket secret, demo mode, tokens and nodes.

    ``tickets`` is None when the server has no ticket secret (tickets are then
    refused); ``demo`` lets a client name its user without a ticket.
    ``clock`` (unix seconds) decides which node reports are fresh.
    """

    __slots__ = ("_clock", "_nodes", "bad_rtt_ms", "demo", "heartbeat_s", "tickets", "tokens")

    def __init__(
        self,
        *,
        nodes: NodeSource,
        tokens: TokenIssuer,
        tickets: TicketVerifier | None,
        demo: bool,
        heartbeat_s: int,
        clock: Callable[[], float] = time.time,
        bad_rtt_ms: int = DEFAULT_BAD_RTT_MS,
    ) -> None:
        self._nodes = nodes
        self.bad_rtt_ms = bad_rtt_ms
        self.tokens = tokens
        self.tickets = tickets
        self.demo = demo
        self.heartbeat_s = heartbeat_s
        self._clock = clock

    async def connect(self, request: ConnectRequest) -> Connected:
        """A token and endpoints for the client; raises a :class:`ConnectError` otherwise."""
        user, device = self._identity(request)
        wanted = list(request.transports) if request.transports is not None else None
        endpoints = choose_endpoints(
            await self._nodes.nodes(),
            region=request.region,
            now_ms=int(self._clock() * 1000),
            transports=wanted,
            bad_rtt_ms=self.bad_rtt_ms,
        )
        if not endpoints:
            raise NoNodes("no healthy gateway node offers the requested transports")
        # A ticket without a device claim, or a demo client without one, gets a fresh id.
        device = device or "dev-" + secrets.token_hex(6)
        token, expires_at = self.tokens.issue(user, device)
        return Connected(
            token=token,
            expires_at=expires_at,
            heartbeat_s=self.heartbeat_s,
            endpoints=[Endpoint(**endpoint) for endpoint in endpoints],
            transports=advise_transports(endpoints, wanted, request.failed),
        )

    def _identity(self, request: ConnectRequest) -> tuple[str, str | None]:
        """``(user, device)`` from the ticket, or from the request in demo mode."""
        if request.ticket is not None:
            if self.tickets is None:
                raise ConnectDenied("this server has no ticket secret configured")
            try:
                return self.tickets.verify(request.ticket)
            except TicketError as exc:
                raise ConnectDenied(str(exc), exc.code) from exc
        if request.user is not None and self.demo:
            return request.user, request.device
        if request.user is not None:
            raise ConnectInvalid("demo mode is off: give a ticket")
        demo = " or, in demo mode, a user" if self.demo else ""
        raise ConnectInvalid(f"give a ticket{demo}")
