"""Which browser origins may use the server (PROTOCOL.md §1.5), one policy for every listener.

``LONGLINK_ALLOWED_ORIGINS`` is a comma-separated list of origins
(``https://app.example.com``) or ``*``; by default ``*`` in demo mode and
none otherwise. The HTTP app answers CORS (preflight included) on
``/v1/connect`` with it, the gateway on ``/v1/stream*``, and a WebSocket
upgrade whose ``Origin`` header is present and not allowed is refused with
403. A request without an ``Origin`` header is not a browser's cross-site
request: it is not subject to the policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Origins"]


@dataclass(frozen=True, slots=True)
class Origins:
    """The allowed origins; ``any`` when ``*`` was given."""

    allowed: frozenset[str] = frozenset()
    any: bool = False

    @classmethod
    def parse(cls, text: str | Iterable[str] | None, *, demo: bool = False) -> Origins:
        """From the setting: a comma-separated string (or a list); None: the default."""
        if text is None:
            return cls(any=demo)
        items = text.split(",") if isinstance(text, str) else list(text)
        names = {item.strip().rstrip("/").lower() for item in items if item.strip()}
        return cls(frozenset(names - {"*"}), "*" in names)

    def allows(self, origin: str | None) -> bool:
        """Whether a request with this ``Origin`` header may proceed (None: no header)."""
        if origin is None:
            return True
        return self.any or origin.rstrip("/").lower() in self.allowed

    def cors_origin(self, origin: str | None) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for ``origin``, or None (no CORS)."""
        if origin is None or not (self.any or origin.rstrip("/").lower() in self.allowed):
            return None
        return "*" if self.any else origin
