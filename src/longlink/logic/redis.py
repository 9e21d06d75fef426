"""The registry on Redis: sessions, presence and nodes shared by many processes.

Keys (:mod:`longlink.bus.keys` gives each its hash tag):

==========================  =====================================================
``sess:{c:<conn>}``         hash: user, device, node, rooms (JSON), connected_ms
``user:{u:<user>}``         hash: conn -> node
``dev:{d:<device>}``        hash: conn -> node
``nconns:{n:<node>}``       set: the node's conns
``nrooms:{n:<node>}``       hash: room -> how many of the node's conns are in it
``alive:{n:<node>}``        string with a TTL, refreshed by every node report
``{ll}:nodes``              hash: node -> NodeInfo (msgpack)
``{ll}:room_area`` / ``area:{a:<a>}``  hash room -> area / set of the area's rooms
``{ll}:announce``           set: rooms whose enters and exits are sent as EVENT frames
``revoked:{u:<user>}``      string with a TTL: tokens issued before this (unix ms) are
                            refused (a kick; as long as a token lives)
==========================  =====================================================

Counts are per node (``nrooms``) and are summed over live nodes when read, so
when a node dies its counts vanish with its ``alive`` key, within
``node_ttl_ms``; :meth:`RedisRegistry.sweep` then removes the dead node's
sessions. Reads filter out sessions of dead nodes, so nothing routes to them
meanwhile. No query scans all sessions.

Dispatch resolves a whole step's targets with :meth:`RedisRegistry.nodes_for_many`:
on one Redis, the nodes of all its users in one call of the :data:`NODES_OF`
script, not one ``HGETALL`` each (redis-py's CPU per command is the cost that
matters).

Redis Cluster (``clustered``): every command and script touches keys of one
slot (pipelines are not transactions, and redis-py's cluster pipeline sends
each primary its share at once). The users of a step sit in as many slots as
there are users, so there :data:`NODES_OF` is replaced by one pipelined
``HVALS`` per user.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from longlink.bus import keys
from longlink.logic.base import NodeInfo, Online, SessionInfo
from longlink.model import Target

NODES = keys.global_key("nodes")
ROOM_AREA = keys.global_key("room_area")
ANNOUNCE = keys.global_key("announce")

#: The nodes (``HVALS``) of each of KEYS, user or device hashes (conn -> node): the
#: nodes of a whole dispatch step's users in one command. redis-py's CPU (measured
#: here): ~50 µs per command sent alone, ~9 µs per command of a pipeline, under 1 µs
#: per key of this script.
#: Take one connection out of each room ARGV in the node's KEYS[1] (``nrooms``) and
#: drop the rooms it was the last in — atomically: a decrement and a separate check
#: would let another connection's join in between be lost with the dropped field.
LEAVE_ROOMS = """
for i, room in ipairs(ARGV) do
  if redis.call('HINCRBY', KEYS[1], room, -1) <= 0 then
    redis.call('HDEL', KEYS[1], room)
  end
end
return #ARGV
"""

NODES_OF = """
local nodes = {}
for i, key in ipairs(KEYS) do
  nodes[i] = redis.call('HVALS', key)
