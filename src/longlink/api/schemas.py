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
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from longlink.api.errors import BAD_REQUEST, TOO_LARGE, ApiError
from longlink.api.jsondepth import DEFAULT_MAX_DEPTH, depth_problem
from longlink.model import Priority, Target
from longlink.protocol.ids import DEFAULT_ID_RULE, ID_PATTERN, MAX_ID_LENGTH, IdRule
from longlink.settings import ConfigError, Settings

__all__ = [
    "LIMIT_SETTINGS",
    "MAX_BATCH",
    "MAX_TARGETS",
    "MAX_TTL_S",
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
    "parse_connect",
    "parse_push",
    "parse_push_batch",
]

#: The limit settings' defaults (:class:`Limits` has the same).
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(Settings)}
#: Most messages one ``POST /v1/push/batch`` may carry by default (``max_batch``).
MAX_BATCH: int = _DEFAULTS["max_batch"]
#: Most ids one push may target by default (``max_targets``).
MAX_TARGETS: int = _DEFAULTS["max_targets"]
#: Longest TTL of a push by default (``max_ttl_s``).
MAX_TTL_S: int = _DEFAULTS["max_ttl_s"]

#: A user, device, room or area id: the one id rule (:mod:`longlink.protocol.ids`).
Id = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=ID_PATTERN,
        description=f"1..{MAX_ID_LENGTH} characters, no control characters (a server may"
        " narrow the rule for push targets and paths: max_id_length, id_pattern)",
    ),
]
#: A push target id: checked against :class:`Limits` after decoding (the messages name
#: the setting); the schema states the default rule.
TargetId = Annotated[
    str,
    Meta(
        extra_json_schema={
            "minLength": 1,
            "maxLength": MAX_ID_LENGTH,
            "pattern": ID_PATTERN,
            "description": f"an id: 1..{MAX_ID_LENGTH} characters, no control characters by default"
            " (max_id_length, id_pattern)",
        }
    ),
]
IdList = Annotated[
    list[TargetId],
    Meta(
        min_length=1,
        description=f"at most max_targets ids (default {MAX_TARGETS})",
        extra_json_schema={"maxItems": MAX_TARGETS},
    ),
]


def _given(name: str) -> dict[str, Any]:
    """JSON Schema: ``name`` is present and not null."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


_TARGET_KINDS = ("users", "devices", "rooms", "areas", "all")
#: Standard base64 with its padding (what ``base64.b64decode(validate=True)`` takes).
_BASE64 = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


class PushTarget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``to``: exactly one of the fields is given (checked after decoding)."""

    users: IdList | None = None
    devices: IdList | None = None
    rooms: IdList | None = None
    areas: IdList | None = None
    all: Annotated[bool, Meta(extra_json_schema={"const": True})] | None = None

    #: The rules checked after decoding, as JSON Schema (merged into the OpenAPI component).
    json_schema_rules: ClassVar[dict[str, Any]] = {
        "oneOf": [_given(kind) for kind in _TARGET_KINDS]
    }


class PushBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One push as a business backend sends it (PROTOCOL.md §2.2).

    Exactly one of ``data`` and ``data_b64``; ``guaranteed`` only for users and
    devices targets (checked after decoding).
    """

    to: PushTarget
    data: (
        Annotated[Any, Meta(description="any JSON value; the client receives it JSON-encoded")]
        | UnsetType
    ) = UNSET
    data_b64: (
        Annotated[
            str,
            Meta(
                description="standard base64; the client receives the decoded bytes",
                extra_json_schema={"contentEncoding": "base64", "pattern": _BASE64},
            ),
        ]
        | UnsetType
    ) = UNSET
    priority: Priority = Priority.LOW
    guaranteed: Annotated[
        bool, Meta(description="acked, retried and kept offline until its TTL ends")
    ] = False
    ttl_s: (
        Annotated[
            int,
            Meta(
                ge=1,
                description="seconds; default the server's default_ttl_s (capped at the key's"
                f" max_ttl_s), between min_ttl_s and max_ttl_s (default {MAX_TTL_S})",
                extra_json_schema={"maximum": MAX_TTL_S},
            ),
        ]
        | UnsetType
    ) = UNSET
    history: Annotated[
        bool,
        Meta(
            description="false: a room push is not kept in the room's history (not recovered"
            " after a reconnect, not in GET /v1/rooms/{room}/history); only room pushes are kept"
        ),
    ] = True

    #: The rules checked after decoding, as JSON Schema (merged into the OpenAPI component).
    json_schema_rules: ClassVar[dict[str, Any]] = {
        "oneOf": [{"required": ["data"]}, {"required": ["data_b64"]}],
        "if": {"required": ["guaranteed"], "properties": {"guaranteed": {"const": True}}},
        "then": {"properties": {"to": {"anyOf": [_given("users"), _given("devices")]}}},
    }


class PushBatchBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/push/batch``: 1..``max_batch`` pushes (checked after decoding)."""

    messages: Annotated[
        list[PushBody],
        Meta(
            min_length=1,
            description=f"at most max_batch messages (default {MAX_BATCH})",
            extra_json_schema={"maxItems": MAX_BATCH},
        ),
    ]


