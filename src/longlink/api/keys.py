"""API keys of the push API: who may call, what each key may push, how fast (PROTOCOL.md §2.2, §3).

Keys come from the settings: ``settings.api_key`` (every scope, no rate
limit) and the ``[[api_keys]]`` entries, each matched by its plain ``key``
or by the SHA-256 hex digest of the presented key (``key_sha256``), always
with constant-time comparison.

Refusals raise :class:`~longlink.api.errors.ApiError`: 401 ``unauthorized``
(with ``WWW-Authenticate: Bearer``), 403 ``forbidden`` naming the scope
(``targets``, ``room_prefixes``, ``high_priority``, ``guaranteed``,
``max_ttl_s``), 429 ``rate_limited`` with an integer ``Retry-After`` of at
least 1.

Rate limits are token buckets held in this process; a multi-process
deployment limits each process separately (a shared limiter can replace
:class:`TokenBucket` behind :meth:`ApiKeys.take`). A set of keys is never
changed in place: a reload builds a new :class:`ApiKeys` with ``previous=``
the old one, so a key that keeps its name and rate keeps its bucket.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from longlink.api.errors import FORBIDDEN, RATE_LIMITED, UNAUTHORIZED, ApiError
from longlink.api.schemas import PushRequest
from longlink.model import Priority
from longlink.settings import TARGET_KINDS, ApiKeyConfig, Settings

__all__ = ["ApiKey", "ApiKeys", "TokenBucket"]

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full.

    A request for more than ``burst`` tokens is granted when the bucket is
    full and leaves it in debt, so a batch larger than the burst still goes
    through and the long-run rate still holds.
    """

    rate: float
    burst: float
    tokens: float = field(init=False)
    updated: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError("rate must be positive")
        if self.burst <= 0:
            self.burst = max(self.rate, 1.0)
        self.tokens = self.burst

    def take(self, count: int, now: float) -> float:
        """Take ``count`` tokens and return 0, or take none and return seconds to wait."""
        if self.updated is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        need = min(float(count), self.burst)
        if self.tokens >= need:
            self.tokens -= count
            return 0.0
        return (need - self.tokens) / self.rate

    def give_back(self, count: int) -> None:
        """Return tokens taken for messages that were not queued after all."""
        self.tokens = min(self.burst, self.tokens + count)


@dataclass(slots=True)
class ApiKey:
    """One API key's scopes and rate limit (from :class:`~longlink.settings.ApiKeyConfig`)."""

    name: str
    targets: frozenset[str] = frozenset(TARGET_KINDS)
    room_prefixes: tuple[str, ...] = ()
    high_priority: bool = True
    guaranteed: bool = True
    max_ttl_s: int = 0  # 0: no cap of the key's own
    bucket: TokenBucket | None = None

    @classmethod
    def from_config(cls, config: ApiKeyConfig) -> ApiKey:
        """The key described by one ``[[api_keys]]`` entry."""
        bucket = TokenBucket(config.rate, config.burst) if config.rate > 0 else None
        return cls(
            name=config.name,
            targets=frozenset(config.targets),
            room_prefixes=tuple(config.room_prefixes),
            high_priority=config.high_priority,
            guaranteed=config.guaranteed,
            max_ttl_s=config.max_ttl_s,
            bucket=bucket,
        )

    def check_room(self, room: str) -> None:
        """403 ``forbidden`` unless this key may push to ``room`` (what reading its history
        takes: scope ``targets`` with ``rooms``, and ``room_prefixes``)."""
        if "rooms" not in self.targets:
            raise ApiError(
                403,
                FORBIDDEN,
                f"room {room!r}: key {self.name!r} may not push to rooms (scope targets)",
            )
        if self.room_prefixes and not room.startswith(self.room_prefixes):
            raise ApiError(
                403,
                FORBIDDEN,
                f"room {room!r} is outside key {self.name!r}'s scope room_prefixes"
                f" ({', '.join(self.room_prefixes)})",
            )

    def check_scope(self, push: PushRequest, where: str = "") -> PushRequest:
        """``push`` as this key may send it; 403 ``forbidden`` naming the scope it breaks.

        A push that left ``ttl_s`` to the default gets the default capped at
        the key's ``max_ttl_s``; one that asked for more is refused. ``where``
        prefixes the field in the message (``messages[3].``).
        """
        kind = push.target.kind
        if kind not in self.targets:
            allowed = ", ".join(k for k in TARGET_KINDS if k in self.targets) or "none"
            raise ApiError(
                403,
                FORBIDDEN,
                f"{where}to.{kind}: key {self.name!r} may not push to {kind}"
                f" (scope targets: {allowed})",
            )
        if self.room_prefixes and kind in ("rooms", "areas"):
            ids = push.target.rooms if kind == "rooms" else push.target.areas
            for index, name in enumerate(ids):
                if not name.startswith(self.room_prefixes):
                    raise ApiError(
                        403,
                        FORBIDDEN,
                        f"{where}to.{kind}[{index}]: {name!r} is outside key {self.name!r}'s"
                        f" scope room_prefixes ({', '.join(self.room_prefixes)})",
                    )
        if push.priority is Priority.HIGH and not self.high_priority:
            raise ApiError(
                403,
                FORBIDDEN,
                f"{where}priority: key {self.name!r} may not push with priority high"
                " (scope high_priority)",
            )
        if push.guaranteed and not self.guaranteed:
            raise ApiError(
                403,
                FORBIDDEN,
                f"{where}guaranteed: key {self.name!r} may not push guaranteed messages"
                " (scope guaranteed)",
            )
        if self.max_ttl_s and push.ttl_s > self.max_ttl_s:
            if push.ttl_default:
                return dataclasses.replace(push, ttl_s=self.max_ttl_s)
            raise ApiError(
                403,
                FORBIDDEN,
                f"{where}ttl_s: key {self.name!r} may keep messages at most"
                f" {self.max_ttl_s} s (scope max_ttl_s)",
            )
        return push


