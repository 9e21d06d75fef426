"""Idle memory and broadcast throughput of three WebSocket servers (docs/websocket.md).

Servers, each in its own process pinned to core 0, all on uvloop:

* ``picows``      picows defaults, ``WSTransport.send`` to every connection;
* ``websockets``  ``websockets.asyncio.server.serve`` defaults, ``broadcast()``;
* ``longlink``    a bare ``asyncio.Protocol`` on ``longlink.protocol.websocket``: the
                  message is framed once and the same bytes written to every transport.

The load generator runs in another process pinned to core 1: raw asyncio connections
(``BufferedProtocol`` on uvloop) that do the client handshake themselves and then only
count bytes; one sample connection parses every frame to check the stream. Everything
stays on 127.0.0.1.

Per server: connect ``--conns`` idle WebSocket connections and read the server's RSS
(``/proc/self/statm``) before and after; then the server broadcasts a 100-byte binary
message to every connection, message after message, for ``--seconds``, yielding to the
loop after each one. Deliveries/s is counted where the frames arrive.

    python bench/ws_memory.py                      # all three, 5000 connections
    python bench/ws_memory.py --conns 2000 --servers longlink picows
    python bench/ws_memory.py --serve longlink --port 0      # one server, driven on stdin
    python bench/ws_memory.py --load --port P --conns N      # the load generator alone
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import os
import platform
import time
from collections.abc import Callable
from typing import Any, cast

import uvloop
from common import (
    Child,
    WsClient,
    cores_ticks,
    machine_line,
    package_versions,
    pin,
    rss_kib,
    say,
    set_rcvlowat,
    stdin_lines,
)

PAYLOAD = b"\xa5" * 100
FRAME_SIZE = 2 + len(PAYLOAD)  # server frames are unmasked, length < 126
WARM_CONNS = 10  # opened before the baseline RSS, so one-off allocations are not counted
SERVERS = ("picows", "websockets", "longlink")
SERVER_CORE = 0
LOAD_CORE = 1
SCRIPT = os.path.abspath(__file__)


# --------------------------------------------------------------------------- servers
# Each factory starts a server on 127.0.0.1:port and returns it, a function giving the
# number of open connections, and a function sending one message to every connection.

Server = tuple[Any, Callable[[], int], Callable[[bytes], None]]


async def start_picows(port: int) -> Server:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    conns: set[WSTransport] = set()

    class Listener(WSListener):
        def on_ws_connected(self, transport: WSTransport) -> None:
            conns.add(transport)

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            conns.discard(transport)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    server = await ws_create_server(lambda _request: Listener(), "127.0.0.1", port, backlog=4096)

    def send_all(message: bytes) -> None:
        for transport in conns:
            transport.send(WSMsgType.BINARY, message)

    return server, lambda: len(conns), send_all


async def start_websockets(port: int) -> Server:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    async def handler(connection: ServerConnection) -> None:
        await connection.wait_closed()

    server = await serve(handler, "127.0.0.1", port, backlog=4096)

    def send_all(message: bytes) -> None:
        broadcast(server.connections, message)

    return server, lambda: len(server.connections), send_all


async def start_longlink(port: int) -> Server:
    from longlink.protocol.websocket import (
        CLOSE_NORMAL,
        HandshakeError,
        HandshakeParser,
        WsError,
        WsOpcode,
        WsReader,
        accept_response,
        encode_close,
        encode_frame,
        parse_close,
        reject_response,
    )

    conns: set[asyncio.Transport] = set()

    class Connection(asyncio.Protocol):
        # What an idle connection holds: the transport, this object and a WsReader.
        __slots__ = ("handshake", "reader", "transport")

        def __init__(self) -> None:
            self.handshake: HandshakeParser | None = HandshakeParser()
            self.reader: WsReader | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

        def data_received(self, data: bytes) -> None:
            if self.handshake is not None:
                try:
                    request = self.handshake.feed(data)
                except HandshakeError as exc:
                    self.transport.write(reject_response(exc.status, exc.reason))
                    self.transport.close()
                    return
                if request is None:
                    return
                subprotocol = "longlink.v1" if "longlink.v1" in request.subprotocols else None
                self.transport.write(accept_response(request.key, subprotocol))
                data = self.handshake.leftover
                self.handshake = None
                self.reader = WsReader(64 * 1024)
                conns.add(self.transport)
                if not data:
                    return
            assert self.reader is not None
            try:
                messages = self.reader.feed(data)
            except WsError as exc:
                self.transport.write(encode_close(exc.close_code, exc.reason))
                self.transport.close()
                return
            for opcode, payload in messages:
                if opcode == WsOpcode.PING:
                    self.transport.write(encode_frame(WsOpcode.PONG, payload))
                elif opcode == WsOpcode.CLOSE:
                    code, _ = parse_close(payload)
                    self.transport.write(encode_close(code if code != 1005 else CLOSE_NORMAL))
                    self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            conns.discard(self.transport)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Connection, "127.0.0.1", port, backlog=4096)

    def send_all(message: bytes) -> None:
        frame = encode_frame(WsOpcode.BINARY, message)  # once, for every connection
        for transport in conns:
            transport.write(frame)

    return server, lambda: len(conns), send_all


STARTERS = {"picows": start_picows, "websockets": start_websockets, "longlink": start_longlink}


async def serve(name: str, port: int) -> None:
    """Run one server; answer the driver's commands on stdin with one line each."""
    server, count, send_all = await STARTERS[name](port)
    port = server.sockets[0].getsockname()[1]
    say("ready", port)
    commands = await stdin_lines()
    while line := (await commands.readline()).decode().split():
        if line[0] == "stats":
            gc.collect()
            say("stats", count(), rss_kib())
        elif line[0] == "broadcast":
            seconds = float(line[1])
            messages = writes = 0
            core0 = cores_ticks((SERVER_CORE,))
            wall0, cpu0 = time.perf_counter(), time.process_time()
            deadline = wall0 + seconds
            while time.perf_counter() < deadline:
                writes += count()
                send_all(PAYLOAD)
                messages += 1
                await asyncio.sleep(0)  # let the loop flush and read between messages
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            busy, total = (b - a for a, b in zip(core0, cores_ticks((SERVER_CORE,)), strict=True))
            core = busy / total if total else 0.0
            say(
                "broadcast", messages, writes, f"{wall:.4f}", f"{cpu:.4f}", f"{core:.4f}", rss_kib()
            )
        elif line[0] == "quit":
            break
    server.close()


