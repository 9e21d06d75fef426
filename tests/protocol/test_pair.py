"""The server and client sessions against each other, no sockets (PROTOCOL.md §1.3, §1.4, §1.6)."""

from __future__ import annotations

import msgspec
import pytest

from longlink.protocol import (
    Codec,
    ErrorCode,
    Flag,
    Frame,
    Op,
    ProtocolError,
    decode_frame,
    encode_frame,
)
from longlink.protocol.client import (
    AuthRefused,
    ClientSession,
    ErrorEvent,
    Kicked,
    Lost,
    Message,
    Opened,
    Recovery,
    Refused,
    Reply,
    ack_frames,
)
from longlink.protocol.limits import RateLimit
from longlink.protocol.messages import HeartbeatBody, JoinOk, decode_body, encode_body
from longlink.protocol.push import push_frame, room_batch, room_tag
from longlink.protocol.server import SessionRules, SessionState
from tests.protocol.pair import Pair


def opened(pair: Pair) -> Opened:
    out = pair.connect()
    first = out[0]
    assert isinstance(first, Opened), out
    return first


def test_auth_opens_both_sides() -> None:
    pair = Pair(client=ClientSession(rooms=["lobby"], codecs=["zlib"], heartbeat_s=20))
    auth_ok = opened(pair).auth_ok
    assert (auth_ok.conn_id, auth_ok.user, auth_ok.device) == ("c1", "alice", "d1")
    assert (auth_ok.rooms, auth_ok.codec, auth_ok.heartbeat_s) == (["lobby"], "zlib", 20)
    assert pair.server.state == SessionState.OPEN and pair.server.rooms == ("lobby",)
    assert pair.server.codec == Codec.ZLIB and pair.client.open


def test_a_bad_token_is_refused_and_final() -> None:
    pair = Pair()
    out = pair.connect("forged")
    assert out == [AuthRefused("auth_failed", "invalid connection token")]
    assert pair.closed == "closed" and pair.server.closed
    assert pair.client.closed_by_server() == Lost("closed after ERROR auth_failed", False)


def test_token_expired_allows_a_reconnect() -> None:
    pair = Pair()
    pair.send(pair.client.connect("x", pair.now))
    pair.apply(pair.server.fail(ProtocolError(ErrorCode.TOKEN_EXPIRED, "expired")))
    pair.run()
    assert pair.client.closed_by_server().reconnect


@pytest.mark.parametrize("op", [Op.HEARTBEAT, Op.JOIN, Op.ACK, Op.UPSTREAM, Op.REPORT])
def test_anything_before_auth_is_auth_required_and_fatal(op: Op) -> None:
    pair = Pair()
    out = pair.server.receive(decode_frame(encode_frame(op)), 0)
    [frame] = pair.server_frames(out)
    assert frame.op == Op.ERROR and b"auth_required" in frame.body
    assert pair.server.closed


def test_server_ops_from_a_client_are_bad_frames() -> None:
    pair = Pair()
    opened(pair)
    pair.send(encode_frame(Op.PUSH, b"x", msg_id=1))
    out = pair.run()
    assert out == [ErrorEvent("bad_frame", "op PUSH is server's")]
    assert pair.closed == "closed"


def test_second_auth_is_refused_but_not_fatal() -> None:
    pair = Pair()
    opened(pair)
    pair.send(pair.client.connect("good-token", pair.now))
    pair.run()
    assert not pair.server.closed and pair.closed is None
    assert any(isinstance(e, AuthRefused | ErrorEvent) for e in pair.received)


def test_join_and_leave_answer_their_seq_and_count() -> None:
    pair = Pair(online={"news": 4})
    opened(pair)
    seq, frame = pair.client.join("news")
    pair.send(frame)
    [reply] = pair.run()
    assert isinstance(reply, Reply) and reply.seq == seq and reply.op == Op.JOIN_OK
    assert decode_body(reply.body, JoinOk).online == 5 and pair.client.online["news"] == 5
    pair.client.joined("news")
    assert pair.server.rooms == ("news",) and pair.client.rooms == {"news"}
    seq, frame = pair.client.leave("news")
    pair.send(frame)
    [reply] = pair.run()
    assert isinstance(reply, Reply) and reply.seq == seq and reply.op == Op.LEAVE_OK
    assert pair.server.rooms == () and pair.client.rooms == set()
    seq, frame = pair.client.leave("never")  # not joined: answered at once
    pair.send(frame)
    assert pair.run() == [Reply(seq, Op.LEAVE_OK, b'{"room":"never"}')]


