"""The Redis key layout: every key of longlink, its family and its hash tag.

One layout for a single Redis, a Sentinel-managed primary and a Redis Cluster
(the same key names everywhere; a single Redis ignores the tags). In a
cluster a key's slot is the CRC16 of its hash tag (the text between the
first ``{`` and the next ``}``), and a command, script or ``XREAD`` over
several keys needs them all in one slot. So each family keeps together what
one command touches, and nothing more, and the load spreads over the
primaries with the users, rooms, nodes and queue shards:

=================================  =========================  ==========================
key                                tag                        together because
=================================  =========================  ==========================
``ll:q:{<p>.<i>.<k>}``             the queue shard            one stream per shard
``ll:q:{<p>.<i>.<k>}:epoch``       the queue shard            checked by the shard's append
``ll:node:{n:<node>}`` (``:hi``)   the node                   one ``XREAD`` of both streams
``ll:alive|nconns|nrooms|sweeping:{n:<node>}``  the node      the node's report pipeline
``ll:user:{u:<user>}``             the user                   the user's conns (conn → node)
``ll:revoked:{u:<user>}``          the user
``ll:inbox:{u:<user>}``            the user                   the user's offline messages
``ll:dev:{d:<device>}``            the device                 (and ``ll:inbox:{d:<device>}``)
``ll:sess:{c:<conn>}``             the connection             looked up by conn id alone
``ll:room:{<room>}:history``       the room                   its history stream
``ll:area:{a:<area>}``             the area                   the area's rooms
``ll:gm:{m:<id>}``, ``ll:grcpt:…`` the message                deleted together
``ll:trace:r:{<query>}``           the trace query            one reply list per query
``{ll}:consumer:<worker>``         (shared)                   a dispatch worker's liveness
``{ll}:nodes``, ``{ll}:room_area``, ``{ll}:announce``, ``{ll}:gexp``,
``{ll}:idn``, ``{ll}:idn:after``, ``{ll}:trace:q`` (a shard channel)   small shared keys
=================================  =========================  ==========================

Room membership is counted per node (``nrooms``, under the node's tag), not
per room: a node's counts must vanish with its ``alive`` key when it dies,
and routing a room reads one field per live node (pipelined; in a cluster
the pipeline goes to every primary at once).

Queue shards (:func:`queue_keys`): ``shards`` streams per priority; shard
``i`` of ``n`` gets the first tag ``<p>.<i>.<k>`` (``k`` = 0, 1, …) whose
slot lies in the ``i``-th ``n``-th of the slot space, so shards are spread
evenly over any cluster whose primaries hold equal ranges of slots (what
``redis-cli --cluster create`` makes). A message goes to the shard of its
first target (:func:`shard_of`): every push to one room, one user, one
device or one area goes to one shard, and keeps its order there.
"""

from __future__ import annotations

import functools
import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from longlink.model import Priority, Target

__all__ = [
    "CLUSTER_SHARDS",
    "GLOBAL",
    "MAX_SHARDS",
    "global_key",
    "queue_keys",
    "shard_of",
    "slot",
]

#: The tag of the small keys every process shares.
GLOBAL = "{ll}"
#: Queue shards per priority at most.
MAX_SHARDS = 256
#: Queue shards per priority on a Redis Cluster unless set (``LONGLINK_QUEUE_SHARDS``).
CLUSTER_SHARDS = 8


def slot(key: str) -> int:
    """The Redis Cluster slot of ``key`` (hash tag rules included)."""
    return int(key_slot(key.encode()))


def global_key(name: str) -> str:
    """One of the small shared keys (``{ll}:<name>``)."""
    return f"{GLOBAL}:{name}"


def _tagged(family: str, tag: str, suffix: str = "") -> str:
    return f"ll:{family}:{{{tag}}}{suffix}"


# ------------------------------------------------------------------ nodes


def node_stream(node: str, high: bool = False) -> str:
    """A gateway node's stream (``high``: its high-priority one); both in the node's slot."""
    return _tagged("node", f"n:{node}", ":hi" if high else "")


def node_alive(node: str) -> str:
    return _tagged("alive", f"n:{node}")


def node_conns(node: str) -> str:
    return _tagged("nconns", f"n:{node}")


def node_rooms(node: str) -> str:
    return _tagged("nrooms", f"n:{node}")


def node_sweeping(node: str) -> str:
    return _tagged("sweeping", f"n:{node}")


# ------------------------------------------------------------------ users, devices, conns


def user_conns(user: str) -> str:
    """The user's connections (hash conn → node)."""
    return _tagged("user", f"u:{user}")


def user_revoked(user: str) -> str:
    return _tagged("revoked", f"u:{user}")


def device_conns(device: str) -> str:
    return _tagged("dev", f"d:{device}")


def session(conn_id: str) -> str:
    return _tagged("sess", f"c:{conn_id}")


# ------------------------------------------------------------------ rooms, areas


def room_history(room: str) -> str:
    """The stream of ``room``'s history (tag: the room)."""
    return _tagged("room", room, ":history")


def area_rooms(area: str) -> str:
    return _tagged("area", f"a:{area}")


# ------------------------------------------------------------------ offline store


def stored_message(msg_id: int | str) -> str:
    return _tagged("gm", f"m:{msg_id}")


def stored_recipients(msg_id: int | str) -> str:
    return _tagged("grcpt", f"m:{msg_id}")


def inbox(recipient: str) -> str:
    """A recipient's (``u:<user>`` or ``d:<device>``) offline messages: the user's slot."""
    return _tagged("inbox", recipient)


# ------------------------------------------------------------------ trace


def trace_reply(query_id: str) -> str:
    return _tagged("trace:r", query_id)


# ------------------------------------------------------------------ queues


@functools.cache
def _shard_tag(priority: str, index: int, shards: int) -> str:
    low = index * REDIS_CLUSTER_HASH_SLOTS // shards
    high = (index + 1) * REDIS_CLUSTER_HASH_SLOTS // shards
    k = 0
    while True:
        tag = f"{priority}.{index}.{k}"
        if low <= slot("{" + tag + "}") < high:
            return tag
        k += 1


@functools.cache
def queue_keys(priority: Priority, shards: int) -> tuple[str, ...]:
    """The streams of ``priority``'s queue: one per shard, spread over the slot space."""
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"queue shards must be 1..{MAX_SHARDS}, not {shards}")
    return tuple(_tagged("q", _shard_tag(priority.value, i, shards)) for i in range(shards))


def epoch_key(stream: str) -> str:
    """The epoch of a queue shard: set while its Redis holds the registry whole."""
    return stream + ":epoch"


def shard_of(target: Target, shards: int) -> int:
    """The queue shard of a message to ``target``: by its first room, user, device or area.

    Pushes to one room (one user, one device, one area) always land on one
    shard, so they keep their order; a broadcast goes to shard 0.
    """
    if shards <= 1:
        return 0
    for kind, names in (("r", target.rooms), ("u", target.users), ("d", target.devices)):
        if names:
            return zlib.crc32(f"{kind}:{names[0]}".encode()) % shards
    if target.areas:
        return zlib.crc32(f"a:{target.areas[0]}".encode()) % shards
    return 0
