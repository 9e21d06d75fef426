"""The Redis key layout: what shares a slot, what spreads (longlink.bus.keys)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from longlink.bus import keys
from longlink.model import Priority, Target
from longlink.store.base import device_recipient, user_recipient

names = st.text(min_size=1, max_size=20)


@given(names)
def test_a_nodes_keys_share_its_slot(node: str) -> None:
    slots = {
        keys.slot(key)
        for key in (
            keys.node_stream(node),
            keys.node_stream(node, high=True),  # one XREAD reads both
            keys.node_alive(node),
            keys.node_conns(node),
            keys.node_rooms(node),
            keys.node_sweeping(node),
        )
    }
    assert len(slots) == 1


@given(names)
def test_a_users_keys_share_its_slot(user: str) -> None:
    slots = {
        keys.slot(k)
        for k in (
            keys.user_conns(user),
            keys.user_revoked(user),
            keys.inbox(user_recipient(user)),
        )
    }
    assert len(slots) == 1


@given(names)
def test_a_devices_keys_share_its_slot(device: str) -> None:
    assert keys.slot(keys.device_conns(device)) == keys.slot(keys.inbox(device_recipient(device)))


@given(st.integers(min_value=1, max_value=2**63))
def test_a_stored_messages_keys_share_its_slot(msg_id: int) -> None:
    assert keys.slot(keys.stored_message(msg_id)) == keys.slot(keys.stored_recipients(msg_id))
    assert keys.stored_message(msg_id) == keys.stored_message(str(msg_id))


def test_room_history_keeps_its_name() -> None:
    assert keys.room_history("chat/1") == "ll:room:{chat/1}:history"
    assert keys.slot(keys.room_history("chat/1")) == keys.slot("{chat/1}")


def test_shared_keys_are_in_one_slot() -> None:
    shared = ["nodes", "room_area", "announce", "gexp", "idn", "idn:after", "trace:q"]
    assert len({keys.slot(keys.global_key(name)) for name in shared}) == 1


def test_families_spread_over_slots() -> None:
    """Many users (rooms, nodes) land on many slots: no family sits on one primary."""
    for key_of in (keys.user_conns, keys.device_conns, keys.session, keys.room_history):
        slots = {keys.slot(key_of(f"name-{i}")) for i in range(300)}
        assert len(slots) > 250  # CRC16 of similar names collides a little
    thirds = {keys.slot(keys.user_conns(f"u{i}")) * 3 // 16384 for i in range(300)}
    assert thirds == {0, 1, 2}  # the three primaries of redis-cli --cluster create


def test_queue_shards_spread_evenly_over_the_slot_space() -> None:
    for shards in (1, 2, 3, 8, 16):
        for priority in Priority:
            streams = keys.queue_keys(priority, shards)
            assert len(set(streams)) == shards
            for i, stream in enumerate(streams):
                part = keys.slot(stream) * shards // 16384
                assert part == i  # shard i in the i-th n-th: any equal split spreads them
                assert keys.slot(keys.epoch_key(stream)) == keys.slot(stream)
    # Three primaries with equal ranges each own a share of 8 shards (3 + 3 + 2).
    owners = [keys.slot(k) * 3 // 16384 for k in keys.queue_keys(Priority.LOW, 8)]
    assert sorted(owners.count(p) for p in range(3)) == [2, 3, 3]
    assert keys.queue_keys(Priority.LOW, 8) != keys.queue_keys(Priority.HIGH, 8)


@given(names, st.integers(min_value=1, max_value=64))
def test_a_targets_pushes_go_to_one_shard(name: str, shards: int) -> None:
    for target in (Target(rooms=[name]), Target(users=[name]), Target(devices=[name])):
        shard = keys.shard_of(target, shards)
        assert 0 <= shard < shards
        # A push to several targets goes with its first one.
        assert keys.shard_of(Target(rooms=[name, "other"]), shards) == keys.shard_of(
            Target(rooms=[name]), shards
        )
    assert keys.shard_of(Target(all=True), shards) == 0


def test_targets_spread_over_shards() -> None:
    used = {keys.shard_of(Target(rooms=[f"room-{i}"]), 8) for i in range(200)}
    assert used == set(range(8))


def test_shard_counts_are_bounded() -> None:
    with pytest.raises(ValueError):
        keys.queue_keys(Priority.LOW, 0)
    with pytest.raises(ValueError):
        keys.queue_keys(Priority.LOW, keys.MAX_SHARDS + 1)
