"""The gateway's index of open connections: by id, user, device and room.

Rooms are plain sets, so join and leave are O(1) (goim's buckets and rooms,
without the sharding a single event loop does not need). Only connections
that have received AUTH_OK are indexed.
"""

from __future__ import annotations

from collections.abc import Iterable

from longlink.gateway.connection import Connection
from longlink.model import Target


class Hub:
    """Open connections, indexed for target resolution."""

    __slots__ = ("conns", "devices", "rooms", "users")

    def __init__(self) -> None:
        self.conns: dict[str, Connection] = {}
        self.users: dict[str, set[Connection]] = {}
        self.devices: dict[str, set[Connection]] = {}
        self.rooms: dict[str, set[Connection]] = {}

    def add(self, conn: Connection, rooms: Iterable[str]) -> None:
        """Index an authenticated connection with its initial rooms."""
        self.conns[conn.conn_id] = conn
        self.users.setdefault(conn.user, set()).add(conn)
        self.devices.setdefault(conn.device, set()).add(conn)
        for room in rooms:
            self.join(conn, room)

    def remove(self, conn: Connection) -> None:
        """Forget ``conn`` everywhere; idempotent."""
        if self.conns.pop(conn.conn_id, None) is None:
            return
        _discard(self.users, conn.user, conn)
        _discard(self.devices, conn.device, conn)
        for room in conn.rooms:
            _discard(self.rooms, room, conn)

    def join(self, conn: Connection, room: str) -> None:
        if room not in conn.rooms:
            conn.rooms = (*conn.rooms, room)
            self.rooms.setdefault(room, set()).add(conn)

    def leave(self, conn: Connection, room: str) -> None:
        if room in conn.rooms:
            conn.rooms = tuple(r for r in conn.rooms if r != room)
            _discard(self.rooms, room, conn)

    def resolve(self, target: Target) -> Iterable[Connection]:
        """The open connections ``target`` reaches, each once.

        Areas are expanded to rooms by dispatch before a message reaches a
        gateway, so only users, devices, rooms and all are resolved here.
        """
        if target.all:
            return list(self.conns.values())
        groups: list[set[Connection]] = []
        for name, index in (
            (target.users, self.users),
            (target.devices, self.devices),
            (target.rooms, self.rooms),
        ):
            for key in name:
                members = index.get(key)
                if members:
                    groups.append(members)
        if not groups:
            return ()
        if len(groups) == 1:
            return list(groups[0])
        return set().union(*groups)


def _discard(index: dict[str, set[Connection]], key: str, conn: Connection) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(conn)
        if not members:
            del index[key]
