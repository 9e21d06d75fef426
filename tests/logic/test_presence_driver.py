"""The gateway's presence driver (gateway/events.py) on stand-in connections, no sockets."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from longlink.bus.memory import MemoryNodeChannel
from longlink.gateway.events import Presence
from longlink.gateway.hub import Hub
from longlink.logic.events import WebhookEvent
from longlink.logic.memory import MemoryRegistry
from longlink.protocol.liveness import Change, Liveness
from longlink.protocol.server import SessionState


class Sink:
    def __init__(self) -> None:
        self.accept = True
        self.events: list[WebhookEvent] = []

    def offer(self, event: WebhookEvent) -> bool:
        if self.accept:
            self.events.append(event)
        return self.accept


def make(sink: Sink | None = None) -> tuple[Presence, CollectorRegistry, list[Any]]:
    spawned: list[Any] = []

    def spawn(coro: Any) -> None:
        spawned.append(coro)
        coro.close()  # announcements are not under test here

    metrics = CollectorRegistry()
    presence = Presence(
        Hub(), MemoryRegistry(), MemoryNodeChannel(), sink, spawn, node="g9", metrics=metrics
    )
    return presence, metrics, spawned


def conn(rooms: tuple[str, ...] = ("a", "b")) -> Any:
    return SimpleNamespace(
        state=SessionState.OPEN,
        conn_id="g9-x-1",
        user="ann",
        device="d1",
        rooms=rooms,
        entered=(),
        liveness=Liveness.ALIVE,
        last_seen=100.0,
        heartbeat_s=10,
        upstream_tat=0.0,
    )


def kinds(sink: Sink) -> list[tuple[str, str | None, str | None]]:
    return [(e.type, e.room, e.reason) for e in sink.events]


def test_enter_once_then_exits_once_on_close() -> None:
    sink = Sink()
    presence, _, spawned = make(sink)
    c = conn()
    presence.entered(c, c.rooms)
    presence.heartbeat(c)
    presence.heartbeat(c)
    presence.left(c, "a")
    presence.left(c, "a")
    presence.closed(c, "closed")
    presence.closed(c, "closed")
    assert kinds(sink) == [
        ("enter", "a", None),
        ("enter", "b", None),
        ("exit", "a", "leave"),
        ("exit", "b", "closed"),
    ]
    assert len({e.id for e in sink.events}) == 4
    assert all(e.node == "g9" and e.conn_id == "g9-x-1" for e in sink.events)
    assert len(spawned) == 3  # enter (both rooms), leave, close


def test_an_enter_not_accepted_is_fired_again_at_the_next_heartbeat() -> None:
    sink = Sink()
    presence, _, _ = make(sink)
    c = conn(("a",))
    sink.accept = False
    presence.entered(c, c.rooms)
    assert c.entered == () and sink.events == []
    presence.heartbeat(c)  # still full
    sink.accept = True
    presence.heartbeat(c)  # compensation
    presence.heartbeat(c)
    assert kinds(sink) == [("enter", "a", None)]
    assert c.entered == ("a",)


def test_no_exit_without_enter() -> None:
    sink = Sink()
    presence, _, _ = make(sink)
    c = conn(("a",))
    sink.accept = False
    presence.entered(c, c.rooms)
    sink.accept = True
    presence.closed(c, "closed")
    assert sink.events == []


def test_nothing_fires_for_a_connection_that_is_not_open() -> None:
    sink = Sink()
    presence, _, _ = make(sink)
    c = conn()
    c.state = SessionState.CLOSED
    presence.entered(c, c.rooms)
    assert sink.events == [] and c.entered == ()


def test_suspect_count_follows_the_sessions_liveness_and_their_close() -> None:
    sink = Sink()
    presence, metrics, _ = make(sink)
    c = conn(("a",))
    presence.entered(c, c.rooms)

    def suspect() -> float | None:
        return metrics.get_sample_value("longlink_connections_suspect")

    presence.liveness_changed(Change.SUSPECTED)
    c.liveness = Liveness.SUSPECT
    assert suspect() == 1
    presence.liveness_changed(Change.RECOVERED)
    c.liveness = Liveness.ALIVE
    assert suspect() == 0
    presence.liveness_changed(Change.SUSPECTED)
    c.liveness = Liveness.SUSPECT
    presence.closed(c, "timeout")  # lost while suspect: no longer counted
    assert c.liveness == Liveness.GONE and suspect() == 0
    assert kinds(sink)[-1] == ("exit", "a", "timeout")
    presence.closed(c, "closed")  # the close that follows fires nothing more
    assert len(sink.events) == 2 and suspect() == 0


def test_without_a_sink_enters_are_committed() -> None:
    presence, metrics, _ = make(None)
    c = conn()
    presence.entered(c, c.rooms)
    assert c.entered == ("a", "b")
    assert metrics.get_sample_value("longlink_presence_events_total", {"type": "enter"}) == 2
