"""Fan-out planning: which connections get which bytes, each framed once. Pure.

A *plan* is a list of parts ``(connections, data)``: every connection of a
part gets the same ``data``, written as it is. Planning looks at the hub's
indexes and builds each distinct byte string once — one frame per codec,
wrapped in a WebSocket message once per transport — so the write loop
(:mod:`~longlink.gateway.delivery`) does nothing per connection but write.

* A room batch (:class:`~longlink.model.RoomBatch`, already encoded by
  dispatch) gets one part per group of the room (transport, codec; see
  :mod:`~longlink.gateway.hub`).
* A single message to rooms becomes, per room, a BATCH whose first inner
  frame is ROOM (PROTOCOL.md §1.4 rule 1), built once per room; a
  connection in several of the target rooms gets it once.
* Single messages to one room waiting back to back (the writer is behind)
  keep a frame each, joined into one write per member
  (:func:`room_messages_parts`).
* A single message to users, devices or everyone is a plain PUSH, framed
  once per transport.

Per transport (:func:`framed`): TCP writes frames as they are, WebSocket one
binary message per frame, the HTTP stream the frames of one write as one
chunk of its chunked response (PROTOCOL.md §1.5).
* A connection that joined or left a room after the oldest message of a
  batch was accepted gets a part of its own: exactly the messages accepted
  while it was in the room (:meth:`~longlink.gateway.hub.Hub.settle`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from longlink.gateway.hub import group_of
from longlink.model import Message, Priority, RoomBatch, message_push
from longlink.protocol import Flag, Op, decode_frame, split_batch
from longlink.protocol import websocket as wsp
from longlink.protocol.frames import MAX_U32, MAX_U64, encode_frame
from longlink.protocol.push import push_frame, room_batch, room_tag
from longlink.protocol.server import SessionState
from longlink.protocol.stream import chunk

if TYPE_CHECKING:
    from longlink.gateway.connection import Connection
    from longlink.gateway.hub import Change, Hub

TCP = 0
WS = 1
STREAM = 2
KIND_COUNT = 3  # the transports of gateway/connection.py: tcp, ws, stream
_OPEN = SessionState.OPEN

#: One part of a fan-out: these connections get these bytes.
Part = tuple[list["Connection"], bytes]


def ws_message(frame: bytes) -> bytes:
    """``frame`` as one binary WebSocket message (the same bytes for every client)."""
    return wsp.encode_frame(wsp.WsOpcode.BINARY, frame)


def framed(kind: int, frames: list[bytes]) -> bytes:
    """``frames`` as one write on a transport of ``kind`` (the same bytes for every client)."""
    if kind == WS:
        return b"".join([ws_message(frame) for frame in frames])
    data = frames[0] if len(frames) == 1 else b"".join(frames)
    return chunk(data) if kind == STREAM else data


def room_message(message: Message, room: str) -> bytes:
    """``message`` as a room batch of its own: ROOM ``room``, then its PUSH frame."""
    return room_batch(
        room_tag(room), [message_push(message)], high=message.priority == Priority.HIGH
    )


def message_parts(hub: Hub, message: Message, conns: list[Connection] | None = None) -> list[Part]:
    """The plan of one message; ``conns`` are its connections if already resolved."""
    target = message.target
    if target.rooms:
        return _room_message_parts(hub, message, target.rooms)
    if conns is None:
        conns = list(hub.resolve(target))
    return by_transport(conns, message_push(message))


def _room_message_parts(hub: Hub, message: Message, rooms: list[str]) -> list[Part]:
    if len(rooms) == 1:
        return room_messages_parts(hub, [message])
    parts: list[Part] = []
    done: set[Connection] = set()  # several rooms: each connection once
    for room in rooms:
        groups = hub.groups.get(room)
        if not groups:
            continue
        frame = room_message(message, room)
        written: list[bytes | None] = [None] * KIND_COUNT  # per transport kind
        for key, members in groups.items():
            kind = group_of(key)[0]
            data = written[kind]
            if data is None:
                data = written[kind] = framed(kind, [frame])
            fresh = [conn for conn in members if conn not in done]
            done.update(fresh)
            if fresh:
                parts.append((fresh, data))
    return parts


def room_messages_parts(hub: Hub, messages: list[Message]) -> list[Part]:
    """The plan of single messages to one room, each its own room batch, one write.

    Every message keeps its frame (ROOM tag first, as :func:`room_message`);
    the frames of all of them are joined per group, so each member gets one
    write carrying them in order. The members are the room's as they are now
    (as when the messages are written one after the other in one loop turn).
    """
    room = messages[0].target.rooms[0]  # every message's only room
    groups = hub.groups.get(room)
    if not groups:
        return []
    frames = [room_message(message, room) for message in messages]
    joined: list[bytes | None] = [None] * KIND_COUNT  # per transport kind
    parts: list[Part] = []
    for key, members in groups.items():
        kind = group_of(key)[0]
        data = joined[kind]
        if data is None:
            data = joined[kind] = framed(kind, frames)
        parts.append((list(members), data))
    return parts


def batch_parts(hub: Hub, batches: list[RoomBatch]) -> list[Part]:
    """One part per group of the room: its members and the frames for its codec."""
    room = batches[0].room
    straddling = _straddling(hub, room, batches)
    groups = hub.groups.get(room)
    parts: list[Part] = []
    for key, members in (groups or {}).items():
        kind, codec = group_of(key)
        data = framed(kind, [batch.frame_for(codec) for batch in batches])
        if straddling:
            parts.append(([c for c in members if c not in straddling], data))
        else:
            parts.append((list(members), data))
    for conn, changes in straddling.items():
        if conn.state is not _OPEN:
            continue
        frame = _frame_for_member(batches, changes)
        if frame:
            parts.append(([conn], framed(conn.kind, [frame])))
    return parts


def _straddling(hub: Hub, room: str, batches: list[RoomBatch]) -> dict[Connection, list[Change]]:
    if room not in hub.changes:
        return {}
    known = [us for batch in batches for us in batch.accepted if us]
    if not known:
        return {}  # acceptance times unknown: the members as they are now
    return hub.settle(room, min(known))


def _member_at(changes: list[Change], at_us: int) -> bool:
    """Whether the connection was in the room at ``at_us``, from its changes (oldest first).

    In a tie (the same µs) the message counts as the member's: a tie delivers.
    """
    member = not changes[0][2]  # before its first change it was the opposite
    for changed_us, _, joined in changes:
        if changed_us > at_us or (changed_us == at_us and not joined):
            break
        member = joined
    return member


def _frame_for_member(batches: list[RoomBatch], changes: list[Change]) -> bytes:
    """The messages of ``batches`` accepted while the connection was a member, as one
    room batch (its ROOM tag first), or ``b""`` when there are none."""
    tag = b""
    kept: list[bytes] = []
    high = False
    for batch in batches:
        outer = decode_frame(batch.frames[0], MAX_U32)
        high = high or bool(outer.flags & Flag.HIGH_PRIORITY)
        inner = split_batch(outer.body)
        if inner and inner[0].op == Op.ROOM:
            tag = encode_frame(Op.ROOM, inner[0].body)
            inner = inner[1:]
        accepted = batch.accepted
        for index, frame in enumerate(inner):
            at_us = accepted[index] if index < len(accepted) and accepted[index] else MAX_U64
            if _member_at(changes, at_us):
                kept.append(push_frame(frame.body, frame.msg_id, frame.flags))
    if not kept:
        return b""
    return room_batch(tag or room_tag(batches[0].room), kept, high=high)


def by_transport(conns: Iterable[Connection], frame: bytes) -> list[Part]:
    """One part per transport present, each with ``frame`` framed once for it."""
    kinds: list[list[Connection]] = [[] for _ in range(KIND_COUNT)]
    for conn in conns:
        kinds[conn.kind].append(conn)
    return [(members, framed(kind, [frame])) for kind, members in enumerate(kinds) if members]


def one_room(message: Message) -> bool:
    """Whether ``message`` goes to exactly one room (and nothing else)."""
    target = message.target
    return len(target.rooms) == 1 and not (
        target.users or target.devices or target.areas or target.all
    )
