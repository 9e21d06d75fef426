"""The webhook signature: HMAC-SHA256 over ``t.body`` (PROTOCOL.md §2.3)."""

from __future__ import annotations

import hashlib
import hmac

from longlink.logic.events import WebhookEvent, encode_event
from longlink.webhook.signature import sign, verify_signature

SECRET = "whsec-for-tests"


def event() -> WebhookEvent:
    return WebhookEvent(
        id="g1-abcd-1",
        type="enter",
        user="alice",
        device="d1",
        room="lobby",
        conn_id="g1-x-1",
        node="g1",
        at=1_790_000_000_123,
    )


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = encode_event(event())
    header = sign(SECRET, body, timestamp=1_790_000_000)
    expected = hmac.new(SECRET.encode(), b"1790000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1790000000,v1={expected}"
    assert verify_signature(SECRET, header, body, now=1_790_000_010)


def test_signature_refusals() -> None:
    body = encode_event(event())
    header = sign(SECRET, body, timestamp=1_790_000_000)
    assert not verify_signature("other", header, body, now=1_790_000_000)
    assert not verify_signature(SECRET, header, body + b" ", now=1_790_000_000)
    assert not verify_signature(SECRET, header, body, now=1_790_000_000 + 301)  # too old
    assert not verify_signature(SECRET, "v1=abc", body)
    assert not verify_signature(SECRET, "t=x,v1=abc", body)
    assert not verify_signature(SECRET, "", body)
