"""Request bodies of the HTTP API and their validation, free of any HTTP framework.

Push bodies (PROTOCOL.md §2.2) are decoded with msgspec into structs, then
checked against the rules a struct cannot state (exactly one target kind,
exactly one of ``data``/``data_b64``, size and TTL limits from the settings)
and turned into :class:`PushRequest` values the app can queue. The limits
come from the settings as one :class:`Limits` value (docs/api-keys.md has the
table with their defaults).

Every refusal raises :class:`~longlink.api.errors.ApiError`: 400
``bad_request`` naming the field and, where a limit was broken, the setting
(``messages[3].to.users[0]: must be at most 64 characters (max_id_length)``),
or 413 ``too_large`` for a payload over ``max_payload``.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from longlink.api.errors import BAD_REQUEST, TOO_LARGE, ApiError
from longlink.model import Priority, Target
from longlink.protocol.ids import ID_PATTERN, MAX_ID_LENGTH, IdRule
from longlink.settings import ConfigError, Settings

__all__ = [
    "LIMIT_SETTINGS",
    "MAX_BATCH",
    "ConnectBody",
    "DrainBody",
    "KickBody",
    "Limits",
    "PushBatchBody",
    "PushBody",
    "PushRequest",
    "PushTarget",
    "RoomAreaBody",
    "decode_body",
    "parse_push",
    "parse_push_batch",
]

#: Most messages one ``POST /v1/push/batch`` may carry by default (``max_batch``).
MAX_BATCH = 1000

#: A user, device, room or area id: 1..128 characters, no control characters.
Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
#: Push target ids are checked against :class:`Limits` after decoding.
IdList = Annotated[list[str], Meta(min_length=1)]


class PushTarget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``to``: exactly one of the fields is given (checked after decoding)."""

    users: IdList | None = None
    devices: IdList | None = None
    rooms: IdList | None = None
    areas: IdList | None = None
    all: bool | None = None


class PushBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One push as a business backend sends it (PROTOCOL.md §2.2)."""

    to: PushTarget
    data: Any | UnsetType = UNSET
    data_b64: str | UnsetType = UNSET
    priority: Priority = Priority.LOW
    guaranteed: bool = False
    ttl_s: Annotated[int, Meta(ge=1)] | UnsetType = UNSET


class PushBatchBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/push/batch``: 1..``max_batch`` pushes (checked after decoding)."""

    messages: Annotated[list[PushBody], Meta(min_length=1)]


class ConnectBody(msgspec.Struct, frozen=True):
    """``POST /v1/connect`` (PROTOCOL.md §2.1).

    Unknown fields are ignored: clients may be newer than the server.
    """

    ticket: Annotated[str, Meta(min_length=1)] | None = None
    user: Id | None = None
    device: Id | None = None
    region: Id | None = None
    transports: Annotated[list[Literal["ws", "tcp"]], Meta(min_length=1)] | None = None


class RoomAreaBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PUT /v1/rooms/{room}``: ``{"area": str | null, "announce": bool}``, at least one.

    ``area`` null takes the room out of its area; ``announce`` true makes the
    gateways send EVENT enter/exit frames to the room (docs/presence-and-events.md).
    A field left out is not changed.
    """

    area: Id | UnsetType | None = UNSET
    announce: bool | UnsetType = UNSET


class KickBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/users/{user}/kick``: an optional reason sent in the KICK frame."""

    reason: Annotated[str, Meta(max_length=256)] = "kicked"


class DrainBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/nodes/{node}/drain``: ``{"draining": false}`` undoes a drain."""

    draining: bool = True


@dataclass(frozen=True, slots=True)
class PushRequest:
    """A validated push, ready to become a :class:`~longlink.model.Message`.

    ``ttl_default`` tells that the body gave no ``ttl_s`` (so a key's
    ``max_ttl_s`` caps the default instead of refusing it).
    """

    target: Target
    payload: bytes
    priority: Priority
    guaranteed: bool
    ttl_s: int
    ttl_default: bool = False


#: The settings :class:`Limits` is made of (same names as its fields).
LIMIT_SETTINGS = (
    "max_payload",
    "max_targets",
    "max_batch",
    "min_ttl_s",
    "default_ttl_s",
    "max_ttl_s",
    "max_id_length",
    "id_pattern",
    "max_push_body",
    "max_batch_body",
)


@dataclass(frozen=True, slots=True)
class Limits:
    """The validation limits of the push API, each named after its setting.

    Build it with :meth:`from_settings`; an impossible combination raises
    :class:`~longlink.settings.ConfigError` naming the setting. Ids (users,
    devices, rooms, areas) are 1..``max_id_length`` characters without control
    characters and, when ``id_pattern`` is set, match it in full.
    """

    max_payload: int = 32 * 1024
    max_targets: int = 1000
    max_batch: int = MAX_BATCH
    min_ttl_s: int = 1
    default_ttl_s: int = 60
    max_ttl_s: int = 7 * 24 * 3600
    max_id_length: int = MAX_ID_LENGTH
    id_pattern: str = ""
    max_push_body: int = 1 << 20
    max_batch_body: int = 16 << 20
    #: The one id rule (:mod:`longlink.protocol.ids`) as these limits narrow it.
    id_rule: IdRule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in (
            "max_payload",
            "max_targets",
            "max_batch",
            "min_ttl_s",
            "max_id_length",
            "max_push_body",
            "max_batch_body",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1")
        if not self.min_ttl_s <= self.default_ttl_s <= self.max_ttl_s:
            raise ConfigError(
                f"default_ttl_s: must lie between min_ttl_s ({self.min_ttl_s})"
                f" and max_ttl_s ({self.max_ttl_s})"
            )
        try:
            rule = IdRule(self.max_id_length, self.id_pattern)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        object.__setattr__(self, "id_rule", rule)

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits ``settings`` configure."""
        return cls(**{name: getattr(settings, name) for name in LIMIT_SETTINGS})

    @property
    def push_body(self) -> int:
        """Largest ``POST /v1/push`` body: room for a full payload JSON-escaped."""
        return max(self.max_push_body, 8 * self.max_payload)

    @property
    def batch_body(self) -> int:
        """Largest ``POST /v1/push/batch`` body."""
        return max(self.max_batch_body, 2 * self.push_body)

    def id_problem(self, value: str) -> str | None:
        """Why ``value`` is not a valid id here, or None when it is."""
        return self.id_rule.problem(value)


# ------------------------------------------------------------------ decoding

T = TypeVar("T")

