"""The node's duplicate filter and the hub's groups and membership changes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from longlink.bus.memory import MemoryNodeChannel
from longlink.control.tokens import TokenIssuer
from longlink.gateway.dedup import SeenIds
from longlink.gateway.hub import CHANGE_MAX_AGE_US, Hub, group_key, group_of
from longlink.gateway.server import Gateway
from longlink.gateway.tcp import TcpConnection
from longlink.gateway.websocket import WsConnection
from longlink.logic.memory import MemoryRegistry
from longlink.settings import Settings


def test_an_id_is_a_duplicate_within_its_window_only() -> None:
    seen = SeenIds(window_s=10, max_size=100)
    assert seen.add(1, now=0.0)
    assert not seen.add(1, now=9.9)
    assert seen.add(1, now=10.0)  # the window has passed: new again
    assert 1 in seen and len(seen) == 1


def test_the_set_is_bounded_oldest_first() -> None:
    seen = SeenIds(window_s=1000, max_size=3)
    for msg_id in range(10):
        seen.add(msg_id, now=float(msg_id))
    assert len(seen) == 3 and sorted(i for i in range(10) if i in seen) == [7, 8, 9]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.floats(0, 3)), max_size=200))
def test_never_larger_than_its_bound(events: list[tuple[int, float]]) -> None:
    seen = SeenIds(window_s=5, max_size=8)
    now = 0.0
    for msg_id, gap in events:
        now += gap
        first_time = seen.add(msg_id, now)
        assert not seen.add(msg_id, now) and (first_time or msg_id in seen)
        assert len(seen) <= 8


def _gateway() -> Gateway:
    return Gateway(Settings(), MemoryRegistry(), MemoryNodeChannel(), TokenIssuer("k" * 32, 60))


def test_rooms_are_grouped_by_transport_and_codec() -> None:
    gateway = _gateway()
    hub = gateway.hub
    tcp, ws = TcpConnection(gateway.sessions), WsConnection(gateway.sessions)
    tcp.conn_id, tcp.codec, tcp.rooms = "a", 2, ("r", "s")  # the session's rooms
    ws.conn_id, ws.codec, ws.rooms = "b", 1, ("r",)
    hub.add(tcp, ["r", "s"])
    hub.add(ws, ["r"])
    assert {group_of(k): v for k, v in hub.groups["r"].items()} == {(0, 2): {tcp}, (1, 1): {ws}}
    assert group_key(ws) in hub.groups["r"] and "s" in hub.groups
    hub.leave(tcp, "s")
    tcp.rooms = ("r",)
    assert "s" not in hub.groups and "s" not in hub.rooms
    hub.remove(ws)
    assert hub.groups["r"] == {group_key(tcp): {tcp}}
    hub.remove(tcp)
    assert hub.groups == {} and hub.rooms == {}


def test_membership_changes_are_forgotten_when_settled_or_old() -> None:
    hub = Hub()
    gateway = _gateway()
    a, b = TcpConnection(gateway.sessions), TcpConnection(gateway.sessions)
    a.conn_id, b.conn_id = "a", "b"
    hub.add(a, [])
    hub.add(b, [])
    hub.join(a, "r", at_us=1_000)
    hub.join(b, "r", at_us=2_000)
    hub.leave(a, "r", at_us=3_000)
    straddling = hub.settle("r", oldest_us=2_500)  # a batch from 2.5 ms on
    assert list(straddling) == [a] and [c[2] for c in straddling[a]] == [False]
    assert hub.settle("r", oldest_us=5_000) == {}
    assert "r" not in hub.changes
    hub.join(a, "q", at_us=10_000)
    hub.join(b, "q", at_us=10_000 + CHANGE_MAX_AGE_US + 1)  # a's join is too old now
    assert [c[1] for c in hub.changes["q"]] == [b]
