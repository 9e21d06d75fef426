"""A server session and a client session wired back to back, no sockets (h11's pair style).

:class:`Pair` moves bytes between a :class:`ServerSession` and a
:class:`ClientSession` through the real frame codec (``FrameDecoder`` on both
sides, as on TCP) and plays the gateway's part for the server session's
requests in the simplest way that is still the contract: a token table,
online counts in a dict, ACKs and upstream data recorded. Everything is
synchronous and the time is a number the test moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from longlink.protocol import Frame, FrameDecoder
from longlink.protocol.client import ClientSession, Lost
from longlink.protocol.client import Output as ClientOutput
from longlink.protocol.errors import ErrorCode, ProtocolError
from longlink.protocol.server import (
    Acked,
    AuthRequest,
    Closed,
    Event,
    HeartbeatRequest,
    JoinRequest,
    LeaveRequest,
    Output,
    ServerSession,
    SessionRules,
    UpstreamRequest,
)

TOKEN = "good-token"


@dataclass
class Pair:
    """One client session talking to one server session (see the module docstring)."""

    rules: SessionRules = field(default_factory=SessionRules)
    client: ClientSession = field(default_factory=ClientSession)
    now: float = 1000.0
    online: dict[str, int] = field(default_factory=dict)
    #: What the "gateway" saw: acks, upstream data, the close reason, rooms asked with since.
    acked: list[int] = field(default_factory=list)
    upstream: list[bytes] = field(default_factory=list)
    closed: str | None = None
    since: dict[str, int | None] = field(default_factory=dict)
    recover: bool = True  # what the gateway answers to a ``since``
    hold: bool = False  # keep AUTH/JOIN/LEAVE requests pending (the registry is slow)
    held: list[Event] = field(default_factory=list)
    #: Frames on their way, and what the client made of the ones it read.
    to_server: bytes = b""
    to_client: bytes = b""
    received: ClientOutput = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server = ServerSession(self.rules, self.now)
        self._server_in = FrameDecoder(self.rules.max_frame)
        self._client_in = FrameDecoder(1 << 24)

    # -------------------------------------------------------------- moving bytes

    def send(self, frame: bytes) -> None:
        """The client writes ``frame``."""
        self.to_server += frame

    def run(self) -> ClientOutput:
        """Deliver everything in flight both ways until quiet; returns what the client got."""
        got: ClientOutput = []
        while self.to_server or self.to_client:
            data, self.to_server = self.to_server, b""
            for frame in self._server_in.feed(data):
                self.apply(self.server.receive(frame, self.now))
            data, self.to_client = self.to_client, b""
            for frame in self._client_in.feed(data):
                got.extend(self.client.receive(frame, self.now))
        self.received.extend(got)
        return got

    def server_frames(self, out: Output) -> list[Frame]:
        """Frames in a server output (for tests that look at the server alone)."""
        return [f for item in out if isinstance(item, bytes) for f in FrameDecoder().feed(item)]

    # -------------------------------------------------------------- the gateway's part

    def apply(self, out: Output) -> None:
        for item in out:
            if isinstance(item, bytes):
                self.to_client += item
            elif self.hold and isinstance(item, AuthRequest | JoinRequest | LeaveRequest):
                self.held.append(item)
            else:
                self.carry_out(item)

    def release(self) -> None:
        """The slow registry answers every held request, in order."""
        held, self.held = self.held, []
        for item in held:
            self.carry_out(item)

    def carry_out(self, event: Event) -> None:
        server = self.server
        if isinstance(event, AuthRequest):
            if event.token != TOKEN:
                error = ProtocolError(ErrorCode.AUTH_FAILED, "invalid connection token")
                self.apply(server.fail(error, event.seq))
                return
            self.since.update(event.since)
            recovered = {room: self.recover for room in event.since}
            out = server.opened("c1", "alice", "d1", event.seq, self.now, recovered)
            self.apply(out)
        elif isinstance(event, JoinRequest):
            self.since[event.room] = event.since
            self.online[event.room] = self.online.get(event.room, 0) + 1
            recovered = self.recover if event.since is not None else None
            online = self.online[event.room]
            self.apply(server.joined(event.room, online, event.seq, self.now, recovered))
        elif isinstance(event, LeaveRequest):
            self.online[event.room] = max(0, self.online.get(event.room, 0) - 1)
            self.apply(server.left(event.room, event.seq, self.now))
        elif isinstance(event, HeartbeatRequest):
            counts = {room: self.online.get(room, 0) for room in server.rooms}
            self.apply([server.heartbeat_ok(event.seq, counts, interval=event.asked)])
        elif isinstance(event, Acked):
            self.acked.extend(event.msg_ids)
        elif isinstance(event, UpstreamRequest):
            self.upstream.append(event.data)
            self.apply([server.upstream_ok(event.seq)])
        elif isinstance(event, Closed):
            self.closed = event.reason

    # -------------------------------------------------------------- shortcuts

    def connect(self, token: str = TOKEN) -> ClientOutput:
        """The client sends AUTH; everything runs until quiet."""
        self.send(self.client.connect(token, self.now))
        return self.run()

    def push(self, frame: bytes) -> ClientOutput:
        """The gateway writes a PUSH (or any server) frame to the client."""
        self.to_client += frame
        return self.run()

    def tick(self, seconds: float) -> tuple[Output, list[bytes | Lost]]:
        """Time passes: both sides look at their clocks (heartbeats, liveness)."""
        self.now += seconds
        server_out, _ = self.server.check(self.now)
        self.apply(server_out)
        client_out, _ = self.client.poll(self.now)
        for item in client_out:
            if isinstance(item, bytes):
                self.send(item)
        return server_out, client_out
