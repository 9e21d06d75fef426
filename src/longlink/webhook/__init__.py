"""Events to the business backend's webhook (PROTOCOL.md §2.3): the outbound HTTP of longlink.

* :mod:`longlink.webhook.sender`: :class:`WebhookSender`, the
  :class:`~longlink.logic.events.EventSink` that POSTs events (bounded, signed,
  retried, never blocking the gateway).
* :mod:`longlink.webhook.http1`: the small keep-alive HTTP/1.1 client it POSTs with.
* :mod:`longlink.webhook.signature`: ``X-Longlink-Signature``, made by the
  sender and checked by receivers (:func:`verify_signature`).

The events themselves (:class:`~longlink.logic.events.WebhookEvent`) are the
logic layer's: the gateway produces them and hands them to any ``EventSink``.
"""

from longlink.webhook.sender import WebhookSender
from longlink.webhook.signature import SIGNATURE_HEADER, sign, verify_signature

__all__ = ["SIGNATURE_HEADER", "WebhookSender", "sign", "verify_signature"]
