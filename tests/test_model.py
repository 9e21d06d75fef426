"""Messages between layers and message ids (longlink.model)."""

from __future__ import annotations

import itertools
import threading
import time

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longlink.model import (
    EPOCH_MS,
    MAX_NODE,
    MAX_SEQ,
    SEQ_BITS,
    IdsUnavailable,
    Message,
    MsgIdGenerator,
    Priority,
    Target,
    pack_message,
    unpack_message,
)

MAX_U64 = 2**64 - 1


def node_of(msg_id: int) -> int:
    return (msg_id >> SEQ_BITS) & MAX_NODE


class FakeClock:
    """Replaces ``time.time`` as the generator sees it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, start: float) -> None:
        self.now = start
        # The generator calls time.time() through the module: patch it there.
        monkeypatch.setattr(time, "time", lambda: self.now)


# ------------------------------------------------------------------ MsgIdGenerator


def test_ids_strictly_increase_over_100k() -> None:
    gen = MsgIdGenerator(7)
    ids = [gen.next_id() for _ in range(100_000)]
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert all(0 < i <= MAX_U64 for i in (ids[0], ids[-1]))


@pytest.mark.parametrize("node", [0, 1, 512, MAX_NODE])
def test_node_bits_round_trip(node: int) -> None:
    gen = MsgIdGenerator(node)
    assert {node_of(gen.next_id()) for _ in range(5000)} == {node}


@pytest.mark.parametrize("node", [-1, MAX_NODE + 1])
def test_node_out_of_range_is_refused(node: int) -> None:
    with pytest.raises(ValueError):
        MsgIdGenerator(node)


def test_timestamp_is_close_to_now() -> None:
    before = time.time() * 1000
    msg_id = MsgIdGenerator(3).next_id()
    after = time.time() * 1000
    assert before - 1 <= MsgIdGenerator.timestamp_ms(msg_id) <= after + 1
    assert msg_id >> 63 == 0  # 41 bits of ms since 2024 leave the top bit free for decades


def test_two_nodes_never_collide() -> None:
    a, b = MsgIdGenerator(1), MsgIdGenerator(2)
    ids_a = [a.next_id() for _ in range(20_000)]
    ids_b = [b.next_id() for _ in range(20_000)]
    assert not set(ids_a) & set(ids_b)


def test_two_nodes_never_collide_on_the_same_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeClock(monkeypatch, 1_800_000_000.0)
    a, b = MsgIdGenerator(0), MsgIdGenerator(MAX_NODE)
    ids_a = {a.next_id() for _ in range(10_000)}
    ids_b = {b.next_id() for _ in range(10_000)}
    assert len(ids_a) == len(ids_b) == 10_000
    assert not ids_a & ids_b


def test_clock_stepping_back_never_gives_a_smaller_id(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(monkeypatch, 1_800_000_000.0)
    gen = MsgIdGenerator(5)
    last = 0
    for now in (1_800_000_000.0, 1_799_999_990.0, 1_700_000_000.0, 1_800_000_000.5, 1.0):
        clock.now = now
        for _ in range(100):
            msg_id = gen.next_id()
            assert msg_id > last
            assert node_of(msg_id) == 5
            last = msg_id


def test_more_than_4096_ids_in_one_millisecond_borrow_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeClock(monkeypatch, 1_800_000_000.0)
    gen = MsgIdGenerator(9)
    ids = [gen.next_id() for _ in range(3 * (MAX_SEQ + 1))]
    assert all(a < b for a, b in itertools.pairwise(ids))
    stamps = [MsgIdGenerator.timestamp_ms(i) for i in ids]
    assert stamps[0] == 1_800_000_000_000
    assert stamps[-1] - stamps[0] <= 3


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(1_704_067_200.0, 3_000_000_000.0), min_size=1, max_size=30))
def test_any_clock_sequence_gives_increasing_ids(times: list[float]) -> None:
    gen = MsgIdGenerator(11)
    last = 0
    with pytest.MonkeyPatch.context() as monkeypatch:
        clock = FakeClock(monkeypatch, times[0])
        for now in times:
            clock.now = now
            msg_id = gen.next_id()
            assert msg_id > last
            last = msg_id


def test_threads_share_a_generator_without_duplicates() -> None:
    gen = MsgIdGenerator(4)
    results: list[list[int]] = [[] for _ in range(4)]

    def work(out: list[int]) -> None:
        out.extend(gen.next_id() for _ in range(5000))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for out in results for i in out]
    assert len(set(every)) == len(every) == 20_000
    for out in results:
        assert out == sorted(out)


def test_timestamp_of_epoch() -> None:
    assert MsgIdGenerator.timestamp_ms(0) == EPOCH_MS


# ------------------------------------------------------------------ a held number


def test_a_generator_without_a_number_mints_nothing() -> None:
    gen = MsgIdGenerator()
    assert gen.node is None
    with pytest.raises(IdsUnavailable):
        gen.next_id()


def test_a_held_number_mints_after_the_floor_even_in_the_same_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeClock(monkeypatch, 1_800_000_000.0)
    gen = MsgIdGenerator()
    now_ms = 1_800_000_000_000
    gen.hold(6, after_ms=now_ms, until_ms=now_ms + 10_000, valid_until=time.monotonic() + 60)
    first = gen.next_id()
    assert node_of(first) == 6 and gen.node == 6
    # The earlier holder may have minted anything stamped now_ms: start after it.
    assert MsgIdGenerator.timestamp_ms(first) == now_ms + 1
    assert gen.last_ms == now_ms + 1


def test_a_floor_in_the_future_holds_stamps_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeClock(monkeypatch, 1_800_000_000.0)
    gen = MsgIdGenerator()
    floor = 1_800_000_005_000  # an earlier holder's range ended 5 s ahead of this clock
    gen.hold(1, after_ms=floor, until_ms=floor + 10_000, valid_until=time.monotonic() + 60)
    ids = [gen.next_id() for _ in range(5000)]
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert min(MsgIdGenerator.timestamp_ms(i) for i in ids) > floor


def test_no_id_is_stamped_past_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(monkeypatch, 1_800_000_000.0)
    gen = MsgIdGenerator()
    now_ms = 1_800_000_000_000
    gen.hold(2, after_ms=0, until_ms=now_ms + 1, valid_until=time.monotonic() + 60)
    gen.next_id()
    clock.now += 0.002
    with pytest.raises(IdsUnavailable):
        gen.next_id()
    gen.extend(until_ms=now_ms + 10, valid_until=time.monotonic() + 60)
    assert MsgIdGenerator.timestamp_ms(gen.next_id()) == now_ms + 2


def test_ids_stop_at_the_deadline_until_extended() -> None:
    gen = MsgIdGenerator()
    far = int(time.time() * 1000) + 60_000
    gen.hold(3, after_ms=0, until_ms=far, valid_until=time.monotonic() - 0.001)
    with pytest.raises(IdsUnavailable):
        gen.next_id()
    gen.extend(until_ms=far, valid_until=time.monotonic() + 60)
    assert node_of(gen.next_id()) == 3


def test_dropped_then_held_again_ids_keep_increasing() -> None:
    gen = MsgIdGenerator()
    far = int(time.time() * 1000) + 60_000
    gen.hold(3, after_ms=0, until_ms=far, valid_until=time.monotonic() + 60)
    before = [gen.next_id() for _ in range(100)]
    gen.drop()
    with pytest.raises(IdsUnavailable):
        gen.next_id()
    gen.hold(4, after_ms=0, until_ms=far, valid_until=time.monotonic() + 60)
    after = gen.next_id()
    assert node_of(after) == 4 and after > before[-1]


def test_hold_refuses_a_number_out_of_range() -> None:
    with pytest.raises(ValueError):
        MsgIdGenerator().hold(MAX_NODE + 1, after_ms=0, until_ms=1, valid_until=1.0)


# ------------------------------------------------------------------ Message


@pytest.mark.parametrize(
    "target",
    [
        Target(users=["u1", "u2"]),
        Target(devices=["d1"]),
        Target(rooms=["r1"]),
        Target(areas=["a1"]),
        Target(all=True),
    ],
)
def test_pack_unpack_round_trip(target: Target) -> None:
    message = Message(
        msg_id=2**63 + 5,
        target=target,
        payload=b"\x00\xffpayload",
        priority=Priority.HIGH,
        guaranteed=True,
        ttl_s=120,
        accepted_ms=1_800_000_000_000,
    )
    data = pack_message(message)
    assert isinstance(data, bytes)
    assert unpack_message(data) == message


def test_message_defaults_round_trip() -> None:
    message = Message(msg_id=1, target=Target(rooms=["r"]), payload=b"")
    back = unpack_message(pack_message(message))
    assert back == message
    assert (back.priority, back.guaranteed, back.ttl_s) == (Priority.LOW, False, 60)
    assert back.expires_ms == 60_000


@settings(max_examples=100, deadline=None)
@given(
    msg_id=st.integers(0, MAX_U64),
    users=st.lists(st.text(max_size=10), min_size=1, max_size=5),
    payload=st.binary(max_size=300),
    priority=st.sampled_from(list(Priority)),
    guaranteed=st.booleans(),
    ttl_s=st.integers(0, 7 * 24 * 3600),
    accepted_ms=st.integers(0, 2**53),
)
def test_pack_unpack_round_trip_property(
    msg_id: int,
    users: list[str],
    payload: bytes,
    priority: Priority,
    guaranteed: bool,
    ttl_s: int,
    accepted_ms: int,
) -> None:
    message = Message(
        msg_id, Target(users=users), payload, priority, guaranteed, ttl_s, accepted_ms
    )
    assert unpack_message(pack_message(message)) == message
    assert message.expires_ms == accepted_ms + ttl_s * 1000


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        (Target(users=["u"]), "users"),
        (Target(devices=["d"]), "devices"),
        (Target(rooms=["r"]), "rooms"),
        (Target(areas=["a"]), "areas"),
        (Target(all=True), "all"),
    ],
)
def test_target_kind(target: Target, kind: str) -> None:
    assert target.kind == kind


def test_target_decodes_from_contract_json() -> None:
    # PROTOCOL §2.2: {"to": {"users": [...]}} and friends.
    assert msgspec.json.decode(b'{"rooms":["r1"]}', type=Target).kind == "rooms"
    assert msgspec.json.decode(b'{"all":true}', type=Target).kind == "all"
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"groups":["g"]}', type=Target)
    assert msgspec.json.encode(Target(users=["u"])) == b'{"users":["u"]}'
