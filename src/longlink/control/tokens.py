"""Connection tokens: what ``POST /v1/connect`` hands out and AUTH presents (PROTOCOL.md §2.1).

A token is an HS256 JWT signed with ``settings.token_secret``::

    {"typ": "conn", "sub": user, "dev": device, "iat": issued, "exp": expires}

``typ`` keeps the two kinds of JWT apart: a business ticket (signed with the
ticket secret, no ``typ: "conn"``) is never accepted as a connection token,
even where an operator uses one secret for both.

Errors::

    LonglinkError
     └── TokenError
          ├── TokenInvalid    (AUTH answers ``auth_failed``,   PROTOCOL.md §1.3 rule 2)
          └── TokenExpired    (AUTH answers ``token_expired``, PROTOCOL.md §1.3 rule 2)
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.types import Options

from longlink.protocol.errors import LonglinkError

__all__ = ["TokenClaims", "TokenError", "TokenExpired", "TokenInvalid", "TokenIssuer"]

logger = logging.getLogger(__name__)

TOKEN_TYPE = "conn"
ALGORITHMS = ["HS256"]
#: Below this many bytes PyJWT warns about an HMAC key on every use.
MIN_SECRET_BYTES = 32


class TokenError(LonglinkError):
    """A connection token was refused; the gateway answers AUTH with an ERROR."""


class TokenInvalid(TokenError):
    """Malformed, wrongly signed, of the wrong type, or missing a claim (``auth_failed``)."""


class TokenExpired(TokenError):
    """Well signed but past its ``exp`` (``token_expired``): get a new one from /v1/connect."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """Who a verified token belongs to."""

    user: str
    device: str
    expires_at: int  # unix seconds


class HmacJwt:
    """HS256 encode/decode with a fixed secret, algorithm list and options.

    Shared by connection tokens and business tickets. PyJWT warns on every use
    of an HMAC secret shorter than 32 bytes; the secret is the operator's
    choice, so that is said once in the log here and the warning is silenced.
    """

    __slots__ = ("_jwt", "_key", "_quiet")

    def __init__(self, secret: str, *, purpose: str, require: list[str]) -> None:
        if not secret:
            raise ValueError(f"{purpose} secret must not be empty")
        self._key = secret.encode()
        self._quiet = len(self._key) < MIN_SECRET_BYTES
        if self._quiet:
            logger.warning(
                "the %s secret is %d bytes; use at least %d random bytes",
                purpose,
                len(self._key),
                MIN_SECRET_BYTES,
            )
        # iat is informational: a token issued on a host whose clock runs a little
        # ahead must not be refused as "not yet valid". exp is checked with 0 leeway.
        options: Options = {"require": require, "verify_iat": False, "verify_aud": False}
        self._jwt = jwt.PyJWT(options)

    def encode(self, claims: dict[str, Any]) -> str:
        """Sign ``claims``."""
        if self._quiet:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                return jwt.encode(claims, self._key, algorithm="HS256")
        return jwt.encode(claims, self._key, algorithm="HS256")

    def decode(self, token: str) -> dict[str, Any]:
        """Verify signature and ``exp``; raises PyJWT's exceptions."""
        if self._quiet:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                return self._jwt.decode(token, self._key, algorithms=ALGORITHMS, leeway=0)
        return self._jwt.decode(token, self._key, algorithms=ALGORITHMS, leeway=0)


class TokenIssuer:
    """Issues and verifies connection tokens.

    Every process that verifies tokens issued by another must share ``secret``
    (``LONGLINK_TOKEN_SECRET``, PROTOCOL.md §3). ``verify`` sits on the
    gateway's AUTH path: one HMAC and one small JSON decode, no I/O.
    """

    __slots__ = ("_jwt", "_ttl_s")

    def __init__(self, secret: str, ttl_s: int) -> None:
        if ttl_s < 1:
            raise ValueError("ttl_s must be at least 1")
        self._jwt = HmacJwt(secret, purpose="token", require=["exp", "sub", "dev"])
        self._ttl_s = ttl_s

    @property
    def ttl_s(self) -> int:
        """Seconds a new token stays valid."""
        return self._ttl_s

    def issue(self, user: str, device: str, *, now: float | None = None) -> tuple[str, int]:
        """A token for ``user`` on ``device`` and its expiry (unix seconds)."""
        issued = int(time.time() if now is None else now)
        expires_at = issued + self._ttl_s
        claims = {"typ": TOKEN_TYPE, "sub": user, "dev": device, "iat": issued, "exp": expires_at}
        return self._jwt.encode(claims), expires_at

    def verify(self, token: str) -> TokenClaims:
        """The token's claims; raises :class:`TokenExpired` or :class:`TokenInvalid`."""
        try:
            claims = self._jwt.decode(token)
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired("connection token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid(f"invalid connection token: {exc}") from exc
        if claims.get("typ") != TOKEN_TYPE:
            raise TokenInvalid("not a connection token")
        user, device, exp = claims.get("sub"), claims.get("dev"), claims.get("exp")
        if not isinstance(user, str) or not user:
            raise TokenInvalid("connection token has no user")
        if not isinstance(device, str) or not device:
            raise TokenInvalid("connection token has no device")
        if not isinstance(exp, int):
            raise TokenInvalid("connection token has a non-integer exp")
        return TokenClaims(user=user, device=device, expires_at=exp)
