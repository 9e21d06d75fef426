"""longlink on Redis with many processes vs the embedded single process (docs/benchmarks.md).

Everything runs on 127.0.0.1 and stops by itself (children get SIGTERM if this
process dies). This process is the driver and the bulk of the load generator
(uvloop, pinned to ``--load-cpus``, core 1 by default). It starts:

* its own ``redis-server`` on a free port, in a temporary directory
  (``--save "" --appendonly yes --appendfsync everysec``), stopped at the end;
* per run, the servers, all pinned to ``--server-cpus`` (core 0 by default), so both
  setups get the same CPU budget:

  - **embedded**: one ``longlink serve`` (every role, ``LONGLINK_BUS=memory``);
  - **redis**: ``longlink serve --role gateway`` twice (g1 in region r1, g2 in region
    r2), one ``--role api,control`` and one ``--role dispatch``, all with
    ``LONGLINK_BUS=redis://…`` (queues, node channels, registry and store on Redis)
    and one shared ``LONGLINK_TOKEN_SECRET``; redis-server shares their core.

  - **cluster** (``--setups … cluster``): the same four processes with
    ``LONGLINK_BUS=redis+cluster://…`` on a 3-primary Redis Cluster started once
    (``redis-server --cluster-enabled yes`` x 3 + ``redis-cli --cluster create``, AOF
    ``everysec`` like the one Redis, on the same cores): queues in 8 shards per
    priority, keys spread by family (``longlink.bus.keys``). Redis commands are also
    counted per primary (``INFO stats`` of each).

Clients get a token and an endpoint from ``POST /v1/connect`` (demo mode,
``{"user", "region", "transports": ["tcp"]}``; alternating regions r1/r2 spread
them over g1 and g2) and then speak the frame protocol over raw TCP themselves
(``asyncio.BufferedProtocol``): AUTH ``{token, rooms, codecs: ["zlib"]}``, then read.
``LONGLINK_HEARTBEAT_S=300``: no heartbeats during a run.

Scenario A, room fan-out: N connections in one room; the publisher POSTs
``/v1/push/batch`` (API key) about 100 times a second, R messages/s in all, each a
~100-byte danmaku-like JSON object stamped with its push time (``time.monotonic``,
one clock for the machine). ``--samples`` *sample* connections (half per gateway)
decode every frame (BATCH frames, zlib, split with ``Frame.inner_frames()``) and time
each message; the others only count bytes (with ``SO_RCVLOWAT``, so one read takes
several frames): every connection of a gateway receives the same byte stream, so a
sample's (bytes, messages) record turns any connection's byte count into messages.
After the run, every connection must have received the whole stream (``complete``).
The publisher and the samples live in a second process, the *probe* (same core),
so a burst of reads on the thousands of counting connections never delays a push
or the timestamp of a receipt.

Scenario B, per-user pushes: M users, one connection each, every one decoding
everything. Pushes go to random users as ``/v1/push/batch`` requests, open loop
(about 100 requests a second, at most ``--inflight`` outstanding) at rising rates
(``--user-rates``; it stops rising once a step falls behind), then closed loop
("max": ``--inflight`` requests of ``--batch`` messages as fast as answers come,
while fewer than ``--window`` messages are pushed but not yet received). Per step:
accepted/s, delivered/s (until the last one arrived), push → receipt p50/p99, CPU
of every process, Redis commands per message, server CPU µs per message (in all and
per process).

CPU of each server process and of redis-server comes from ``/proc/<pid>/stat``, RSS
from ``/proc/<pid>/statm``, Redis commands from ``INFO stats``
(``total_commands_processed``). The load generator checks itself: its own CPU
(driver and probe, from ``/proc``) and the lag of the loop that timestamps receipts
(a 10 ms ticker); runs past the limits are flagged. The machine may be shared: the
rest of its CPU use (``others``, and the kernel's softirq) is printed per run,
``--settle`` waits for quiet before a run and a disturbed run is done again
(``--retries``, within ``--budget`` seconds); ``--nice -10`` (root) helps.

    .venv/bin/python bench/redis_cluster.py                     # default sizes, < 4 minutes
    .venv/bin/python bench/redis_cluster.py --conns 8000 --users 2000 --nice -10
    .venv/bin/python bench/redis_cluster.py --server-cpus 0-1 --load-cpus 0-1  # no pinning
    .venv/bin/python bench/redis_cluster.py --scenarios users --setups redis --user-rates 2000
    .venv/bin/python bench/redis_cluster.py --setups redis cluster   # one Redis vs 3 primaries
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis
import uvloop
from common import (
    Http,
    RoomPublisher,
    StreamRecord,
    cores_ticks,
    cpu_seconds,
    error_key,
    machine_line,
    machine_ticks,
    paced,
    package_versions,
    quiet,
    rss_kib,
    say,
    set_rcvlowat,
    stdin_lines,
)
from danmaku import Danmaku

from longlink.protocol import HEADER_SIZE, FrameDecoder, Op, decode_frame, encode_frame

SCRIPT = os.path.abspath(__file__)
ROOM = "bench-room"
REGIONS = ("r1", "r2")
READ_BUFFER = 1 << 18
LAG_TICK_S = 0.010
SATURATED_CPU = 80.0  # load generator CPU % of one core above which a run is flagged
DISTURBED_CPU = 25.0  # other processes' CPU % (of one core) that makes a run "disturbed"
SATURATED_LAG_MS = 20.0  # ... or lag p99 of the loop that timestamps receipts above this


class Stamp(msgspec.Struct):
    """What the load generator reads from a payload: push time and step."""

    t: float = -1.0
    s: int = -1


_stamp = msgspec.json.Decoder(Stamp)
_encode = msgspec.json.encode


# =========================================================================== ports and cores


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_cpus(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        if "-" in part:
            low, high = part.split("-")
            cpus.update(range(int(low), int(high) + 1))
        elif part.strip():
            cpus.add(int(part))
    return cpus


NICE = 0  # niceness of every process started (--nice)


def child_setup(cpus: set[int] | None) -> Callable[[], None]:
    """In the child before exec: pin it, and have it SIGTERMed if the driver dies."""

    def setup() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        if NICE:
            os.setpriority(os.PRIO_PROCESS, 0, NICE)
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return setup


# =========================================================================== processes


@dataclass
class Proc:
    """One server process started by this benchmark."""

    name: str
    process: asyncio.subprocess.Process
    log: str
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss_mib(self) -> float:
        return rss_kib(self.pid) / 1024

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM; past ``grace`` SIGABRT (Python children dump their stacks), then SIGKILL."""
        if self.process.returncode is not None:
            return
        began = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), grace)
            return
        except TimeoutError:
            pass
        say(f"    ! {self.name} (pid {self.pid}) still running {grace:g} s after SIGTERM")
        for sig, wait in ((signal.SIGABRT, 3.0), (signal.SIGKILL, 30.0)):
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), wait)
                break
        took = time.monotonic() - began
        say(f"    ! {self.name} stopped after {took:.1f} s:\n{log_tail(self, 40)}")


