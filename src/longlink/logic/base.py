"""The registry seam: who is connected where, and which gateway nodes exist.

:class:`SessionRegistry` is written to by gateways (a session is added after
its AUTH is accepted and before AUTH_OK is sent, so AUTH_OK means routable)
and read by dispatch (which nodes must see a push), control (which nodes are
healthy) and the API (online counts, a user's connections).

Counts are kept incrementally: no query scans all sessions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

from longlink.model import Target


class SessionInfo(msgspec.Struct):
    """One live connection as the registry knows it."""

    conn_id: str
    node: str
    user: str
    device: str
    rooms: list[str] = []
    connected_ms: int = 0


class NodeInfo(msgspec.Struct):
    """What a gateway node reports about itself every second."""

    node: str
    region: str
    ws: str | None
    tcp: str | None
    connections: int = 0
    load: float = 0.0
    reported_ms: int = 0
    draining: bool = False


class Online(msgspec.Struct):
    """Online counts (``GET /v1/online``)."""

    total: int
    rooms: dict[str, int]
    areas: dict[str, int]


class SessionRegistry(Protocol):
    """Sessions, rooms, areas and nodes. All counts are exact and incremental."""

    async def add_session(self, session: SessionInfo) -> None:
        """Register a connection with its initial rooms."""
        ...

    async def remove_session(self, conn_id: str) -> SessionInfo | None:
        """Forget a connection and take it out of its rooms; idempotent."""
        ...

    async def join(self, conn_id: str, room: str) -> int:
        """Put the connection in ``room``; returns the room's online count."""
        ...

    async def leave(self, conn_id: str, room: str) -> int:
        """Take the connection out of ``room``; returns the room's online count."""
        ...

    async def user_sessions(self, user: str) -> list[SessionInfo]:
        """The user's live connections."""
        ...

    async def nodes_for(self, target: Target) -> set[str]:
        """The nodes that hold at least one connection ``target`` reaches."""
        ...

    async def nodes_for_many(self, targets: Sequence[Target]) -> list[set[str]]:
        """:meth:`nodes_for` of each target, in order, in one go.

        Dispatch resolves a whole step this way: one round trip on a
        distributed registry. Nothing is cached between calls: a user who moved
        to another node is found there by the next call.
        """
        ...

    async def room_online(self, rooms: list[str]) -> dict[str, int]:
        """Online counts of ``rooms`` (0 for a room nobody is in)."""
        ...

    async def online(self) -> Online:
        """Total, per-room and per-area counts."""
        ...

    async def set_room_area(self, room: str, area: str | None) -> None:
        """Put ``room`` in ``area`` (None takes it out of any area)."""
        ...

    async def room_area(self, room: str) -> str | None:
        """The area ``room`` belongs to."""
        ...

    async def rooms_in_areas(self, areas: list[str]) -> list[str]:
        """Every room put in one of ``areas``."""
        ...

    async def set_room_announce(self, room: str, announce: bool) -> None:
        """Whether gateways send EVENT enter/exit frames to ``room``'s connections."""
        ...

    async def announced_rooms(self, rooms: list[str]) -> set[str]:
        """Those of ``rooms`` set to announce enters and exits (a gateway asks per event)."""
        ...

    async def report_node(self, info: NodeInfo) -> bool:
        """A gateway node's periodic report (keeps it healthy).

        Returns False when the registry did not know the node: its first
        report, or a shared registry that lost its data (Redis restarted
        empty). The gateway then registers its live sessions again.
        """
        ...

    async def nodes(self) -> list[NodeInfo]:
        """Every node that has reported, healthy or not."""
        ...

    async def set_draining(self, node: str, draining: bool) -> bool:
        """Mark a node draining; False when the node is unknown."""
        ...

    async def forget_node(self, node: str) -> None:
        """Drop a node and every session it held (node shut down or died)."""
        ...
