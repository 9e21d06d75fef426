"""The signature of webhook requests (PROTOCOL.md §2.3).

``X-Longlink-Signature: t=<unix seconds>,v1=<hex>`` where the hex is
HMAC-SHA256 with the webhook secret over ``f"{t}.".encode() + body``.
:func:`sign` makes it (the sender); :func:`verify_signature` checks it (a
receiver written in Python, and the tests).
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["SIGNATURE_HEADER", "SIGNATURE_TOLERANCE_S", "sign", "verify_signature"]

SIGNATURE_HEADER = "X-Longlink-Signature"
#: How old a signature's ``t`` may be before :func:`verify_signature` refuses it.
SIGNATURE_TOLERANCE_S = 300


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