class Processes:
    """Every process started, stopped in reverse order whatever happens."""

    def __init__(self, workdir: str, cpus: set[int] | None) -> None:
        self.workdir = workdir
        self.cpus = cpus
        self.started: list[Proc] = []

    async def spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        *,
        server: bool = True,
    ) -> Proc:
        """Start ``argv``: a server (pinned to the server cores) or a load process (stdin pipe)."""
        log = os.path.join(self.workdir, f"{name}-{len(self.started)}.log")
        errors = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                stdin=subprocess.DEVNULL if server else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                preexec_fn=child_setup(self.cpus if server else None),
            )
        finally:
            os.close(errors)  # the child has its own copy
        proc = Proc(name, process, log)
        self.started.append(proc)
        return proc

    async def stop(self, procs: list[Proc] | None = None) -> None:
        chosen = list(self.started) if procs is None else procs
        await asyncio.gather(*(p.stop() for p in reversed(chosen)), return_exceptions=True)
        for proc in chosen:
            if proc in self.started:
                self.started.remove(proc)


def log_tail(proc: Proc, lines: int = 15) -> str:
    with contextlib.suppress(OSError), open(proc.log, errors="replace") as log:
        return "".join(log.readlines()[-lines:])
    return ""


async def start_redis(procs: Processes) -> tuple[Proc, int, aioredis.Redis]:
    data = os.path.join(procs.workdir, "redis")
    os.makedirs(data, exist_ok=True)
    for _ in range(5):
        port = free_port()
        argv = [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", data,
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--daemonize", "no", "--logfile", "",
        ]  # fmt: skip
        proc = await procs.spawn("redis", argv)
        client = aioredis.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            if proc.process.returncode is not None:
                break
            with contextlib.suppress(Exception):
                if await client.ping():
                    return proc, port, client
            await asyncio.sleep(0.1)
        await client.aclose()
        await procs.stop([proc])
    raise SystemExit("redis-server did not start (see the log in the work directory)")


@dataclass
class Cluster:
    """The 3-primary Redis Cluster of the ``cluster`` setup (started once, like the one Redis)."""

    procs: list[Proc]
    clients: list[aioredis.Redis]
    url: str


async def start_cluster(procs: Processes, primaries: int = 3) -> Cluster:
    """``redis-server --cluster-enabled yes`` x ``primaries`` + ``redis-cli --cluster create``.

    Each primary as the single Redis is run (AOF ``everysec``), on the server cores.
    """
    started: list[Proc] = []
    clients: list[aioredis.Redis] = []
    ports: list[int] = []
    for i in range(primaries):
        data = os.path.join(procs.workdir, f"cluster-{i}")
        os.makedirs(data, exist_ok=True)
        port = free_port()
        argv = [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", data,
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--cluster-enabled", "yes", "--cluster-port", str(free_port()),
            "--cluster-config-file", os.path.join(data, "nodes.conf"),
            "--cluster-node-timeout", "5000",
            "--daemonize", "no", "--logfile", "",
        ]  # fmt: skip
        started.append(await procs.spawn(f"redis-{'abc'[i]}", argv))
        clients.append(aioredis.Redis(host="127.0.0.1", port=port))
        ports.append(port)
    for client in clients:
        for _ in range(100):
            with contextlib.suppress(Exception):
                if await client.ping():
                    break
            await asyncio.sleep(0.1)
    addresses = [f"127.0.0.1:{port}" for port in ports]
    create = await asyncio.create_subprocess_exec(
        "redis-cli", "--cluster", "create", *addresses, "--cluster-yes",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    if await create.wait() != 0:
        raise SystemExit("redis-cli --cluster create failed")
    for _ in range(200):
        states = [await client.execute_command("CLUSTER", "INFO") for client in clients]  # type: ignore[no-untyped-call]
        if all(b"cluster_state:ok" in state for state in states):
            break
        await asyncio.sleep(0.1)
    else:
        raise SystemExit("the Redis Cluster did not become ok")
    return Cluster(started, clients, "redis+cluster://" + ",".join(addresses))


def redis_version() -> str:
    try:
        out = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "redis-server not found"
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return out.strip()


async def start_longlink(
    procs: Processes, name: str, roles: str | None, env: dict[str, str]
) -> Proc:
    argv = [sys.executable, "-m", "longlink", "serve"]
    if roles:
        argv += ["--role", roles]
    proc = await procs.spawn(name, argv, env)
    assert proc.process.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.process.stdout.readline(), 60)).decode().strip()
    except TimeoutError:
        line = ""
    if not line.startswith("longlink ready"):
        raise RuntimeError(f"{name} did not start: {line!r}\n{log_tail(proc)}")
    proc.ports = {k: int(v) for k, _, v in (w.partition("=") for w in line.split()[2:])}
    return proc


@dataclass
class Setup:
    """The server processes of one run and where to reach them."""

    name: str
    procs: list[Proc]
    http_port: int
    #: The Redis processes (one, or a cluster's primaries) and a client of each.
    redis: list[Proc] = field(default_factory=list)
    redis_clients: list[aioredis.Redis] = field(default_factory=list)

    @property
    def gateways(self) -> int:
        return sum(1 for p in self.procs if "ws" in p.ports)