def test_room_ids_follow_the_one_id_rule() -> None:
    pair = Pair()
    opened(pair)
    _, frame = pair.client.join("a b")  # a space is fine everywhere (protocol/ids.py)
    pair.send(frame)
    assert isinstance(pair.run()[0], Reply)
    seq, frame = pair.client.join("bad\x00room")
    pair.send(frame)
    [refused] = pair.run()
    assert isinstance(refused, Refused) and refused.seq == seq and refused.code == "not_allowed"
    assert not pair.server.closed


def test_room_limit_refuses_one_join_and_keeps_the_connection() -> None:
    pair = Pair(rules=SessionRules(max_rooms=2))
    opened(pair)
    for room in ("a", "b"):
        pair.send(pair.client.join(room)[1])
    seq, frame = pair.client.join("c")
    pair.send(frame)
    out = pair.run()
    assert out[-1] == Refused(seq, "room_limit", "at most 2 rooms")
    assert pair.server.rooms == ("a", "b") and not pair.server.closed


def test_frames_wait_in_order_while_a_step_runs() -> None:
    pair = Pair(hold=True)
    pair.send(pair.client.connect("good-token", pair.now))
    seq_a, join_a = pair.client.join("a")
    seq_b, join_b = pair.client.join("b")
    pair.send(join_a + join_b + encode_frame(Op.HEARTBEAT))
    assert pair.run() == [] and len(pair.held) == 1  # AUTH waits for the "registry"
    pair.release()  # AUTH_OK, then JOIN a starts (and holds the rest)
    got = pair.run()
    assert isinstance(got[0], Opened) and len(pair.held) == 1
    pair.release()
    pair.run()
    pair.release()
    pair.run()
    replies = [e.seq for e in pair.received if isinstance(e, Reply)]
    assert replies == [seq_a, seq_b] and pair.server.rooms == ("a", "b")
    assert pair.client.online == {"a": 1, "b": 1}  # the heartbeat came last


def test_too_many_waiting_frames_is_a_flood() -> None:
    pair = Pair(rules=SessionRules(max_deferred=3), hold=True)
    pair.send(pair.client.connect("good-token", pair.now) + encode_frame(Op.HEARTBEAT) * 4)
    pair.run()
    assert pair.server.closed and pair.closed == "rate_limited"


def test_pushes_are_tagged_deduplicated_and_acked_when_taken() -> None:
    pair = Pair()
    opened(pair)
    tag = room_tag("stage")
    batch = room_batch(tag, [push_frame(b'"a"', 11), push_frame(b'"b"', 12, Flag.ACK_REQUIRED)])
    got = pair.push(batch + batch)  # the same batch twice: the second is all duplicates
    assert got == [
        Message(11, b'"a"', room="stage"),
        Message(12, b'"b"', guaranteed=True, room="stage"),
    ]
    assert pair.client.last_ids == {"stage": 12}
    assert pair.client.acks_queued == 0  # owed to whoever takes message 12
    pair.client.taken(got[1])
    for frame in ack_frames(pair.client.take_acks()):
        pair.send(frame)
    pair.run()
    assert pair.acked == [12]
    again = pair.push(push_frame(b'"b"', 12, Flag.ACK_REQUIRED))  # a late retry
    assert again == [] and pair.client.take_acks() == [12]  # acked again at once
    plain = pair.push(push_frame(b"x", 13))
    assert plain == [Message(13, b"x")] and plain[0].room is None


def test_zlib_room_batch_and_area_tag() -> None:
    pair = Pair()
    opened(pair)
    frames = [push_frame(b"%d" % i, 100 + i) for i in range(50)]
    got = pair.push(room_batch(room_tag(area="hall"), frames, Codec.ZLIB))
    assert [m.msg_id for m in got] == list(range(100, 150))
    assert {m.room for m in got} == {"hall"}


def test_heartbeats_both_ways_and_liveness_on_each_side() -> None:
    pair = Pair(client=ClientSession(rooms=["r"], heartbeat_s=10, report=False), online={"r": 7})
    opened(pair)
    assert pair.tick(9.9) == ([], [])  # not yet
    _, out = pair.tick(0.1)
    assert out == [encode_frame(Op.HEARTBEAT)]
    pair.run()
    assert pair.client.online == {"r": 7} and pair.server.last_seen == pair.now
    # The client goes silent: the server closes it after 2.5 intervals (§1.3 rule 3).
    out, again = pair.server.check(pair.now + 24.9)
    assert out != [] and again is not None  # SUSPECT on the way
    out, again = pair.server.check(pair.now + 25.0)
    pair.apply(out)
    assert pair.closed == "timeout" and again is None


