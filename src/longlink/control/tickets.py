"""Business tickets: how a client proves who it is to ``POST /v1/connect`` (PROTOCOL.md §2.1).

The business backend signs a JWT (HS256) with the ticket secret
(``LONGLINK_TICKET_SECRET``): ``sub`` (the user, required), ``device``
(optional) and ``exp`` (required). A connection token (``typ: "conn"``) is
never accepted as a ticket.

Errors::

    LonglinkError
     └── TicketError           (code: "bad_ticket" | "ticket_expired"; HTTP 401)
          ├── TicketInvalid    ("bad_ticket")
          └── TicketExpired    ("ticket_expired")
"""

from __future__ import annotations

from typing import Any

import jwt

from longlink.control.tokens import TOKEN_TYPE, HmacJwt
from longlink.protocol.errors import LonglinkError
from longlink.protocol.ids import id_problem

__all__ = ["TicketError", "TicketExpired", "TicketInvalid", "TicketVerifier"]


class TicketError(LonglinkError):
    """A business ticket was refused; ``code`` is the API error code (HTTP 401)."""

    code = "bad_ticket"


class TicketInvalid(TicketError):
    """Malformed, wrongly signed, or missing ``sub``/``exp``."""

    code = "bad_ticket"


class TicketExpired(TicketError):
    """Well signed but past its ``exp``: the client asks its backend for a new ticket."""

    code = "ticket_expired"


class TicketVerifier:
    """Verifies business tickets signed with one secret (``settings.ticket_secret``)."""

    __slots__ = ("_jwt",)

    def __init__(self, secret: str) -> None:
        self._jwt = HmacJwt(secret, purpose="ticket", require=["exp", "sub"])

    def verify(self, ticket: str) -> tuple[str, str | None]:
        """``(user, device)`` from a valid ticket (device None when the ticket names none).

        Raises :class:`TicketExpired` or :class:`TicketInvalid`.
        """
        try:
            claims = self._jwt.decode(ticket)
        except jwt.ExpiredSignatureError as exc:
            raise TicketExpired("the ticket has expired; get a new one") from exc
        except jwt.InvalidTokenError as exc:
            raise TicketInvalid(f"invalid ticket: {exc}") from exc
        if claims.get("typ") == TOKEN_TYPE:
            raise TicketInvalid("invalid ticket: a connection token is not a ticket")
        user = _claim(claims, "sub")
        if user is None:
            raise TicketInvalid("invalid ticket: no sub")
        return user, _claim(claims, "device")


def _claim(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TicketInvalid(f"invalid ticket: {name} must be a string")
    problem = id_problem(value)
    if problem:
        raise TicketInvalid(f"invalid ticket: {name} {problem}")
    return value
