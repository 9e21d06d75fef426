"""The gateway's index of open connections: by id, user, device and room.

The session owns a connection's room list (``conn.rooms``); the hub indexes
it and must be told every change (:meth:`Hub.join`, :meth:`Hub.leave`) in the
same step as the session, so ``conn.rooms`` always names the rooms the
connection is indexed in (:meth:`Hub.remove` relies on it).

Rooms are plain sets, so join and leave are O(1) (goim's buckets and rooms,
without the sharding a single event loop does not need). Only connections
that have received AUTH_OK are indexed.

Each room is also split into *groups* by (transport, codec), kept up to date
on join and leave: a room batch has one frame per codec and one WebSocket
message per group, so the write loop takes a group and writes the same bytes
to every member without looking at the connection's kind or codec.

Recent JOINs and LEAVEs are remembered per room for :data:`CHANGE_MAX_AGE_US`
(wall-clock µs, like ``Message.accepted_us``): a room batch can hold messages accepted
before a connection joined or left, and the write path uses these to give
such a connection exactly the messages accepted while it was in the room.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Collection, Iterable
from typing import TypeVar

from longlink.gateway.connection import Connection
from longlink.logic.multimap import MultiMap
from longlink.model import Target

GROUP_CODECS = 3  # codecs 0 none, 1 zlib, 2 brotli (PROTOCOL.md §1.1)
CHANGE_MAX_AGE_US = 5_000_000  # joins and leaves remembered for batches that straddle them
_K = TypeVar("_K")

#: A join (True) or leave (False) of a room: (unix µs, connection, joined).
Change = tuple[int, Connection, bool]


class Hub:
    """Open connections, indexed for target resolution."""

    __slots__ = ("_log", "changes", "conns", "devices", "groups", "rooms", "users")

    def __init__(self) -> None:
        self.conns: dict[str, Connection] = {}
        # One connection per user and per device is the rule: no set for it (logic/multimap.py).
        self.users: MultiMap[str, Connection] = MultiMap()
        self.devices: MultiMap[str, Connection] = MultiMap()
        self.rooms: dict[str, set[Connection]] = {}
        #: room -> group key (:func:`group_key`) -> members of the room in that group.
        self.groups: dict[str, dict[int, set[Connection]]] = {}
        #: room -> its recent joins and leaves, oldest first (see the module docstring).
        self.changes: dict[str, deque[Change]] = {}
        self._log: deque[tuple[str, Change]] = deque()  # every change, oldest first

    def add(self, conn: Connection, rooms: Iterable[str]) -> None:
        """Index an authenticated connection with its initial rooms."""
        self.conns[conn.conn_id] = conn
        self.users.add(conn.user, conn)
        self.devices.add(conn.device, conn)
        for room in rooms:
            # Not remembered as a change: a new connection may get messages accepted
            # up to one window before its AUTH_OK (and a connect storm costs nothing).
            self.join(conn, room, record=False)

    def remove(self, conn: Connection) -> None:
        """Forget ``conn`` everywhere; idempotent."""
        if self.conns.get(conn.conn_id) is not conn:
            return
        del self.conns[conn.conn_id]
        self.users.discard(conn.user, conn)
        self.devices.discard(conn.device, conn)
        for room in conn.rooms:
            _discard(self.rooms, room, conn)
            self._ungroup(room, conn)

    def join(
        self, conn: Connection, room: str, at_us: int | None = None, *, record: bool = True
    ) -> None:
        """Index ``conn`` in ``room`` (idempotent); the session keeps its own room list."""
        members = self.rooms.get(room)
        if members is None:
            members = self.rooms[room] = set()
        elif conn in members:
            return
        members.add(conn)
        groups = self.groups.get(room)
        if groups is None:
            groups = self.groups[room] = {}
        groups.setdefault(group_key(conn), set()).add(conn)
        if record:
            self._changed(room, conn, True, at_us)

    def leave(self, conn: Connection, room: str, at_us: int | None = None) -> None:
        """Take ``conn`` out of ``room`` (idempotent)."""
        members = self.rooms.get(room)
        if members is None or conn not in members:
            return
        _discard(self.rooms, room, conn)
        self._ungroup(room, conn)
        self._changed(room, conn, False, at_us)

    def _changed(self, room: str, conn: Connection, joined: bool, at_us: int | None) -> None:
        now = time.time_ns() // 1000 if at_us is None else at_us
        change = (now, conn, joined)
        changes = self.changes.get(room)
        if changes is None:
            changes = self.changes[room] = deque()
        changes.append(change)
        log = self._log
        log.append((room, change))
        old = now - CHANGE_MAX_AGE_US
        while log and log[0][1][0] < old:
            name, first = log.popleft()
            self._forget_change(name, first)

    def _forget_change(self, room: str, change: Change) -> None:
        changes = self.changes.get(room)
        if changes and changes[0] is change:
            changes.popleft()
            if not changes:
                del self.changes[room]

    def settle(self, room: str, oldest_us: int) -> dict[Connection, list[Change]]:
        """Changes of ``room`` a batch whose oldest message is from ``oldest_us`` straddles.

        Changes made before ``oldest_us`` are settled (the batch, and every
        later one, is for the members as they are now) and forgotten; the
        rest are returned by connection, oldest first.
        """
        changes = self.changes.get(room)
        if not changes:
            return {}
        while changes and changes[0][0] < oldest_us:
            changes.popleft()
        if not changes:
            del self.changes[room]
            return {}
        straddling: dict[Connection, list[Change]] = {}
        for change in changes:
            straddling.setdefault(change[1], []).append(change)
        return straddling

    def _ungroup(self, room: str, conn: Connection) -> None:
        groups = self.groups.get(room)
        if groups is not None:
            _discard(groups, group_key(conn), conn)
            if not groups:
                del self.groups[room]

    def resolve(self, target: Target) -> Iterable[Connection]:
        """The open connections ``target`` reaches, each once.

        Areas are expanded to rooms by dispatch before a message reaches a
        gateway, so only users, devices, rooms and all are resolved here.
        """
        if target.all:
            return list(self.conns.values())
        groups: list[Collection[Connection]] = []
        for key in target.users:
            if members := self.users.get(key):
                groups.append(members)
        for key in target.devices:
            if members := self.devices.get(key):
                groups.append(members)
        for key in target.rooms:
            if room := self.rooms.get(key):
                groups.append(room)
        if not groups:
            return ()
        if len(groups) == 1:
            return list(groups[0])
        return set().union(*groups)


def group_key(conn: Connection) -> int:
    """The group of ``conn`` within its rooms: transport kind and codec in one small int."""
    return conn.kind * GROUP_CODECS + conn.codec


def group_of(key: int) -> tuple[int, int]:
    """``(kind, codec)`` of a group key."""
    return divmod(key, GROUP_CODECS)


def _discard(index: dict[_K, set[Connection]], key: _K, conn: Connection) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(conn)
        if not members:
            del index[key]
