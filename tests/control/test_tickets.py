"""Business tickets (PROTOCOL.md §2.1)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from longlink.control.tickets import TicketExpired, TicketInvalid, TicketVerifier
from longlink.control.tokens import TokenIssuer

SECRET = "ticket-" + "t" * 32


def ticket(secret: str = SECRET, **claims: Any) -> str:
    claims.setdefault("exp", int(time.time()) + 60)
    return jwt.encode(claims, secret, algorithm="HS256")


def test_user_and_device() -> None:
    assert TicketVerifier(SECRET).verify(ticket(sub="u1", device="d1")) == ("u1", "d1")


def test_device_is_optional() -> None:
    assert TicketVerifier(SECRET).verify(ticket(sub="u1")) == ("u1", None)


def test_expired() -> None:
    with pytest.raises(TicketExpired) as info:
        TicketVerifier(SECRET).verify(ticket(sub="u1", exp=int(time.time()) - 1))
    assert info.value.code == "ticket_expired"


def test_wrong_secret() -> None:
    with pytest.raises(TicketInvalid) as info:
        TicketVerifier(SECRET).verify(ticket("other-" + "x" * 32, sub="u1"))
    assert info.value.code == "bad_ticket"


@pytest.mark.parametrize(
    "claims",
    [
        {"device": "d1"},  # no sub
        {"sub": ""},
        {"sub": "u\x00"},
        {"sub": "u" * 129},
        {"sub": "u1", "device": 5},
        {"sub": "u1", "device": ""},
    ],
)
def test_bad_claims(claims: dict[str, Any]) -> None:
    with pytest.raises(TicketInvalid):
        TicketVerifier(SECRET).verify(ticket(**claims))


def test_exp_is_required() -> None:
    token = jwt.encode({"sub": "u1"}, SECRET, algorithm="HS256")
    with pytest.raises(TicketInvalid, match="exp"):
        TicketVerifier(SECRET).verify(token)


def test_connection_token_is_not_a_ticket() -> None:
    token, _ = TokenIssuer(SECRET, 60).issue("u1", "d1")
    with pytest.raises(TicketInvalid, match="connection token"):
        TicketVerifier(SECRET).verify(token)


def test_other_algorithms_are_refused() -> None:
    secret = "x" * 64
    token = jwt.encode({"sub": "u1", "exp": int(time.time()) + 60}, secret, algorithm="HS512")
    with pytest.raises(TicketInvalid):
        TicketVerifier(secret).verify(token)


# ---------------------------------------------------------------- issue 14, failure 7


def test_a_ticket_valid_ten_years_is_refused() -> None:
    ten_years = int(time.time()) + 10 * 365 * 86400
    with pytest.raises(TicketInvalid) as info:
        TicketVerifier(SECRET, max_ttl_s=86400).verify(ticket(sub="u1", exp=ten_years))
    assert "max_ticket_ttl_s" in str(info.value)
    day = int(time.time()) + 86000
    assert TicketVerifier(SECRET, max_ttl_s=86400).verify(ticket(sub="u1", exp=day))[0] == "u1"


def kid_ticket(kid: str, secret: str, **claims: Any) -> str:
    claims.setdefault("exp", int(time.time()) + 60)
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})


def test_several_ticket_secrets_by_kid() -> None:
    old, new = "old-" + "o" * 32, "new-" + "n" * 32
    verifier = TicketVerifier(None, secrets=f"k2:{new},k1:{old}")
    assert verifier.verify(kid_ticket("k1", old, sub="a"))[0] == "a"
    assert verifier.verify(kid_ticket("k2", new, sub="b"))[0] == "b"
    assert verifier.verify(ticket(old, sub="c"))[0] == "c"  # no kid: each secret is tried
    with pytest.raises(TicketInvalid):
        verifier.verify(kid_ticket("k1", new, sub="d"))  # the kid names the secret
    with pytest.raises(TicketInvalid):
        verifier.verify(kid_ticket("k3", new, sub="e"))


@pytest.mark.parametrize("listing", ["k1", "k1:", ":SECRET", "k1:SECRET,k1:SECRET"])
def test_malformed_secret_lists_are_refused_without_echoing_them(listing: str) -> None:
    with pytest.raises(ValueError) as info:
        TicketVerifier(None, secrets=listing)
    assert "ticket_secrets" in str(info.value) and "SECRET" not in str(info.value)
