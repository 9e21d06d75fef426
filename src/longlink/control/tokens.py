"""Connection tokens: what ``POST /v1/connect`` hands out and AUTH presents (PROTOCOL.md §2.1).

A token is an HS256 JWT signed with ``settings.token_secret``, or with the
first of ``settings.token_secrets`` (``kid:secret,kid:secret``; its header
then names the ``kid``)::

    {"typ": "conn", "sub": user, "dev": device, "iat": issued, "iat_ms": issued_ms,
     "exp": expires}

Every listed secret verifies (a token names its ``kid``; one without is tried
against each), so secrets rotate without dropping clients: list the new
secret first, keep the old one until the tokens it signed have expired
(``token_ttl_s``), then drop it (docs/security.md). :meth:`TokenIssuer.reload`
swaps the set at once (SIGHUP). ``iat_ms`` lets a kick revoke the tokens
issued before it (the registry's :class:`~longlink.logic.base.Revocations`).

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

import binascii
import hmac
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import jwt
import msgspec
from jwt.types import Options

from longlink.protocol.errors import LonglinkError

__all__ = [
    "SigningKey",
    "TokenClaims",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "TokenIssuer",
    "parse_keys",
]

logger = logging.getLogger(__name__)

TOKEN_TYPE = "conn"
ALGORITHMS = ["HS256"]
#: Below this many bytes PyJWT warns about an HMAC key on every use.
MIN_SECRET_BYTES = 32
#: The characters of unpadded base64url (RFC 7515 §2): the only ones a token segment has.
_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_BASE64 = bytes.maketrans(b"-_", b"+/")
_json = msgspec.json.Decoder()


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
    issued_ms: int = 0  # unix milliseconds (0: unknown)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One HMAC secret and its key id (None: a secret without id, the single-secret setup)."""

    kid: str | None
    secret: bytes


def parse_keys(listing: str, secret: str | None, *, purpose: str) -> list[SigningKey]:
    """The keys of ``listing`` (``kid:secret,kid:secret``, first signs) or else ``secret``.

    Raises ValueError (naming the entry, never the secret) when malformed or empty.
    """
    if not listing.strip():
        if not secret:
            raise ValueError(f"{purpose} secret must not be empty")
        return [SigningKey(None, secret.encode())]
    keys: list[SigningKey] = []
    for number, entry in enumerate(listing.split(","), 1):
        kid, sep, value = entry.strip().partition(":")
        if not sep or not kid.strip() or not value:
            raise ValueError(f"{purpose}_secrets: entry {number} is not kid:secret")
        if any(key.kid == kid.strip() for key in keys):
            raise ValueError(f"{purpose}_secrets: kid {kid.strip()!r} is listed twice")
        keys.append(SigningKey(kid.strip(), value.encode()))
    return keys


