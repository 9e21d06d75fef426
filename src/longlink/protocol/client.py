"""The client side of a session (PROTOCOL.md §1.3, §1.4 rules 1 and 3), pure and sans-I/O.

A :class:`ClientSession` is one client's view of the protocol, across all of
its connections: what to send (AUTH, requests, HEARTBEAT, ACK) and what the
frames it receives mean (messages, replies, events, the end of a
connection). The SDK's asyncio code (:mod:`longlink.client`) is a bridge: it
opens transports, feeds the session the frames it reads and the time, and
carries out what the session returns. The session keeps no clock and does no
I/O; :meth:`ClientSession.poll` says when it next needs the time.

One connection, as the session sees it::

    connect(token)   -> AUTH frame            state AUTHENTICATING
    AUTH_OK          -> Opened                state OPEN
    ERROR (no seq)   -> AuthRefused           before AUTH_OK: the attempt failed
    KICK / fatal ERROR / silence              -> Lost(reason, reconnect)
    lost()           -> seqs of the requests that will never be answered

Rules kept here, for every connection of the client:

1. Duplicates are dropped by msg id (a bounded window of recent ids), so a
   redelivered or retried message reaches the application once (§1.3 rule 5).
2. ``ACK_REQUIRED`` messages are acked once taken by the application (or by
   its own :meth:`ClientSession.ack` calls); a duplicate whose original is
   no longer owed is acked at once. ACKs wait in a bounded queue and leave
   as frames: the header's msg id for one, ``{"msg_ids": [...]}`` for more.
3. Heartbeats, adaptive (§1.6 rule 2, :mod:`longlink.protocol.heartbeat`):
   from AUTH_OK's interval, longer while every one is answered, back at once
   when one is not; nothing received for 2.5 intervals loses the connection
   (reconnect). A REPORT (§1.6 rule 1: heartbeat round trips, connect time
   and its steps, transport, reconnects, failed transports) goes after
   connecting and then once a minute.
4. Rooms: those of :attr:`ClientSession.rooms` go in every AUTH, so a
   reconnect re-joins them; the last msg id received from each room goes in
   AUTH and JOIN as ``since`` (§1.4 rule 3), and AUTH_OK / JOIN_OK say
   whether the server could recover what was missed (:class:`Recovery`).
   A room re-joined by a reconnect with no ``since`` (nothing received from
   it yet) cannot be recovered: the session reports it ``Recovery(room,
   False)`` itself, so every room the application may have missed messages
   of is reported. The last id moves only with messages not seen before.
5. What ends a connection and whether reconnecting can help:

   =================================  ===========================
   what happened                      reconnect
   =================================  ===========================
   transport lost, silence            yes
   ERROR ``token_expired`` (fatal)    yes (a fresh token)
   other fatal ERROR                  yes, but ``auth_failed``: no
   KICK ``drain``                     yes, to another node
   KICK any other reason              no
   =================================  ===========================
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

import msgspec

from longlink.protocol.errors import FATAL_CODES, ErrorCode
from longlink.protocol.frames import Codec, Frame, Op, encode_frame
from longlink.protocol.heartbeat import AdaptiveHeartbeat
from longlink.protocol.liveness import GONE_AFTER
from longlink.protocol.messages import (
    AckBody,
    Auth,
    AuthOk,
    ErrorBody,
    HeartbeatBody,
    HeartbeatOk,
    JoinBody,
    JoinOk,
    RoomBody,
    decode_body,
    encode_body,
)
from longlink.protocol.received import (
    MAX_SERVER_FRAME,
    ClientEvent,
    ErrorEvent,
    Kicked,
    Message,
    RecentIds,
    Recovery,
    ServerEvent,
    error_of,
    event_from_body,
    kick_reason,
    unpack_pushes,
)

__all__ = [
    "MAX_ACK_IDS",
    "MAX_SERVER_FRAME",
    "TERMINAL_CODES",
    "AuthRefused",
    "ClientEvent",
    "ClientSession",
    "ErrorEvent",
    "Kicked",
    "Lost",
    "Message",
    "Opened",
    "RecentIds",
    "Recovery",
    "Refused",
    "Reply",
    "ServerEvent",
    "ack_frames",
    "error_of",
    "event_from_body",
    "kick_reason",
    "unpack_pushes",
]

#: Most ids in one ACK frame (keeps it far below the 64 KiB client frame limit).
MAX_ACK_IDS = 1000
#: ERROR codes after which reconnecting cannot help.
TERMINAL_CODES = frozenset({ErrorCode.AUTH_FAILED.value})
_MAX_SEQ = 0xFFFFFFFF
_REPLY_OPS = frozenset({Op.JOIN_OK, Op.LEAVE_OK, Op.UPSTREAM_OK})
_HEARTBEAT = encode_frame(Op.HEARTBEAT)
_json = msgspec.json.Encoder()
#: Seconds between two REPORTs (the first goes right after connecting, §1.6 rule 1).
REPORT_EVERY_S = 60.0
#: Round-trip samples (and failed transports) kept for the next REPORT (the server reads at
#: most 64 of each).
MAX_RTT_SAMPLES = 64


# ---------------------------------------------------------------- what the bridge gets


@dataclass(frozen=True, slots=True)
class Opened:
    """AUTH_OK arrived: the connection is up."""

    auth_ok: AuthOk


@dataclass(frozen=True, slots=True)
class AuthRefused:
    """ERROR in answer to AUTH: this attempt failed (``code`` says why)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to request ``seq`` (JOIN_OK, LEAVE_OK or UPSTREAM_OK)."""

    seq: int
    op: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    """ERROR in answer to request ``seq``."""

    seq: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Lost:
    """The connection is over (close the transport); ``reconnect`` says whether to retry."""

    reason: str
    reconnect: bool


Output = list[Message | ClientEvent | Opened | AuthRefused | Reply | Refused | Lost]


class State(IntEnum):
    IDLE = 0
    AUTHENTICATING = 1
    OPEN = 2


class ClientSession:
    """The protocol state of one client (see the module docstring)."""

    def __init__(
        self,
        *,
        rooms: Iterable[str] = (),
        codecs: Iterable[str] = (Codec.BROTLI.label, Codec.ZLIB.label),
        heartbeat_s: int | None = None,
        dedup_size: int = 10_000,
        auto_ack: bool = True,
        max_frame: int = MAX_SERVER_FRAME,
        adaptive_heartbeat: bool = True,
        report: bool = True,
    ) -> None:
        #: Rooms sent in every AUTH; kept up to date by join and leave.
        self.rooms: set[str] = set(rooms)
        #: Online counts per room as last told by HEARTBEAT_OK and JOIN_OK.
        self.online: dict[str, int] = {}
        #: The last msg id received from each room (``since`` of AUTH and JOIN).
        self.last_ids: dict[str, int] = {}
        self.codecs = list(codecs)
        self.heartbeat_s = heartbeat_s
        self.auto_ack = auto_ack
        self.max_frame = max_frame
        self.state = State.IDLE
        self.auth_ok: AuthOk | None = None
        self._opened_before = False  # a connection was up before: the next AUTH is a reconnect
        self._unnamed: list[str] = []  # rooms of this AUTH a reconnect could not name a since for
        self._seen = RecentIds(dedup_size)
        self._limit = max(dedup_size, MAX_ACK_IDS)
        self._owed: OrderedDict[int, None] = OrderedDict()
        self._acks: OrderedDict[int, None] = OrderedDict()
        self._pending: dict[int, int] = {}  # seq -> op of requests awaiting their reply
        self._seq = 0
        self._fatal: str | None = None  # the fatal ERROR code the server sent before closing
        self._auth_sent = 0.0
        self.adaptive_heartbeat = adaptive_heartbeat
        self.reporting = report
        #: Transports that failed since the last connect (the bridge fills it; sent in REPORT).
        self.failed: list[str] = []
        #: The network type, where the platform tells it (sent in REPORT).
        self.network: str | None = None
        self.heartbeat: AdaptiveHeartbeat | None = None
        self.connections = 0  # connections opened (reconnects = connections - 1)
        self.heartbeats_sent = 0
        self._last_rx = 0.0
        self._next_beat = 0.0
        self._beat_sent: float | None = None  # the HEARTBEAT in flight, sent at
        self._ask_next: int | None = None  # a fall-back the next HEARTBEAT must carry
        self._span = 0.0  # the interval liveness is judged by (the longest in flight)
        self._rtts: list[int] = []
        self._transport = ""
        self._connect_started = 0.0
        self._steps: dict[str, int] = {}
        self._connect_ms: int | None = None
        self._report_at = float("inf")

    # -------------------------------------------------------------- connection life

    def connect(
        self,
        token: str,
        now: float,
        *,
        transport: str = "",
        started: float | None = None,
        steps: dict[str, int] | None = None,
    ) -> bytes:
        """Begin a connection: the AUTH frame to send first (rooms and ``since`` included).

        ``transport`` names it, ``started`` is when the attempt began (before
        the control call) and ``steps`` the milliseconds each step took so far
        (``control``, ``transport``): the REPORT carries them with AUTH's own.
        """
        rooms = sorted(self.rooms)
        since = {room: str(self.last_ids[room]) for room in rooms if room in self.last_ids}
        self._unnamed = [room for room in rooms if room not in since] if self._opened_before else []
        auth = Auth(token, rooms, self.codecs, self.heartbeat_s, since)
        self.state = State.AUTHENTICATING
        self.auth_ok = None
        self._fatal = None
        self._pending.clear()
        self._last_rx = now
        self._transport = transport
        self._connect_started = now if started is None else started
        self._steps = dict(steps or {})
        self._auth_sent = now
        return encode_frame(Op.AUTH, encode_body(auth))

    def transport_failed(self, transport: str) -> None:
        """A transport could not reach an endpoint, or closed before AUTH_OK: the next
        REPORT names it in ``failed`` (the last :data:`MAX_RTT_SAMPLES` failures kept)."""
        self.failed.append(transport)
        if len(self.failed) > MAX_RTT_SAMPLES:
            del self.failed[0]

    def lost(self) -> list[int]:
        """The connection is gone: the seqs of requests that will never be answered."""
        self.state = State.IDLE
        seqs = list(self._pending)
        self._pending.clear()
        return seqs

    @property
    def open(self) -> bool:
        return self.state == State.OPEN

    # -------------------------------------------------------------- frames in

    def receive(self, frame: Frame, now: float) -> Output:
        """Apply one server frame; raises :class:`ProtocolError` on a malformed one
        (one bad frame does not end the connection: the caller logs and goes on)."""
        self._last_rx = now
        op = frame.op
        if op == Op.PUSH:
            return list(self._admit(unpack_pushes(frame, self.max_frame)))
        if op == Op.HEARTBEAT_OK:
            answer = decode_body(frame.body, HeartbeatOk)
            self.online.update(answer.online)
            self._heartbeat_answered(answer.heartbeat_s, now)
            return []
        if op == Op.AUTH_OK:
            return self._opened(decode_body(frame.body, AuthOk), now)
        if op in _REPLY_OPS:
            out: Output = []
            if self._pending.pop(frame.seq, None) is not None:
                out.append(Reply(frame.seq, op, frame.body))
            if op == Op.JOIN_OK:
                joined = decode_body(frame.body, JoinOk)
                self.online[joined.room] = joined.online
                if joined.recovered is not None:
                    out.append(Recovery(joined.room, joined.recovered))
            return out
        if op == Op.EVENT:
            return [event_from_body(frame.body)]
        if op == Op.ERROR:
            return self._error(error_of(frame.body), frame.seq)
        if op == Op.KICK:
            reason = kick_reason(frame.body)
            # A draining node sheds its clients: go elsewhere. Any other kick is final.
            return [Kicked(reason), Lost(f"kicked: {reason}", reconnect=reason == "drain")]
        return []  # nothing else is for a client (ROOM only inside a BATCH)

    def closed_by_server(self) -> Lost:
        """The transport ended: why, and whether reconnecting can help."""
        code = self._fatal
        if code is None:
            return Lost("connection closed", reconnect=True)
        return Lost(f"closed after ERROR {code}", reconnect=code not in TERMINAL_CODES)

    def _opened(self, auth_ok: AuthOk, now: float) -> Output:
        self.state = State.OPEN
        self.auth_ok = auth_ok
        self.connections += 1
        interval = auth_ok.heartbeat_s
        self.heartbeat = None
        self._beat_sent = None
        self._ask_next = None
        self._span = float(interval)
        self._next_beat = float("inf")
        if interval > 0:
            self.heartbeat = AdaptiveHeartbeat(interval, adaptive=self.adaptive_heartbeat)
            self._next_beat = now + interval
        self._steps["auth"] = round((now - self._auth_sent) * 1000)
        self._connect_ms = round((now - self._connect_started) * 1000)
        self._report_at = now if self.reporting else float("inf")
        out: Output = [Opened(auth_ok)]
        recovered = {room: False for room in self._unnamed}  # rule 4: nothing to name
        recovered.update(auth_ok.recovered or {})
        for room, ok in sorted(recovered.items()):
            out.append(Recovery(room, ok))
        self._opened_before = True
        self._unnamed = []
        return out

    def _error(self, error: ErrorBody, seq: int) -> Output:
        out: Output = []
        if error.code in FATAL_CODES:
            self._fatal = error.code  # the server closes next (§1.2 op 14)
        if self.state == State.AUTHENTICATING and not seq:
            out.append(AuthRefused(error.code, error.message))
        elif seq and self._pending.pop(seq, None) is not None:
            out.append(Refused(seq, error.code, error.message))
        else:
            out.append(ErrorEvent(error.code, error.message, seq))
        return out

    # -------------------------------------------------------------- messages and ACKs

    def _admit(self, messages: list[Message]) -> Iterable[Message]:
        """Rule 1 and the ACK bookkeeping of rule 2; remembers each room's last id."""
        for message in messages:
            msg_id = message.msg_id
            if not msg_id:
                yield message  # not a message id (§1.1): nothing to deduplicate
                continue
            if not self._seen.add(msg_id):
                if message.guaranteed and msg_id not in self._owed:
                    self.queue_acks([msg_id])
                continue
            if message.room is not None:
                self.last_ids[message.room] = msg_id
            if message.guaranteed:
                self._owed[msg_id] = None
                if len(self._owed) > self._limit:
                    self._owed.popitem(last=False)
            yield message

    def taken(self, message: Message) -> None:
        """The application took ``message``: with ``auto_ack`` its ACK is queued now."""
        if self.auto_ack and message.guaranteed and message.msg_id:
            self._owed.pop(message.msg_id, None)
            self.queue_acks([message.msg_id])

    def acked(self, ids: Iterable[int]) -> None:
        """The application acked ``ids`` itself; later duplicates are acked by the session."""
        for msg_id in ids:
            self._owed.pop(msg_id, None)

    def queue_acks(self, ids: Iterable[int]) -> None:
        """Queue ACKs for ``ids`` (bounded: past the bound the oldest is dropped, and the
        server's next retry of it is acked then)."""
        queued = self._acks
        for msg_id in ids:
            queued[msg_id] = None
        while len(queued) > self._limit:
            queued.popitem(last=False)

    @property
    def acks_queued(self) -> int:
        return len(self._acks)

    def take_acks(self) -> list[int]:
        """Up to :data:`MAX_ACK_IDS` queued ids, oldest first, taken off the queue."""
        queued = self._acks
        return [queued.popitem(last=False)[0] for _ in range(min(len(queued), MAX_ACK_IDS))]

    def requeue_acks(self, ids: list[int]) -> None:
        """Put back ``ids`` that could not be written, first in line."""
        for msg_id in reversed(ids):
            self._acks[msg_id] = None
            self._acks.move_to_end(msg_id, last=False)

    # -------------------------------------------------------------- requests

    def request(self, op: int, body: bytes) -> tuple[int, bytes]:
        """A request frame with a fresh seq (its reply carries the same seq, §1.1)."""
        self._seq = self._seq % _MAX_SEQ + 1  # 1, 2, … wrapping before 2**32, never 0
        self._pending[self._seq] = op
        return self._seq, encode_frame(op, body, seq=self._seq)

    def forget(self, seq: int) -> None:
        """Stop waiting for the reply to ``seq`` (the caller gave up)."""
        self._pending.pop(seq, None)

    def join(self, room: str) -> tuple[int, bytes]:
        """A JOIN request (with ``since`` when a message of ``room`` was received before)."""
        last = self.last_ids.get(room)
        body = JoinBody(room, str(last) if last is not None else None)
        return self.request(Op.JOIN, encode_body(body))

    def joined(self, room: str) -> None:
        """JOIN_OK arrived: ``room`` is re-joined on every reconnect from now on."""
        self.rooms.add(room)

    def leave(self, room: str) -> tuple[int, bytes]:
        """A LEAVE request; the room is dropped at once, so a reconnect does not re-join it."""
        self.rooms.discard(room)
        self.last_ids.pop(room, None)
        return self.request(Op.LEAVE, encode_body(RoomBody(room)))

    # -------------------------------------------------------------- time

    def poll(self, now: float) -> tuple[list[bytes | Lost], float]:
        """Heartbeats, liveness and REPORT at ``now``: what to send, and when to call again."""
        beat = self.heartbeat
        if self.state != State.OPEN or beat is None:
            return [], float("inf")
        out: list[bytes | Lost] = []
        if self._beat_sent is not None and now - self._beat_sent >= beat.reply_timeout_s:
            self._beat_sent = None  # missed: back to the base interval, and beat again now
            self._ask_next = beat.missed()
            self._next_beat = now
        if now >= self._next_beat:
            silence = now - self._last_rx
            if silence > GONE_AFTER * self._span:
                return [Lost(f"silent for {silence:.1f}s", reconnect=True)], float("inf")
            ask, self._ask_next = self._ask_next or beat.ask(), None
            beat.sent(ask)
            body = encode_body(HeartbeatBody(ask)) if ask is not None else b""
            out.append(encode_frame(Op.HEARTBEAT, body) if body else _HEARTBEAT)
            self.heartbeats_sent += 1
            self._beat_sent = now
            self._span = max(self._span, float(beat.interval))
            self._next_beat = now + beat.interval
        if now >= self._report_at:
            out.append(self._report())
            self._report_at = now + REPORT_EVERY_S
        wake = min(self._next_beat, self._report_at)
        if self._beat_sent is not None:
            wake = min(wake, self._beat_sent + beat.reply_timeout_s)
        return out, wake

    def _heartbeat_answered(self, granted: int | None, now: float) -> None:
        beat, sent = self.heartbeat, self._beat_sent
        if beat is None or sent is None:
            return  # an answer to nothing in flight (a late one after a miss): only counts
        self._beat_sent = None
        rtts = self._rtts
        rtts.append(round((now - sent) * 1000))
        if len(rtts) > MAX_RTT_SAMPLES:
            del rtts[0]
        beat.answered(granted)
        self._span = float(beat.interval)
        self._next_beat = sent + beat.interval

    def _report(self) -> bytes:
        """A REPORT with what was measured since the last one (§1.6 rule 1)."""
        report: dict[str, object] = {
            "rtt_ms": self._rtts,
            "transport": self._transport or "unknown",
            "reconnects": max(0, self.connections - 1),
        }
        if self._connect_ms is not None:
            report["connect_ms"] = self._connect_ms
            report["connect_steps"] = self._steps
        if self.failed:
            report["failed"] = list(self.failed)
        if self.network is not None:
            report["network"] = self.network
        self._rtts = []
        self._connect_ms = None  # a connection's connect time is reported once
        self._steps = {}
        self.failed = []
        return encode_frame(Op.REPORT, _json.encode(report))


def ack_frames(ids: list[int]) -> list[bytes]:
    """ACK frames for ``ids``: the header for one id, JSON bodies for more (§1.2 op 6)."""
    if len(ids) == 1:
        return [encode_frame(Op.ACK, msg_id=ids[0])]
    return [
        encode_frame(Op.ACK, encode_body(AckBody(ids[i : i + MAX_ACK_IDS])))
        for i in range(0, len(ids), MAX_ACK_IDS)
    ]
