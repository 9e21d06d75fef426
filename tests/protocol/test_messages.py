"""JSON bodies of the long connection (PROTOCOL.md §1.2)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longlink.protocol import ErrorCode, ProtocolError
from longlink.protocol.messages import (
    AckBody,
    Auth,
    AuthOk,
    ErrorBody,
    Event,
    HeartbeatOk,
    JoinOk,
    KickBody,
    RoomBody,
    decode_ack,
    decode_body,
    encode_body,
    encode_heartbeat_ok,
)

MAX_U64 = 2**64 - 1

# ------------------------------------------------------------------ each struct


@pytest.mark.parametrize(
    ("body", "kind", "expected"),
    [
        (
            b'{"token":"t1","rooms":["a","b"],"codecs":["br","zlib"],"heartbeat_s":20}',
            Auth,
            Auth(token="t1", rooms=["a", "b"], codecs=["br", "zlib"], heartbeat_s=20),
        ),
        (b'{"token":"t1"}', Auth, Auth(token="t1", rooms=[], codecs=[], heartbeat_s=None)),
        (
            b'{"conn_id":"c1","user":"u1","device":"d1","node":"g1",'
            b'"heartbeat_s":30,"codec":"br","rooms":["r1"]}',
            AuthOk,
            AuthOk("c1", "u1", "d1", "g1", 30, "br", ["r1"]),
        ),
        (b'{"online":{"r1":3,"r2":0}}', HeartbeatOk, HeartbeatOk(online={"r1": 3, "r2": 0})),
        (b'{"online":{}}', HeartbeatOk, HeartbeatOk()),
        (b"{}", HeartbeatOk, HeartbeatOk()),
        (b'{"msg_ids":[1,2,18446744073709551615]}', AckBody, AckBody([1, 2, MAX_U64])),
        (b'{"msg_ids":[]}', AckBody, AckBody([])),
        (b'{"room":"r1"}', RoomBody, RoomBody("r1")),
        (b'{"room":"r1","online":7}', JoinOk, JoinOk("r1", 7)),
        (
            b'{"type":"enter","room":"r1","user":"u1"}',
            Event,
            Event(type="enter", room="r1", user="u1"),
        ),
        (b'{"type":"ping"}', Event, Event(type="ping")),
        (
            b'{"code":"room_limit","message":"at most 8"}',
            ErrorBody,
            ErrorBody("room_limit", "at most 8"),
        ),
        (b'{"reason":"kicked by admin"}', KickBody, KickBody("kicked by admin")),
    ],
)
def test_decode_each_body(body: bytes, kind: type[Any], expected: Any) -> None:
    assert decode_body(body, kind) == expected


@pytest.mark.parametrize(
    "value",
    [
        Auth(token="t", rooms=["r"], codecs=["zlib"], heartbeat_s=10),
        AuthOk("c", "u", "d", "g1", 30, "none", []),
        HeartbeatOk(online={"r": 1}),
        AckBody([5, 6]),
        RoomBody("r"),
        JoinOk("r", 0),
        Event(type="exit", room="r", user="u"),
        ErrorBody("bad_frame", "oops"),
        KickBody("bye"),
    ],
)
def test_encode_decode_round_trip(value: msgspec.Struct) -> None:
    assert decode_body(encode_body(value), type(value)) == value


def test_encoded_bodies_use_contract_field_names() -> None:
    assert msgspec.json.decode(encode_body(AuthOk("c", "u", "d", "g1", 30, "br", ["r"]))) == {
        "conn_id": "c",
        "user": "u",
        "device": "d",
        "node": "g1",
        "heartbeat_s": 30,
        "codec": "br",
        "rooms": ["r"],
    }
    assert encode_heartbeat_ok({}) == b'{"online":{}}'
    assert encode_heartbeat_ok({"r": 2}, 60) == b'{"online":{"r":2},"heartbeat_s":60}'
    # Events leave out what they do not carry.
    assert encode_body(Event(type="enter", room="r1")) == b'{"type":"enter","room":"r1"}'
    assert encode_body(ErrorBody("auth_required", "AUTH first")) == (
        b'{"code":"auth_required","message":"AUTH first"}'
    )


def test_unknown_fields_are_ignored() -> None:
    body = b'{"token":"t","sdk":"js/1.0","rooms":["r"],"extra":{"nested":[1]}}'
    assert decode_body(body, Auth) == Auth(token="t", rooms=["r"])


# ------------------------------------------------------------------ malformed


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"", Auth),
        (b"{", Auth),
        (b"not json", Auth),
        (b"\xff\xfe\x00", Auth),
        (b'{"token":"t"} trailing', Auth),
        (b"null", Auth),
        (b"[]", Auth),
        (b'"token"', Auth),
        (b"{}", Auth),  # token missing
        (b'{"token":5}', Auth),
        (b'{"token":null}', Auth),
        (b'{"token":"t","rooms":"r1"}', Auth),
        (b'{"token":"t","rooms":[1]}', Auth),
        (b'{"token":"t","codecs":{"br":1}}', Auth),
        (b'{"token":"t","heartbeat_s":"30"}', Auth),
        (b'{"token":"t","heartbeat_s":true}', Auth),
        (b'{"token":"t","heartbeat_s":2.5}', Auth),
        (b'{"conn_id":"c","user":"u"}', AuthOk),
        (b'{"online":[]}', HeartbeatOk),
        (b'{"online":{"r":"3"}}', HeartbeatOk),
        (b'{"msg_ids":5}', AckBody),
        (b'{"msg_ids":["5"]}', AckBody),
        (b'{"msg_ids":[1.5]}', AckBody),
        (b'{"msg_ids":[-1]}', AckBody),
        (b'{"msg_ids":[18446744073709551616]}', AckBody),
        (b"{}", AckBody),
        (b'{"room":7}', RoomBody),
        (b'{"room":["r"]}', RoomBody),
        (b'{"room":"r","online":"1"}', JoinOk),
        (b'{"room":"r"}', Event),
        (b'{"code":"bad_frame"}', ErrorBody),
        (b'{"reason":null}', KickBody),
        (b"[" * 5000, RoomBody),
    ],
)
def test_malformed_body_is_bad_frame(body: bytes, kind: type[Any]) -> None:
    with pytest.raises(ProtocolError) as exc_info:
        decode_body(body, kind)
    assert exc_info.value.code is ErrorCode.BAD_FRAME
    assert exc_info.value.fatal
    assert kind.__name__ in exc_info.value.message


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)),
    st.sampled_from([Auth, AuthOk, HeartbeatOk, AckBody, RoomBody, JoinOk, Event, ErrorBody]),
)
def test_random_bodies_only_raise_protocol_error(body: bytes, kind: type[Any]) -> None:
    try:
        decode_body(body, kind)
    except ProtocolError as exc:
        assert exc.code is ErrorCode.BAD_FRAME


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["token", "rooms", "codecs", "heartbeat_s"]), json_values))
def test_wrongly_typed_auth_fields_only_raise_protocol_error(fields: dict[str, Any]) -> None:
    try:
        auth = decode_body(msgspec.json.encode(fields), Auth)
    except ProtocolError as exc:
        assert exc.code is ErrorCode.BAD_FRAME
    else:
        assert isinstance(auth.token, str)
        assert all(isinstance(room, str) for room in auth.rooms)
        assert auth.heartbeat_s is None or type(auth.heartbeat_s) is int


# ------------------------------------------------------------------ ACK (§1.2 op 6)


def test_ack_with_header_id_only() -> None:
    assert decode_ack(b"", 42) == [42]
    assert decode_ack(b"", MAX_U64) == [MAX_U64]


def test_ack_with_list_only() -> None:
    assert decode_ack(b'{"msg_ids":[3,1,2]}', 0) == [3, 1, 2]


def test_ack_with_both_header_and_list() -> None:
    assert decode_ack(b'{"msg_ids":[7,8]}', 6) == [6, 7, 8]


def test_ack_with_neither_is_bad_frame() -> None:
    with pytest.raises(ProtocolError) as exc_info:
        decode_ack(b"", 0)
    assert exc_info.value.code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    "body", [b"{", b'{"msg_ids":"1"}', b'{"ids":[1]}', b'{"msg_ids":[-5]}', b"\x00"]
)
@pytest.mark.parametrize("header_msg_id", [0, 9])
def test_ack_with_malformed_body_is_bad_frame(body: bytes, header_msg_id: int) -> None:
    with pytest.raises(ProtocolError) as exc_info:
        decode_ack(body, header_msg_id)
    assert exc_info.value.code is ErrorCode.BAD_FRAME
