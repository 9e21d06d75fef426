"""Business tickets: how a client proves who it is to ``POST /v1/connect`` (PROTOCOL.md §2.1).

The business backend signs a JWT (HS256) with the ticket secret
(``LONGLINK_TICKET_SECRET``), or with one of ``LONGLINK_TICKET_SECRETS``
(``kid:secret,…``, naming its ``kid`` in the header): ``sub`` (the user,
required), ``device`` (optional) and ``exp`` (required, at most
``max_ticket_ttl_s`` ahead: a ticket is a short-lived proof, not a
credential to keep). A connection token (``typ: "conn"``) is never accepted
as a ticket.

Errors::

    LonglinkError
     └── TicketError           (code: "bad_ticket" | "ticket_expired"; HTTP 401)
          ├── TicketInvalid    ("bad_ticket")
          └── TicketExpired    ("ticket_expired")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt

from longlink.control.tokens import TOKEN_TYPE, HmacJwt, parse_keys
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
    """Verifies business tickets signed with ``secret`` or the keys of ``secrets``
    (``kid:secret,…``); ``max_ttl_s`` (0: no limit) bounds how far ahead ``exp`` may be.

    Raises ValueError when the secrets are malformed or empty.
    """

    __slots__ = ("_clock", "_jwt", "max_ttl_s")

    def __init__(
        self,
        secret: str | None,
        max_ttl_s: int = 0,
        secrets: str = "",
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        keys = parse_keys(secrets, secret, purpose="ticket")
        self._jwt = HmacJwt(keys, purpose="ticket", require=["exp", "sub"])
        self.max_ttl_s = max_ttl_s
        self._clock = clock

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
        exp = claims.get("exp")
        if self.max_ttl_s and isinstance(exp, int | float):
            ahead = exp - self._clock()
            if ahead > self.max_ttl_s:
                raise TicketInvalid(
                    f"invalid ticket: exp is {ahead:.0f} s ahead;"
                    f" at most {self.max_ttl_s} s (max_ticket_ttl_s)"
                )
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