async def start_setup(
    name: str, procs: Processes, args: argparse.Namespace, redis_url: str, workdir: str
) -> Setup:
    env = {
        **os.environ,
        "LONGLINK_HOST": "127.0.0.1",
        "LONGLINK_HTTP_PORT": "0",
        "LONGLINK_WS_PORT": "0",
        "LONGLINK_TCP_PORT": "0",
        "LONGLINK_DEMO": "1",
        # Every load client comes from 127.0.0.1: no per-address limits.
        "LONGLINK_MAX_CONNS_PER_IP": "0",
        "LONGLINK_HTTP_MAX_CONNS_PER_IP": "0",
        "LONGLINK_CONNECT_RATE": "0",
        "LONGLINK_API_KEY": args.api_key,
        "LONGLINK_TOKEN_SECRET": secrets.token_hex(32),
        "LONGLINK_HEARTBEAT_S": "300",
        "LONGLINK_AUTH_TIMEOUT_S": "60",
        "LONGLINK_DRAIN_TIMEOUT_S": "2",
        "LONGLINK_LOG_LEVEL": "warning",
        "PYTHONFAULTHANDLER": "1",  # a stuck process dumps its stacks on SIGABRT
        "LONGLINK_DATA_DIR": tempfile.mkdtemp(prefix="data-", dir=workdir),
    }
    if args.aggregate_ms is not None:
        env["LONGLINK_AGGREGATE_MS"] = str(args.aggregate_ms)
    if name == "embedded":
        env["LONGLINK_BUS"] = "memory"
        proc = await start_longlink(procs, "longlink", None, env)
        return Setup(name, [proc], proc.ports["http"])
    env["LONGLINK_BUS"] = redis_url
    roles = [
        ("g1", "gateway", {"LONGLINK_NODE_ID": "g1", "LONGLINK_REGION": REGIONS[0]}),
        ("g2", "gateway", {"LONGLINK_NODE_ID": "g2", "LONGLINK_REGION": REGIONS[1]}),
        ("api", "api,control", {"LONGLINK_NODE_ID": "api1"}),
        ("dispatch", "dispatch", {"LONGLINK_NODE_ID": "dispatch1"}),
    ]
    started = await asyncio.gather(
        *(start_longlink(procs, n, r, {**env, **extra}) for n, r, extra in roles)
    )
    api = next(p for p in started if p.name == "api")
    return Setup(name, list(started), api.ports["http"])


# =========================================================================== clients


class RoomSample(StreamRecord):
    """A room connection that decodes every frame: latencies and (bytes, messages)."""

    __slots__ = ("decoder", "others")

    def __init__(self) -> None:
        self.decoder = FrameDecoder(1 << 24)
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.others = 0  # frames that are not PUSH (events, errors)

    def feed(self, data: bytes, now: float) -> None:
        self.position += len(data)
        frames = self.decoder.feed(data)
        if not frames:
            return
        count = self.messages[-1] if self.messages else 0
        for frame in frames:
            if frame.op != Op.PUSH:
                self.others += 1
                continue
            self.frames += 1
            for inner in frame.inner_frames():
                count += 1
                sent = _stamp.decode(inner.body).t
                if sent >= 0:
                    self.latencies.append((now, now - sent))
        self.ends.append(self.position - self.decoder.buffered)
        self.messages.append(count)


class Steps:
    """Scenario B receipts, per step: counts, last receipt, latencies."""

    def __init__(self) -> None:
        self.count: dict[int, int] = {}
        self.last: dict[int, float] = {}
        self.latencies: dict[int, list[float]] = {}
        self.others = 0

    def add(self, step: int, now: float, latency: float) -> None:
        self.count[step] = self.count.get(step, 0) + 1
        self.last[step] = now
        self.latencies.setdefault(step, []).append(latency)


class UserSample:
    """A user's connection (scenario B): decodes every frame into :class:`Steps`."""

    __slots__ = ("decoder", "position", "steps")

    def __init__(self, steps: Steps) -> None:
        self.decoder = FrameDecoder(1 << 24)
        self.steps = steps
        self.position = 0

    def feed(self, data: bytes, now: float) -> None:
        self.position += len(data)
        for frame in self.decoder.feed(data):
            if frame.op != Op.PUSH:
                self.steps.others += 1
                continue
            for inner in frame.inner_frames():
                stamp = _stamp.decode(inner.body)
                self.steps.add(stamp.s, now, now - stamp.t)


class Conn(asyncio.BufferedProtocol):
    """One client over TCP: AUTH, then counts bytes (or feeds its sample)."""

    __slots__ = ("auth", "head", "lost", "nbytes", "node", "ready", "sample", "shared", "transport")

    def __init__(
        self, auth: bytes, node: str, shared: memoryview, ready: asyncio.Future[None]
    ) -> None:
        self.auth = auth
        self.node = node
        self.shared = shared
        self.ready = ready
        self.head: bytearray | None = bytearray()  # None once AUTH_OK arrived
        self.nbytes = 0
        self.sample: RoomSample | UserSample | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.auth)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.shared  # one buffer for every connection: data is used at once

    def buffer_updated(self, nbytes: int) -> None:
        if self.head is None:
            self.nbytes += nbytes
            if self.sample is not None:
                self.sample.feed(bytes(self.shared[:nbytes]), time.monotonic())
            return
        self.head += self.shared[:nbytes]
        if len(self.head) < HEADER_SIZE:
            return
        length = int.from_bytes(self.head[:4], "big")
        if len(self.head) < length:
            return
        frame = decode_frame(bytes(self.head[:length]), 1 << 20)
        rest = bytes(self.head[length:])
        self.head = None
        if frame.op != Op.AUTH_OK:
            self.ready.set_exception(RuntimeError(f"AUTH answered {frame.op}: {frame.body!r}"))
            return
        self.ready.set_result(None)
        if rest:
            self.nbytes += len(rest)
            if self.sample is not None:
                self.sample.feed(rest, time.monotonic())

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before AUTH_OK: {exc}"))

    def set_lowat(self, nbytes: int) -> None:
        set_rcvlowat(self.transport, nbytes)


async def connect_clients(
    http: Http, count: int, rooms: list[str], *, first: int = 0, concurrency: int = 64
) -> list[Conn]:
    """Users ``first``… through /v1/connect, regions alternating, each AUTHed over TCP."""
    loop = asyncio.get_running_loop()
    shared = memoryview(bytearray(READ_BUFFER))
    conns: list[Conn | None] = [None] * count
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with limit:
            user = f"user-{first + i}"
            request = {"user": user, "region": REGIONS[i % 2], "transports": ["tcp"]}
            status, body = await http.request("POST", "/v1/connect", _encode(request), auth=False)
            if status != 200:
                raise RuntimeError(f"/v1/connect: {status} {body[:200]!r}")
            answer = json.loads(body)
            endpoint = answer["endpoints"][0]
            host, _, port = endpoint["tcp"].rpartition(":")
            auth = {
                "token": answer["token"],
                "rooms": rooms,
                "codecs": ["zlib"],
                "heartbeat_s": 300,
            }
            ready: asyncio.Future[None] = loop.create_future()
            conn = Conn(encode_frame(Op.AUTH, _encode(auth)), endpoint["node"], shared, ready)
            await loop.create_connection(lambda: conn, host, int(port))
            conns[i] = conn
            await asyncio.wait_for(ready, 60)

    await asyncio.gather(*(one(i) for i in range(count)))
    return [c for c in conns if c is not None]


async def wait_online(http: Http, want: int, room: str | None, give_up: float = 60) -> int:
    """Poll GET /v1/online until ``want`` connections (in ``room``) are registered."""
    end = time.monotonic() + give_up
    seen = -1
    while time.monotonic() < end:
        online = await http.json("GET", "/v1/online")
        seen = online["rooms"].get(room, 0) if room else online["total"]
        if seen >= want:
            return int(seen)
        await asyncio.sleep(0.25)
    return int(seen)


