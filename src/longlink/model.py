"""Messages as they travel between the layers (api → queue → dispatch → gateway).

These structs are the bus's wire format too (msgpack, array-like), so a Redis
bus carries exactly what the embedded one does.
"""

from __future__ import annotations

import enum
import threading
import time

import msgspec

from longlink.protocol.errors import LonglinkError
from longlink.protocol.push import push_flags, push_frame


class Priority(enum.StrEnum):
    LOW = "low"
    HIGH = "high"


class Target(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """Who a push goes to: exactly one kind is set (PROTOCOL.md §2.2)."""

    users: list[str] = []
    devices: list[str] = []
    rooms: list[str] = []
    areas: list[str] = []
    all: bool = False

    @property
    def kind(self) -> str:
        for name in ("users", "devices", "rooms", "areas"):
            if getattr(self, name):
                return name
        return "all"


class Message(msgspec.Struct, frozen=True, array_like=True, tag="msg"):
    """A push accepted by the API, ready for dispatch."""

    msg_id: int
    target: Target
    payload: bytes
    priority: Priority = Priority.LOW
    guaranteed: bool = False
    ttl_s: int = 60
    accepted_ms: int = 0
    # The same instant in unix µs (0: unknown): orders a push against a connection's
    # JOIN or LEAVE of its room when dispatch held it in a window (docs/dispatch.md).
    accepted_us: int = 0
    # Kept in its rooms' history (PROTOCOL.md §1.4 rule 2): False for a push with
    # "history": false, and for an area push once dispatch made it a room push.
    history: bool = True
    # The payload is the JSON encoding of the push's "data" (not "data_b64" bytes):
    # the history API answers it as "data".
    data_json: bool = False

    @property
    def accepted_at_us(self) -> int:
        """Acceptance in unix µs, as precise as known (0: unknown)."""
        return self.accepted_us or self.accepted_ms * 1000

    @property
    def expires_ms(self) -> int:
        return self.accepted_ms + self.ttl_s * 1000


def message_push(message: Message) -> bytes:
    """The plain PUSH frame of ``message`` (codec 0): the one place a message is framed."""
    flags = push_flags(high=message.priority == Priority.HIGH, guaranteed=message.guaranteed)
    return push_frame(message.payload, message.msg_id, flags)


class NodeCommand(msgspec.Struct, frozen=True, array_like=True, tag="cmd"):
    """An instruction to one gateway node, sent on the node channel.

    ``action`` is ``kick_user`` (close ``user``'s connections with KICK
    ``reason``), ``drain`` (KICK every client with reason ``drain`` so SDKs
    move to another node), ``kick_conn`` (close the connection ``conn_id``
    with KICK ``reason``: a newer login of its device replaced it) or
    ``room_event`` (write an EVENT frame with JSON ``body`` to the node's
    connections in ``room``).
    """

    action: str
    user: str = ""
    reason: str = ""
    conn_id: str = ""
    room: str = ""
    body: bytes = b""


class RoomBatch(msgspec.Struct, frozen=True, array_like=True, tag="batch"):
    """A room's messages of one aggregation window, encoded once by dispatch.

    ``frames[codec]`` is the complete PUSH frame (header included) to write to
    every connection of the room that negotiated ``codec`` (index: 0 none,
    1 zlib, 2 brotli; PROTOCOL.md §1.1): a BATCH frame, or a plain PUSH when
    the window held one message. An empty entry (or a missing one) means
    "write ``frames[0]``": compression did not pay for that batch. A gateway
    only adds the WebSocket header, once per group of connections.
    ``accepted`` holds each message's acceptance in unix µs
    (``Message.accepted_at_us``, 0: unknown), in the order of ``msg_ids``.
    """

    room: str
    msg_ids: list[int]
    frames: list[bytes]
    priority: Priority = Priority.LOW
    accepted: list[int] = []

    def frame_for(self, codec: int) -> bytes:
        """The frame for connections that negotiated ``codec``."""
        frames = self.frames
        return (frames[codec] if codec < len(frames) else b"") or frames[0]

    @property
    def accepted_ms(self) -> int:
        """The earliest known acceptance in the batch, unix ms (0: none known)."""
        known = [us for us in self.accepted if us]
        return min(known) // 1000 if known else 0


#: What travels on a node channel (dispatch and control → one gateway node).
Envelope = Message | NodeCommand | RoomBatch

_packer = msgspec.msgpack.Encoder()
_unpacker = msgspec.msgpack.Decoder(Message)


def pack_message(message: Message) -> bytes:
    return _packer.encode(message)


def unpack_message(data: bytes) -> Message:
    return _unpacker.decode(data)


_envelope_unpacker = msgspec.msgpack.Decoder(Envelope)


def pack_envelope(envelope: Envelope) -> bytes:
    return _packer.encode(envelope)


def unpack_envelope(data: bytes) -> Envelope:
    envelope: Envelope = _envelope_unpacker.decode(data)
    return envelope


# ------------------------------------------------------------------ message ids

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
NODE_BITS = 10
SEQ_BITS = 12
MAX_NODE = (1 << NODE_BITS) - 1
MAX_SEQ = (1 << SEQ_BITS) - 1


class IdsUnavailable(LonglinkError):
    """The generator holds no node number now: no id can be minted (retry later).

    Raised before the id is used, so nothing was minted. The HTTP API answers
    503 ``unavailable`` with ``Retry-After``.
    """


class MsgIdGenerator:
    """Time-ordered unique 64-bit ids: 41 bits ms since 2024, 10 bits node, 12 bits sequence.

    Snowflake-like: ids from one generator strictly increase; two generators
    with different ``node`` numbers never collide. When the clock steps back the
    generator keeps using its last timestamp, so ids never go backwards; more
    than 4096 ids in one ms borrow the next ms.

    Made with a ``node``, it mints with that number for ever (one process, or
    a number nobody else can hold). Made without, it mints nothing
    (:class:`IdsUnavailable`) until :meth:`hold` gives it a number, as the
    id lease does (:mod:`longlink.idlease`, docs/message-ids.md): a held number
    comes with a stamp range and a deadline, and past either the generator
    refuses to mint until :meth:`extend` or :meth:`hold` is called again.
    """

    __slots__ = ("_last_ms", "_lock", "_node", "_seq", "_until_ms", "_valid_until")

    def __init__(self, node: int | None = None) -> None:
        if node is not None:
            _check_node(node)
        self._node = node
        self._last_ms = 0  # ms since EPOCH_MS of the last id (or the floor of a held number)
        self._seq = 0
        self._until_ms: int | None = None  # ms since EPOCH_MS: no id stamped later
        self._valid_until: float | None = None  # time.monotonic(): no id minted after
        self._lock = threading.Lock()

    @property
    def node(self) -> int | None:
        """The node number ids are minted with now (None: none held)."""
        return self._node

    @property
    def last_ms(self) -> int:
        """Unix ms of the last id minted (or the floor of the number held); later ids are later."""
        return self._last_ms + EPOCH_MS

    def hold(self, node: int, *, after_ms: int, until_ms: int, valid_until: float) -> None:
        """Mint with ``node`` from now on, within bounds the lease that gave it sets.

        Ids are stamped later than ``after_ms`` and at most ``until_ms`` (unix
        ms), and minted only until ``valid_until`` (a ``time.monotonic()``
        value). ``after_ms`` is the last stamp any earlier holder of ``node``
        may have used: stamps after it cannot collide with theirs.
        """
        _check_node(node)
        with self._lock:
            floor = after_ms - EPOCH_MS
            if floor >= self._last_ms:
                # The next id in that ms would repeat the earlier holder's: borrow the next.
                self._last_ms, self._seq = floor, MAX_SEQ
            self._node = node
            self._until_ms = until_ms - EPOCH_MS
            self._valid_until = valid_until

    def extend(self, *, until_ms: int, valid_until: float) -> None:
        """Move the bounds of the number held on (the lease was renewed)."""
        with self._lock:
            self._until_ms = until_ms - EPOCH_MS
            self._valid_until = valid_until

    def drop(self) -> None:
        """Stop minting (the number was lost or given back) until :meth:`hold`."""
        with self._lock:
            self._node = None

    def next_id(self) -> int:
        """The next id; :class:`IdsUnavailable` when no number is held or its bounds passed."""
        with self._lock:
            node = self._node
            if node is None:
                raise IdsUnavailable("this process holds no message-id node number")
            if self._valid_until is not None and time.monotonic() >= self._valid_until:
                raise IdsUnavailable("the lease of this process's id node number was not renewed")
            now = max(int(time.time() * 1000) - EPOCH_MS, self._last_ms)
            seq = 0
            if now == self._last_ms:
                seq = (self._seq + 1) & MAX_SEQ
                if seq == 0:  # 4096 ids in one ms: borrow the next ms
                    now += 1
            if self._until_ms is not None and now > self._until_ms:
                raise IdsUnavailable("this process's id node number is at the end of its range")
            self._last_ms, self._seq = now, seq
            return (now << (NODE_BITS + SEQ_BITS)) | (node << SEQ_BITS) | seq

    @staticmethod
    def timestamp_ms(msg_id: int) -> int:
        """Unix ms at which ``msg_id`` was made."""
        return (msg_id >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS


def _check_node(node: int) -> None:
    if not 0 <= node <= MAX_NODE:
        raise ValueError(f"node must be in 0..{MAX_NODE}")