end
return nodes
"""
#: Keep the later of the stored moment and ARGV[1]; (re)set the TTL to ARGV[2] seconds.
REVOKE = """
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
local new = tonumber(ARGV[1])
if old > new then new = old end
redis.call('SET', KEYS[1], new, 'EX', ARGV[2])
return new
"""
_node_encoder = msgspec.msgpack.Encoder()
_node_decoder = msgspec.msgpack.Decoder(NodeInfo)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisRegistry:
    """:class:`~longlink.logic.base.Registry` and :class:`~longlink.logic.base.NodeSweep` on Redis.

    See the module docstring for the keys and how a dead node's counts vanish.
    """

    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,
        *,
        node_ttl_ms: int = 5_000,
        live_cache_s: float = 0.5,
    ) -> None:
        self._redis: Any = client  # redis-py types RESP2 and RESP3 replies as one union
        self._node_ttl_ms = node_ttl_ms
        self._live_cache_s = live_cache_s
        self._live: tuple[float, list[str]] = (0.0, [])
        self._live_epoch = 0  # bumped when the node set changed here: a read in flight is stale
        self._nodes_of = self._redis.register_script(NODES_OF)
        self._clustered = isinstance(client, aioredis.RedisCluster)

    # ------------------------------------------------------------ nodes

    async def live_nodes(self, *, fresh: bool = False) -> list[str]:
        """Nodes whose ``alive`` key exists (cached for ``live_cache_s``)."""
        now = time.monotonic()
        if not fresh and now - self._live[0] < self._live_cache_s:
            return self._live[1]
        epoch = self._live_epoch
        names = sorted(_s(n) for n in await self._redis.hkeys(NODES))
        if names:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.exists(keys.node_alive(name))
                alive = await pipe.execute()
            names = [n for n, ok in zip(names, alive, strict=True) if ok]
        if epoch == self._live_epoch:  # else a node came or went meanwhile: do not cache
            self._live = (now, names)
        return names

    def _forget_live(self) -> None:
        self._live = (0.0, [])
        self._live_epoch += 1

    async def report_node(self, info: NodeInfo) -> bool:
        """Store the report and keep the node's keys alive.

        Returns False when Redis did not know the node (first report, or Redis
        lost its data): the gateway then registers its sessions again.
        """
        if not info.reported_ms:
            info.reported_ms = int(time.time() * 1000)
        old = await self._redis.hget(NODES, info.node)
        if old is not None and _node_decoder.decode(old).draining:
            info.draining = True
        ttl = self._node_ttl_ms
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.node_alive(info.node), b"1", px=ttl, get=True)
            pipe.hset(NODES, info.node, _node_encoder.encode(info))
            pipe.pexpire(keys.node_rooms(info.node), ttl)
            results = await pipe.execute()
        known = results[0] is not None
        if not known:
            self._forget_live()
        return known

    async def nodes(self) -> list[NodeInfo]:
        raw = await self._redis.hgetall(NODES)
        return [_node_decoder.decode(v) for _, v in sorted(raw.items())]

    async def set_draining(self, node: str, draining: bool) -> bool:
        raw = await self._redis.hget(NODES, node)
        if raw is None:
            return False
        info = _node_decoder.decode(raw)
        info.draining = draining
        await self._redis.hset(NODES, node, _node_encoder.encode(info))
        return True

    async def forget_node(self, node: str) -> None:
        conns = [_s(c) for c in await self._redis.smembers(keys.node_conns(node))]
        for conn_id in conns:
            await self.remove_session(conn_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys.node_conns(node), keys.node_rooms(node), keys.node_alive(node))
            pipe.hdel(NODES, node)
            await pipe.execute()
        self._forget_live()

    async def sweep(self, stale_after_ms: int = 30_000) -> list[SessionInfo]:
        """Forget nodes silent for ``stale_after_ms`` and return the sessions they held.

        Any number of processes may call this periodically: a per-node lock
        makes exactly one of them forget a given node (and so report its
        sessions, for exit events).
        """
        live = set(await self.live_nodes(fresh=True))
        now_ms = int(time.time() * 1000)
        dead = [
            info.node
            for info in await self.nodes()
            if info.node not in live and now_ms - info.reported_ms > stale_after_ms
        ]
        lost: list[SessionInfo] = []
        for node in dead:
            if not await self._redis.set(keys.node_sweeping(node), b"1", nx=True, px=60_000):
                continue  # another process is on it
            conns = [_s(c) for c in await self._redis.smembers(keys.node_conns(node))]
            for conn_id in conns:
                session = await self._session(conn_id)
                if session is not None:
                    lost.append(session)
            await self.forget_node(node)
        return lost

    # ------------------------------------------------------------ revocations

    async def revoke_user(self, user: str, before_ms: int, ttl_s: int) -> None:
        # The later of two kicks wins (GT needs Redis 7; a Lua max works on any).
        await self._redis.eval(REVOKE, 1, keys.user_revoked(user), before_ms, max(1, ttl_s))

    async def revoked_before(self, user: str) -> int:
        value = await self._redis.get(keys.user_revoked(user))
        return int(value) if value is not None else 0

    # ------------------------------------------------------------ sessions

    async def add_session(self, session: SessionInfo) -> None:
        if await self._redis.exists(keys.session(session.conn_id)):
            await self.remove_session(session.conn_id)
        rooms = list(dict.fromkeys(session.rooms))
        session.rooms = rooms
        node = session.node
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(
                keys.session(session.conn_id),
                mapping={
                    "user": session.user,
                    "device": session.device,
                    "node": node,
                    "rooms": msgspec.json.encode(rooms),
                    "connected_ms": session.connected_ms,
                },
            )
            pipe.hset(keys.user_conns(session.user), session.conn_id, node)
            pipe.hset(keys.device_conns(session.device), session.conn_id, node)
            pipe.sadd(keys.node_conns(node), session.conn_id)
            for room in rooms:
                pipe.hincrby(keys.node_rooms(node), room, 1)
            await pipe.execute()

    async def _session(self, conn_id: str) -> SessionInfo | None:
        raw = await self._redis.hgetall(keys.session(conn_id))
        if not raw:
            return None
        fields = {_s(k): v for k, v in raw.items()}
        return SessionInfo(
            conn_id=conn_id,
            node=_s(fields["node"]),
            user=_s(fields["user"]),
            device=_s(fields["device"]),
            rooms=msgspec.json.decode(fields["rooms"], type=list[str]),
            connected_ms=int(fields.get("connected_ms", 0)),
        )

    async def remove_session(self, conn_id: str) -> SessionInfo | None:
        session = await self._session(conn_id)
        if session is None:
            return None
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys.session(conn_id))
            pipe.hdel(keys.user_conns(session.user), conn_id)
            pipe.hdel(keys.device_conns(session.device), conn_id)
            pipe.srem(keys.node_conns(session.node), conn_id)
            if session.rooms:
                pipe.eval(LEAVE_ROOMS, 1, keys.node_rooms(session.node), *session.rooms)
            await pipe.execute()
        return session

    async def join(self, conn_id: str, room: str) -> int:
        session = await self._session(conn_id)
        if session is not None and room not in session.rooms:
            session.rooms.append(room)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(keys.session(conn_id), "rooms", msgspec.json.encode(session.rooms))
                pipe.hincrby(keys.node_rooms(session.node), room, 1)
                await pipe.execute()
        return (await self.room_online([room]))[room]

    async def leave(self, conn_id: str, room: str) -> int:
        session = await self._session(conn_id)
        if session is not None and room in session.rooms:
            session.rooms.remove(room)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(keys.session(conn_id), "rooms", msgspec.json.encode(session.rooms))
                pipe.eval(LEAVE_ROOMS, 1, keys.node_rooms(session.node), room)
                await pipe.execute()
        return (await self.room_online([room]))[room]

    async def _conns_of(self, key: str) -> dict[str, str]:
        """conn -> node for a user or device hash, live nodes only."""
        raw = await self._redis.hgetall(key)
        live = set(await self.live_nodes())
        return {_s(c): _s(n) for c, n in raw.items() if _s(n) in live}

    async def user_sessions(self, user: str) -> list[SessionInfo]:
        conns = await self._conns_of(keys.user_conns(user))
        sessions = [await self._session(c) for c in sorted(conns)]
        return [s for s in sessions if s is not None]

    async def nodes_for(self, target: Target) -> set[str]:
        return (await self.nodes_for_many([target]))[0]

    async def nodes_for_many(self, targets: Sequence[Target]) -> list[set[str]]:
        """:meth:`nodes_for` of each of ``targets``, in as few commands as the kinds need.

        Users: one :data:`NODES_OF` call for all of them (one more for devices);
        rooms: one ``HMGET`` of every room asked per live node, pipelined;
        ``all``: one ``SCARD`` per live node; areas: their rooms first. It reads
        what :meth:`nodes_for` would read at that moment: nothing is cached but
        the live nodes (``live_cache_s``), so a user who just connected to a new
        node is routed there. Redis Cluster: one ``HVALS`` per user instead
        of the script (see the module docstring).
        """
        if not targets:
            return []
        live = await self.live_nodes()
        if not live:
            return [set() for _ in targets]
        alive = set(live)
        users = list(dict.fromkeys(u for t in targets for u in t.users))
        devices = list(dict.fromkeys(d for t in targets for d in t.devices))
        user_nodes = await self._nodes_of_keys("user", users, alive)
        device_nodes = await self._nodes_of_keys("dev", devices, alive)
        areas = sorted({a for t in targets for a in t.areas})
        area_rooms: dict[str, list[str]] = {}
        if areas:
            async with self._redis.pipeline(transaction=False) as pipe:
                for area in areas:
                    pipe.smembers(keys.area_rooms(area))
                members = await pipe.execute()
            area_rooms = {a: [_s(r) for r in m] for a, m in zip(areas, members, strict=True)}
        rooms_of = [[*t.rooms, *(r for a in t.areas for r in area_rooms[a])] for t in targets]
        rooms = list(dict.fromkeys(r for asked in rooms_of for r in asked))
        room_nodes: dict[str, set[str]] = {r: set() for r in rooms}
        all_nodes: set[str] = set()
        want_all = any(t.all for t in targets)
        if rooms or want_all:
            async with self._redis.pipeline(transaction=False) as pipe:
                for node in live if rooms else ():
                    pipe.hmget(keys.node_rooms(node), rooms)
                for node in live if want_all else ():
                    pipe.scard(keys.node_conns(node))
                replies = iter(await pipe.execute())
            for node in live if rooms else ():
                for room, count in zip(rooms, next(replies), strict=True):
                    if count is not None and int(count) > 0:
                        room_nodes[room].add(node)
            all_nodes = {n for n in live if next(replies)} if want_all else set()
        resolved: list[set[str]] = []
        for target, asked in zip(targets, rooms_of, strict=True):
            nodes = set(all_nodes) if target.all else set()
            for user in target.users:
                nodes |= user_nodes[user]
            for device in target.devices:
                nodes |= device_nodes[device]
            for room in asked:
                nodes |= room_nodes[room]
            resolved.append(nodes)
        return resolved

    async def _nodes_of_keys(
        self, family: str, names: list[str], alive: set[str]
    ) -> dict[str, set[str]]:
        """name -> its live nodes, for users (``family`` "user") or devices ("dev")."""
        if not names:
            return {}
        key_of = keys.user_conns if family == "user" else keys.device_conns
        if self._clustered:  # one slot per name: no script can read them together
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hvals(key_of(name))
                replies = await pipe.execute()
        else:
            replies = await self._nodes_of(keys=[key_of(name) for name in names])
        return {
            name: {node for node in map(_s, nodes) if node in alive}
            for name, nodes in zip(names, replies, strict=True)
        }

    async def _room_totals(self, rooms: list[str] | None) -> dict[str, int]:
        live = await self.live_nodes()
        totals: dict[str, int] = {}
        if not live:
            return totals
        async with self._redis.pipeline(transaction=False) as pipe:
            for node in live:
                if rooms is None:
                    pipe.hgetall(keys.node_rooms(node))
                else:
                    pipe.hmget(keys.node_rooms(node), rooms)
            replies = await pipe.execute()
        for reply in replies:
            pairs = reply.items() if rooms is None else zip(rooms, reply, strict=True)
            for room, count in pairs:
                if count is not None and int(count) > 0:
                    name = _s(room)
                    totals[name] = totals.get(name, 0) + int(count)
        return totals

    async def room_online(self, rooms: list[str]) -> dict[str, int]:
        totals = await self._room_totals(list(rooms)) if rooms else {}
        return {room: totals.get(room, 0) for room in rooms}

    async def online(self) -> Online:
        live = await self.live_nodes()
        rooms = await self._room_totals(None)
        total = 0
        if live:
            async with self._redis.pipeline(transaction=False) as pipe:
                for node in live:
                    pipe.scard(keys.node_conns(node))
                total = sum(await pipe.execute())
        areas: dict[str, int] = {}
        if rooms:
            room_names = list(rooms)
            owners = await self._redis.hmget(ROOM_AREA, room_names)
            for room, area in zip(room_names, owners, strict=True):
                if area is not None:
                    areas[_s(area)] = areas.get(_s(area), 0) + rooms[room]
        return Online(total=total, rooms=rooms, areas=areas)

    # ------------------------------------------------------------ areas

    async def set_room_area(self, room: str, area: str | None) -> None:
        old = await self._redis.hget(ROOM_AREA, room)
        async with self._redis.pipeline(transaction=False) as pipe:
            if old is not None:
                pipe.srem(keys.area_rooms(_s(old)), room)
                pipe.hdel(ROOM_AREA, room)
            if area is not None:
                pipe.hset(ROOM_AREA, room, area)
                pipe.sadd(keys.area_rooms(area), room)
            await pipe.execute()

    async def room_area(self, room: str) -> str | None:
        area = await self._redis.hget(ROOM_AREA, room)
        return None if area is None else _s(area)

    async def set_room_announce(self, room: str, announce: bool) -> None:
        if announce:
            await self._redis.sadd(ANNOUNCE, room)
        else:
            await self._redis.srem(ANNOUNCE, room)

    async def announced_rooms(self, rooms: list[str]) -> set[str]:
        if not rooms:
            return set()
        flags = await self._redis.smismember(ANNOUNCE, rooms)
        return {room for room, flag in zip(rooms, flags, strict=True) if flag}

    async def rooms_in_areas(self, areas: list[str]) -> list[str]:
        rooms: set[str] = set()
        for area in areas:
            rooms.update(_s(r) for r in await self._redis.smembers(keys.area_rooms(area)))
        return sorted(rooms)