def test_a_silent_server_loses_the_connection_on_the_client() -> None:
    pair = Pair(client=ClientSession(heartbeat_s=10, report=False))
    opened(pair)
    for _ in range(2):
        _, out = pair.tick(10)
        assert out == [encode_frame(Op.HEARTBEAT)]
        pair.to_server = b""  # lost on the way: no HEARTBEAT_OK comes back
    _, out = pair.tick(10)
    assert out == [Lost("silent for 30.0s", reconnect=True)]


def test_adaptive_heartbeat_is_clamped_and_followed() -> None:
    pair = Pair(rules=SessionRules(max_heartbeat_s=60))
    opened(pair)
    body = encode_body(HeartbeatBody(heartbeat_s=500))
    pair.send(encode_frame(Op.HEARTBEAT, body, seq=3))
    pair.run()
    assert pair.server.heartbeat_s == 60
    answer = pair.server_frames([pair.server.heartbeat_ok(3, {}, interval=True)])[0]
    assert msgspec.json.decode(answer.body) == {"online": {}, "heartbeat_s": 60}
    pair.now += 60 * 2.4
    assert pair.server.check(pair.now)[1] is not None  # alive on the longer interval


@pytest.mark.parametrize(("reason", "again"), [("drain", True), ("banned", False)])
def test_kicks(reason: str, again: bool) -> None:
    pair = Pair()
    opened(pair)
    pair.apply(pair.server.kick(reason))
    assert pair.run() == [Kicked(reason), Lost(f"kicked: {reason}", again)]
    assert pair.closed == "kicked"


def test_recovery_since_travels_and_its_answer_comes_back() -> None:
    pair = Pair(client=ClientSession(rooms=["live"]))
    opened(pair)
    pair.push(room_batch(room_tag("live"), [push_frame(b"1", 41), push_frame(b"2", 42)]))
    # Reconnect: a new server session; the client asks for what followed 42.
    pair.recover = False
    pair.server = type(pair.server)(pair.rules, pair.now)
    out = pair.connect()
    assert pair.since == {"live": 42}
    assert out[1:] == [Recovery("live", False)]
    pair.send(pair.client.join("other")[1])
    pair.run()
    assert pair.since["other"] is None  # nothing received from it yet


def test_a_reconnect_reports_rooms_it_could_not_name_a_since_for() -> None:
    pair = Pair(client=ClientSession(rooms=["quiet", "live"]))
    assert opened(pair) and pair.run() == []  # first connection: nothing to recover
    pair.push(room_batch(room_tag("live"), [push_frame(b"1", 41)]))
    pair.server = type(pair.server)(pair.rules, pair.now)
    out = pair.connect()
    assert pair.since == {"live": 41}  # nothing received from "quiet": no since for it
    assert out[1:] == [Recovery("live", True), Recovery("quiet", False)]


def test_the_last_id_moves_only_with_new_messages() -> None:
    pair = Pair(client=ClientSession(rooms=["r"]))
    opened(pair)
    pair.push(room_batch(room_tag("r"), [push_frame(b"1", 41), push_frame(b"2", 42)]))
    out = pair.push(room_batch(room_tag("r"), [push_frame(b"1", 41)]))  # a duplicate
    assert out == [] and pair.client.last_ids == {"r": 42}


def test_a_flood_of_requests_is_rate_limited_then_closed() -> None:
    pair = Pair(rules=SessionRules(control=RateLimit(1.0, 2)))
    opened(pair)
    for _ in range(10):
        pair.send(pair.client.join("r")[1])
    out = pair.run()
    codes = [e.code for e in out if isinstance(e, Refused)]
    assert codes and set(codes) == {"rate_limited"}
    assert pair.server.closed and pair.closed == "rate_limited"


def test_upstream_within_its_limit_and_when_off() -> None:
    pair = Pair()
    opened(pair)
    seq, frame = pair.client.request(Op.UPSTREAM, b"hello")
    pair.send(frame)
    assert pair.run() == [Reply(seq, Op.UPSTREAM_OK, b"")] and pair.upstream == [b"hello"]
    off = Pair(rules=SessionRules(upstream_enabled=False))
    opened(off)
    seq, frame = off.client.request(Op.UPSTREAM, b"x")
    off.send(frame)
    [refused] = off.run()
    assert isinstance(refused, Refused) and refused.code == "not_allowed"


