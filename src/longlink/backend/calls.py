"""The backend client's calls as values, without I/O (PROTOCOL.md §2.2).

Each API call is a :class:`Call`: method, path, JSON body, whether it is safe
to repeat, and how to read its answer. :class:`Attempts` decides, from a
:class:`RetryPolicy`, whether and when a failed call is tried again, and an
:class:`Exchange` turns each try's outcome into the next step: :class:`Return`,
:class:`Raise` or :class:`Wait`. The async and the sync clients
(:mod:`longlink.backend.client`) only move these values over httpx and sleep;
everything else lives here, once.

Retries:

* 429 ``rate_limited`` and 503 ``overloaded`` are retried after their
  ``Retry-After`` (nothing was queued, so repeating cannot duplicate). A
  batch that got 503 part-way is retried with the messages not yet queued
  only, and the ids are put together in order.
* A connection that could not be opened is retried for every call (the
  request never left).
* A connection that broke after the request was sent, or a timeout, is
  retried for idempotent calls only (the GETs, ``PUT /v1/rooms``, kick).
  A push is not: the server may have queued it, and a repeat would deliver
  it twice. Such a push raises :class:`~longlink.backend.errors.ConnectionFailed`
  with ``sent=True``; push it again if a rare duplicate is better than a
  loss for that message (a repeat gets a new ``msg_id``, so clients cannot
  drop it as a duplicate).
* Attempts and the total time spent waiting are bounded by :class:`RetryPolicy`.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NoReturn, TypeAlias, TypeVar
from urllib.parse import quote

import jwt

from longlink.backend.errors import ApiCallError, BackendError, ConnectionFailed, Overloaded

__all__ = [
    "NO_DATA",
    "NO_RETRY",
    "Attempts",
    "Call",
    "Exchange",
    "Push",
    "Raise",
    "RetryPolicy",
    "Return",
    "Step",
    "Wait",
    "sign_ticket",
]

T = TypeVar("T")

#: ``data`` not given (None is a JSON value: ``null``).
NO_DATA: Any = object()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard the client tries before raising.

    ``attempts`` counts every try, the first included (1: never retry).
    ``max_wait_s`` bounds the seconds spent waiting between tries over one
    call; a ``Retry-After`` that would exceed it is not waited for (the
    error is raised at once). Connection retries wait ``backoff_s``, doubling
    up to ``max_backoff_s``, with jitter.
    """

    attempts: int = 4
    max_wait_s: float = 30.0
    backoff_s: float = 0.2
    max_backoff_s: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")


#: No retries at all.
NO_RETRY = RetryPolicy(attempts=1)


@dataclass(frozen=True, slots=True)
class Push:
    """One push (PROTOCOL.md §2.2): ``to`` and exactly one of ``data``, ``data_b64``, ``raw``.

    ``to`` is ``{"users": [...]}``, ``{"devices": [...]}``, ``{"rooms": [...]}``,
    ``{"areas": [...]}`` or ``{"all": True}``. ``data`` is any JSON value
    (the client receives it JSON-encoded); ``raw`` is bytes the client
    receives as they are (sent as ``data_b64``); ``data_b64`` is the same
    already base64-encoded. ``ttl_s`` None leaves the server's default.
    """

    to: Mapping[str, Any]
    data: Any = NO_DATA
    data_b64: str | None = None
    raw: bytes | None = None
    priority: str = "low"
    guaranteed: bool = False
    ttl_s: int | None = None

    def __post_init__(self) -> None:
        given = (self.data is not NO_DATA) + (self.data_b64 is not None) + (self.raw is not None)
        if given != 1:
            raise ValueError("give exactly one of data, data_b64, raw")
        if self.priority not in ("low", "high"):
            raise ValueError("priority must be 'low' or 'high'")

    def body(self) -> dict[str, Any]:
        """The JSON object the API takes."""
        body: dict[str, Any] = {"to": dict(self.to)}
        if self.raw is not None:
            body["data_b64"] = base64.b64encode(self.raw).decode()
        elif self.data_b64 is not None:
            body["data_b64"] = self.data_b64
        else:
            body["data"] = self.data
        if self.priority != "low":
            body["priority"] = self.priority
        if self.guaranteed:
            body["guaranteed"] = True
        if self.ttl_s is not None:
            body["ttl_s"] = self.ttl_s
        return body


