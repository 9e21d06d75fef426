"""Events for the business backend (PROTOCOL.md §2.3): enter, exit, upstream.

An event is a small JSON object POSTed to ``LONGLINK_WEBHOOK_URL``::

    {"id": "g1-5f0c2a9e-1b", "type": "enter", "user": "alice", "device": "d1",
     "room": "lobby", "conn_id": "g1-…-7", "node": "g1", "at": 1790000000123}

``id`` is unique per event and stays the same across retries: the receiver
deduplicates by it (the idempotency key). ``at`` is Unix time in
milliseconds. An ``exit`` carries ``reason``; an ``upstream`` carries
``data_b64`` (the client's bytes), ``room`` (the connection's first room, or
null) and ``rooms`` (all of them). docs/presence-and-events.md is the
business developer's page.

Signature: ``X-Longlink-Signature: t=<unix seconds>,v1=<hex>`` where the hex
is HMAC-SHA256 with the webhook secret over ``f"{t}.".encode() + body``.
:func:`sign` makes it, :func:`verify_signature` checks it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Protocol

import msgspec

__all__ = [
    "ENTER",
    "EXIT",
    "SIGNATURE_HEADER",
    "SIGNATURE_TOLERANCE_S",
    "UPSTREAM",
    "EventSink",
    "WebhookEvent",
    "decode_event",
    "encode_event",
    "sign",
    "verify_signature",
]

ENTER = "enter"
EXIT = "exit"
UPSTREAM = "upstream"

SIGNATURE_HEADER = "X-Longlink-Signature"
#: How old a signature's ``t`` may be before :func:`verify_signature` refuses it.
SIGNATURE_TOLERANCE_S = 300


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One event for the business backend (PROTOCOL.md §2.3, plus ``id``, ``node``, ``reason``).

    ``room`` is always present (null for an upstream from a connection in no
    room); ``reason`` only on exits; ``rooms`` and ``data_b64`` only on upstreams.
    """

    id: str
    type: str
    user: str
    device: str
    room: str | None
    conn_id: str
    node: str
    at: int
    reason: str | None = None
    rooms: list[str] | None = None
    data_b64: str | None = None


class EventSink(Protocol):
    """Where the gateway hands events; :class:`~longlink.logic.webhook.WebhookSender` is one.

    ``offer`` never blocks and never raises: True means the event is accepted
    for delivery (it will be tried until delivered or its attempts run out),
    False that it was dropped (the sink is full or closed; counted).
    """

    def offer(self, event: WebhookEvent) -> bool: ...


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(WebhookEvent)


def encode_event(event: WebhookEvent) -> bytes:
    """The JSON body of ``event``."""
    return _encoder.encode(event)


def decode_event(body: bytes) -> WebhookEvent:
    """An event from its JSON body (tests and receivers written in Python)."""
    return _decoder.decode(body)


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Longlink-Signature`` value for ``body``: ``t=<unix>,v1=<hex hmac-sha256>``."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_mac(secret, t, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: int = SIGNATURE_TOLERANCE_S,
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and is at most ``tolerance_s`` old.

    A header may carry several ``v1=`` values; one matching is enough.
    """
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            macs.append(value)
    if timestamp is None or not macs:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = _mac(secret, timestamp, body)
    return any(hmac.compare_digest(expected, mac) for mac in macs)