def close_all(conns: list[Conn]) -> None:
    for conn in conns:
        with contextlib.suppress(Exception):
            conn.transport.abort()


# =========================================================================== measuring


class LagMonitor:
    """How late a 10 ms ticker wakes up: the load generator's own saturation gauge."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_TICK_S)
            now = time.monotonic()
            self.samples.append((now, now - before - LAG_TICK_S))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def p99_ms(self, start: float, end: float) -> float:
        lags = [lag for at, lag in self.samples if start <= at <= end]
        return 1000 * percentile(lags, 0.99)


@dataclass
class Mark:
    """Every gauge at one instant."""

    at: float
    load_cpu: dict[str, float]  # the load generator's processes: CPU seconds
    load_ticks: tuple[int, int]
    server_ticks: tuple[int, int]
    machine: tuple[int, int, int]
    cpu: dict[str, float]  # the servers (and redis-server): CPU seconds
    rss: dict[str, float]
    redis_cmds: int
    redis_each: dict[str, int]  # commands per Redis process (the cluster's primaries)
    nbytes: list[int]


async def mark(
    setup: Setup,
    conns: list[Conn],
    cores: dict[str, set[int]],
    load: dict[str, Proc] | None = None,
) -> Mark:
    each: dict[str, int] = {}
    for proc, client in zip(setup.redis, setup.redis_clients, strict=True):
        info = await client.info("stats")
        each[proc.name] = int(info["total_commands_processed"])
    procs = [*setup.procs, *setup.redis]
    return Mark(
        at=time.monotonic(),
        load_cpu={"driver": time.process_time()}
        | {name: p.cpu() for name, p in (load or {}).items()},
        load_ticks=cores_ticks(cores["load"]),
        server_ticks=cores_ticks(cores["server"]),
        machine=machine_ticks(),
        cpu={p.name: p.cpu() for p in procs},
        rss={p.name: p.rss_mib() for p in procs},
        redis_cmds=sum(each.values()),
        redis_each=each,
        nbytes=[c.nbytes for c in conns],
    )


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def usage(first: Mark, last: Mark) -> dict[str, Any]:
    """CPU % (of one core) of every process, of the load generator, cores and machine."""
    wall = last.at - first.at

    def busy(a: tuple[int, int], b: tuple[int, int]) -> float:
        return 100 * (b[0] - a[0]) / max(1, b[1] - a[1])

    cpu = {name: 100 * (last.cpu[name] - first.cpu[name]) / wall for name in last.cpu}
    load = {
        name: 100 * (last.load_cpu[name] - first.load_cpu[name]) / wall for name in last.load_cpu
    }
    ticks = [b - a for a, b in zip(first.machine, last.machine, strict=True)]
    scale = 100 * (os.cpu_count() or 1) / max(1, ticks[2])  # in % of one core
    machine_busy, softirq = ticks[0] * scale, ticks[1] * scale
    return {
        "wall": wall,
        "cpu": cpu,
        "rss": dict(last.rss),
        "gen_cpu": sum(load.values()),
        "gen_parts": load,
        "load_cores": busy(first.load_ticks, last.load_ticks),
        "server_cores": busy(first.server_ticks, last.server_ticks),
        "softirq": softirq,
        "other_cpu": max(0.0, machine_busy - softirq - sum(cpu.values()) - sum(load.values())),
        "redis_ops": (last.redis_cmds - first.redis_cmds) / wall,
        "redis_cmds": last.redis_cmds - first.redis_cmds,
        "redis_each": {k: v - first.redis_each[k] for k, v in last.redis_each.items()},
    }


# =========================================================================== publishers


class UserPublisher:
    """Scenario B: batches of pushes, each to one random user."""

    def __init__(self, http: Http, users: int) -> None:
        self.http = http
        self.users = users
        self.rng = random.Random(7)
        self.stream = Danmaku(seed=5)
        self.sent = self.accepted = self.refused = self.requests = 0
        self.behind = 0  # open loop: ticks that found --inflight requests outstanding
        self.errors: dict[str, int] = {}

    def _body(self, step: int, count: int) -> bytes:
        now = time.monotonic()
        messages = []
        for _ in range(count):
            data = self.stream.next_dict(t=now)
            data["s"] = step
            user = f"user-{self.rng.randrange(self.users)}"
            messages.append({"to": {"users": [user]}, "data": data})
        return _encode({"messages": messages})

    async def _post(self, step: int, count: int) -> None:
        self.sent += count
        self.requests += 1
        try:
            status, answer = await self.http.request(
                "POST", "/v1/push/batch", self._body(step, count)
            )
        except Exception as exc:
            status, answer = 0, repr(exc).encode()
        if status == 202:
            self.accepted += count
        else:
            error = error_key(status, answer)
            self.errors[error] = self.errors.get(error, 0) + 1
            queued = 0
            with contextlib.suppress(Exception):  # a 503 says which were queued
                queued = len(json.loads(answer)["error"].get("msg_ids", []))
            self.accepted += queued
            self.refused += count - queued

    async def open_loop(self, step: int, rate: float, seconds: float, inflight: int) -> None:
        per_request = max(1, round(rate / 100))
        pending: set[asyncio.Task[None]] = set()
        async for _ in paced(per_request / rate, seconds):
            if len(pending) >= inflight:
                self.behind += 1
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(self._post(step, per_request))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)

    async def closed_loop(
        self, step: int, batch: int, seconds: float, inflight: int, room: Callable[[], int]
    ) -> None:
        """As fast as answers come, while ``room()`` (messages that may still be
        outstanding end to end) leaves space for one more batch."""
        end = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < end:
                if room() < batch:
                    await asyncio.sleep(0.002)
                    continue
                await self._post(step, batch)

        await asyncio.gather(*(worker() for _ in range(inflight)))


# =========================================================================== scenarios


@dataclass
class Context:
    args: argparse.Namespace
    procs: Processes
    redis: Proc
    redis_client: aioredis.Redis
    redis_url: str
    workdir: str
    cluster: Cluster | None
    cores: dict[str, set[int]]
    lag: LagMonitor
    started: float = field(default_factory=time.monotonic)


async def settle(ctx: Context) -> None:
    """Wait (``--settle`` seconds at most) until the rest of the machine is quiet.

    Other work on the machine (a test suite, say) competes for the same two cores:
    before each run, wait while processes other than ours keep more than
    ``--settle-below`` % of a core busy.
    """
    if time.monotonic() - ctx.started > ctx.args.budget:
        return  # past the time budget: measure as it is (the others % column tells)
    end = time.monotonic() + ctx.args.settle
    told = False
    while True:
        ours = list(ctx.procs.started)
        first, cpu0 = machine_ticks(), sum(p.cpu() for p in ours) + time.process_time()
        await asyncio.sleep(1.0)
        last, cpu1 = machine_ticks(), sum(p.cpu() for p in ours) + time.process_time()
        ticks = [b - a for a, b in zip(first, last, strict=True)]
        busy = 100 * (os.cpu_count() or 1) * ticks[0] / max(1, ticks[2])
        others = max(0.0, busy - 100 * (cpu1 - cpu0))
        if others <= ctx.args.settle_below or time.monotonic() >= end:
            if told or others > ctx.args.settle_below:
                say(f"    other load on the machine: {others:.0f}% of a core")
            return
        if not told:
            say(f"    waiting for other load on the machine ({others:.0f}% of a core) to settle")
            told = True


async def with_setup(ctx: Context, name: str, body: Callable[[Setup, Http], Awaitable[Any]]) -> Any:
    await settle(ctx)
    url = ctx.redis_url
    procs: list[Proc] = []
    clients: list[aioredis.Redis] = []
    if name == "redis":
        procs, clients = [ctx.redis], [ctx.redis_client]
    elif name == "cluster":
        assert ctx.cluster is not None
        procs, clients, url = ctx.cluster.procs, ctx.cluster.clients, ctx.cluster.url
    for client in clients:
        await client.flushall()
    setup = await start_setup(name, ctx.procs, ctx.args, url, ctx.workdir)
    setup.redis, setup.redis_clients = procs, clients
    http = Http(setup.http_port, ctx.args.api_key)
    try:
        return await body(setup, http)
    finally:
        http.close()
        await ctx.procs.stop(setup.procs)
        for proc in setup.procs:
            code = proc.process.returncode
            if code not in (0, None):
                say(f"    ! {proc.name} exited with {code}:\n{log_tail(proc)}")


class Probe:
    """The latency-critical half of the load in its own process (``--probe``).

    The publisher and the sample connections live there, so that a burst of reads
    on the thousands of counting connections in the driver never delays a push or
    the timestamp of a receipt. Commands and answers are JSON lines.
    """

    def __init__(self, proc: Proc) -> None:
        self.proc = proc

    async def ask(self, command: dict[str, Any], wait_s: float = 300) -> dict[str, Any]:
        stdin, stdout = self.proc.process.stdin, self.proc.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(_encode(command) + b"\n")
        await stdin.drain()
        line = await asyncio.wait_for(stdout.readline(), wait_s)
        if not line:
            raise RuntimeError(f"probe died:\n{log_tail(self.proc)}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"probe: {answer['error']}")
        return answer


async def probe_main(args: argparse.Namespace) -> None:
    """The probe process: sample connections and the publisher, driven on stdin."""
    reader = await stdin_lines()
    http = Http(args.http_port, args.api_key)
    lag = LagMonitor()
    lag.start()
    conns: list[Conn] = []
    publisher = RoomPublisher(args.http_port, args.api_key, ROOM)

    def answer(value: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        command = json.loads(line)
        try:
            do = command["do"]
            if do == "connect":
                conns = await connect_clients(
                    http, command["count"], [ROOM], first=command["first"]
                )
                for conn in conns:
                    conn.sample = RoomSample()
                answer({"nodes": [c.node for c in conns]})
            elif do == "reset":
                for conn in conns:
                    conn.nbytes = 0
                    cast(RoomSample, conn.sample).reset()
                answer({})
            elif do == "publish":
                await publisher.run(command["rate"], command["seconds"])
                answer(
                    {
                        "sent": publisher.sent,
                        "accepted": publisher.accepted,
                        "refused": publisher.refused,
                        "errors": publisher.errors,
                    }
                )
            elif do == "accepted":
                answer({"accepted": publisher.accepted})
            elif do == "report":
                start, end = command["start"], command["end"]
                samples = [cast(RoomSample, c.sample) for c in conns]
                latencies = [
                    latency for s in samples for at, latency in s.latencies if start <= at <= end
                ]
                refs: dict[str, dict[str, Any]] = {}
                for conn, sample in zip(conns, samples, strict=True):
                    refs.setdefault(conn.node, sample.report())
                answer(
                    {
                        "refs": refs,
                        "in_window": len(latencies),  # every message is stamped: one per receipt
                        "p50": 1000 * percentile(latencies, 0.50),
                        "p99": 1000 * percentile(latencies, 0.99),
                        "max": 1000 * max(latencies, default=float("nan")),
                        "complete": sum(
                            s.position == refs[c.node]["position"] and not c.lost
                            for c, s in zip(conns, samples, strict=True)
                        ),
                        "others": sum(s.others for s in samples),
                        "lag_p99": lag.p99_ms(start, end),
                    }
                )
            elif do == "quit":
                break
        except Exception as exc:
            answer({"error": repr(exc)})
    close_all(conns)
    http.close()


async def room_scenario(ctx: Context, name: str) -> dict[str, Any]:
    args = ctx.args
    counting = args.conns - args.samples

    async def body(setup: Setup, http: Http) -> dict[str, Any]:
        argv = [sys.executable, SCRIPT, "--probe"]
        argv += ["--http-port", str(setup.http_port), "--api-key", args.api_key]
        proc = await ctx.procs.spawn("probe", argv, server=False)
        probe = Probe(proc)
        conns: list[Conn] = []
        try:
            began = time.monotonic()
            conns = await connect_clients(http, counting, [ROOM])
            nodes = (await probe.ask({"do": "connect", "count": args.samples, "first": counting}))[
                "nodes"
            ]
            return await measure(setup, http, probe, conns, nodes, time.monotonic() - began)
        finally:
            close_all(conns)
            with contextlib.suppress(Exception):
                await probe.ask({"do": "quit"}, wait_s=5)
            await ctx.procs.stop([proc])

    async def measure(
        setup: Setup,
        http: Http,
        probe: Probe,
        conns: list[Conn],
        probe_nodes: list[str],
        connect_s: float,
    ) -> dict[str, Any]:
        per_node: dict[str, int] = {}
        for node in [c.node for c in conns] + probe_nodes:
            per_node[node] = per_node.get(node, 0) + 1
        if set(per_node) != set(probe_nodes):
            raise RuntimeError(f"sample connections on {probe_nodes}, clients on {per_node}")
        online = await wait_online(http, args.conns, ROOM)
        await quiet(conns, 0.3, 10)
        await probe.ask({"do": "reset"})
        for conn in conns:
            conn.nbytes = 0
            conn.set_lowat(args.lowat)  # the probe's samples keep 1 byte: they date every message
        load = {"probe": probe.proc}
        publishing = asyncio.create_task(
            probe.ask({"do": "publish", "rate": args.rate, "seconds": args.seconds})
        )
        begin = time.monotonic()
        marks = []
        for at in (args.warmup, args.seconds):
            await asyncio.sleep(max(0.0, begin + at - time.monotonic()))
            marks.append(await mark(setup, conns, ctx.cores, load))
        published = await publishing
        await quiet(conns, 0.5, 60)
        for conn in conns:
            conn.set_lowat(1)
        await asyncio.sleep(0.2)
        await quiet(conns, 0.5, 30)
        first, last = marks
        used = usage(first, last)
        got = await probe.ask({"do": "report", "start": first.at, "end": last.at})
        refs = {node: StreamRecord.from_report(record) for node, record in got["refs"].items()}
        delivered = got["in_window"] + sum(
            refs[c.node].messages_at(b2) - refs[c.node].messages_at(b1)
            for c, b1, b2 in zip(conns, first.nbytes, last.nbytes, strict=True)
        )
        complete = got["complete"] + sum(
            c.nbytes == refs[c.node].position and not c.lost for c in conns
        )
        streams = {node: ref.messages[-1] if ref.messages else 0 for node, ref in refs.items()}
        frames = sum(ref.frames for ref in refs.values())
        window_messages = round(args.rate * used["wall"])
        return {
            "setup": name,
            "conns": args.conns,
            "online": online,
            "per_node": dict(sorted(per_node.items())),
            "connect_s": connect_s,
            "rate": args.rate,
            "sent": published["sent"],
            "accepted": published["accepted"],
            "refused": published["refused"],
            "errors": published["errors"],
            "window_messages": window_messages,
            "deliveries_s": delivered / used["wall"],
            "msgs_per_frame": sum(streams.values()) / max(1, frames),
            "p50": got["p50"],
            "p99": got["p99"],
            "max": got["max"],
            "latencies": got["in_window"],
            "complete": complete,
            "streams_whole": all(m == published["accepted"] for m in streams.values()),
            "others": got["others"],
            "lag_p99": got["lag_p99"],
            "driver_lag_p99": ctx.lag.p99_ms(first.at, last.at),
            **used,
        }

    return cast(dict[str, Any], await with_setup(ctx, name, body))


async def user_scenario(ctx: Context, name: str) -> list[dict[str, Any]]:
    args = ctx.args

    async def body(setup: Setup, http: Http) -> list[dict[str, Any]]:
        conns = await connect_clients(http, args.users, [])
        try:
            return await measure(setup, http, conns)
        finally:
            close_all(conns)

    async def measure(setup: Setup, http: Http, conns: list[Conn]) -> list[dict[str, Any]]:
        steps = Steps()
        for conn in conns:
            conn.sample = UserSample(steps)
        per_node: dict[str, int] = {}
        for conn in conns:
            per_node[conn.node] = per_node.get(conn.node, 0) + 1
        await wait_online(http, len(conns), None)
        publisher = UserPublisher(Http(setup.http_port, args.api_key), args.users)
        # Warm-up, not counted: connections to Redis, code paths, the HTTP keep-alives.
        await publisher.open_loop(-1, 500, 1.0, args.inflight)
        await asyncio.sleep(0.5)
        results = []
        plan: list[float] = [*args.user_rates, 0.0]
        step = retried = tag = 0
        while step < len(plan):
            rate = plan[step]
            tag += 1  # every attempt's messages carry their own tag
            accepted0, refused0, behind0 = publisher.accepted, publisher.refused, publisher.behind
            sent0 = publisher.sent
            first = await mark(setup, conns, ctx.cores)
            if rate > 0:
                await publisher.open_loop(tag, rate, args.step_seconds, args.inflight)
            else:

                def room(tag: int = tag, sent0: int = sent0, refused0: int = refused0) -> int:
                    taken = publisher.sent - sent0 - (publisher.refused - refused0)
                    return int(args.window - (taken - steps.count.get(tag, 0)))

                await publisher.closed_loop(tag, args.batch, args.step_seconds, args.inflight, room)
            pushed = time.monotonic()
            accepted = publisher.accepted - accepted0
            # Wait for every accepted message (or 3 s without progress, 60 s at most).
            give_up, seen, still = pushed + 60, -1, pushed
            while steps.count.get(tag, 0) < accepted and time.monotonic() < give_up:
                got = steps.count.get(tag, 0)
                if got != seen:
                    seen, still = got, time.monotonic()
                elif time.monotonic() - still > 3:
                    break
                await asyncio.sleep(0.05)
            last = await mark(setup, conns, ctx.cores)
            used = usage(first, last)
            received = steps.count.get(tag, 0)
            until = steps.last.get(tag, pushed)
            latencies = steps.latencies.get(tag, [])
            result = {
                "setup": name,
                "per_node": dict(sorted(per_node.items())),
                "rate": rate,
                "accepted": accepted,
                "refused": publisher.refused - refused0,
                "behind": publisher.behind - behind0,
                "accepted_s": accepted / (pushed - first.at),
                "received": received,
                "delivered_s": received / max(1e-9, until - first.at),
                "drain_s": max(0.0, until - pushed),
                "p50": 1000 * percentile(latencies, 0.50),
                "p99": 1000 * percentile(latencies, 0.99),
                "lag_p99": ctx.lag.p99_ms(first.at, last.at),
                "cmds_per_msg": used["redis_cmds"] / max(1, received),
                "errors": dict(publisher.errors),
                **used,
            }
            say("   ", step_line(result))
            if again(ctx, result, retried):
                retried += 1
                await settle(ctx)
                continue
            retried = 0
            results.append(result)
            behind = rate > 0 and (
                result["delivered_s"] < 0.9 * rate
                or result["accepted_s"] < 0.9 * rate
                or result["p99"] > 1000
            )
            step = len(plan) - 1 if behind and step < len(plan) - 1 else step + 1
            await asyncio.sleep(0.3)
        publisher.http.close()
        return results

    return cast(list[dict[str, Any]], await with_setup(ctx, name, body))


# =========================================================================== report


def cpu_text(r: dict[str, Any]) -> str:
    return " + ".join(f"{name} {value:.0f}" for name, value in r["cpu"].items())


def is_redis(name: str) -> bool:
    """A Redis process: ``redis``, or a cluster primary ``redis-a`` …"""
    return name == "redis" or name.startswith("redis-")


def rss_text(r: dict[str, Any]) -> str:
    return " + ".join(f"{value:.0f}" for name, value in r["rss"].items() if not is_redis(name))


def per_primary(r: dict[str, Any], messages: float) -> str:
    """Redis commands per message on each Redis process, e.g. ``a 1.2 / b 1.1 / c 0.9``."""
    each = r["redis_each"]
    if len(each) <= 1:
        return "—"
    return " / ".join(
        f"{name.rpartition('-')[2]} {count / max(1, messages):.1f}" for name, count in each.items()
    )


def cost_us(r: dict[str, Any], messages: float) -> float:
    """CPU µs of every server process (Redis included) per message."""
    return float(sum(r["cpu"].values()) / 100 * r["wall"] / max(1, messages) * 1e6)


def cost_per_process(r: dict[str, Any], messages: float) -> str:
    """CPU µs of each server process (Redis included) per message, e.g. ``api 42 + …``."""
    scale = r["wall"] / max(1, messages) * 1e6 / 100
    return " + ".join(f"{name} {value * scale:.0f}" for name, value in r["cpu"].items())


def disturbed(r: dict[str, Any]) -> bool:
    """Did other processes on the machine take a real share of the CPU during the run?"""
    return bool(r["other_cpu"] > DISTURBED_CPU)


def again(ctx: Context, r: dict[str, Any], retried: int) -> bool:
    """Run a disturbed measurement again (``--retries`` times, within ``--budget``)?"""
    if not disturbed(r) or retried >= ctx.args.retries:
        return False
    if time.monotonic() - ctx.started > ctx.args.budget:
        return False
    say(f"    other processes took {r['other_cpu']:.0f}% of a core: again")
    return True


def gen_verdict(r: dict[str, Any]) -> str:
    """ok; saturated (its CPU); late (its loop lags: other processes, or bursts of reads)."""
    if r["gen_cpu"] > SATURATED_CPU:
        return "SATURATED"
    if r["lag_p99"] > SATURATED_LAG_MS:
        return "late, others busy" if disturbed(r) else "late"
    return "ok"


def step_line(r: dict[str, Any]) -> str:
    offered = "max" if r["rate"] == 0 else f"{r['rate']:,.0f}/s"
    return (
        f"{r['setup']} {offered}: accepted {r['accepted_s']:,.0f}/s, delivered "
        f"{r['delivered_s']:,.0f}/s ({r['received']}/{r['accepted']}, drain {r['drain_s']:.1f} s)"
        f", p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms; CPU % {cpu_text(r)}; load gen "
        f"{r['gen_cpu']:.0f}% lag p99 {r['lag_p99']:.1f} ms"
    )


def machine(args: argparse.Namespace, cores: dict[str, set[int]]) -> list[str]:
    versions = package_versions("uvloop", "redis", "msgspec")
    return [
        f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        machine_line(),
        f"python: {platform.python_version()}; {versions}; redis-server {redis_version()}",
        f"servers (and redis-server) pinned to cores {sorted(cores['server'])}, "
        f"load generator + publisher to cores {sorted(cores['load'])}"
        + (f"; niceness {args.nice}" if args.nice else ""),
    ]


def report(
    args: argparse.Namespace,
    cores: dict[str, set[int]],
    rooms: list[dict[str, Any]],
    users: list[dict[str, Any]],
) -> None:
    say()
    for line in machine(args, cores):
        say(line)
    if rooms:
        say()
        say(
            f"Scenario A, room fan-out: {args.conns:,} TCP connections in one room (zlib), "
            f"publisher {args.rate:,.0f} msg/s of ~100-byte JSON via /v1/push/batch, "
            f"{args.seconds:g} s, counted after {args.warmup:g} s; {args.samples} sample "
            "connections decode everything"
        )
        say()
        say(
            "| setup | conns per gateway | accepted msg/s | deliveries/s | msgs per frame "
            "| latency p50 / p99 / max ms | server CPU % per process (sum) | server cores busy % "
            "| RSS MiB per process | Redis ops/s (per message) "
            "| load gen CPU % driver + probe / probe loop lag p99 ms | softirq / others % "
            "| complete |"
        )
        say("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rooms:
            total = sum(r["cpu"].values())
            parts = " + ".join(f"{v:.0f}" for v in r["gen_parts"].values())
            redis_cell = "—"
            if r["redis_each"]:
                per_msg = r["redis_cmds"] / max(1, r["window_messages"])
                redis_cell = f"{r['redis_ops']:,.0f} ({per_msg:.1f} per msg)"
                if len(r["redis_each"]) > 1:
                    redis_cell += f"; per primary {per_primary(r, r['window_messages'])}"
            say(
                f"| {r['setup']} | {' / '.join(f'{v:,}' for v in r['per_node'].values())} "
                f"| {r['accepted'] / args.seconds:,.0f} | {r['deliveries_s']:,.0f} "
                f"| {r['msgs_per_frame']:.1f} | {r['p50']:.0f} / {r['p99']:.0f} / {r['max']:.0f} "
                f"| {cpu_text(r)} ({total:.0f}) | {r['server_cores']:.0f} | {rss_text(r)} "
                f"| {redis_cell} | {parts} / {r['lag_p99']:.1f} ({gen_verdict(r)}) "
                f"| {r['softirq']:.0f} / {r['other_cpu']:.0f} "
                f"| {r['complete']:,}/{r['conns']:,}{'' if r['streams_whole'] else ' (gaps)'} |"
            )
        for r in rooms:
            if r["refused"] or r["others"]:
                say(f"  {r['setup']}: {r['refused']} refused pushes, {r['others']} other frames")
            for error, count in r["errors"].items():
                say(f"  {r['setup']}: {count} requests answered {error}")
    if users:
        say()
        say(
            f"Scenario B, per-user pushes: {args.users:,} users, one TCP connection each; "
            "/v1/push/batch to random users, open loop (~100 requests/s) at rising rates "
            f"({args.step_seconds:g} s each, stopped once it falls behind), then closed loop "
            f"(max: up to {args.inflight} requests of {args.batch} outstanding while fewer than "
            f"{args.window:,} messages are pushed but not received)"
        )
        say()
        say(
            "| setup | offered msg/s | accepted/s | delivered/s | push→receipt p50 / p99 ms "
            "| server CPU % per process (sum) | Redis CPU % | Redis ops/s "
            "| Redis cmds per msg (per primary) "
            "| server CPU µs per msg (all processes) | CPU µs per msg per process "
            "| load gen CPU % / loop lag p99 ms | softirq / others % |"
        )
        say("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in users:
            servers = {k: v for k, v in r["cpu"].items() if not is_redis(k)}
            redis_cpus = [v for k, v in r["cpu"].items() if is_redis(k)]
            offered = "max" if r["rate"] == 0 else f"{r['rate']:,.0f}"
            if not redis_cpus:
                redis_cols = "— | — | —"
            else:
                cpu_cell = " + ".join(f"{v:.0f}" for v in redis_cpus)
                cmds_cell = f"{r['cmds_per_msg']:.1f}"
                if len(redis_cpus) > 1:
                    cmds_cell += f" ({per_primary(r, r['received'])})"
                redis_cols = f"{cpu_cell} | {r['redis_ops']:,.0f} | {cmds_cell}"
            say(
                f"| {r['setup']} | {offered} | {r['accepted_s']:,.0f} | {r['delivered_s']:,.0f} "
                f"| {r['p50']:.1f} / {r['p99']:.1f} "
                f"| {cpu_text({'cpu': servers})} ({sum(servers.values()):.0f}) | {redis_cols} "
                f"| {cost_us(r, r['received']):.0f} | {cost_per_process(r, r['received'])} "
                f"| {r['gen_cpu']:.0f} / {r['lag_p99']:.1f} ({gen_verdict(r)}) "
                f"| {r['softirq']:.0f} / {r['other_cpu']:.0f} |"
            )
        for r in users:
            lost = r["accepted"] - r["received"]
            if lost or r["refused"]:
                say(
                    f"  {r['setup']} {r['rate'] or 'max'}: {lost} accepted but not received "
                    f"within the drain, {r['refused']} refused"
                )
        for setup in dict.fromkeys(r["setup"] for r in users):
            errors = next(r["errors"] for r in reversed(users) if r["setup"] == setup)
            for error, count in errors.items():
                say(f"  {setup}: {count} push requests answered {error}")
    runs = rooms + users
    if runs:
        busiest = max(runs, key=lambda r: r["gen_cpu"])
        laggiest = max(runs, key=lambda r: r["lag_p99"])
        flagged = [r for r in runs if gen_verdict(r) != "ok"]
        say()
        say(
            f"load generator check: at most {busiest['gen_cpu']:.0f}% of a core "
            f"({busiest['setup']}), limit {SATURATED_CPU:.0f}%; loop lag p99 of the "
            f"timestamping loop at most {laggiest['lag_p99']:.1f} ms, limit "
            f"{SATURATED_LAG_MS:.0f} ms: "
            + ("not saturated" if not flagged else f"{len(flagged)} run(s) flagged above")
        )


# =========================================================================== main


async def run(args: argparse.Namespace) -> None:
    global NICE
    if args.nice:
        NICE = args.nice
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # this process, then every child
    cores = {"server": parse_cpus(args.server_cpus), "load": parse_cpus(args.load_cpus)}
    available = os.sched_getaffinity(0)
    pinning = len(available) > 1 and cores["server"] | cores["load"] <= available
    if pinning:
        os.sched_setaffinity(0, cores["load"])
    workdir = tempfile.mkdtemp(prefix="longlink-redis-cluster-")
    procs = Processes(workdir, cores["server"] if pinning else None)
    lag = LagMonitor()
    lag.start()
    rooms: list[dict[str, Any]] = []
    users: list[dict[str, Any]] = []
    client: aioredis.Redis | None = None
    cluster: Cluster | None = None
    try:
        redis, port, client = await start_redis(procs)
        cluster = await start_cluster(procs) if "cluster" in args.setups else None
        ctx = Context(
            args, procs, redis, client, f"redis://127.0.0.1:{port}/0", workdir, cluster, cores, lag
        )
        say(f"redis-server {redis_version()} on port {port} (pid {redis.pid}), work dir {workdir}")
        if cluster is not None:
            say(f"Redis Cluster of {len(cluster.procs)} primaries: {cluster.url}")
        if "room" in args.scenarios:
            for name in args.setups:
                for attempt in range(1 + args.retries):
                    say(f"... scenario A (room), {name}")
                    result = await room_scenario(ctx, name)
                    say(
                        "   ",
                        json.dumps(
                            {
                                k: round(v, 2) if isinstance(v, float) else v
                                for k, v in result.items()
                            },
                            default=str,
                        ),
                    )
                    if not again(ctx, result, attempt):
                        break
                rooms.append(result)
        if "users" in args.scenarios:
            for name in args.setups:
                say(f"... scenario B (users), {name}")
                users.extend(await user_scenario(ctx, name))
        report(args, cores, rooms, users)
    finally:
        lag.stop()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
        if cluster is not None:
            for one in cluster.clients:
                with contextlib.suppress(Exception):
                    await one.aclose()
        await procs.stop()
        if args.keep:
            say(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scenarios", nargs="+", choices=("room", "users"), default=["room", "users"]
    )
    parser.add_argument(
        "--setups",
        nargs="+",
        choices=("embedded", "redis", "cluster"),
        default=["embedded", "redis"],
    )
    parser.add_argument("--conns", type=int, default=4000, help="A: connections in the room")
    parser.add_argument("--rate", type=float, default=500, help="A: messages per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="A: publishing time")
    parser.add_argument("--warmup", type=float, default=2.0, help="A: seconds before counting")
    parser.add_argument("--samples", type=int, default=32, help="A: connections decoding all")
    parser.add_argument("--lowat", type=int, default=4096, help="A: SO_RCVLOWAT of the others")
    parser.add_argument("--users", type=int, default=1000, help="B: users (one connection each)")
    parser.add_argument(
        "--user-rates",
        type=float,
        nargs="*",
        default=[1000, 2000, 4000],
        help="B: open-loop rates (msg/s) before the closed-loop max step",
    )
    parser.add_argument("--step-seconds", type=float, default=5.0, help="B: seconds per step")
    parser.add_argument("--batch", type=int, default=100, help="B max: messages per request")
    parser.add_argument("--inflight", type=int, default=8, help="B: requests outstanding (max)")
    parser.add_argument(
        "--window",
        type=int,
        default=2000,
        help="B max: messages pushed but not yet received, at most",
    )
    parser.add_argument("--aggregate-ms", type=int, default=None, help="server default: 50")
    parser.add_argument("--server-cpus", default="0", help="cores of the servers and Redis")
    parser.add_argument("--load-cpus", default="1", help="cores of the load generator")
    parser.add_argument(
        "--settle", type=float, default=15.0, help="seconds to wait for a quiet machine per run"
    )
    parser.add_argument(
        "--settle-below", type=float, default=15.0, help="other load (%% of a core) that is quiet"
    )
    parser.add_argument(
        "--retries", type=int, default=1, help="runs again a measurement other processes disturbed"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=150.0,
        help="seconds after which no more waiting for quiet and no more runs again",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of every process of the benchmark (negative: ahead of other work; root)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (server logs)")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--http-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--api-key", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:  # the child that publishes and times (started by the driver)
        uvloop.run(probe_main(args))
        return
    if args.samples < 2 or args.conns <= args.samples:
        parser.error("need --samples >= 2 (one per gateway) and --conns > --samples")
    args.api_key = "bench-" + secrets.token_hex(8)

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
