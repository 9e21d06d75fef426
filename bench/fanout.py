"""Room fan-out of the real gateway: deliveries/s, push-to-receipt latency, CPU, memory.

Three processes on this machine (docs/benchmarks.md has the figures and the method):

* the **server**, pinned to core 0: a real longlink ``Node`` (every role, embedded
  backends, uvloop) with ``aggregate_ms`` set per run, or the hand-rolled baseline
  (a bare uvloop WebSocket server that frames each message once and
  ``transport.write``s the same bytes to every connection, as fast as it can);
* the **load generator**, pinned to core 1: N WebSocket connections, authenticated
  with tokens it signs itself (it shares ``LONGLINK_TOKEN_SECRET``), all in one room.
  A few *sample* connections decode every frame (decompress, split the batch, parse
  the JSON) and time each message from its push; the others only count bytes, with
  ``SO_RCVLOWAT`` so that one read takes several frames. Every connection of the room
  receives the same byte stream, so a sample's record of (bytes, messages) maps any
  connection's byte count to the messages it has received. The **publisher** lives
  here too: ``POST /v1/push/batch`` at R messages per second, each message a
  ~100-byte danmaku-like JSON object carrying its push time;
* the driver (this process), which starts the others and prints a table.

Per run: connect, read the server's RSS before and after (idle KiB per authenticated
connection), publish for ``--seconds``, count deliveries between two marks (after
``--warmup``), read CPU from both processes, then check every connection got the
whole stream (aggregation on). Aggregation off is run above capacity (the server
saturates) and compared with the hand-rolled server in the same invocation.

``--history both`` runs each longlink window twice, room history off
(``history_size`` 0) then on (100, the default; ``--history on``/``off`` runs one
of them): the cost of keeping every room message for recovery (docs/rooms.md).

    python bench/fanout.py                         # bounded default run (about a minute)
    python bench/fanout.py --conns 10000 --rate 1000 --seconds 10 --windows 0 10 25 50 100
    python bench/fanout.py --conns 10000 --windows 50 --history both --no-handroll
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import secrets
import tempfile
import time
import zlib
from typing import Any, cast

import brotli
import uvloop
from common import (
    Child,
    RoomPublisher,
    StreamRecord,
    WsClient,
    cores_ticks,
    machine_line,
    machine_ticks,
    package_versions,
    pin,
    quiet,
    rss_kib,
    say,
    set_rcvlowat,
    stdin_lines,
)
from danmaku import Danmaku

from longlink.client.messages import unpack_pushes
from longlink.control.tokens import TokenIssuer
from longlink.protocol import Codec, Flag, Op, decode_frame, encode_frame
from longlink.protocol import websocket as wsp
from longlink.protocol.messages import Auth, AuthOk, encode_body

ROOM = "bench"
API_KEY = "bench-key"
SERVER_CORE = 0
LOAD_CORE = 1
WARM_CONNS = 10
CORES = os.cpu_count() or 1
HTTP_CONNS = 32  # publisher connections: a slow response never holds the next request
SCRIPT = os.path.abspath(__file__)


# =========================================================================== servers


async def serve_longlink(
    aggregate_ms: int, secret: str, history_size: int = 100, write_join: int = 64
) -> None:
    """The real thing: ``Node`` with every role on the embedded backends."""
    from longlink.node import Node
    from longlink.settings import Settings

    with tempfile.TemporaryDirectory(prefix="longlink-bench-") as data_dir:
        settings = Settings(
            http_port=0,
            ws_port=0,
            tcp_port=0,
            api_key=API_KEY,
            token_secret=secret,
            aggregate_ms=aggregate_ms,
            history_size=history_size,
            write_join=write_join,
            data_dir=data_dir,
            max_heartbeat_s=3600,
            drain_timeout_s=1.0,
            max_conns_per_ip=0,  # every load connection comes from 127.0.0.1
        )
        async with Node(settings) as node:
            assert node.gateway is not None and node.dispatcher is not None
            gateway, dispatcher = node.gateway, node.dispatcher
            say(node.ready_line())
            pauses = [0.0, 0.0, 0.0]  # garbage collector: count, total and longest pause (s)
            began = [0.0]

            def on_gc(phase: str, info: dict[str, int]) -> None:
                if phase == "start":
                    began[0] = time.perf_counter()
                else:
                    took = time.perf_counter() - began[0]
                    pauses[0] += 1
                    pauses[1] += took
                    pauses[2] = max(pauses[2], took)

            gc.callbacks.append(on_gc)

            def counters() -> list[str]:
                low = gateway.delivery.stats.deliveries.labels("low")._value.get()
                return [
                    str(len(gateway.hub.conns)),
                    str(rss_kib()),
                    f"{time.process_time():.4f}",
                    *(str(t) for t in cores_ticks((SERVER_CORE,))),
                    f"{low:.0f}",
                    f"{gateway.metrics.slow_drops.labels('low')._value.get():.0f}",
                    f"{dispatcher.metrics.batches._value.get():.0f}",
                    f"{gateway.delivery.stats.coalesced._value.get():.0f}",
                    f"{gateway.delivery.stats.overload_drops._value.get():.0f}",
                    *(f"{p:.4f}" for p in pauses),
                    *(
                        f"{node.metrics.get_sample_value(name, {'priority': 'low'}) or 0:.4f}"
                        for name in (
                            "longlink_dispatch_latency_seconds_sum",
                            "longlink_dispatch_latency_seconds_count",
                            "longlink_delivery_latency_seconds_sum",
                            "longlink_delivery_latency_seconds_count",
                        )
                    ),
                ]

            commands = await stdin_lines()
            while line := (await commands.readline()).decode().split():
                if line[0] == "stats":
                    if line[1:] == ["gc"]:  # for memory figures only: it stops the loop
                        gc.collect()
                    say("stats", *counters())
                elif line[0] == "quit":
                    break


async def serve_handroll(secret: str) -> None:
    """The baseline: frame once, ``transport.write`` the same bytes to every connection."""
    conns: list[asyncio.Transport] = []
    auth_ok = encode_frame(
        Op.AUTH_OK,
        encode_body(AuthOk("c", "u", "d", "handroll", 3600, "none", [ROOM])),
    )

    class Conn(asyncio.Protocol):
        __slots__ = ("handshake", "reader", "transport")

        def __init__(self) -> None:
            self.handshake: wsp.HandshakeParser | None = wsp.HandshakeParser()
            self.reader: wsp.WsReader | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)

        def data_received(self, data: bytes) -> None:
            if self.handshake is not None:
                request = self.handshake.feed(data)
                if request is None:
                    return
                self.transport.write(wsp.accept_response(request.key, "longlink.v1"))
                data = self.handshake.leftover
                self.handshake = None
                self.reader = wsp.WsReader(64 * 1024)
            assert self.reader is not None
            for opcode, _payload in self.reader.feed(data):
                if opcode == wsp.WsOpcode.BINARY:  # AUTH: answer, then it is in the room
                    self.transport.write(wsp.encode_frame(wsp.WsOpcode.BINARY, auth_ok))
                    conns.append(self.transport)
                elif opcode == wsp.WsOpcode.CLOSE:
                    self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.transport in conns:
                conns.remove(self.transport)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Conn, "127.0.0.1", 0, backlog=4096)
    say("ready", f"ws={server.sockets[0].getsockname()[1]}")
    stream = Danmaku(seed=2)
    sent = [0, 0]  # messages, writes

    async def broadcast(seconds: float) -> None:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            sent[0] += 1
            payload = stream.next_json(t=time.monotonic())
            frame = encode_frame(Op.PUSH, payload, msg_id=sent[0])
            data = wsp.encode_frame(wsp.WsOpcode.BINARY, frame)  # once, for everyone
            for transport in conns:
                transport.write(data)
            sent[1] += len(conns)
            await asyncio.sleep(0)  # let the loop flush and read between messages
        say("broadcast", *sent)

    async def aggregate(seconds: float, rate: float, window_ms: float, codec: str) -> None:
        """The aggregating baseline: ``rate`` messages/s made here, one zlib or brotli
        BATCH frame per window, framed once and written to every connection."""
        pending: list[bytes] = []
        start = time.monotonic()
        made = 0
        window = window_ms / 1000
        flushes = 0
        while (now := time.monotonic()) < start + seconds:
            due = int((now - start) * rate)
            while made < due:
                made += 1
                payload = stream.next_json(t=start + made / rate)
                pending.append(encode_frame(Op.PUSH, payload, msg_id=made))
            flushes += 1
            if pending:
                body = b"".join(pending)
                if codec == "br":
                    data = encode_frame(
                        Op.PUSH,
                        brotli.compress(body, quality=5, lgwin=18),
                        flags=Flag.BATCH,
                        codec=Codec.BROTLI,
                    )
                elif codec == "zlib":
                    data = encode_frame(
                        Op.PUSH, zlib.compress(body), flags=Flag.BATCH, codec=Codec.ZLIB
                    )
                else:
                    data = encode_frame(Op.PUSH, body, flags=Flag.BATCH)
                data = wsp.encode_frame(wsp.WsOpcode.BINARY, data)
                pending = []
                for transport in conns:
                    transport.write(data)
                sent[0] = made
                sent[1] += len(conns)
            await asyncio.sleep(max(0.0, start + flushes * window - time.monotonic()))
        say("broadcast", *sent)

    tasks: set[asyncio.Task[None]] = set()
    commands = await stdin_lines()
    while line := (await commands.readline()).decode().split():
        if line[0] == "stats":
            if line[1:] == ["gc"]:
                gc.collect()
            ticks = cores_ticks((SERVER_CORE,))
            cpu = f"{time.process_time():.4f}"
            say("stats", len(conns), rss_kib(), cpu, *ticks, sent[1], *[0] * 11)
        elif line[0] in ("broadcast", "aggregate"):  # in the background: stats go on
            if line[0] == "broadcast":
                task = asyncio.create_task(broadcast(float(line[1])))
            else:
                task = asyncio.create_task(
                    aggregate(float(line[1]), float(line[2]), float(line[3]), line[4])
                )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif line[0] == "quit":
            break
    server.close()


# =========================================================================== load generator


class Sample(StreamRecord):
    """A connection that decodes everything: latencies and the (bytes, messages) record."""

    __slots__ = ("reader",)

    def __init__(self) -> None:
        self.reader = wsp.WsReader(1 << 24, require_mask=False)
        super().__init__()

    def feed(self, data: bytes, now: float) -> None:
        self.position += len(data)
        done = self.reader.feed(data)
        if not done:
            return
        count = self.messages[-1] if self.messages else 0
        for _opcode, payload in done:
            frame = decode_frame(payload, 1 << 24)
            if frame.op != Op.PUSH:
                continue
            self.frames += 1
            for message in unpack_pushes(frame):
                count += 1
                sent = json.loads(message.data).get("t")
                if sent is not None:
                    self.latencies.append((now, now - sent))
        self.ends.append(self.position - self.reader.buffered)
        self.messages.append(count)


class LoadConn(WsClient):
    """One client: handshake and AUTH, then counts bytes (or feeds its :class:`Sample`)."""

    __slots__ = ("auth", "counting", "nbytes", "reader", "sample")

    closed_early = "closed before AUTH_OK"

    def __init__(self, auth: bytes, shared: memoryview, done: asyncio.Future[None]) -> None:
        super().__init__(shared, done)
        self.auth = auth
        self.counting = False  # True once AUTH_OK arrived
        self.reader: wsp.WsReader | None = None  # between the upgrade and AUTH_OK
        self.nbytes = 0
        self.sample: Sample | None = None

    def buffer_updated(self, nbytes: int) -> None:
        if self.counting:
            self.nbytes += nbytes
            if self.sample is not None:
                self.sample.feed(bytes(self.shared[:nbytes]), time.monotonic())
            return
        if self.head is not None:
            data = self.upgraded(nbytes)
            if data is None:
                return
            mask = os.urandom(4)
            self.transport.write(wsp.encode_masked_frame(wsp.WsOpcode.BINARY, self.auth, mask))
            self.reader = reader = wsp.WsReader(1 << 20, require_mask=False)
        else:
            data = bytes(self.shared[:nbytes])
            reader = cast(wsp.WsReader, self.reader)
        messages = reader.feed(data)
        if messages:  # AUTH_OK: nothing is sent before it
            frame = decode_frame(messages[0][1], 1 << 20)
            if frame.op != Op.AUTH_OK:
                self.done.set_exception(RuntimeError(f"AUTH answered with op {frame.op}"))
                return
            self.counting = True
            self.reader = None
            self.done.set_result(None)


def room_publisher(port: int) -> RoomPublisher:
    """``POST /v1/push/batch`` at a steady rate over a few keep-alive connections.

    ``rate / 10`` requests a second (10 to 100: ingest stays a small cost), each
    message stamped with its push time (``time.monotonic()``, the same clock the
    sample connections read).
    """
    return RoomPublisher(
        port,
        API_KEY,
        ROOM,
        connections=HTTP_CONNS,
        requests_per_s=lambda rate: min(100.0, max(10.0, rate / 10)),
        encode=lambda body: json.dumps(body, ensure_ascii=False).encode(),
    )


class Mark:
    """The load generator's state at one instant of the measurement."""

    def __init__(self, clients: list[LoadConn]) -> None:
        self.at = time.monotonic()
        self.cpu = time.process_time()
        self.ticks = cores_ticks((LOAD_CORE,))
        self.nbytes = [client.nbytes for client in clients]


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def load(args: argparse.Namespace) -> None:
    """One load process, driven by one-line commands on stdin.

    ``--role counter`` holds connections that only count bytes; ``--role sampler``
    holds the sample connections (which decode and time everything) and the
    publisher, in a process of its own so that neither is held up by the thousands
    of reads of the counter.
    """
    loop = asyncio.get_running_loop()
    issuer = TokenIssuer(args.secret, 24 * 3600)
    shared = memoryview(bytearray(256 * 1024))
    clients: list[LoadConn] = []
    limit = asyncio.Semaphore(200)
    codecs = [] if args.codec == "none" else [args.codec]
    sampler = args.role == "sampler"
    first_id = 0 if sampler else args.samples  # user ids: samples first, then the others

    async def connect(i: int) -> None:
        token, _ = issuer.issue(f"user{i}", f"dev{i}")
        auth = Auth(token=token, rooms=[ROOM], codecs=codecs, heartbeat_s=3600)
        conn_auth = encode_frame(Op.AUTH, encode_body(auth))
        async with limit:
            done: asyncio.Future[None] = loop.create_future()
            client = LoadConn(conn_auth, shared, done)
            if sampler:
                client.sample = Sample()
            await loop.create_connection(lambda: client, "127.0.0.1", args.port)
            clients.append(client)
            await done

    def set_lowat(nbytes: int) -> None:
        # SO_RCVLOWAT: a socket is readable only once this many bytes wait, so one read
        # (one Python callback) takes several frames. Samples keep 1 byte: they date
        # every message as it arrives.
        if not sampler:
            for client in clients:
                set_rcvlowat(client.transport, nbytes)

    commands = await stdin_lines()
    count = args.samples if sampler else args.conns - args.samples
    warm = 0 if sampler else min(WARM_CONNS, count)
    await asyncio.gather(*(connect(first_id + i) for i in range(warm)))
    say("warm", len(clients))
    marks: list[Mark] = []
    publisher: RoomPublisher | None = None
    made = warm
    started = time.monotonic()
    while line := (await commands.readline()).decode().split():
        if line[0] == "go":  # go [N]: connect N more (all that are left without N)
            more = min(count, made + int(line[1])) if len(line) > 1 else count
            await asyncio.gather(*(connect(first_id + i) for i in range(made, more)))
            made = more
            say("connected", len(clients), f"{time.monotonic() - started:.1f}")
        elif line[0] == "count":
            await quiet(clients, 0.3, 10)
            for client in clients:
                client.nbytes = 0
                if client.sample is not None:
                    client.sample.reset()
            set_lowat(args.lowat)
            say("counting")
        elif line[0] == "run":  # run RATE SECONDS WARMUP: publish (sampler, RATE > 0), mark twice
            rate, seconds, warmup = float(line[1]), float(line[2]), float(line[3])
            publisher = room_publisher(args.http_port) if sampler and rate > 0 else None
            begin = time.monotonic()
            task = asyncio.create_task(publisher.run(rate, seconds)) if publisher else None
            marks = []
            for number, at in enumerate((warmup, seconds), 1):
                await asyncio.sleep(max(0.0, begin + at - time.monotonic()))
                marks.append(Mark(clients))
                say(f"mark{number}")
            if task is not None:
                await task
            say("ran")
        elif line[0] == "report":  # report DRAIN [NEED]: the raw figures, as one JSON line
            drain = line[1] == "1"
            need = int(line[2]) if len(line) > 2 else 0
            if drain:
                await quiet(clients, 0.5, 120)
            set_lowat(0)
            await asyncio.sleep(0.1)
            await quiet(clients, 0.2, 5 if not drain else 60)
            give_up = time.monotonic() + 60
            reference = clients[0].sample
            while (  # noqa: ASYNC110 (the stream must reach what the others counted)
                reference is not None and reference.position < need and time.monotonic() < give_up
            ):
                await asyncio.sleep(0.05)
            first, last = marks
            window = last.at - first.at
            report: dict[str, Any] = {
                "window": window,
                "m1": first.nbytes,
                "m2": last.nbytes,
                "final": [c.nbytes for c in clients],
                "cpu": (last.cpu - first.cpu) / window,
                "core": (last.ticks[0] - first.ticks[0]) / max(1, last.ticks[1] - first.ticks[1]),
            }
            if reference is not None:
                samples = [c.sample for c in clients if c.sample is not None]
                report.update(
                    reference.report(),
                    latencies=[
                        latency
                        for sample in samples
                        for at, latency in sample.latencies
                        if first.at <= at <= last.at
                    ],
                )
            if publisher is not None:
                report.update(
                    sent=publisher.sent,
                    accepted=publisher.accepted,
                    refused=publisher.refused,
                    rtt50=percentile(publisher.rtts, 0.5),
                    rtt99=percentile(publisher.rtts, 0.99),
                )
            say("report", json.dumps(report, separators=(",", ":")))  # one field
        elif line[0] == "quit":
            break
    for client in clients:
        client.transport.close()
    await asyncio.sleep(0.2)


