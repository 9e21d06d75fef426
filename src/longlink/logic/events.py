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

The webhook sender and the events' signature are in :mod:`longlink.webhook`.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

__all__ = [
    "ENTER",
    "EXIT",
    "UPSTREAM",
    "EventSink",
    "WebhookEvent",
    "decode_event",
    "encode_event",
]

ENTER = "enter"
EXIT = "exit"
UPSTREAM = "upstream"


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
    """Where the gateway hands events; :class:`~longlink.webhook.WebhookSender` is one.

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
