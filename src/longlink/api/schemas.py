"""Request bodies of the HTTP API and their validation, free of any HTTP framework.

Push bodies (PROTOCOL.md §2.2) are decoded with msgspec into structs, then
checked against the rules a struct cannot state (exactly one target kind,
exactly one of ``data``/``data_b64``, size and TTL limits from the settings)
and turned into :class:`PushRequest` values the app can queue.

Every refusal raises :class:`~longlink.api.errors.ApiError`: 400
``bad_request`` naming the field (``messages[3].to.users[0]: ...``), or 413
``too_large`` for a payload over ``settings.max_payload``.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from longlink.api.errors import BAD_REQUEST, TOO_LARGE, ApiError
from longlink.control.ids import ID_PATTERN, MAX_ID_LENGTH
from longlink.model import Priority, Target
from longlink.settings import Settings

__all__ = [
    "MAX_BATCH",
    "ConnectBody",
    "DrainBody",
    "KickBody",
    "PushBatchBody",
    "PushBody",
    "PushRequest",
    "PushTarget",
    "RoomAreaBody",
    "decode_body",
    "parse_push",
    "parse_push_batch",
]

#: Most messages one ``POST /v1/push/batch`` may carry.
MAX_BATCH = 1000

#: A user, device, room or area id: 1..128 characters, no control characters.
Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
IdList = Annotated[list[Id], Meta(min_length=1)]


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
    """``POST /v1/push/batch``: 1..1000 pushes."""

    messages: Annotated[list[PushBody], Meta(min_length=1, max_length=MAX_BATCH)]


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
    """``PUT /v1/rooms/{room}``: ``{"area": str | null}`` (null takes the room out)."""

    area: Id | None


class KickBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/users/{user}/kick``: an optional reason sent in the KICK frame."""

    reason: Annotated[str, Meta(max_length=256)] = "kicked"


class DrainBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/nodes/{node}/drain``: ``{"draining": false}`` undoes a drain."""

    draining: bool = True


@dataclass(frozen=True, slots=True)
class PushRequest:
    """A validated push, ready to become a :class:`~longlink.model.Message`."""

    target: Target
    payload: bytes
    priority: Priority
    guaranteed: bool
    ttl_s: int


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


def _target(to: PushTarget, where: str) -> Target:
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
    raise ApiError(413, TOO_LARGE, f"{field}: payload is {size} bytes; the limit is {limit}")


def _request(push: PushBody, settings: Settings, where: str = "") -> PushRequest:
    target = _target(push.to, where)
    payload = _payload(push, where, settings.max_payload)
    if isinstance(push.ttl_s, int):
        if push.ttl_s > settings.max_ttl_s:
            raise ApiError(400, BAD_REQUEST, f"{where}ttl_s: must be at most {settings.max_ttl_s}")
        ttl_s = push.ttl_s
    else:
        ttl_s = settings.default_ttl_s
    return PushRequest(target, payload, push.priority, push.guaranteed, ttl_s)


def parse_push(body: bytes, settings: Settings) -> PushRequest:
    """Validate a ``POST /v1/push`` body; raises :class:`ApiError` (400 or 413)."""
    return _request(decode_body(body, PushBody), settings)


def parse_push_batch(body: bytes, settings: Settings) -> list[PushRequest]:
    """Validate a ``POST /v1/push/batch`` body; all messages or none (raises ApiError)."""
    batch = decode_body(body, PushBatchBody)
    return [
        _request(push, settings, f"messages[{index}].") for index, push in enumerate(batch.messages)
    ]