# =========================================================================== driver


def ports(line: list[str]) -> dict[str, int]:
    return {k: int(v) for k, v in (field.split("=") for field in line if "=" in field)}


class Stats:
    """One ``stats`` answer of a server, with the driver's clock and the machine's load."""

    def __init__(self, fields: list[str]) -> None:
        self.wall = time.monotonic()
        self.machine = machine_ticks()  # (busy, irq + softirq, total)
        self.conns = int(fields[0])
        self.rss_kib = int(fields[1])
        self.cpu = float(fields[2])
        self.busy, self.ticks = int(fields[3]), int(fields[4])
        (
            self.deliveries,
            self.slow_drops,
            self.batches,
            self.coalesced,
            self.overload,
        ) = (int(float(v)) for v in fields[5:10])
        self.gc = (float(fields[10]), float(fields[11]), float(fields[12]))
        # (sum, count) of the server's latency histograms: acceptance to hand-over to
        # the gateway, and to the last connection written
        self.dispatch_latency = (float(fields[13]), float(fields[14]))
        self.delivery_latency = (float(fields[15]), float(fields[16]))


def stats(server: Child, collect: bool = False) -> Stats:
    """The server's figures now; ``collect`` runs the garbage collector first (RSS)."""
    server.send("stats gc" if collect else "stats")
    return Stats(server.expect("stats", 60))


