"""The server session's admission table and small rules (PROTOCOL.md §1.3), frames in, bytes out."""

from __future__ import annotations

import pytest

from longlink.protocol import ErrorCode, FrameDecoder, Op, decode_frame, encode_frame
from longlink.protocol.frames import CLIENT_OPS, SERVER_OPS
from longlink.protocol.ids import IdRule
from longlink.protocol.server import (
    AuthRequest,
    Closed,
    ErrorSent,
    HeartbeatRequest,
    ServerSession,
    SessionRules,
    SessionState,
    choose_codec,
    clamp_heartbeat,
)

AUTH = encode_frame(Op.AUTH, b'{"token": "t", "rooms": ["r"], "since": {"r": "41"}}', seq=7)


def errors(out: list[object]) -> list[str]:
    frames = [f for item in out if isinstance(item, bytes) for f in FrameDecoder().feed(item)]
    return [f.body.decode() for f in frames if f.op == Op.ERROR]


def session(state: SessionState = SessionState.AWAIT_AUTH) -> ServerSession:
    s = ServerSession(SessionRules(), 0.0)
    if state in (SessionState.AUTHENTICATING, SessionState.OPEN):
        s.receive(decode_frame(AUTH), 0.0)
    if state == SessionState.OPEN:
        s.opened("c", "u", "d", 7, 0.0)
    if state == SessionState.CLOSED:
        s.close()
    assert s.state == state
    return s


def test_auth_is_parsed_into_a_request() -> None:
    s = session()
    [request] = s.receive(decode_frame(AUTH), 0.0)
    assert request == AuthRequest("t", ("r",), {"r": 41}, 7)
    assert s.state == SessionState.AUTHENTICATING and s.rooms == ("r",)


def test_only_auth_is_admitted_before_auth() -> None:
    for op in CLIENT_OPS - {Op.AUTH}:
        s = session()
        out = s.receive(decode_frame(encode_frame(op)), 0.0)
        assert ErrorSent("auth_required") in out and out[-1] == Closed("closed")


@pytest.mark.parametrize("state", [SessionState.AWAIT_AUTH, SessionState.OPEN])
def test_server_ops_from_a_client_are_bad_frames(state: SessionState) -> None:
    for op in SERVER_OPS:
        s = session(state)
        out = s.receive(decode_frame(encode_frame(op)), 0.0)
        assert ErrorSent("bad_frame") in out and s.closed


def test_frames_during_authentication_wait() -> None:
    s = session(SessionState.AUTHENTICATING)
    for op in CLIENT_OPS:
        assert s.receive(decode_frame(encode_frame(op)), 0.0) == []
    assert s.deferred is not None and len(s.deferred) == len(CLIENT_OPS)


def test_open_session_refuses_a_second_auth_without_closing() -> None:
    s = session(SessionState.OPEN)
    out = s.receive(decode_frame(AUTH), 0.0)
    assert ErrorSent("not_allowed") in out and not s.closed
    assert s.receive(decode_frame(encode_frame(Op.HEARTBEAT, seq=3)), 0.0) == [HeartbeatRequest(3)]


def test_closed_session_ignores_everything() -> None:
    s = session(SessionState.CLOSED)
    for op in Op:
        assert s.receive(decode_frame(encode_frame(op)), 0.0) == []


def test_malformed_bodies_are_fatal_bad_frames() -> None:
    s = session()
    out = s.receive(decode_frame(encode_frame(Op.AUTH, b"{not json")), 0.0)
    assert ErrorSent("bad_frame") in out and s.closed
    s = session()
    out = s.receive(decode_frame(encode_frame(Op.AUTH, b'{"token":"t","since":{"r":"x"}}')), 0)
    assert ErrorSent("bad_frame") in out


def test_codec_choice_prefers_brotli_then_zlib() -> None:
    assert choose_codec(["zlib", "br"]).label == "br"
    assert choose_codec(["zlib"]).label == "zlib"
    assert choose_codec([]).label == "none"
    assert choose_codec(["lz4"]).label == "none"


def test_heartbeat_is_clamped() -> None:
    assert clamp_heartbeat(None, 30, 5, 300) == 30
    assert clamp_heartbeat(0, 30, 5, 300) == 30
    assert clamp_heartbeat(1, 30, 5, 300) == 5
    assert clamp_heartbeat(10_000, 30, 5, 300) == 300
    assert clamp_heartbeat(60, 30, 5, 300) == 60


def test_rooms_follow_the_rule_the_gateway_is_given() -> None:
    s = ServerSession(SessionRules(ids=IdRule(8, "[a-z]+")), 0.0)
    out = s.receive(decode_frame(encode_frame(Op.AUTH, b'{"token":"t","rooms":["ABC"]}')), 0)
    assert ErrorSent("not_allowed") in out
    assert "id_pattern" in errors(out)[0]


def test_error_codes_are_the_contracts() -> None:
    assert {c.value for c in ErrorCode} >= {
        "bad_frame",
        "too_large",
        "auth_required",
        "auth_failed",
        "token_expired",
        "not_allowed",
        "room_limit",
        "rate_limited",
        "server_busy",
    }