def test_report_is_bounded_and_never_answered() -> None:
    pair = Pair()
    opened(pair)
    good = msgspec.json.encode({"rtt_ms": [20, 31], "transport": "ws", "reconnects": 1})
    out = pair.server.receive(decode(encode_frame(Op.REPORT, good)), pair.now)
    assert [type(e).__name__ for e in out] == ["ReportReceived"] and out[0].report  # type: ignore[union-attr]
    huge = msgspec.json.encode({"rtt_ms": [1] * 5000, "transport": "ws"})
    [dropped] = pair.server.receive(decode(encode_frame(Op.REPORT, huge)), pair.now)
    assert dropped.report is None  # type: ignore[union-attr]
    assert not pair.server.closed


def test_auth_deadline() -> None:
    pair = Pair(rules=SessionRules(auth_timeout_s=5))
    out, again = pair.server.check(pair.now + 1)
    assert out == [] and again == pair.now + 5
    out, again = pair.server.check(pair.now + 5)
    [frame] = pair.server_frames(out)
    assert frame.op == Op.ERROR and b"auth_required" in frame.body and again is None


def decode(data: bytes) -> Frame:
    return decode_frame(data)


def test_heartbeats_lengthen_while_answered_and_fall_back_on_a_miss() -> None:
    pair = Pair(
        rules=SessionRules(max_heartbeat_s=20),
        client=ClientSession(heartbeat_s=10, report=False),
    )
    opened(pair)
    sent: list[bytes] = []
    for _ in range(5):
        _, out = pair.tick(pair.client.heartbeat.interval)  # type: ignore[union-attr]
        sent.extend(out)  # type: ignore[arg-type]
        pair.run()
    bodies = [decode_frame(f).body for f in sent]
    assert bodies[:3] == [b"", b"", b""]  # three answered at the base interval ...
    assert bodies[3] == b'{"heartbeat_s":15}'  # ... then a longer one is asked for
    assert pair.server.heartbeat_s == 15 and pair.client.heartbeat.interval == 15  # type: ignore[union-attr]
    # The server's deadline follows: 2.5 x 15 s of silence is still alive.
    assert pair.server.check(pair.now + 37)[1] is not None
    # A heartbeat goes unanswered: back to the base at once, and the server is told.
    _, out = pair.tick(15)
    pair.to_server = b""  # lost on the way
    _, out = pair.tick(pair.client.heartbeat.reply_timeout_s + 0.01)  # type: ignore[union-attr]
    assert [decode_frame(f).body for f in out] == [b'{"heartbeat_s":10}']  # type: ignore[arg-type]
    assert pair.client.heartbeat.interval == 10  # type: ignore[union-attr]
    pair.run()
    assert pair.server.heartbeat_s == 10


def test_a_report_after_connecting_then_once_a_minute() -> None:
    pair = Pair(client=ClientSession(heartbeat_s=10, adaptive_heartbeat=False))
    pair.send(pair.client.connect("good-token", pair.now, transport="ws", steps={"control": 12}))
    pair.now += 0.05
    pair.run()
    _, out = pair.tick(0)
    [report_frame] = out
    first = msgspec.json.decode(decode_frame(report_frame).body)  # type: ignore[arg-type]
    assert first["transport"] == "ws" and first["connect_ms"] >= 50
    assert first["connect_steps"]["control"] == 12 and first["reconnects"] == 0
    frames: list[bytes] = []
    for _ in range(6):  # a minute of answered heartbeats
        frames.extend(pair.tick(10)[1])  # type: ignore[arg-type]
        pair.run()
    reports = [
        msgspec.json.decode(decode_frame(f).body) for f in frames if decode_frame(f).op == Op.REPORT
    ]
    assert len(reports) == 1 and "connect_ms" not in reports[0]
    assert len(reports[0]["rtt_ms"]) == 5  # the sixth heartbeat is still in flight
    out = pair.server.receive(decode_frame(report_frame), pair.now)  # type: ignore[arg-type]
    assert out[0].report is not None  # type: ignore[union-attr]


def test_failed_transports_go_in_the_next_report_once_and_bounded() -> None:
    pair = Pair(client=ClientSession(heartbeat_s=10, adaptive_heartbeat=False))
    for _ in range(70):  # e.g. many endpoints over many reconnect attempts
        pair.client.transport_failed("ws")
    pair.send(pair.client.connect("good-token", pair.now, transport="tcp"))
    pair.run()
    [report_frame] = pair.tick(0)[1]
    report = msgspec.json.decode(decode_frame(report_frame).body)  # type: ignore[arg-type]
    assert report["failed"] == ["ws"] * 64  # within the server's bound: the report is kept
    [accepted] = pair.server.receive(decode_frame(report_frame), pair.now)  # type: ignore[arg-type]
    assert accepted.report is not None  # type: ignore[union-attr]
    assert pair.client.failed == []  # named once