def measure(
    name: str, window_ms: int, args: argparse.Namespace, history_size: int = 100
) -> dict[str, Any]:
    """One run: ``name`` is ``longlink`` (with ``window_ms``, ``history_size``) or ``handroll``."""
    secret = secrets.token_hex(16)
    handroll = name == "handroll"
    handroll_agg = handroll and window_ms > 0
    nice = ("--nice", str(args.nice))
    if handroll:
        server = Child(SCRIPT, "--serve", "handroll", "--secret", secret, *nice)
    else:
        window = str(window_ms)
        server = Child(
            SCRIPT,
            "--serve",
            "longlink",
            "--aggregate-ms",
            window,
            "--history-size",
            str(history_size),
            "--write-join",
            str(args.write_join),
            "--secret",
            secret,
            *nice,
        )
    gens: list[Child] = []
    try:
        bound = ports(server.expect("ready", 60) if handroll else server.expect("longlink", 60))
        for role in ("counter", "sampler"):
            lowat = args.lowat if window_ms > 0 else args.lowat_off
            options = {
                "--role": role,
                "--port": bound["ws"],
                "--http-port": bound.get("http", 0),
                "--conns": args.conns,
                "--samples": args.samples,
                "--secret": secret,
                "--codec": args.codec,
                "--lowat": lowat,
                "--nice": args.nice,
            }
            gens.append(Child(SCRIPT, "--load", *(str(v) for kv in options.items() for v in kv)))
        counter, sampler = gens
        for gen in gens:
            gen.expect("warm", 60)
        before = stats(server, collect=True)
        # The samples join spread over the room (one after every N/S others): the
        # gateway writes a room in the order its members joined, roughly, and each
        # sample's place in that order is part of its latency.
        chunk = max(1, (args.conns - args.samples) // args.samples)
        for _ in range(args.samples):
            counter.send(f"go {chunk}")
            counter.expect("connected", 900)
            sampler.send("go 1")
            sampler.expect("connected", 900)
        counter.send("go")
        connect_s = float(counter.expect("connected", 900)[1])
        time.sleep(1.0)
        idle = stats(server, collect=True)
        for gen in gens:
            gen.send("count")
        for gen in gens:
            gen.expect("counting", 60)
        if handroll:
            rate = 0.0
        elif window_ms == 0:
            rate = args.rate_off or max(20.0, 4_000_000 / args.conns)  # past saturation
        else:
            rate = args.rate
        for gen in gens:
            gen.send(f"run {rate} {args.seconds} {args.warmup}")
        if handroll_agg:
            server.send(f"aggregate {args.seconds + 0.5} {args.rate} {window_ms} {args.codec}")
        elif handroll:
            server.send(f"broadcast {args.seconds + 0.5}")
        counter.expect("mark1", 60)
        s1 = stats(server)
        counter.expect("mark2", args.seconds + 60)
        s2 = stats(server)
        for gen in gens:
            gen.expect("ran", 300)
        if handroll:
            server.expect("broadcast", 60)
        drain = window_ms > 0
        counter.send(f"report {int(drain)}")
        counted = json.loads(counter.expect("report", 300)[0])
        sampler.send(f"report {int(drain)} {max(counted['m2'], default=0)}")
        sampled = json.loads(sampler.expect("report", 300)[0])
    finally:
        for gen in gens:
            gen.stop()
        server.stop()
    record = StreamRecord.from_report(sampled)
    delivered = sum(
        record.messages_at(b2) - record.messages_at(b1)
        for part in (counted, sampled)
        for b1, b2 in zip(part["m1"], part["m2"], strict=True)
    )
    total = record.position
    final = counted["final"] + sampled["final"]
    latencies = sampled["latencies"]
    wall = s2.wall - s1.wall
    gen_cpu = counted["cpu"] + sampled["cpu"]  # both on core 1
    return {
        "name": (f"hand-rolled, window {window_ms} ms" if handroll_agg else "hand-rolled")
        if handroll
        else f"longlink, window {window_ms} ms"
        + ("" if args.history == "on" else f", history {'on' if history_size else 'off'}")
        + (", one write per message" if args.write_join == 1 else ""),
        "conns": len(final),
        "connect_s": connect_s,
        "idle_kib": (idle.rss_kib - before.rss_kib) / (args.conns - WARM_CONNS),
        "idle_mib": idle.rss_kib / 1024,
        "rate": rate,
        "sent": sampled.get("sent", 0),
        "accepted": sampled.get("accepted", 0),
        "refused": sampled.get("refused", 0),
        "push_rtt_p50": 1000 * sampled.get("rtt50", float("nan")),
        "push_rtt_p99": 1000 * sampled.get("rtt99", float("nan")),
        "deliveries_s": delivered / counted["window"],
        "server_deliveries_s": (s2.deliveries - s1.deliveries) / wall,
        "msgs_per_frame": (record.messages[-1] if record.messages else 0) / max(1, record.frames),
        "p50": 1000 * percentile(latencies, 0.5),
        "p99": 1000 * percentile(latencies, 0.99),
        "max": 1000 * max(latencies, default=float("nan")),
        "latencies": len(latencies),
        "server_cpu": 100 * (s2.cpu - s1.cpu) / wall,
        "core0": 100 * (s2.busy - s1.busy) / max(1, s2.ticks - s1.ticks),
        "rss_mib": s2.rss_kib / 1024,
        "server_dispatch_ms": _mean_ms(s1.dispatch_latency, s2.dispatch_latency),
        "server_written_ms": _mean_ms(s1.delivery_latency, s2.delivery_latency),
        "gc_runs": s2.gc[0] - s1.gc[0],
        "gc_pause_ms": 1000 * (s2.gc[1] - s1.gc[1]),
        "gen_cpu": 100 * gen_cpu,
        "gen_core": 100 * counted["core"],
        # Busy time of the whole machine (in cores) not spent in the server or load generator
        # processes: kernel softirq work for loopback, and anything else running.
        "rest": (
            (s2.machine[0] - s1.machine[0]) / max(1, s2.machine[2] - s1.machine[2]) * CORES
            - (s2.cpu - s1.cpu) / wall
            - gen_cpu
        ),
        "complete": sum(n == total for n in final) if drain else -1,
        "slow_drops": s2.slow_drops,
        "batches": s2.batches - s1.batches,
        "coalesced": s2.coalesced - s1.coalesced,
    }


def _mean_ms(first: tuple[float, float], last: tuple[float, float]) -> float:
    count = last[1] - first[1]
    return 1000 * (last[0] - first[0]) / count if count else float("nan")


def machine() -> list[str]:
    versions = package_versions("uvloop", "brotli", "msgspec", "uvicorn", "httptools")
    return [
        f"date: {time.strftime('%Y-%m-%d')}",
        machine_line(),
        f"python: {platform.python_version()}; {versions}",
        f"server pinned to core {SERVER_CORE}, load generator and publisher to core {LOAD_CORE}",
    ]


def drive(args: argparse.Namespace) -> None:
    for line in machine():
        say(line)
    say(
        f"{args.conns} WebSocket connections in one room (codec {args.codec}), "
        f"{args.samples} sample connections; publisher {args.rate:.0f} msg/s "
        f"(aggregation off: past saturation); {args.seconds:.0f} s runs, "
        f"counted after {args.warmup:.0f} s" + (f"; niceness {args.nice}" if args.nice else "")
    )
    sizes = {"on": [100], "off": [0], "both": [0, 100]}[args.history]
    runs = [("longlink", w, size) for w in args.windows for size in sizes]
    if args.handroll:
        runs.append(("handroll", 0, 0))
    runs.extend(("handroll", w, 0) for w in args.handroll_windows)
    results = []
    for name, window, size in runs:
        say(f"... {name} {window if name == 'longlink' else ''}")
        result = measure(name, window, args, size)
        results.append(result)
        say(
            "   ",
            json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}),
        )
    say()
    say(
        "| server | offered → accepted msg/s | deliveries/s (clients / server count) "
        "| msgs per frame | latency p50 / p99 / max ms | server CPU % process / core 0 "
        "| server RSS MiB | load gen CPU % process / core 1 | rest of machine, cores "
        "| complete |"
    )
    say("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        offered = (
            "—" if r["rate"] == 0 else f"{r['rate']:,.0f} → {r['accepted'] / args.seconds:,.0f}"
        )
        complete = "—" if r["complete"] < 0 else f"{r['complete']}/{r['conns']}"
        counted = r["server_deliveries_s"]
        server_count = "" if r["name"].startswith("hand-rolled") else f" / {counted:,.0f}"
        say(
            f"| {r['name']} | {offered} | {r['deliveries_s']:,.0f}{server_count} "
            f"| {r['msgs_per_frame']:.1f} | {r['p50']:.0f} / {r['p99']:.0f} / {r['max']:.0f} "
            f"| {r['server_cpu']:.0f} / {r['core0']:.0f} | {r['rss_mib']:.0f} "
            f"| {r['gen_cpu']:.0f} / {r['gen_core']:.0f} | {r['rest']:.2f} | {complete} |"
        )
    if args.history == "both":
        for window in args.windows:
            without, with_ = (
                next(r for r in results if r["name"] == f"longlink, window {window} ms, {h}")
                for h in ("history off", "history on")
            )
            cost = [
                1e6 * r["server_cpu"] / 100 / max(1.0, r["server_deliveries_s"])
                for r in (without, with_)
            ]
            say(
                f"history on vs off, window {window} ms: server CPU {without['server_cpu']:.1f} %"
                f" → {with_['server_cpu']:.1f} %, per delivery {cost[0]:.3f} → {cost[1]:.3f} µs"
                f" ({100 * (cost[1] / cost[0] - 1):+.1f} %)"
            )
    hand = next((r for r in results if r["name"] == "hand-rolled"), None)
    off = next((r for r in results if r["name"] == "longlink, window 0 ms"), None)
    if hand and off:
        say(f"aggregation off / hand-rolled: {off['deliveries_s'] / hand['deliveries_s']:.2f}")
    for r in results:
        if not r["name"].startswith("hand-rolled"):
            say(f"idle memory per authenticated connection ({r['name']}): {r['idle_kib']:.2f} KiB")
            break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conns", type=int, default=2000, help="connections in the room")
    parser.add_argument("--rate", type=float, default=1000, help="messages per second (agg. on)")
    parser.add_argument(
        "--rate-off",
        type=float,
        default=0,
        help="messages per second with aggregation off (default: past saturation)",
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="publishing time per run")
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before counting")
    parser.add_argument(
        "--windows",
        type=int,
        nargs="*",
        default=[0, 50],
        help="aggregate_ms of the longlink runs (0: aggregation off)",
    )
    parser.add_argument(
        "--history",
        choices=("on", "off", "both"),
        default="on",
        help="room history of the longlink runs (both: each window off, then on)",
    )
    parser.add_argument("--no-handroll", dest="handroll", action="store_false")
    parser.add_argument(
        "--handroll-windows",
        type=int,
        nargs="*",
        default=[],
        help="also run the hand-rolled server aggregating with these windows",
    )
    parser.add_argument("--codec", choices=("br", "zlib", "none"), default="br")
    parser.add_argument("--samples", type=int, default=32, help="connections that decode all")
    parser.add_argument(
        "--lowat", type=int, default=4096, help="SO_RCVLOWAT of the others (aggregated runs)"
    )
    parser.add_argument(
        "--lowat-off",
        type=int,
        default=8 * 152,
        help="SO_RCVLOWAT of the others in per-message runs (8 frames)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the server and load generator (negative: ahead of other work on a "
        "shared machine; needs the privilege)",
    )
    parser.add_argument("--serve", choices=("longlink", "handroll"))
    parser.add_argument("--load", action="store_true")
    parser.add_argument("--role", choices=("counter", "sampler"), default="counter")
    parser.add_argument("--aggregate-ms", type=int, default=50)
    parser.add_argument("--history-size", type=int, default=100)
    parser.add_argument(
        "--write-join",
        type=int,
        default=64,
        help="LONGLINK_WRITE_JOIN of the longlink server (1: one write per message)",
    )
    parser.add_argument("--secret", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
    args = parser.parse_args()
    if (args.serve or args.load) and args.nice:
        # The sampler dates every message: it goes ahead of the counter on their shared core.
        os.nice(args.nice - 5 if args.load and args.role == "sampler" else args.nice)
    if args.serve:
        pin(SERVER_CORE)
        if args.serve == "longlink":
            uvloop.run(
                serve_longlink(args.aggregate_ms, args.secret, args.history_size, args.write_join)
            )
        else:
            uvloop.run(serve_handroll(args.secret))
    elif args.load:
        pin(LOAD_CORE)
        uvloop.run(load(args))
    else:
        if args.conns <= WARM_CONNS:
            parser.error(f"--conns must be more than {WARM_CONNS}")
        drive(args)


if __name__ == "__main__":
    main()
