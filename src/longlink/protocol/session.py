"""The server side of the session rules (PROTOCOL.md §1.3), as a table.

    state           AUTH             other client op   server op (from a client)
    AWAIT_AUTH      HANDLE           auth_required     bad_frame
    AUTHENTICATING  DEFER            DEFER             bad_frame
    OPEN            not_allowed (*)  HANDLE            bad_frame
    CLOSED          IGNORE           IGNORE            IGNORE

(*) non-fatal: the connection stays open. AUTHENTICATING is the short time
while the token is accepted and the session registered; frames that arrive
then are handled, in order, once AUTH_OK has been sent.
"""

from __future__ import annotations

from enum import IntEnum

from longlink.protocol.errors import ErrorCode, ProtocolError
from longlink.protocol.frames import CLIENT_OPS, Codec, Op
from longlink.protocol.ids import DEFAULT_ID_RULE


class SessionState(IntEnum):
    AWAIT_AUTH = 0
    AUTHENTICATING = 1
    OPEN = 2
    CLOSED = 3


class Action(IntEnum):
    HANDLE = 0
    DEFER = 1
    IGNORE = 2


def admit(state: SessionState, op: int) -> Action:
    """What to do with a client frame of ``op`` in ``state``; raises per the table."""
    if state == SessionState.CLOSED:
        return Action.IGNORE
    if op not in CLIENT_OPS:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"op {Op(op).name} is sent by the server")
    if state == SessionState.AUTHENTICATING:
        return Action.DEFER
    if state == SessionState.AWAIT_AUTH:
        if op != Op.AUTH:
            raise ProtocolError(ErrorCode.AUTH_REQUIRED, f"{Op(op).name} before AUTH")
        return Action.HANDLE
    if op == Op.AUTH:
        raise ProtocolError(ErrorCode.NOT_ALLOWED, "already authenticated")
    return Action.HANDLE


#: Codecs in the server's order of preference (brotli compresses danmaku best).
CODEC_PREFERENCE = (Codec.BROTLI, Codec.ZLIB)


def choose_codec(offered: list[str]) -> Codec:
    """The codec for server pushes, from the labels the client offered in AUTH."""
    for codec in CODEC_PREFERENCE:
        if codec.label in offered:
            return codec
    return Codec.NONE


def clamp_heartbeat(requested: int | None, default: int, low: int, high: int) -> int:
    """The heartbeat interval to announce in AUTH_OK (§1.2 op 1: clamped by the server)."""
    if requested is None or requested <= 0:
        return default
    return max(low, min(high, requested))


def valid_name(name: str) -> bool:
    """A room, user or device id under the one id rule (:mod:`longlink.protocol.ids`)."""
    return DEFAULT_ID_RULE.valid(name)
