"""Connection tokens: issue, verify, expiry, tampering, tickets refused as tokens."""

from __future__ import annotations

import base64
import json
import logging
import time
import warnings

import jwt
import pytest

from longlink.control.tokens import TokenClaims, TokenExpired, TokenInvalid, TokenIssuer

SECRET = "s" * 32


def test_issue_then_verify_round_trips() -> None:
    issuer = TokenIssuer(SECRET, ttl_s=600)
    before = int(time.time())
    token, expires_at = issuer.issue("u1", "d1")
    assert before + 600 <= expires_at <= int(time.time()) + 600
    claims = issuer.verify(token)
    assert claims == TokenClaims("u1", "d1", expires_at=expires_at, issued_ms=claims.issued_ms)
    assert before * 1000 <= claims.issued_ms <= time.time() * 1000


def test_claims_are_typed_as_connection_token() -> None:
    token, expires_at = TokenIssuer(SECRET, 60).issue("u1", "d1", now=1_000_000_000)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {
        "typ": "conn",
        "sub": "u1",
        "dev": "d1",
        "iat": 1_000_000_000,
        "iat_ms": 1_000_000_000_000,
        "exp": expires_at,
    }
    assert expires_at == 1_000_000_060


def test_another_issuer_with_the_same_secret_verifies() -> None:
    token, _ = TokenIssuer(SECRET, 60).issue("u1", "d1")
    assert TokenIssuer(SECRET, 5).verify(token).user == "u1"


def test_expired_token_is_refused_without_leeway() -> None:
    issuer = TokenIssuer(SECRET, ttl_s=10)
    token, _ = issuer.issue("u1", "d1", now=time.time() - 11)
    with pytest.raises(TokenExpired):
        issuer.verify(token)


def test_wrong_secret_is_invalid() -> None:
    token, _ = TokenIssuer("x" * 32, 60).issue("u1", "d1")
    with pytest.raises(TokenInvalid):
        TokenIssuer(SECRET, 60).verify(token)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_tampered_payload_is_invalid() -> None:
    issuer = TokenIssuer(SECRET, 60)
    token, _ = issuer.issue("u1", "d1")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "admin"
    forged = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    with pytest.raises(TokenInvalid):
        issuer.verify(forged)


def test_tampered_signature_is_invalid() -> None:
    issuer = TokenIssuer(SECRET, 60)
    token, _ = issuer.issue("u1", "d1")
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(TokenInvalid):
        issuer.verify(flipped)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "..."])
def test_garbage_is_invalid(garbage: str) -> None:
    with pytest.raises(TokenInvalid):
        TokenIssuer(SECRET, 60).verify(garbage)


def test_unsigned_token_is_invalid() -> None:
    claims = {"typ": "conn", "sub": "u1", "dev": "d1", "exp": int(time.time()) + 60}
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    token = f"{header}.{_b64(json.dumps(claims).encode())}."
    with pytest.raises(TokenInvalid):
        TokenIssuer(SECRET, 60).verify(token)


def test_business_ticket_is_not_a_connection_token() -> None:
    # Same secret on purpose: only the typ claim keeps a ticket out.
    ticket = jwt.encode(
        {"sub": "u1", "dev": "d1", "device": "d1", "exp": int(time.time()) + 60},
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(TokenInvalid, match="not a connection token"):
        TokenIssuer(SECRET, 60).verify(ticket)


@pytest.mark.parametrize("missing", ["sub", "dev", "exp", "typ"])
def test_missing_claim_is_invalid(missing: str) -> None:
    claims = {"typ": "conn", "sub": "u1", "dev": "d1", "exp": int(time.time()) + 60}
    del claims[missing]
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(TokenInvalid):
        TokenIssuer(SECRET, 60).verify(token)


def test_issued_slightly_in_the_future_is_accepted() -> None:
    # Another process's clock may run ahead a little: iat is informational.
    issuer = TokenIssuer(SECRET, 60)
    token, _ = issuer.issue("u1", "d1", now=time.time() + 5)
    assert issuer.verify(token).device == "d1"


def test_short_secret_works_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="longlink.control.tokens"):
        issuer = TokenIssuer("short", 60)
    assert "token secret is 5 bytes" in caplog.text
    token, _ = issuer.issue("u1", "d1")  # no InsecureKeyLengthWarning (warnings are errors)
    assert issuer.verify(token).user == "u1"


def test_bad_construction() -> None:
    with pytest.raises(ValueError):
        TokenIssuer("", 60)
    with pytest.raises(ValueError):
        TokenIssuer(SECRET, 0)


# ---------------------------------------------------------------- rotation by kid