class HmacJwt:
    """HS256 encode/decode with a set of secrets by ``kid``, an algorithm list and options.

    Shared by connection tokens and business tickets. The first key signs
    (its ``kid`` in the header); a token is verified with the key its
    ``kid`` names, or, without a ``kid``, with each key in turn. PyJWT warns
    on every use of an HMAC secret shorter than 32 bytes; the secret is the
    operator's choice, so that is said once in the log here and the warning
    is silenced.
    """

    __slots__ = ("_by_kid", "_jwt", "_keys", "_require")

    def __init__(self, keys: list[SigningKey] | str, *, purpose: str, require: list[str]) -> None:
        if isinstance(keys, str):
            keys = parse_keys("", keys, purpose=purpose)
        if not keys:
            raise ValueError(f"{purpose} secret must not be empty")
        for key in keys:
            if len(key.secret) < MIN_SECRET_BYTES:
                named = f"{purpose} secret" + (f" {key.kid!r}" if key.kid else "")
                logger.warning(
                    "the %s is %d bytes; use at least %d random bytes",
                    named,
                    len(key.secret),
                    MIN_SECRET_BYTES,
                )
        self._keys = keys
        self._by_kid = {key.kid: key for key in keys if key.kid is not None}
        self._require = require
        # iat is informational: a token issued on a host whose clock runs a little
        # ahead must not be refused as "not yet valid". exp is checked with 0 leeway.
        options: Options = {"require": require, "verify_iat": False, "verify_aud": False}
        self._jwt = jwt.PyJWT(options)

    def encode(self, claims: dict[str, Any]) -> str:
        """Sign ``claims`` with the first key."""
        key = self._keys[0]
        headers = {"kid": key.kid} if key.kid is not None else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            return jwt.encode(claims, key.secret, algorithm="HS256", headers=headers)

    def _candidates(self, kid: object) -> list[SigningKey]:
        """The keys a token may be signed with: the one its ``kid`` names, or all."""
        if kid is None:
            return self._keys
        key = self._by_kid.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise jwt.InvalidSignatureError(f"unknown key id {str(kid)[:40]!r}")
        return [key]

    def decode(self, token: str) -> dict[str, Any]:
        """Verify signature and ``exp``; raises PyJWT's exceptions."""
        candidates = self._candidates(jwt.get_unverified_header(token).get("kid"))
        error: jwt.InvalidTokenError = jwt.InvalidSignatureError("no key")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            for key in candidates:
                try:
                    return self._jwt.decode(token, key.secret, algorithms=ALGORITHMS, leeway=0)
                except jwt.InvalidSignatureError as exc:
                    error = exc
        raise error

    def decode_compact(self, token: str, now: float | None = None) -> dict[str, Any]:
        """:meth:`decode` for the tokens this module signs, without PyJWT: 8× cheaper.

        The gateway verifies one token per AUTH, so it is on the connect path
        (PyJWT checks each character of a segment in Python and parses the
        header twice here: ~40 µs a token; this ~5 µs). Same checks, stricter
        form: three unpadded base64url segments, a JSON object header with
        ``alg`` HS256 and no ``crit`` or ``b64``, a signature by the key its
        ``kid`` names (or any key, without one), compared in constant time,
        then a JSON object payload with the required claims, ``exp`` (a
        number) not past, ``nbf`` (if any) reached, ``sub`` and ``jti`` (if
        any) strings. Raises PyJWT's exceptions, as :meth:`decode` does.
        """
        try:
            raw = token.encode("ascii")
        except (UnicodeEncodeError, AttributeError):
            raise jwt.DecodeError("Invalid token type") from None
        signing_input, _, crypto = raw.rpartition(b".")
        header_segment, dot, payload_segment = signing_input.partition(b".")
        if not dot or b"." in payload_segment:
            raise jwt.DecodeError("Not enough segments")
        header = _object(_segment(header_segment, "header"), "header")
        if header.get("alg") != "HS256":
            raise jwt.InvalidAlgorithmError("The specified alg value is not allowed")
        if "crit" in header or "b64" in header:
            raise jwt.DecodeError("Unsupported header parameter")
        signature = _segment(crypto, "crypto")
        for key in self._candidates(header.get("kid")):
            if hmac.compare_digest(hmac.digest(key.secret, signing_input, "sha256"), signature):
                break
        else:
            raise jwt.InvalidSignatureError("Signature verification failed")
        claims = _object(_segment(payload_segment, "payload"), "payload")
        for name in self._require:
            if claims.get(name) is None:
                raise jwt.MissingRequiredClaimError(name)
        now = time.time() if now is None else now
        exp = claims.get("exp")
        if exp is not None:
            if not isinstance(exp, int | float) or isinstance(exp, bool):
                raise jwt.DecodeError("Expiration Time claim (exp) must be a number.")
            if exp <= now:
                raise jwt.ExpiredSignatureError("Signature has expired")
        nbf = claims.get("nbf")
        if nbf is not None:
            if not isinstance(nbf, int | float) or isinstance(nbf, bool):
                raise jwt.DecodeError("Not Before claim (nbf) must be a number.")
            if nbf > now:
                raise jwt.ImmatureSignatureError("The token is not yet valid (nbf)")
        for name in ("sub", "jti"):
            if name in claims and not isinstance(claims[name], str):
                raise jwt.InvalidTokenError(f"{name} must be a string")
        return claims