# --------------------------------------------------------------------------- load generator


class Tally:
    __slots__ = ("bytes", "first", "last")

    def __init__(self) -> None:
        self.bytes = 0
        self.first = 0.0
        self.last = 0.0


class Client(WsClient):
    """One idle WebSocket client: sends the handshake, then counts what arrives."""

    __slots__ = ("sample", "tally")

    def __init__(
        self, tally: Tally, shared: memoryview, done: asyncio.Future[None], sample: Any
    ) -> None:
        super().__init__(shared, done)
        self.tally = tally
        self.sample = sample  # a WsReader on one connection, to check the frames

    def buffer_updated(self, nbytes: int) -> None:
        tally = self.tally
        if self.head is not None:
            rest = self.upgraded(nbytes)
            if rest is None:
                return
            self.done.set_result(None)
            nbytes = len(rest)
            if not nbytes:
                return
            if self.sample is not None:
                self.sample.feed(rest)
        elif self.sample is not None:
            self.sample.feed(bytes(self.shared[:nbytes]))
        tally.bytes += nbytes
        tally.last = now = time.perf_counter()
        if not tally.first:
            tally.first = now


class SampleReader:
    """Parses every frame of one connection, checking they are the expected message."""

    def __init__(self) -> None:
        from longlink.protocol.websocket import WsReader

        self.reader = WsReader(1 << 20, require_mask=False)
        self.frames = 0
        self.bad = 0

    def feed(self, data: bytes) -> None:
        for opcode, payload in self.reader.feed(data):
            self.frames += 1
            self.bad += opcode != 2 or payload != PAYLOAD


async def load(port: int, conns: int, lowat: int) -> None:
    """Open the connections (after the driver's ``go``), count, and report on request."""
    loop = asyncio.get_running_loop()
    tally = Tally()
    shared = memoryview(bytearray(256 * 1024))
    sample = SampleReader()
    transports: list[asyncio.BaseTransport] = []
    limit = asyncio.Semaphore(256)

    async def connect(i: int) -> None:
        async with limit:
            done: asyncio.Future[None] = loop.create_future()
            transport, _ = await loop.create_connection(
                lambda: Client(tally, shared, done, sample if i == 0 else None), "127.0.0.1", port
            )
            transports.append(transport)
            if i == 0:
                transports[0], transports[-1] = transports[-1], transports[0]  # sample first
            await done

    def set_lowat(frames: int) -> None:
        # SO_RCVLOWAT: the kernel reports a socket readable only once this many bytes wait,
        # so each read (and each Python callback) takes several frames. The sample connection
        # keeps the default of 1 byte: it sees every message at once and dates the window.
        for transport in transports[1:]:  # transports[0] is the sample connection
            set_rcvlowat(transport, frames * FRAME_SIZE)

    async def quiet(seconds: float) -> None:
        """Return once nothing has arrived for ``seconds`` (at most 30 s after the call)."""
        give_up = time.perf_counter() + 30
        while (now := time.perf_counter()) < give_up:
            left = seconds - (now - tally.last) if tally.bytes else seconds
            if tally.bytes and left <= 0:
                return
            await asyncio.sleep(max(left, 0.05))

    commands = await stdin_lines()
    started = time.perf_counter()
    await asyncio.gather(*(connect(i) for i in range(WARM_CONNS)))
    say("warm", len(transports))
    while line := (await commands.readline()).decode().split():
        if line[0] == "go":
            await asyncio.gather(*(connect(i) for i in range(WARM_CONNS, conns)))
            say("connected", len(transports), f"{time.perf_counter() - started:.2f}")
        elif line[0] == "count":
            tally.bytes, tally.first, tally.last = 0, 0.0, 0.0
            sample.frames = sample.bad = 0
            set_lowat(lowat)
            cpu0 = time.process_time()
            say("counting")
        elif line[0] == "report":
            await quiet(0.5)  # the server has stopped and its buffers have drained
            window = tally.last - tally.first
            cpu = time.process_time() - cpu0
            # Frames still below a socket's low-water mark had arrived by ``tally.last``:
            # read them now so they are counted, then compute the rate over the window.
            set_lowat(0)
            await asyncio.sleep(0.05)
            await quiet(0.3)
            say("report", tally.bytes, f"{window:.4f}", f"{cpu:.4f}", sample.frames, sample.bad)
        elif line[0] == "quit":
            break
    for transport in transports:
        transport.close()
    await asyncio.sleep(0.2)


