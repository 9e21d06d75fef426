"""The server side of a session (PROTOCOL.md §1.3, §1.4 rule 3, §1.6 rule 2), pure and sans-I/O.

A :class:`ServerSession` is one client's session as the gateway sees it. It
takes client frames and the time, and answers with what to do next: frames to
write (``bytes``) and requests for the gateway (the event classes below). It
does no I/O, keeps no clock and starts no task; every transport (TCP,
WebSocket, HTTP stream) is a thin bridge that feeds it frames and carries out
what it returns, in order.

Which client frame is handled when::

    state           AUTH             other client op   server op (from a client)
    AWAIT_AUTH      HANDLE           auth_required     bad_frame
    AUTHENTICATING  DEFER            DEFER             bad_frame
    OPEN            not_allowed (*)  HANDLE            bad_frame
    CLOSED          IGNORE           IGNORE            IGNORE

(*) non-fatal: the connection stays open. While an asynchronous step runs
(AUTH being registered, a JOIN or LEAVE in the registry) later frames wait,
in order, and are handled once the gateway reports the step done
(:meth:`ServerSession.opened`, :meth:`~ServerSession.joined`,
:meth:`~ServerSession.left`); more than ``max_deferred`` waiting frames is a
flood (``rate_limited``, then close).

Rules applied here and nowhere else:

1. AUTH first, within ``auth_timeout_s`` (§1.3 rule 1); the token is checked
   by the gateway (:class:`AuthRequest`), which reports the outcome.
2. Rooms: valid ids (:mod:`longlink.protocol.ids`), at most ``max_rooms``
   (§1.3 rule 4); a LEAVE of a room not joined is answered at once.
3. Liveness (§1.3 rule 3): anything received counts as life; nothing for 2.5
   heartbeat intervals ends the session (:meth:`ServerSession.check`, which a
   timing wheel calls: no timer per connection). The interval is the one the
   client asked for (AUTH, or a HEARTBEAT body, §1.6 rule 2), clamped.
4. Floods: every frame that earns a reply or costs the server work is charged
   to a per-connection :class:`~longlink.protocol.limits.RateLimit`
   (``control``); over it the frame gets ``rate_limited`` instead of an
   answer, and a client that keeps on is closed. UPSTREAM has its own limit
   (§1.3 rule 6). A client thus cannot make the server write without bound.
5. Errors: a fatal code (:data:`~longlink.protocol.errors.FATAL_CODES`) is
   followed by :class:`Closed`; others leave the session open.
6. Recovery (§1.4 rule 3): ``since`` of AUTH and JOIN is parsed here and
   handed to the gateway; ``recovered`` comes back in AUTH_OK / JOIN_OK.

Outputs: a list whose items are ``bytes`` (one encoded frame, to be framed
by the transport and written) or one of the event classes; the bridge
handles them in order and stops at :class:`Closed`.
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum

from longlink.protocol.errors import ErrorCode, ProtocolError
from longlink.protocol.frames import CLIENT_OPS, DEFAULT_MAX_FRAME, Codec, Frame, Op, encode_frame
from longlink.protocol.ids import DEFAULT_ID_RULE, IdRule
from longlink.protocol.limits import RateLimit, Verdict
from longlink.protocol.liveness import Change, Liveness, next_check, watch
from longlink.protocol.messages import (
    Auth,
    AuthOk,
    ErrorBody,
    HeartbeatBody,
    JoinBody,
    JoinOk,
    KickBody,
    Report,
    RoomBody,
    decode_ack,
    decode_body,
    encode_body,
    encode_heartbeat_ok,
    parse_msg_id,
)

__all__ = [
    "CODEC_PREFERENCE",
    "Acked",
    "AuthRequest",
    "Closed",
    "ErrorSent",
    "HeartbeatRequest",
    "JoinRequest",
    "LeaveRequest",
    "LivenessChanged",
    "Output",
    "ReportReceived",
    "ServerSession",
    "SessionRules",
    "SessionState",
    "UpstreamRequest",
    "choose_codec",
    "clamp_heartbeat",
]


class SessionState(IntEnum):
    AWAIT_AUTH = 0
    AUTHENTICATING = 1
    OPEN = 2
    CLOSED = 3


#: Codecs in the server's order of preference (brotli compresses danmaku best).
CODEC_PREFERENCE = (Codec.BROTLI, Codec.ZLIB)
#: Largest REPORT body read (a report is a few hundred bytes; §1.6 rule 1).
MAX_REPORT_BYTES = 4096
#: Most RTT samples, failed transports and characters of a string field kept from a REPORT.
MAX_REPORT_ITEMS = 64
MAX_REPORT_TEXT = 32


def choose_codec(offered: list[str]) -> Codec:
    """The codec for server pushes, from the labels the client offered in AUTH."""
    for codec in CODEC_PREFERENCE:
        if codec.label in offered:
            return codec
    return Codec.NONE


def clamp_heartbeat(requested: int | None, default: int, low: int, high: int) -> int:
    """The heartbeat interval to use (§1.2 op 1: clamped by the server)."""
    if requested is None or requested <= 0:
        return default
    return max(low, min(high, requested))


@dataclass(frozen=True, slots=True)
class SessionRules:
    """The limits every session of a gateway follows (one object, shared)."""

    node: str = "g1"
    max_rooms: int = 8
    ids: IdRule = DEFAULT_ID_RULE
    auth_timeout_s: float = 5.0
    heartbeat_s: int = 30
    min_heartbeat_s: int = 1
    max_heartbeat_s: int = 300
    max_frame: int = DEFAULT_MAX_FRAME
    #: UPSTREAM frames per connection (§1.3 rule 6).
    upstream: RateLimit = field(default_factory=lambda: RateLimit(10.0, 20))
    #: Every other frame that earns a reply or costs work (rule 4 of the module docstring).
    control: RateLimit = field(default_factory=lambda: RateLimit(20.0, 60))
    #: UPSTREAM is forwarded to a business backend (False: ``not_allowed``).
    upstream_enabled: bool = True
    #: Frames that may wait while an asynchronous step runs.
    max_deferred: int = 256


# ---------------------------------------------------------------- what the gateway is asked


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """AUTH arrived: verify ``token``, register the session with ``rooms``, then call
    :meth:`ServerSession.opened` (or :meth:`~ServerSession.fail`). ``since`` maps
    rooms to the last msg id the client got (§1.4 rule 3)."""

    token: str
    rooms: tuple[str, ...]
    since: dict[str, int]
    seq: int


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """JOIN: put the connection in ``room``, then call :meth:`ServerSession.joined`."""

    room: str
    since: int | None
    seq: int


@dataclass(frozen=True, slots=True)
class LeaveRequest:
    """LEAVE of a joined room: take it out, then call :meth:`ServerSession.left`."""

    room: str
    seq: int


@dataclass(frozen=True, slots=True)
class HeartbeatRequest:
    """HEARTBEAT: write :meth:`ServerSession.heartbeat_ok` with the rooms' online counts
    (and the interval when ``asked``, §1.6 rule 2); the rooms are re-asserted (enter
    events are idempotent)."""

    seq: int
    asked: bool = False


@dataclass(frozen=True, slots=True)
class Acked:
    """ACK of ``msg_ids`` (§1.3 rule 5)."""

    msg_ids: list[int]


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """UPSTREAM within the rate limit: hand ``data`` on, then write
    :meth:`ServerSession.upstream_ok` (or call :meth:`~ServerSession.fail`)."""

    data: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class ReportReceived:
    """A REPORT (§1.6 rule 1); ``report`` is None when it was malformed (count, drop)."""

    report: Report | None


@dataclass(frozen=True, slots=True)
class LivenessChanged:
    """The connection missed a heartbeat (``SUSPECTED``) or was heard again (``RECOVERED``)."""

    change: Change


@dataclass(frozen=True, slots=True)
class ErrorSent:
    """An ERROR frame with ``code`` follows (for the gateway's counts)."""

    code: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The session is over: write nothing more after what came before, close the transport.

    ``reason`` is the exit reason (``closed``, ``timeout``, ``kicked``,
    ``rate_limited``, an error code, …).
    """

    reason: str


Event = (
    AuthRequest
    | JoinRequest
    | LeaveRequest
    | HeartbeatRequest
    | Acked
    | UpstreamRequest
    | ReportReceived
    | LivenessChanged
    | ErrorSent
    | Closed
)
#: What every method of a session returns: frames to write and requests, in order.
Output = list[bytes | Event]


class ServerSession:
    """One client's session on a gateway (see the module docstring).

    The gateway's connection classes subclass it, so an idle connection is a
    single object: its slots below, plus the bridge's own.
    """

    __slots__ = (
        "codec",
        "control_tat",
        "deferred",
        "device",
        "heartbeat_s",
        "last_seen",
        "liveness",
        "rooms",
        "rules",
        "state",
        "upstream_tat",
        "user",
    )

    def __init__(self, rules: SessionRules, now: float) -> None:
        self.rules = rules
        self.state = SessionState.AWAIT_AUTH
        self.user = ""
        self.device = ""
        self.rooms: tuple[str, ...] = ()
        self.codec = 0
        self.heartbeat_s = 0
        self.last_seen = now  # the connection's start until AUTH; then the last frame in
        self.liveness = Liveness.ALIVE
        self.deferred: deque[Frame] | None = None  # set while an asynchronous step runs
        self.control_tat = 0.0  # rule 4, protocol/limits.py
        self.upstream_tat = 0.0

    @property
    def closed(self) -> bool:
        """True once the session is over (check again after every await)."""
        return self.state == SessionState.CLOSED

    # -------------------------------------------------------------- frames in

    def receive(self, frame: Frame, now: float) -> Output:
        """Apply one client frame received at ``now``."""
        state = self.state
        if state == SessionState.CLOSED:
            return []
        if self.deferred is not None:
            if len(self.deferred) >= self.rules.max_deferred:
                flood = ProtocolError(
                    ErrorCode.RATE_LIMITED, "too many frames in flight", fatal=True
                )
                return self.fail(flood)
            self.deferred.append(frame)
            return []
        try:
            if frame.op not in CLIENT_OPS:
                raise ProtocolError(ErrorCode.BAD_FRAME, f"op {Op(frame.op).name} is server's")
            if state == SessionState.AWAIT_AUTH:
                if frame.op != Op.AUTH:
                    raise ProtocolError(ErrorCode.AUTH_REQUIRED, f"{Op(frame.op).name} before AUTH")
                return self._auth(frame)
            self.last_seen = now
            return self._handle(frame, now)
        except ProtocolError as exc:
            return self.fail(exc, frame.seq)

    def _handle(self, frame: Frame, now: float) -> Output:
        op = frame.op
        if op == Op.ACK:  # the cheapest and most frequent: not charged (a reply never follows)
            return [Acked(decode_ack(frame.body, frame.msg_id))]
        if op == Op.UPSTREAM:
            return self._upstream(frame, now)
        flood = self._charge(now)
        if flood is not None:
            return self.fail(flood, frame.seq)
        if op == Op.HEARTBEAT:
            if frame.body:
                asked = decode_body(frame.body, HeartbeatBody).heartbeat_s
                if asked is not None:
                    self.heartbeat_s = self._clamp(asked)
                    return [HeartbeatRequest(frame.seq, asked=True)]
            return [HeartbeatRequest(frame.seq)]
        if op == Op.JOIN:
            join = decode_body(frame.body, JoinBody)
            room = sys.intern(join.room)
            since = parse_msg_id(join.since) if join.since is not None else None
            if room not in self.rooms:
                self._check_room(room)
                if len(self.rooms) >= self.rules.max_rooms:
                    raise ProtocolError(
                        ErrorCode.ROOM_LIMIT, f"at most {self.rules.max_rooms} rooms"
                    )
            # A room already joined goes through the registry too (idempotent there),
            # so its JOIN_OK carries the current count, not a cached one.
            self.deferred = deque()
            return [JoinRequest(room, since, frame.seq)]
        if op == Op.LEAVE:
            room = decode_body(frame.body, RoomBody).room
            if room not in self.rooms:
                return [self.reply(Op.LEAVE_OK, encode_body(RoomBody(room)), frame.seq)]
            # Out of the room at once (nothing more is delivered from it); the registry follows.
            self.rooms = tuple(r for r in self.rooms if r != room)
            self.deferred = deque()
            return [LeaveRequest(room, frame.seq)]
        if op == Op.REPORT:
            return [ReportReceived(_report(frame))]
        # AUTH once open (§1.3 rule 1 table): refused, the session stays.
        raise ProtocolError(ErrorCode.NOT_ALLOWED, "already authenticated")

    def _charge(self, now: float) -> ProtocolError | None:
        """Rule 4: None when the frame may be answered; else the error to answer with."""
        self.control_tat, verdict = self.rules.control.take(self.control_tat, now)
        if verdict == Verdict.ALLOW:
            return None
        return ProtocolError(
            ErrorCode.RATE_LIMITED, "too many requests: slow down", fatal=verdict == Verdict.FLOOD
        )

    def _upstream(self, frame: Frame, now: float) -> Output:
        rules = self.rules
        if not rules.upstream_enabled:
            flood = self._charge(now)
            if flood is not None:
                return self.fail(flood, frame.seq)
            raise ProtocolError(ErrorCode.NOT_ALLOWED, "upstream is not enabled on this server")
        self.upstream_tat, verdict = rules.upstream.take(self.upstream_tat, now)
        if verdict != Verdict.ALLOW:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"at most {rules.upstream.rate:g} upstream messages per second",
                fatal=verdict == Verdict.FLOOD,
            )
        return [UpstreamRequest(frame.payload(rules.max_frame), frame.seq)]

    def _auth(self, frame: Frame) -> Output:
        rules = self.rules
        auth = decode_body(frame.body, Auth)
        # Interned: a room's name is held once however many connections are in it.
        rooms = tuple(dict.fromkeys(sys.intern(room) for room in auth.rooms))
        for room in rooms:
            self._check_room(room)
        if len(rooms) > rules.max_rooms:
            raise ProtocolError(ErrorCode.ROOM_LIMIT, f"at most {rules.max_rooms} rooms")
        since = {room: parse_msg_id(last) for room, last in auth.since.items()}
        since = {room: last for room, last in since.items() if room in rooms}
        self.rooms = rooms
        self.codec = choose_codec(auth.codecs)
        self.heartbeat_s = self._clamp(auth.heartbeat_s)
        self.state = SessionState.AUTHENTICATING
        self.deferred = deque()
        return [AuthRequest(auth.token, rooms, since, frame.seq)]

    def _check_room(self, room: str) -> None:
        problem = self.rules.ids.problem(room)
        if problem is not None:
            raise ProtocolError(ErrorCode.NOT_ALLOWED, f"room {room[:40]!r}: {problem}")

    def _clamp(self, requested: int | None) -> int:
        rules = self.rules
        return clamp_heartbeat(
            requested, rules.heartbeat_s, rules.min_heartbeat_s, rules.max_heartbeat_s
        )

    # -------------------------------------------------------------- steps the gateway finished

    def opened(
        self,
        conn_id: str,
        user: str,
        device: str,
        seq: int,
        now: float,
        recovered: dict[str, bool] | None = None,
    ) -> Output:
        """The token was good and the session is registered: AUTH_OK, then waiting frames.

        ``recovered`` answers AUTH's ``since`` (rooms the history could
        recover, §1.4 rule 3). Returns nothing if the session closed meanwhile.
        """
        if self.state != SessionState.AUTHENTICATING:
            return []
        self.user = user
        self.device = device
        self.state = SessionState.OPEN
        self.last_seen = now
        body = AuthOk(
            conn_id=conn_id,
            user=user,
            device=device,
            node=self.rules.node,
            heartbeat_s=self.heartbeat_s,
            codec=Codec(self.codec).label,
            rooms=list(self.rooms),
            recovered=recovered or None,
        )
        return [encode_frame(Op.AUTH_OK, encode_body(body), seq=seq), *self._resume(now)]

    def joined(
        self, room: str, online: int, seq: int, now: float, recovered: bool | None = None
    ) -> Output:
        """JOIN done: JOIN_OK (``recovered`` answers its ``since``), then waiting frames."""
        if self.state != SessionState.OPEN:
            return []
        if room not in self.rooms:
            self.rooms = (*self.rooms, room)
        body = encode_body(JoinOk(room, online, recovered))
        return [self.reply(Op.JOIN_OK, body, seq), *self._resume(now)]

    def left(self, room: str, seq: int, now: float) -> Output:
        """LEAVE done: LEAVE_OK, then waiting frames."""
        if self.state != SessionState.OPEN:
            return []
        return [self.reply(Op.LEAVE_OK, encode_body(RoomBody(room)), seq), *self._resume(now)]

    def _resume(self, now: float) -> Output:
        waiting, self.deferred = self.deferred, None
        out: Output = []
        while waiting:
            out.extend(self.receive(waiting.popleft(), now))
            if self.deferred is not None:  # another asynchronous step began: keep the rest
                self.deferred.extend(waiting)
                break
            if self.state == SessionState.CLOSED:
                break
        return out

    # -------------------------------------------------------------- replies

    def reply(self, op: int, body: bytes, seq: int) -> bytes:
        """A reply frame to the request ``seq``."""
        return encode_frame(op, body, seq=seq)

    def heartbeat_ok(self, seq: int, online: dict[str, int], *, interval: bool = False) -> bytes:
        """HEARTBEAT_OK with the rooms' ``online`` counts (and the interval, when asked)."""
        body = encode_heartbeat_ok(online, self.heartbeat_s if interval else None)
        return encode_frame(Op.HEARTBEAT_OK, body, seq=seq)

    def upstream_ok(self, seq: int) -> bytes:
        return encode_frame(Op.UPSTREAM_OK, b"", seq=seq)

    # -------------------------------------------------------------- ends

    def fail(self, error: ProtocolError, seq: int = 0) -> Output:
        """ERROR ``error`` (answering ``seq``); :class:`Closed` follows when it is fatal."""
        if self.state == SessionState.CLOSED:
            return []
        body = encode_body(ErrorBody(error.code.value, error.message))
        out: Output = [ErrorSent(error.code.value), encode_frame(Op.ERROR, body, seq=seq)]
        if error.fatal:
            code = error.code
            out.extend(self.close("rate_limited" if code == ErrorCode.RATE_LIMITED else "closed"))
        return out

    def kick(self, reason: str, exit_reason: str = "kicked") -> Output:
        """KICK with ``reason``, then :class:`Closed` with ``exit_reason`` (§1.2 op 15)."""
        if self.state == SessionState.CLOSED:
            return []
        kick = encode_frame(Op.KICK, encode_body(KickBody(reason)))
        return [kick, *self.close(exit_reason)]

    def close(self, reason: str = "closed") -> Output:
        """End the session now (idempotent: a second call returns nothing)."""
        if self.state == SessionState.CLOSED:
            return []
        self.state = SessionState.CLOSED
        self.deferred = None
        return [Closed(reason)]

    # -------------------------------------------------------------- deadlines

    def check(self, now: float) -> tuple[Output, float | None]:
        """The deadline rules at ``now``: (what to do, when to look again or None if over).

        Before AUTH: ``auth_required`` once ``auth_timeout_s`` has passed.
        Open: the liveness machine of :mod:`~longlink.protocol.liveness`; at
        2.5 silent intervals the session ends with reason ``timeout``.
        """
        state = self.state
        if state == SessionState.CLOSED:
            return [], None
        if state != SessionState.OPEN:
            deadline = self.last_seen + self.rules.auth_timeout_s
            if state == SessionState.AWAIT_AUTH and now >= deadline:
                return self.fail(ProtocolError(ErrorCode.AUTH_REQUIRED, "no AUTH in time")), None
            return [], deadline  # AUTHENTICATING: the registry is answering
        liveness, change = watch(self.liveness, now - self.last_seen, self.heartbeat_s)
        if change == Change.LOST:  # (liveness stays as it was: the close reports it)
            return self.close("timeout"), None
        out: Output = [LivenessChanged(change)] if change != Change.NONE else []
        self.liveness = liveness
        return out, next_check(liveness, self.last_seen, self.heartbeat_s)

    def first_check(self) -> float:
        """When the deadline rules first need a look (schedule :meth:`check` then)."""
        if self.state == SessionState.OPEN:
            return next_check(self.liveness, self.last_seen, self.heartbeat_s)
        return self.last_seen + self.rules.auth_timeout_s


def _report(frame: Frame) -> Report | None:
    """A REPORT body within its bounds, or None (malformed or too big: counted, dropped)."""
    if len(frame.body) > MAX_REPORT_BYTES:
        return None
    try:
        report = decode_body(frame.payload(MAX_REPORT_BYTES), Report)
    except ProtocolError:
        return None
    if (
        len(report.rtt_ms) > MAX_REPORT_ITEMS
        or len(report.failed) > MAX_REPORT_ITEMS
        or len(report.transport) > MAX_REPORT_TEXT
        or (report.network is not None and len(report.network) > MAX_REPORT_TEXT)
        or any(len(name) > MAX_REPORT_TEXT for name in report.failed)
        or any(not 0 <= rtt <= 600_000 for rtt in report.rtt_ms)
        or (report.connect_ms is not None and not 0 <= report.connect_ms <= 600_000)
        or not 0 <= report.reconnects <= 1_000_000
        or len(steps := report.connect_steps or {}) > 8
        or any(len(k) > MAX_REPORT_TEXT or not 0 <= v <= 600_000 for k, v in steps.items())
    ):
        return None
    return report