def _segment(segment: bytes, name: str) -> bytes:
    """One unpadded base64url segment, decoded; canonical form only (one encoding per value)."""
    if not segment or len(segment) % 4 == 1 or segment.translate(None, _BASE64URL):
        raise jwt.DecodeError(f"Invalid {name} padding")
    try:
        decoded = binascii.a2b_base64(
            segment.translate(_TO_BASE64) + b"=" * (-len(segment) % 4), strict_mode=True
        )
    except binascii.Error:
        raise jwt.DecodeError(f"Invalid {name} padding") from None
    if binascii.b2a_base64(decoded, newline=False).translate(_TO_BASE64).rstrip(b"=") != (
        segment.translate(_TO_BASE64)
    ):
        raise jwt.DecodeError(f"Invalid {name} padding")
    return decoded


def _object(data: bytes, name: str) -> dict[str, Any]:
    try:
        value = _json.decode(data)
    except msgspec.DecodeError as exc:
        raise jwt.DecodeError(f"Invalid {name} string: {exc}") from None
    if not isinstance(value, dict):
        raise jwt.DecodeError(f"Invalid {name} string: must be a json object")
    return value


class TokenIssuer:
    """Issues and verifies connection tokens.

    Every process that verifies tokens issued by another must share ``secret``
    (``LONGLINK_TOKEN_SECRET``, PROTOCOL.md §3). ``verify`` sits on the
    gateway's AUTH path: one HMAC and two small JSON decodes, no I/O, no
    PyJWT (:meth:`HmacJwt.decode_compact`).
    """

    __slots__ = ("_jwt", "_ttl_s")

    def __init__(self, secret: str, ttl_s: int, secrets: str = "") -> None:
        if ttl_s < 1:
            raise ValueError("ttl_s must be at least 1")
        self._jwt = self._keys(secret, secrets)
        self._ttl_s = ttl_s

    @staticmethod
    def _keys(secret: str, secrets: str) -> HmacJwt:
        keys = parse_keys(secrets, secret, purpose="token")
        return HmacJwt(keys, purpose="token", require=["exp", "sub", "dev"])

    def reload(self, secret: str, secrets: str = "") -> None:
        """Sign and verify with new secrets from now on; ValueError, unchanged, if malformed."""
        self._jwt = self._keys(secret, secrets)

    @property
    def ttl_s(self) -> int:
        """Seconds a new token stays valid."""
        return self._ttl_s

    def issue(self, user: str, device: str, *, now: float | None = None) -> tuple[str, int]:
        """A token for ``user`` on ``device`` and its expiry (unix seconds)."""
        now = time.time() if now is None else now
        issued = int(now)
        expires_at = issued + self._ttl_s
        claims = {
            "typ": TOKEN_TYPE,
            "sub": user,
            "dev": device,
            "iat": issued,
            "iat_ms": int(now * 1000),
            "exp": expires_at,
        }
        return self._jwt.encode(claims), expires_at

    def verify(self, token: str) -> TokenClaims:
        """The token's claims; raises :class:`TokenExpired` or :class:`TokenInvalid`."""
        try:
            claims = self._jwt.decode_compact(token)
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
        issued_ms = claims.get("iat_ms")
        if not isinstance(issued_ms, int):
            iat = claims.get("iat")
            issued_ms = int(iat * 1000) if isinstance(iat, int | float) else 0
        return TokenClaims(user=user, device=device, expires_at=exp, issued_ms=issued_ms)