# --------------------------------------------------------------------------- driver


def measure(name: str, conns: int, seconds: float, lowat: int) -> dict[str, float]:
    server = Child(SCRIPT, "--serve", name, "--port", "0")
    gen = None
    try:
        port = server.expect("ready", 30)[0]
        gen = Child(SCRIPT, "--load", "--port", port, "--conns", str(conns), "--lowat", str(lowat))
        gen.expect("warm", 30)
        server.send("stats")
        _, rss_before = map(int, server.expect("stats", 10))
        gen.send("go")
        _, connect_s = gen.expect("connected", 90)
        time.sleep(1.0)  # let the last handshakes settle
        server.send("stats")
        open_conns, rss_after = map(int, server.expect("stats", 10))
        gen.send("count")
        gen.expect("counting", 10)
        server.send(f"broadcast {seconds}")
        msgs, writes, wall, cpu, core, rss_peak = server.expect("broadcast", seconds + 60)
        gen.send("report")
        received, window, gen_cpu, sample_frames, sample_bad = gen.expect("report", 120)
    finally:
        if gen is not None:
            gen.stop()
        server.stop()
    frames = int(received) / FRAME_SIZE
    return {
        "conns": open_conns,
        "connect_s": float(connect_s),
        "idle_kib": (rss_after - rss_before) / (conns - WARM_CONNS),
        "rss_after_mib": rss_after / 1024,
        "msgs": int(msgs),
        "writes_s": int(writes) / float(wall),
        "deliveries_s": frames / float(window),
        "delivered": frames / int(writes),
        "server_cpu": 100 * float(cpu) / float(wall),
        "core_busy": 100 * float(core),
        "gen_cpu": 100 * float(gen_cpu) / float(window),
        "rss_peak_mib": int(rss_peak) / 1024,
        "sample_ok": float(int(sample_bad) == 0 and int(sample_frames) == int(msgs)),
    }


def machine() -> list[str]:
    versions = package_versions("picows", "websockets", "uvloop", "httptools")
    return [
        f"date: {datetime.date.today().isoformat()}",
        machine_line(),
        f"python: {platform.python_version()} ({platform.python_implementation()}); {versions}",
        f"server pinned to core {SERVER_CORE}, load generator to core {LOAD_CORE}, uvloop",
    ]


def drive(names: list[str], conns: int, seconds: float, lowat: int) -> None:
    for line in machine():
        say(line)
    say(f"{conns} idle connections; broadcast of {len(PAYLOAD)}-byte messages for {seconds} s")
    results: dict[str, dict[str, float]] = {}
    for name in names:
        say(f"... {name}")
        results[name] = measure(name, conns, seconds, lowat)
    say()
    say(
        "| server | idle KiB/conn | deliveries/s | server CPU % (process / core 0) "
        "| writes/s | delivered | load gen CPU % | RSS idle → after broadcast MiB | connect s |"
    )
    say("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        note = "" if r["sample_ok"] else " (sample connection saw wrong frames)"
        if r["gen_cpu"] > 80:
            note += " (load generator near saturation: figures are a floor)"
        say(
            f"| {name} | {r['idle_kib']:.1f} | {r['deliveries_s']:,.0f} "
            f"| {r['server_cpu']:.0f} / {r['core_busy']:.0f} "
            f"| {r['writes_s']:,.0f} | {100 * r['delivered']:.1f}% | {r['gen_cpu']:.0f} "
            f"| {r['rss_after_mib']:.0f} → {r['rss_peak_mib']:.0f} | {r['connect_s']:.1f} |" + note
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conns", type=int, default=5000, help="idle connections per server")
    parser.add_argument("--seconds", type=float, default=3.0, help="broadcast duration")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--serve", choices=SERVERS, help="run one server (driven on stdin)")
    parser.add_argument("--load", action="store_true", help="run the load generator")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--lowat",
        type=int,
        default=8,
        help="frames the load generator lets queue in a socket before reading it (SO_RCVLOWAT)",
    )
    args = parser.parse_args()
    if args.conns <= WARM_CONNS:
        parser.error(f"--conns must be more than {WARM_CONNS}")
    if args.serve:
        pin(SERVER_CORE)
        uvloop.run(serve(args.serve, args.port))
    elif args.load:
        pin(LOAD_CORE)
        uvloop.run(load(args.port, args.conns, args.lowat))
    else:
        drive(args.servers, args.conns, args.seconds, args.lowat)


if __name__ == "__main__":
    main()
