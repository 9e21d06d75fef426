"""The embedded registry: dicts in one process, counts kept incrementally.

Limit: one process only; a multi-process deployment uses the Redis registry.
Its nodes live and die with the process, so it offers no
:class:`~longlink.logic.base.NodeSweep`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

from longlink.logic.base import NodeInfo, Online, SessionInfo
from longlink.logic.multimap import MultiMap
from longlink.model import Target


class MemoryRegistry:
    """:class:`~longlink.logic.base.Registry` (sessions, room directory, nodes) in dicts."""

    def __init__(self) -> None:
        self._sessions: dict[str, SessionInfo] = {}
        # One connection per user and per device is the rule: no set for it (logic/multimap.py).
        self._by_user: MultiMap[str, str] = MultiMap()
        self._by_device: MultiMap[str, str] = MultiMap()
        # room -> node -> number of that node's connections in the room
        self._room_nodes: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        self._room_count: defaultdict[str, int] = defaultdict(int)
        self._room_area: dict[str, str] = {}
        self._area_rooms: defaultdict[str, set[str]] = defaultdict(set)
        self._announce: set[str] = set()
        self._area_count: defaultdict[str, int] = defaultdict(int)
        self._node_sessions: defaultdict[str, set[str]] = defaultdict(set)
        self._nodes: dict[str, NodeInfo] = {}
        self._revoked: dict[str, tuple[int, float]] = {}  # user -> (before_ms, until monotonic)

    # ------------------------------------------------------------ sessions

    async def add_session(self, session: SessionInfo) -> None:
        if session.conn_id in self._sessions:
            await self.remove_session(session.conn_id)
        rooms = list(dict.fromkeys(session.rooms))
        session.rooms = []
        self._sessions[session.conn_id] = session
        self._by_user.add(session.user, session.conn_id)
        self._by_device.add(session.device, session.conn_id)
        self._node_sessions[session.node].add(session.conn_id)
        for room in rooms:
            self._enter(session, room)

    async def remove_session(self, conn_id: str) -> SessionInfo | None:
        session = self._sessions.pop(conn_id, None)
        if session is None:
            return None
        rooms = list(session.rooms)
        for room in rooms:
            self._exit(session, room)
        session.rooms = rooms  # returned as it was (the Sessions contract)
        self._by_user.discard(session.user, conn_id)
        self._by_device.discard(session.device, conn_id)
        _discard(self._node_sessions, session.node, conn_id)
        return session

    async def join(self, conn_id: str, room: str) -> int:
        session = self._sessions.get(conn_id)
        if session is not None and room not in session.rooms:
            self._enter(session, room)
        return self._room_count.get(room, 0)

    async def leave(self, conn_id: str, room: str) -> int:
        session = self._sessions.get(conn_id)
        if session is not None and room in session.rooms:
            self._exit(session, room)
        return self._room_count.get(room, 0)

    def _enter(self, session: SessionInfo, room: str) -> None:
        session.rooms.append(room)
        self._room_nodes[room][session.node] += 1
        self._room_count[room] += 1
        area = self._room_area.get(room)
        if area is not None:
            self._area_count[area] += 1

    def _exit(self, session: SessionInfo, room: str) -> None:
        session.rooms.remove(room)
        nodes = self._room_nodes[room]
        nodes[session.node] -= 1
        if nodes[session.node] <= 0:
            del nodes[session.node]
        if not nodes:
            del self._room_nodes[room]
        self._room_count[room] -= 1
        if self._room_count[room] <= 0:
            del self._room_count[room]
        area = self._room_area.get(room)
        if area is not None:
            self._area_count[area] -= 1
            if self._area_count[area] <= 0:
                del self._area_count[area]

    async def user_sessions(self, user: str) -> list[SessionInfo]:
        return [self._sessions[c] for c in sorted(self._by_user.get(user, ()))]

    async def nodes_for(self, target: Target) -> set[str]:
        nodes: set[str] = set()
        if target.all:
            return {n for n, conns in self._node_sessions.items() if conns}
        for user in target.users:
            nodes.update(self._sessions[c].node for c in self._by_user.get(user, ()))
        for device in target.devices:
            nodes.update(self._sessions[c].node for c in self._by_device.get(device, ()))
        rooms = list(target.rooms)
        for area in target.areas:
            rooms.extend(self._area_rooms.get(area, ()))
        for room in rooms:
            nodes.update(self._room_nodes.get(room, ()))
        return nodes

    async def nodes_for_many(self, targets: Sequence[Target]) -> list[set[str]]:
        return [await self.nodes_for(target) for target in targets]

    async def room_online(self, rooms: list[str]) -> dict[str, int]:
        return {room: self._room_count.get(room, 0) for room in rooms}

    async def online(self) -> Online:
        return Online(
            total=len(self._sessions),
            rooms=dict(self._room_count),
            areas=dict(self._area_count),
        )

    async def set_room_area(self, room: str, area: str | None) -> None:
        old = self._room_area.get(room)
        count = self._room_count.get(room, 0)
        if old is not None:
            self._area_count[old] -= count
            if self._area_count[old] <= 0:
                del self._area_count[old]
            del self._room_area[room]
            _discard(self._area_rooms, old, room)
        if area is not None:
            self._room_area[room] = area
            self._area_rooms[area].add(room)
            if count:
                self._area_count[area] += count

    async def room_area(self, room: str) -> str | None:
        return self._room_area.get(room)

    async def rooms_in_areas(self, areas: list[str]) -> list[str]:
        rooms: set[str] = set()
        for area in areas:
            rooms.update(self._area_rooms.get(area, ()))
        return sorted(rooms)

    async def set_room_announce(self, room: str, announce: bool) -> None:
        if announce:
            self._announce.add(room)
        else:
            self._announce.discard(room)

    async def announced_rooms(self, rooms: list[str]) -> set[str]:
        return self._announce.intersection(rooms)

    # ------------------------------------------------------------ revocations

    async def revoke_user(self, user: str, before_ms: int, ttl_s: int) -> None:
        now = time.monotonic()
        if len(self._revoked) >= 10_000:  # expired entries go when the table is large
            self._revoked = {u: e for u, e in self._revoked.items() if e[1] > now}
        old = self._revoked.get(user)
        if old is not None and old[1] > now:
            before_ms = max(before_ms, old[0])
        self._revoked[user] = (before_ms, now + ttl_s)

    async def revoked_before(self, user: str) -> int:
        entry = self._revoked.get(user)
        if entry is None:
            return 0
        if entry[1] <= time.monotonic():
            del self._revoked[user]
            return 0
        return entry[0]

    # ------------------------------------------------------------ nodes

    async def report_node(self, info: NodeInfo) -> bool:
        old = self._nodes.get(info.node)
        if old is not None and old.draining:
            info.draining = True
        if not info.reported_ms:
            info.reported_ms = int(time.time() * 1000)
        self._nodes[info.node] = info
        return old is not None

    async def nodes(self) -> list[NodeInfo]:
        return list(self._nodes.values())

    async def set_draining(self, node: str, draining: bool) -> bool:
        info = self._nodes.get(node)
        if info is None:
            return False
        info.draining = draining
        return True

    async def forget_node(self, node: str) -> None:
        for conn_id in list(self._node_sessions.get(node, ())):
            await self.remove_session(conn_id)
        self._node_sessions.pop(node, None)
        self._nodes.pop(node, None)


def _discard(index: defaultdict[str, set[str]], key: str, conn_id: str) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(conn_id)
        if not members:
            del index[key]