def test_tokens_rotate_by_kid_without_dropping_holders() -> None:
    old, new = "old-" + "o" * 32, "new-" + "n" * 32
    before = TokenIssuer(SECRET, 60, secrets=f"k1:{old}")
    held, _ = before.issue("u1", "d1")
    assert jwt.get_unverified_header(held)["kid"] == "k1"
    rotated = TokenIssuer(SECRET, 60, secrets=f"k2:{new},k1:{old}")
    assert rotated.verify(held).user == "u1"  # the old secret still verifies
    fresh, _ = rotated.issue("u2", "d2")
    assert jwt.get_unverified_header(fresh)["kid"] == "k2"  # the first one signs
    with pytest.raises(TokenInvalid):
        TokenIssuer(SECRET, 60, secrets=f"k1:{old}").verify(fresh)
    rotated.reload(SECRET, f"k2:{new}")  # k1 dropped: its tokens are refused
    with pytest.raises(TokenInvalid):
        rotated.verify(held)
    with pytest.raises(ValueError):
        rotated.reload(SECRET, "k2")  # malformed: refused, nothing changed
    assert rotated.verify(fresh).user == "u2"


# ---------------------------------------------------------------- HmacJwt.decode_compact
# The AUTH path verifies without PyJWT (8x cheaper); it must refuse whatever PyJWT refuses.


def _sign(header: dict[str, object], claims: dict[str, object], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=header)


def _claims(**extra: object) -> dict[str, object]:
    return {"typ": "conn", "sub": "u1", "dev": "d1", "exp": int(time.time()) + 60, **extra}


def test_every_single_character_change_is_refused() -> None:
    issuer = TokenIssuer(SECRET, 60)
    token, _ = issuer.issue("u1", "d1")
    for i, char in enumerate(token):
        for other in {"A", "B", "a", "-", "_", "0", ".", "=", " ", "é"} - {char}:
            forged = token[:i] + other + token[i + 1 :]
            with pytest.raises((TokenInvalid, TokenExpired)):
                issuer.verify(forged)


@pytest.mark.parametrize(
    ("header", "extra"),
    [
        ({"alg": "HS384"}, {}),  # another algorithm
        ({"crit": ["x"], "x": 1}, {}),  # a critical extension
        ({"b64": False}, {}),  # detached payload
        ({}, {"exp": "soon"}),  # exp not a number
        ({}, {"exp": True}),
        ({}, {"nbf": 600}),  # not yet valid (seconds from now)
        ({}, {"sub": 5}),  # sub not a string
        ({}, {"jti": 5}),
    ],
)
def test_what_pyjwt_refuses_is_refused(header: dict[str, object], extra: dict[str, object]) -> None:
    # Claims made now, not when the module was collected (exp is a minute ahead).
    if "nbf" in extra:
        extra = {"nbf": int(time.time()) + 600}
    claims = _claims(**extra)
    if header.get("alg") == "HS384":
        with warnings.catch_warnings():  # the secret is short for HS384: beside the point
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            token = jwt.encode(claims, SECRET, algorithm="HS384")
    else:
        token = _sign(header, claims)
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(token, SECRET, algorithms=["HS256"])
    with pytest.raises(TokenInvalid):
        TokenIssuer(SECRET, 60).verify(token)


def test_a_key_id_nobody_has_is_refused() -> None:
    with pytest.raises(TokenInvalid):
        TokenIssuer(SECRET, 60).verify(_sign({"kid": "nope"}, _claims()))


def test_malformed_segments_are_refused() -> None:
    good, _ = TokenIssuer(SECRET, 60).issue("u1", "d1")
    head, payload, sig = good.split(".")
    array = base64.urlsafe_b64encode(b"[1]").rstrip(b"=").decode()
    for token in [
        f"{head}.{payload}.{sig}.x",  # four segments
        f"{head}.{payload}",  # two
        f"{head}.{payload}.{sig}==",  # padding
        f"{head}.{payload}.{sig}A",  # a length base64 has not
        f"{array}.{payload}.{sig}",  # header not an object
        f"{head}.{array}.{sig}",  # payload not an object
        f"..{sig}",
    ]:
        with pytest.raises(TokenInvalid):
            TokenIssuer(SECRET, 60).verify(token)


def test_a_token_signed_elsewhere_with_the_secret_verifies() -> None:
    exp = int(time.time()) + 60
    token = _sign({}, _claims(iat_ms=123, nbf=int(time.time()) - 1, exp=exp))
    assert TokenIssuer(SECRET, 60).verify(token) == TokenClaims("u1", "d1", exp, 123)