@dataclass(slots=True)
class Call(Generic[T]):
    """One API call: what to send and how to read a 2xx answer's JSON."""

    method: str
    path: str
    read: Callable[[Any], T]
    body: Any = None
    idempotent: bool = False

    def retry_after_refusal(self, error: ApiCallError) -> Call[T]:
        """The call to make next after ``error`` (the same one, unless a batch got partway)."""
        return self

    def result(self, status: int, content: bytes, headers: Mapping[str, str]) -> T:
        """The call's value from an answer; raises :class:`ApiCallError` for an error status."""
        if not 200 <= status < 300:
            raise ApiCallError.from_response(status, content, headers)
        return self.read(json.loads(content) if content else None)


@dataclass(slots=True)
class _BatchCall(Call[list[int]]):
    """``POST /v1/push/batch`` that remembers the ids of messages queued before a 503."""

    done: list[int] = field(default_factory=list)

    def retry_after_refusal(self, error: ApiCallError) -> Call[list[int]]:
        if not (isinstance(error, Overloaded) and error.msg_ids):
            return self
        messages = self.body["messages"][len(error.msg_ids) :]
        return _BatchCall(
            self.method,
            self.path,
            self.read,
            {"messages": messages},
            self.idempotent,
            done=self.done + error.msg_ids,
        )

    def result(self, status: int, content: bytes, headers: Mapping[str, str]) -> list[int]:
        return self.done + Call.result(self, status, content, headers)


def _seg(value: str) -> str:
    """A path segment: every reserved character escaped (ids may hold "/")."""
    return quote(value, safe="")


def _ids(answer: Any) -> list[int]:
    return [int(i) for i in answer["msg_ids"]]


def push_call(push: Push) -> Call[int]:
    """``POST /v1/push``: the message id."""
    return Call("POST", "/v1/push", lambda answer: int(answer["msg_id"]), push.body())


def push_batch_call(messages: Iterable[Push | Mapping[str, Any]]) -> Call[list[int]]:
    """``POST /v1/push/batch``: the message ids in order."""
    bodies = [m.body() if isinstance(m, Push) else dict(m) for m in messages]
    if not bodies:
        raise ValueError("a batch needs at least one message")
    return _BatchCall("POST", "/v1/push/batch", _ids, {"messages": bodies})