_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_payload_encoder = msgspec.json.Encoder()
_AT = re.compile(r"^(?P<detail>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_REGEX = re.compile(r"matching regex '.*'")


def _field_message(error: msgspec.ValidationError, prefix: str = "") -> str:
    """``"to.users[0]: Expected `str` ..."`` from msgspec's ``"... - at `$.to.users[0]`"``."""
    text = str(error)
    match = _AT.match(text)
    if match is None:
        detail, path = text, ""
    else:
        detail, path = match["detail"], match["path"].removeprefix(".")
    detail = _REGEX.sub("without control characters", detail)
    where = f"{prefix}{path}" if path else (prefix.removesuffix(".") or "body")
    return f"{where}: {detail}"


def decode_body(body: bytes, kind: type[T], *, empty_ok: bool = False) -> T:
    """Decode a JSON request body as ``kind``; 400 ``bad_request`` when it does not fit.

    With ``empty_ok`` an empty body decodes as ``{}`` (all defaults).
    """
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    if empty_ok and not body.strip():
        body = b"{}"
    try:
        result: T = decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise ApiError(400, BAD_REQUEST, _field_message(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, BAD_REQUEST, f"body is not valid JSON: {exc}") from exc
    return result


# ------------------------------------------------------------------ push rules

_KINDS = ("users", "devices", "rooms", "areas")


def _target(to: PushTarget, where: str, limits: Limits) -> Target:
    given = [kind for kind in _KINDS if getattr(to, kind) is not None]
    if to.all is not None:
        if not to.all:
            raise ApiError(400, BAD_REQUEST, f"{where}to.all: must be true when given")
        given.append("all")
    if len(given) != 1:
        raise ApiError(
            400,
            BAD_REQUEST,
            f"{where}to: give exactly one of users, devices, rooms, areas, all"
            + (f" (got {', '.join(given)})" if given else ""),
        )
    if given[0] != "all":
        kind = given[0]
        ids: list[str] = getattr(to, kind)
        if len(ids) > limits.max_targets:
            raise ApiError(
                400,
                BAD_REQUEST,
                f"{where}to.{kind}: at most {limits.max_targets} ids per push (max_targets);"
                f" got {len(ids)}",
            )
        for index, value in enumerate(ids):
            problem = limits.id_problem(value)
            if problem:
                raise ApiError(400, BAD_REQUEST, f"{where}to.{kind}[{index}]: {problem}")
    if to.users is not None:
        return Target(users=to.users)
    if to.devices is not None:
        return Target(devices=to.devices)
    if to.rooms is not None:
        return Target(rooms=to.rooms)
    if to.areas is not None:
        return Target(areas=to.areas)
    return Target(all=True)


def _payload(push: PushBody, where: str, max_payload: int) -> bytes:
    has_data = push.data is not UNSET
    has_b64 = push.data_b64 is not UNSET
    if has_data == has_b64:
        at = where.removesuffix(".") or "body"
        raise ApiError(400, BAD_REQUEST, f"{at}: give exactly one of data, data_b64")
    if isinstance(push.data_b64, str):
        # A base64 text decodes to 3/4 of its length: refuse the hopeless before decoding.
        if len(push.data_b64) // 4 * 3 - 2 > max_payload:
            _too_large(where + "data_b64", len(push.data_b64) // 4 * 3, max_payload)
        try:
            payload = base64.b64decode(push.data_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApiError(
                400, BAD_REQUEST, f"{where}data_b64: not valid standard base64 ({exc})"
            ) from exc
        field = "data_b64"
    else:
        # PROTOCOL §2.2: the client receives data as compact JSON-encoded UTF-8 bytes.
        payload = _payload_encoder.encode(push.data)
        field = "data"
    if len(payload) > max_payload:
        _too_large(where + field, len(payload), max_payload)
    return payload


def _too_large(field: str, size: int, limit: int) -> None:
    raise ApiError(
        413, TOO_LARGE, f"{field}: payload is {size} bytes; the limit is {limit} (max_payload)"
    )


def _request(push: PushBody, limits: Limits, where: str = "") -> PushRequest:
    target = _target(push.to, where, limits)
    if push.guaranteed and target.kind not in ("users", "devices"):
        # Acks, retries and the offline store are per recipient (docs/guaranteed-delivery.md).
        raise ApiError(
            400,
            BAD_REQUEST,
            f"{where}guaranteed: only for users and devices targets, not {target.kind}",
        )
    payload = _payload(push, where, limits.max_payload)
    if isinstance(push.ttl_s, int):
        if push.ttl_s > limits.max_ttl_s:
            raise ApiError(
                400, BAD_REQUEST, f"{where}ttl_s: must be at most {limits.max_ttl_s} (max_ttl_s)"
            )
        if push.ttl_s < limits.min_ttl_s:
            raise ApiError(
                400, BAD_REQUEST, f"{where}ttl_s: must be at least {limits.min_ttl_s} (min_ttl_s)"
            )
        return PushRequest(target, payload, push.priority, push.guaranteed, push.ttl_s)
    return PushRequest(
        target, payload, push.priority, push.guaranteed, limits.default_ttl_s, ttl_default=True
    )


def parse_push(body: bytes, limits: Limits) -> PushRequest:
    """Validate a ``POST /v1/push`` body; raises :class:`ApiError` (400 or 413)."""
    return _request(decode_body(body, PushBody), limits)


def parse_push_batch(body: bytes, limits: Limits) -> list[PushRequest]:
    """Validate a ``POST /v1/push/batch`` body; all messages or none (raises ApiError)."""
    batch = decode_body(body, PushBatchBody)
    if len(batch.messages) > limits.max_batch:
        raise ApiError(
            400,
            BAD_REQUEST,
            f"messages: at most {limits.max_batch} messages per batch (max_batch);"
            f" got {len(batch.messages)}",
        )
    return [
        _request(push, limits, f"messages[{index}].") for index, push in enumerate(batch.messages)
    ]