@dataclass(slots=True)
class _Entry:
    key: ApiKey
    plain: bytes | None
    sha256: bytes | None


class ApiKeys:
    """The keys this process accepts, with their buckets; never changed once built.

    ``settings.api_key`` is the key named ``default``. ``clock`` (monotonic
    seconds) is injectable for tests. With ``previous`` (the set this one
    replaces on a reload), a key of the same name and the same ``rate`` and
    ``burst`` keeps its bucket, so a reload neither refills nor empties it.
    """

    __slots__ = ("_clock", "_entries")

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        previous: ApiKeys | None = None,
    ) -> None:
        self._clock = clock
        self._entries: list[_Entry] = []
        if settings.api_key:
            self._entries.append(_Entry(ApiKey("default"), settings.api_key.encode(), None))
        for config in settings.api_keys:
            self._entries.append(
                _Entry(
                    ApiKey.from_config(config),
                    config.key.encode() if config.key else None,
                    config.key_sha256.strip().lower().encode() if config.key_sha256 else None,
                )
            )
        if previous is not None:
            old = {entry.key.name: entry.key.bucket for entry in previous._entries}
            for entry in self._entries:
                bucket, kept = entry.key.bucket, old.get(entry.key.name)
                if bucket and kept and (kept.rate, kept.burst) == (bucket.rate, bucket.burst):
                    entry.key.bucket = kept

    @property
    def names(self) -> list[str]:
        """The names of the keys, in configuration order (``default`` first)."""
        return [entry.key.name for entry in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, authorization: str | None) -> ApiKey:
        """The key named by an ``Authorization: Bearer <key>`` header; 401 otherwise."""
        if not authorization:
            raise ApiError(
                401, UNAUTHORIZED, "missing Authorization: Bearer <api key>", headers=_CHALLENGE
            )
        scheme, _, presented = authorization.strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            raise ApiError(
                401, UNAUTHORIZED, "Authorization must be 'Bearer <api key>'", headers=_CHALLENGE
            )
        if not self._entries:
            raise ApiError(
                401, UNAUTHORIZED, "this server has no API key configured", headers=_CHALLENGE
            )
        raw = presented.encode()
        digest = hashlib.sha256(raw).hexdigest().encode()
        found: ApiKey | None = None
        for entry in self._entries:  # no early exit: the time does not tell which key matched
            if entry.plain is not None and hmac.compare_digest(raw, entry.plain):
                found = found or entry.key
            if entry.sha256 is not None and hmac.compare_digest(digest, entry.sha256):
                found = found or entry.key
        if found is None:
            raise ApiError(401, UNAUTHORIZED, "unknown API key", headers=_CHALLENGE)
        return found

    def take(self, key: ApiKey, count: int) -> None:
        """Charge ``count`` messages to ``key``'s rate limit; 429 with Retry-After when over."""
        if key.bucket is None:
            return
        wait = key.bucket.take(count, self._clock())
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise ApiError(
                429,
                RATE_LIMITED,
                f"key {key.name!r} is over its rate limit of {key.bucket.rate:g} messages/s;"
                f" retry in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )

    def give_back(self, key: ApiKey, count: int) -> None:
        """Undo part of :meth:`take` for messages that were not queued."""
        if key.bucket is not None and count > 0:
            key.bucket.give_back(count)