class ConnectBody(msgspec.Struct, frozen=True):
    """``POST /v1/connect`` (PROTOCOL.md §2.1): a ticket, or in demo mode a user.

    Unknown fields are ignored: clients may be newer than the server.
    """

    ticket: (
        Annotated[str, Meta(min_length=1, description="HS256 JWT: sub, device?, exp")] | None
    ) = None
    user: Annotated[Id, Meta(description="demo mode only, instead of a ticket")] | None = None
    device: Annotated[Id, Meta(description="demo mode only; default a random id")] | None = None
    region: Annotated[Id, Meta(description="nodes of this region come first")] | None = None
    transports: (
        Annotated[
            list[Literal["ws", "tcp", "stream"]],
            Meta(min_length=1, description="the transports the client speaks"),
        ]
        | None
    ) = None
    failed: (
        Annotated[
            list[Annotated[str, Meta(max_length=32)]],
            Meta(
                max_length=8,
                description="transports that failed this client (e.g. WebSocket blocked):"
                " the answer's transports put them last",
            ),
        ]
        | None
    ) = None

    #: The rule checked by the connect flow, as JSON Schema (merged into the OpenAPI component).
    json_schema_rules: ClassVar[dict[str, Any]] = {"anyOf": [_given("ticket"), _given("user")]}


class RoomAreaBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PUT /v1/rooms/{room}``: ``{"area": str | null, "announce": bool}``, at least one.

    ``area`` null takes the room out of its area; ``announce`` true makes the
    gateways send EVENT enter/exit frames to the room (docs/presence-and-events.md).
    A field left out is not changed.
    """

    area: Id | UnsetType | None = UNSET
    announce: bool | UnsetType = UNSET

    #: The rule checked by the route, as JSON Schema (merged into the OpenAPI component).
    json_schema_rules: ClassVar[dict[str, Any]] = {"minProperties": 1}


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
    #: Kept in the room history (rooms targets; PROTOCOL.md §1.4 rule 2).
    history: bool = True
    #: ``payload`` is the JSON encoding of ``data`` (not ``data_b64`` bytes).
    data_json: bool = False


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
    "json_max_depth",
)


@dataclass(frozen=True, slots=True)
class Limits:
    """The validation limits of the push API, each named after its setting.

    Build it with :meth:`from_settings`; an impossible combination raises
    :class:`~longlink.settings.ConfigError` naming the setting. Ids (users,
    devices, rooms, areas) are 1..``max_id_length`` characters without control
    characters and, when ``id_pattern`` is set, match it in full.
    """

    max_payload: int = _DEFAULTS["max_payload"]
    max_targets: int = MAX_TARGETS
    max_batch: int = MAX_BATCH
    min_ttl_s: int = _DEFAULTS["min_ttl_s"]
    default_ttl_s: int = _DEFAULTS["default_ttl_s"]
    max_ttl_s: int = MAX_TTL_S
    max_id_length: int = _DEFAULTS["max_id_length"]
    id_pattern: str = _DEFAULTS["id_pattern"]
    max_push_body: int = _DEFAULTS["max_push_body"]
    max_batch_body: int = _DEFAULTS["max_batch_body"]
    json_max_depth: int = _DEFAULTS["json_max_depth"]
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
            "json_max_depth",
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


def decode_body(
    body: bytes, kind: type[T], *, empty_ok: bool = False, max_depth: int = DEFAULT_MAX_DEPTH
) -> T:
    """Decode a JSON request body as ``kind``; 400 ``bad_request`` when it does not fit.

    With ``empty_ok`` an empty body decodes as ``{}`` (all defaults). A body
    nested deeper than ``max_depth`` is refused naming the field
    (:mod:`longlink.api.jsondepth`).
    """
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    if empty_ok and not body.strip():
        body = b"{}"
    problem = depth_problem(body, max_depth)
    if problem is not None:
        raise ApiError(400, BAD_REQUEST, problem)
    try:
        result: T = decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise ApiError(400, BAD_REQUEST, _field_message(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, BAD_REQUEST, f"body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # only with a deep Python stack at the call
        raise ApiError(400, BAD_REQUEST, "body: nested too deeply") from exc
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


def _payload(push: PushBody, where: str, max_payload: int) -> tuple[bytes, bool]:
    """The payload bytes, and whether they are the JSON encoding of ``data``."""
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
    return payload, field == "data"


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
    payload, data_json = _payload(push, where, limits.max_payload)
    if isinstance(push.ttl_s, int):
        if push.ttl_s > limits.max_ttl_s:
            raise ApiError(
                400, BAD_REQUEST, f"{where}ttl_s: must be at most {limits.max_ttl_s} (max_ttl_s)"
            )
        if push.ttl_s < limits.min_ttl_s:
            raise ApiError(
                400, BAD_REQUEST, f"{where}ttl_s: must be at least {limits.min_ttl_s} (min_ttl_s)"
            )
        return PushRequest(
            target,
            payload,
            push.priority,
            push.guaranteed,
            push.ttl_s,
            history=push.history,
            data_json=data_json,
        )
    return PushRequest(
        target,
        payload,
        push.priority,
        push.guaranteed,
        limits.default_ttl_s,
        ttl_default=True,
        history=push.history,
        data_json=data_json,
    )


def parse_connect(body: bytes) -> ConnectBody:
    """Validate a ``POST /v1/connect`` body; raises :class:`ApiError` (400).

    The ids are checked with the one id rule after decoding too: a regular
    expression's ``$`` lets a trailing newline through.
    """
    connect = decode_body(body, ConnectBody)
    for name in ("user", "device", "region"):
        value: str | None = getattr(connect, name)
        problem = DEFAULT_ID_RULE.problem(value) if value is not None else None
        if problem:
            raise ApiError(400, BAD_REQUEST, f"{name}: {problem}")
    return connect


def parse_push(body: bytes, limits: Limits) -> PushRequest:
    """Validate a ``POST /v1/push`` body; raises :class:`ApiError` (400 or 413)."""
    return _request(decode_body(body, PushBody, max_depth=limits.json_max_depth), limits)


def parse_push_batch(body: bytes, limits: Limits) -> list[PushRequest]:
    """Validate a ``POST /v1/push/batch`` body; all messages or none (raises ApiError)."""
    batch = decode_body(body, PushBatchBody, max_depth=limits.json_max_depth)
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