def _json_object(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise BackendError(f"expected a JSON object, got {type(answer).__name__}")
    return answer


def online_call() -> Call[dict[str, Any]]:
    """``GET /v1/online``: ``{"total", "rooms", "areas"}``."""
    return Call("GET", "/v1/online", _json_object, idempotent=True)


def room_call(room: str) -> Call[dict[str, Any]]:
    """``GET /v1/rooms/{room}``: ``{"room", "area", "online"}``."""
    return Call("GET", f"/v1/rooms/{_seg(room)}", _json_object, idempotent=True)


def set_room_area_call(room: str, area: str | None) -> Call[dict[str, Any]]:
    """``PUT /v1/rooms/{room}``: puts the room in ``area`` (None: in none)."""
    return Call("PUT", f"/v1/rooms/{_seg(room)}", _json_object, {"area": area}, idempotent=True)


def user_call(user: str) -> Call[dict[str, Any]]:
    """``GET /v1/users/{user}``: ``{"user", "connections": [...]}``."""
    return Call("GET", f"/v1/users/{_seg(user)}", _json_object, idempotent=True)


def kick_call(user: str, reason: str) -> Call[int]:
    """``POST /v1/users/{user}/kick``: how many connections were closed (safe to repeat)."""
    path = f"/v1/users/{_seg(user)}/kick"
    return Call("POST", path, _kicked, {"reason": reason}, idempotent=True)


def _kicked(answer: Any) -> int:
    return int(answer["kicked"])


def message_trace_call(msg_id: int) -> Call[dict[str, Any]]:
    """``GET /v1/messages/{msg_id}``: ``{"msg_id", "events": [{"at_ms", "event", ...}]}``."""
    return Call("GET", f"/v1/messages/{int(msg_id)}", _json_object, idempotent=True)


def nodes_call() -> Call[list[dict[str, Any]]]:
    """``GET /v1/nodes``: every reporting gateway node."""
    return Call("GET", "/v1/nodes", lambda answer: list(answer["nodes"]), idempotent=True)


def drain_call(node: str, draining: bool = True) -> Call[dict[str, Any]]:
    """``POST /v1/nodes/{node}/drain``: ``{"node", "draining"}`` (False undoes it; repeatable)."""
    path = f"/v1/nodes/{_seg(node)}/drain"
    return Call("POST", path, _json_object, {"draining": draining}, idempotent=True)


class Attempts:
    """The retry state of one call under a :class:`RetryPolicy` (no I/O, no clock).

    After each failure ask :meth:`delay` how long to wait before the next
    try; None means raise the error.
    """

    __slots__ = ("_policy", "_random", "tries", "waited")

    def __init__(self, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> None:
        self._policy = policy
        self._random = rand
        self.tries = 0
        self.waited = 0.0

    def delay(self, call: Call[Any], error: BackendError) -> float | None:
        """Seconds to wait before trying ``call`` again after ``error``, or None."""
        policy = self._policy
        self.tries += 1
        if self.tries >= policy.attempts:
            return None
        if isinstance(error, ApiCallError) and error.status in (429, 503):
            wait = error.retry_after if error.retry_after is not None else self._backoff()
        elif isinstance(error, ConnectionFailed) and (call.idempotent or not error.sent):
            wait = self._backoff()
        else:
            return None
        if self.waited + wait > policy.max_wait_s:
            return None
        self.waited += wait
        return wait

    def _backoff(self) -> float:
        policy = self._policy
        base = min(policy.max_backoff_s, policy.backoff_s * 2.0 ** (self.tries - 1))
        return base * (0.5 + self._random() / 2)  # jitter: 50..100% of the step


@dataclass(frozen=True, slots=True)
class Return(Generic[T]):
    """The call succeeded: return ``value``."""

    value: T

    def outcome(self) -> T:
        """``value``."""
        return self.value


@dataclass(frozen=True, slots=True)
class Raise:
    """The call failed for good: raise ``error``."""

    error: BackendError

    def outcome(self) -> NoReturn:
        """Raises ``error``."""
        raise self.error


@dataclass(frozen=True, slots=True)
class Wait:
    """Sleep ``seconds``, then send :attr:`Exchange.call` again."""

    seconds: float


#: What an :class:`Exchange` says to do after one try.
Step: TypeAlias = Return[T] | Raise | Wait


class Exchange(Generic[T]):
    """One call over all its tries, without I/O: what to send and what to do next.

    A client loop sends :attr:`call`, reports what came back, an answer to
    :meth:`answered` or a failed connection to :meth:`failed`, and follows the
    step it gets: :class:`Return` (or :class:`Raise`) ends the call, its
    :meth:`~Return.outcome` gives the value (or raises); :class:`Wait` means
    sleep, then send :attr:`call` again, which may have changed (a batch that
    got partway sends only the messages not yet queued).
    """

    __slots__ = ("_attempts", "call")

    def __init__(
        self, call: Call[T], policy: RetryPolicy, rand: Callable[[], float] = random.random
    ) -> None:
        self.call = call
        self._attempts = Attempts(policy, rand)

    def answered(self, status: int, content: bytes, headers: Mapping[str, str]) -> Step[T]:
        """The step after the server answered :attr:`call` with ``status``.

        A 2xx answer that cannot be read raises here: no retry would help.
        """
        try:
            return Return(self.call.result(status, content, headers))
        except ApiCallError as error:
            return self._after(error)

    def failed(self, error: ConnectionFailed) -> Step[T]:
        """The step after :attr:`call` got no answer (``error.sent``: may it have arrived?)."""
        return self._after(error)

    def _after(self, error: BackendError) -> Raise | Wait:
        delay = self._attempts.delay(self.call, error)
        if delay is None:
            return Raise(error)
        if isinstance(error, ApiCallError):
            self.call = self.call.retry_after_refusal(error)
        return Wait(delay)


def sign_ticket(
    secret: str,
    user: str,
    device: str | None = None,
    *,
    ttl_s: int = 300,
    now: float | None = None,
) -> str:
    """A business ticket for ``POST /v1/connect`` (PROTOCOL.md §2.1): HS256 JWT.

    Claims: ``sub`` (the user), ``device`` when given, ``iat`` and ``exp``
    (``ttl_s`` from now). ``secret`` is the server's ``ticket_secret``; hand
    the ticket to your end-user client, which trades it for a connection token.
    """
    if not secret:
        raise ValueError("the ticket secret must not be empty")
    if ttl_s < 1:
        raise ValueError("ttl_s must be at least 1")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": user, "iat": issued, "exp": issued + ttl_s}
    if device is not None:
        claims["device"] = device
    return jwt.encode(claims, secret, algorithm="HS256")
