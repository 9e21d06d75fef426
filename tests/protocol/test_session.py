"""The session rules table (PROTOCOL.md §1.3)."""

from __future__ import annotations

import pytest

from longlink.protocol import ErrorCode, Op, ProtocolError
from longlink.protocol.frames import CLIENT_OPS, SERVER_OPS
from longlink.protocol.session import (
    Action,
    SessionState,
    admit,
    choose_codec,
    clamp_heartbeat,
    valid_name,
)


def test_only_auth_is_admitted_before_auth() -> None:
    assert admit(SessionState.AWAIT_AUTH, Op.AUTH) == Action.HANDLE
    for op in CLIENT_OPS - {Op.AUTH}:
        with pytest.raises(ProtocolError) as info:
            admit(SessionState.AWAIT_AUTH, op)
        assert info.value.code == ErrorCode.AUTH_REQUIRED and info.value.fatal


@pytest.mark.parametrize("state", [SessionState.AWAIT_AUTH, SessionState.OPEN])
def test_server_ops_from_a_client_are_bad_frames(state: SessionState) -> None:
    for op in SERVER_OPS:
        with pytest.raises(ProtocolError) as info:
            admit(state, op)
        assert info.value.code == ErrorCode.BAD_FRAME and info.value.fatal


def test_frames_during_authentication_wait() -> None:
    for op in CLIENT_OPS:
        assert admit(SessionState.AUTHENTICATING, op) == Action.DEFER


def test_open_session_handles_client_ops_and_refuses_a_second_auth() -> None:
    for op in CLIENT_OPS - {Op.AUTH}:
        assert admit(SessionState.OPEN, op) == Action.HANDLE
    with pytest.raises(ProtocolError) as info:
        admit(SessionState.OPEN, Op.AUTH)
    assert info.value.code == ErrorCode.NOT_ALLOWED and not info.value.fatal


def test_closed_session_ignores_everything() -> None:
    for op in Op:
        assert admit(SessionState.CLOSED, op) == Action.IGNORE


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


def test_names() -> None:
    assert valid_name("room-1") and valid_name("弹幕")
    assert not valid_name("") and not valid_name("a" * 129)
    assert valid_name("a b") and not valid_name("a\nb") and not valid_name("a\x85b")
