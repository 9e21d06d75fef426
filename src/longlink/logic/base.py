"""The registry seams: who is connected where, what rooms are, which gateway nodes exist.

Three small Protocols, each taken alone by the code that needs it:

* :class:`Sessions`: the live connections, their rooms and the counts and
  routes derived from them. Written by gateways (a session is added after
  its AUTH is accepted and before AUTH_OK is sent, so AUTH_OK means
  routable); read by dispatch (which nodes must see a push) and the API
  (online counts, a user's connections).
* :class:`RoomDirectory`: what the business set on rooms (their area,
  whether they announce enters and exits). Written by the API; read by
  dispatch (areas to rooms) and gateways (announce).
* :class:`NodeDirectory`: the gateway nodes and their health. Written by
  gateways (reports) and the API (drain); read by control (which nodes are
  healthy).
* :class:`Revocations`: the connection tokens a kick revoked. Written by the
  API; read by gateways at AUTH.

:class:`NodeSweep` is optional: a backend shared by processes that can die
without notice (``kill -9``) offers it, and the composition root runs a
sweeper on whatever offers it (:class:`~longlink.logic.sweep.RegistrySweeper`).

:class:`Registry` is all four at once, what one backend implements (the
embedded :class:`~longlink.logic.memory.MemoryRegistry`, the shared
:class:`~longlink.logic.redis.RedisRegistry`) and what a caller that needs
them all (the gateway, the HTTP API) takes.

Guarantees every backend keeps (``tests/contracts/test_registry.py`` checks
them on each):

* Counts are exact and kept incrementally: no query scans all sessions.
* A call's effect is visible to every later call on the same backend, from
  any process sharing it (read your writes; nothing is cached but the
  shared backend's list of live nodes, for at most ``live_cache_s``).
* One connection's calls come from its one gateway, in order: the registry
  does not order concurrent calls about the same connection.
* Calls about different connections, rooms or nodes commute.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

from longlink.logic.quality import QualitySnapshot
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
    """What a gateway node reports about itself every second.

    ``cost`` and ``full`` are the node's price and the load at which it counts
    as full (``LONGLINK_NODE_COST``, ``LONGLINK_NODE_FULL``): control prefers
    cheaper nodes until they are full. ``quality`` is its connection-quality
    window per transport (logic/quality.py). ``ws``, ``tcp`` and ``stream``
    are the addresses clients are given (PROTOCOL.md §1.5; ``stream`` is the
    HTTP stream's ``POST`` URL, None from a node that does not serve it).
    """

    node: str
    region: str
    ws: str | None
    tcp: str | None
    connections: int = 0
    load: float = 0.0
    reported_ms: int = 0
    draining: bool = False
    cost: float = 1.0
    full: float = 0.8
    quality: dict[str, QualitySnapshot] = {}
    stream: str | None = None


class Online(msgspec.Struct):
    """Online counts (``GET /v1/online``)."""

    total: int
    rooms: dict[str, int]
    areas: dict[str, int]


class Sessions(Protocol):
    """The live connections, their rooms, and the counts and routes derived from them.

    Only sessions of live nodes count: a shared backend leaves out, within
    its node TTL, the sessions of a node whose reports stopped
    (:class:`NodeDirectory`), until :meth:`NodeDirectory.forget_node` or a
    sweep (:class:`NodeSweep`) removes them. The embedded backend's one
    process never loses a node that way.
    """

    async def add_session(self, session: SessionInfo) -> None:
        """Register a connection with its initial rooms (repeated rooms count once).

        On return the connection is routable (:meth:`nodes_for`) and counted.
        A ``conn_id`` already registered is removed first, then added anew.
        """
        ...

    async def remove_session(self, conn_id: str) -> SessionInfo | None:
        """Forget a connection and take it out of its rooms; idempotent.

        Returns the session as it was (with its rooms, for exit events), or
        None when it was not registered (removed already, or never added).
        """
        ...

    async def join(self, conn_id: str, room: str) -> int:
        """Put the connection in ``room``; returns the room's online count after.

        Idempotent; an unknown connection changes nothing (the count is
        still returned).
        """
        ...

    async def leave(self, conn_id: str, room: str) -> int:
        """Take the connection out of ``room``; returns the room's online count after.

        Idempotent; an unknown connection changes nothing.
        """
        ...

    async def user_sessions(self, user: str) -> list[SessionInfo]:
        """The user's live connections, by ``conn_id``."""
        ...

    async def nodes_for(self, target: Target) -> set[str]:
        """The nodes that hold at least one connection ``target`` reaches.

        Areas reach the rooms the :class:`RoomDirectory` puts in them.
        """
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
        """Total, per-room and per-area counts (rooms and areas nobody is in are left out)."""
        ...


class RoomDirectory(Protocol):
    """What the business set on rooms: their area and whether they announce.

    A room's settings do not depend on anyone being in it: they stay until
    changed (the last write wins), whether or not the room has connections.
    A room is in at most one area.
    """

    async def set_room_area(self, room: str, area: str | None) -> None:
        """Put ``room`` in ``area`` (None takes it out of any area).

        The room's online count moves to the new area's count at once.
        """
        ...

    async def room_area(self, room: str) -> str | None:
        """The area ``room`` belongs to (None: none)."""
        ...

    async def rooms_in_areas(self, areas: list[str]) -> list[str]:
        """Every room put in one of ``areas``, sorted, each once."""
        ...

    async def set_room_announce(self, room: str, announce: bool) -> None:
        """Whether gateways send EVENT enter/exit frames to ``room``'s connections."""
        ...

    async def announced_rooms(self, rooms: list[str]) -> set[str]:
        """Those of ``rooms`` set to announce enters and exits (a gateway asks per event)."""
        ...


class NodeDirectory(Protocol):
    """The gateway nodes: their reports, health and draining mark.

    A node is listed from its first report until it is forgotten. Whether a
    listed node is healthy is the reader's call, from ``reported_ms``
    (control leaves out a node silent for ``node_ttl_ms``).
    """

    async def report_node(self, info: NodeInfo) -> bool:
        """A gateway node's periodic report (keeps it, and its sessions, live).

        A draining mark set on the node survives its reports. Returns False
        when the registry did not know the node: its first report, or a
        shared registry that lost its data (Redis restarted empty). The
        gateway then registers its live sessions again.
        """
        ...

    async def nodes(self) -> list[NodeInfo]:
        """Every node that has reported and was not forgotten, healthy or not."""
        ...

    async def set_draining(self, node: str, draining: bool) -> bool:
        """Mark a node draining (or not); False when the node is unknown."""
        ...

    async def forget_node(self, node: str) -> None:
        """Drop a node and every session it held (node shut down or died); idempotent."""
        ...


class NodeSweep(Protocol):
    """What a registry offers when a node can vanish without :meth:`~NodeDirectory.forget_node`.

    A registry shared by processes (Redis) loses a gateway killed outright:
    its sessions stop counting when its reports stop, but stay stored until
    swept. The embedded registry lives and dies with its one process and
    does not offer this.
    """

    async def sweep(self, stale_after_ms: int) -> list[SessionInfo]:
        """Forget nodes silent for ``stale_after_ms``; return the sessions they held.

        Any number of processes may call this periodically: exactly one of
        them forgets a given node and returns its sessions (so each lost
        session's exit event is fired once).
        """
        ...


class Revocations(Protocol):
    """Users whose connection tokens issued before a moment are refused (a kick).

    Written by the API (``POST /v1/users/{user}/kick``); read by gateways at
    every AUTH. An entry lives ``ttl_s`` seconds, the longest a token lives:
    by then every token it refuses has expired anyway, so the list stays as
    small as the kicks of the last ``token_ttl_s``.
    """

    async def revoke_user(self, user: str, before_ms: int, ttl_s: int) -> None:
        """Refuse ``user``'s tokens issued before ``before_ms`` (unix ms) for ``ttl_s`` s."""
        ...

    async def revoked_before(self, user: str) -> int:
        """The moment (unix ms) before which ``user``'s tokens are refused; 0 for none."""
        ...


class Registry(Sessions, RoomDirectory, NodeDirectory, Revocations, Protocol):
    """Sessions, room directory, nodes and revocations in one backend (what a backend implements).

    Take it only where all three are needed (the gateway, the HTTP API);
    everything else takes the one Protocol it uses.
    """
