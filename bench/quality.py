"""What the adaptive heartbeat saves, and what quality measurement costs (docs/quality.md).

Two parts, printed as one table with the machine:

1. **Heartbeats per connection-hour**, exactly, from the real client and server
   sessions driven back to back for an hour of virtual time (no sockets): a
   fixed 30 s interval against the adaptive one (×1.5 every three answered
   heartbeats, up to the server's 300 s).
2. **A real idle run**: ``--conns`` SDK clients (WebSocket) held on a real
   server (``longlink serve`` in a subprocess pinned to core 0; the clients in
   this process on core 1), twice: fixed heartbeats, no REPORT, no TCP_INFO
   sampling; then adaptive heartbeats, REPORTs and sampling on. Time is scaled
   (``--base`` seconds instead of 30, the server's maximum ``--base × 10``) so
   the interval sequence of an hour plays in minutes. Counted on the server:
   heartbeats answered (``longlink_heartbeats_total``), REPORTs, TCP_INFO
   samples, and the server's CPU seconds.

3. **What measuring costs** (``--cpu-cost``): the server's CPU with REPORTs and
   TCP_INFO sampling on against off, everything else equal (fixed 30 s
   heartbeats in both runs, so only the quality work differs), at ``--conns``
   idle connections; what one REPORT costs on the real path (a burst of extra
   REPORTs over the same connections, CPU above the idle rate); and the same
   cost from its parts, timed in this process:
   one REPORT handled (session validation + the quality window + Prometheus),
   one TCP_INFO sample of a real loopback socket, one node-report snapshot
   (it counts the hub's connections), projected to ``--conns`` connections
   reporting once a minute and the default 50 samples a second.

    python bench/quality.py                       # 2,000 connections, about 3 minutes
    python bench/quality.py --conns 10000 --seconds 120
    python bench/quality.py --cpu-cost --conns 10000 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import uvloop
from common import cpu_seconds, machine_line, pin, say
from prometheus_client import CollectorRegistry

from longlink.client import Client
from longlink.gateway.quality import Quality
from longlink.protocol import FrameDecoder, Op, decode_frame, encode_frame
from longlink.protocol.client import ClientSession
from longlink.protocol.server import (
    AuthRequest,
    HeartbeatRequest,
    ReportReceived,
    ServerSession,
    SessionRules,
)

SERVER_CORE, LOAD_CORE = 0, 1


def virtual_hour(adaptive: bool, base: int = 30, server_max: int = 300) -> int:
    """Heartbeats one healthy connection sends in an hour, from the real sessions."""
    rules = SessionRules(heartbeat_s=base, max_heartbeat_s=server_max)
    server = ServerSession(rules, 0.0)
    client = ClientSession(heartbeat_s=base, adaptive_heartbeat=adaptive, report=False)

    now = 0.0
    [request] = server.receive(decode_frame(client.connect("t", now)), now)
    assert isinstance(request, AuthRequest)
    for item in server.opened("c", "u", "d", request.seq, now):
        if isinstance(item, bytes):
            for frame in FrameDecoder().feed(item):
                client.receive(frame, now)
    beats = 0
    while now < 3600:
        out, wake = client.poll(now)
        for frame_bytes in out:
            assert isinstance(frame_bytes, bytes)
            beats += 1
            for request_out in server.receive(decode_frame(frame_bytes), now):
                if isinstance(request_out, HeartbeatRequest):
                    answer = server.heartbeat_ok(request_out.seq, {}, interval=request_out.asked)
                    for frame in FrameDecoder().feed(answer):
                        client.receive(frame, now + 0.001)
        now = max(wake, now + 0.001)
    return beats


def _opened_session() -> ServerSession:
    """A server session past AUTH_OK (as the gateway holds one per connection)."""
    server = ServerSession(SessionRules(), 0.0)
    [request] = server.receive(decode_frame(ClientSession().connect("t", 0.0)), 0.0)
    assert isinstance(request, AuthRequest)
    server.opened("c", "u", "d", request.seq, 0.0)
    return server


@dataclass
class _Transport:
    sock: socket.socket

    def get_extra_info(self, name: str) -> object:
        return self.sock if name == "socket" else None


@dataclass
class _Conn:
    """What the quality sampler reads of a gateway connection."""

    transport: _Transport | None
    kind: int = 1  # ws
    closed: bool = False


@dataclass
class _Hub:
    conns: dict[int, _Conn] = field(default_factory=dict)


def micro_costs(conns: int, rounds: int = 20_000) -> dict[str, float]:
    """Seconds per REPORT handled, per TCP_INFO sample and per snapshot at ``conns`` connections."""
    # A typical REPORT of the SDKs a minute after connecting: 2 round trips (30 s beats).
    body = msgspec.json.encode({"rtt_ms": [23, 31], "transport": "ws", "reconnects": 1})
    frame = encode_frame(Op.REPORT, body)
    listener = socket.create_server(("127.0.0.1", 0))
    pairs = []
    for _ in range(64):  # real loopback sockets: getsockopt(TCP_INFO) is a real syscall
        client = socket.create_connection(listener.getsockname())
        pairs.append((client, listener.accept()[0]))
    hub = _Hub()
    for i in range(conns):
        hub.conns[i] = _Conn(_Transport(pairs[i % len(pairs)][1]))
    quality = Quality(hub, CollectorRegistry(), per_second=50)  # type: ignore[arg-type]
    session, conn = _opened_session(), hub.conns[0]
    try:
        start = time.perf_counter()
        for i in range(rounds):
            [event] = session.receive(decode_frame(frame), float(i))
            assert isinstance(event, ReportReceived) and event.report is not None
            quality.report(conn, event.report, float(i))  # type: ignore[arg-type]
        report_s = (time.perf_counter() - start) / rounds
        start = time.perf_counter()
        taken = 0
        for i in range(rounds // 50):
            taken += quality.sample(float(i), 50)
        sample_s = (time.perf_counter() - start) / max(1, taken)
        start = time.perf_counter()
        for i in range(20):
            quality.snapshot(float(i))
        snapshot_s = (time.perf_counter() - start) / 20
    finally:
        for a, b in pairs:
            a.close()
            b.close()
        listener.close()
    return {"report": report_s, "sample": sample_s, "snapshot": snapshot_s}


async def metric(http: httpx.AsyncClient, name: str) -> float:
    text = (await http.get("/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """``longlink serve`` on free ports, pinned to the server core; its HTTP URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "longlink", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    line = ""
    while "longlink ready" not in line:
        line = server.stdout.readline()
        if not line:
            raise RuntimeError("the server did not start")
    pin(SERVER_CORE, server.pid)
    http_port = int(re.search(r"http=(\d+)", line).group(1))  # type: ignore[union-attr]
    return server, f"http://127.0.0.1:{http_port}"


async def idle_run(
    conns: int,
    seconds: float,
    base: int,
    quality: bool,
    *,
    adaptive: bool | None = None,
    burst: int = 0,
) -> dict[str, Any]:
    """An idle run; ``quality`` turns REPORTs and sampling on, ``adaptive`` (default: the
    same as ``quality``) the adaptive heartbeat. With ``burst``, after the idle window that
    many extra REPORTs go over the clients' connections in 10 s: the server's CPU above its
    idle rate, divided by them, is what one REPORT costs on the real path (socket to window)."""
    adaptive = quality if adaptive is None else adaptive
    env = dict(
        os.environ,
        LONGLINK_HTTP_PORT="0",
        LONGLINK_WS_PORT="0",
        LONGLINK_TCP_PORT="0",
        LONGLINK_DEMO="1",
        LONGLINK_HEARTBEAT_S=str(base),
        LONGLINK_MIN_HEARTBEAT_S="1",
        LONGLINK_MAX_HEARTBEAT_S=str(base * 10),
        LONGLINK_QUALITY_SAMPLES_PER_S="50" if quality else "0",
        LONGLINK_CONTROL_BURST="1000",
        # Every client is 127.0.0.1: no per-address caps on this loopback run.
        LONGLINK_MAX_CONNS_PER_IP="0",
        LONGLINK_HTTP_MAX_CONNS_PER_IP="0",
        LONGLINK_CONNECT_RATE="0",
        LONGLINK_DATA_DIR=tempfile.mkdtemp(prefix="ll-quality-"),
    )
    server, url = start_server(env)
    try:
        clients: list[Client] = []
        http = httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=64))
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                client = Client(
                    url,
                    user=f"u{i}",
                    http_client=http,
                    adaptive_heartbeat=adaptive,
                    report=quality,
                    connect_timeout_s=60,
                )
                await client.connect()
                clients.append(client)

        await asyncio.gather(*(one(i) for i in range(conns)))
        accepted = 'longlink_quality_reports_total{outcome="accepted"}'
        beats0 = await metric(http, "longlink_heartbeats_total")
        reports0 = await metric(http, accepted)
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        await asyncio.sleep(seconds)
        beats = await metric(http, "longlink_heartbeats_total") - beats0
        cpu = cpu_seconds(server.pid) - cpu0
        elapsed = time.monotonic() - t0
        reports_window = await metric(http, accepted) - reports0
        burst_cost = await report_burst(server.pid, http, clients, burst, cpu / elapsed)
        reports = await metric(http, accepted)
        samples = await metric(http, "longlink_quality_kernel_samples_total")
        await asyncio.gather(*(c.close() for c in clients))
        await http.aclose()
        return {
            "beats": beats,
            "per_conn_hour": beats / conns / elapsed * 3600 * base / 30,  # in 30 s units
            "cpu_pct": 100 * cpu / elapsed,
            "reports": reports,
            "reports_window": reports_window,
            "samples": samples,
            "elapsed": elapsed,
            "report_s": burst_cost,
        }
    finally:
        server.terminate()
        server.wait(10)


async def report_burst(
    pid: int, http: httpx.AsyncClient, clients: list[Client], count: int, idle_rate: float
) -> float | None:
    """Server CPU seconds per REPORT: ``count`` extra ones over 10 s, above the idle rate."""
    if count <= 0 or not clients:
        return None
    body = msgspec.json.encode({"rtt_ms": [23, 31], "transport": "ws", "reconnects": 1})
    frame = encode_frame(Op.REPORT, body)
    links = [c._link for c in clients if c._link is not None]  # the SDK's own connections
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    chunk = max(1, count // 100)  # 100 chunks, one every 100 ms
    for start in range(0, count, chunk):
        for k in range(start, min(count, start + chunk)):
            await links[k % len(links)].transport.send(frame)
        await asyncio.sleep(0.1)
    await asyncio.sleep(2)  # loopback, a server far from busy: all read by now
    await metric(http, "longlink_heartbeats_total")  # the idle window had one read too
    cpu, elapsed = cpu_seconds(pid) - cpu0, time.monotonic() - t0
    return (cpu - idle_rate * elapsed) / count


async def cpu_cost(args: argparse.Namespace) -> None:
    """Part 3: what REPORTs and TCP_INFO sampling cost the server at ``args.conns``."""
    costs = micro_costs(args.conns)
    reports_per_s = args.conns / 60  # one REPORT a minute per connection (§1.6 rule 1)
    parts = {
        "REPORT handling": reports_per_s * costs["report"],
        "TCP_INFO sampling (50/s)": 50 * costs["sample"],
        "node-report snapshot (1/s)": costs["snapshot"],
    }
    say(f"| part, at {args.conns} connections | cost each | per second | % of a core |")
    say("|---|---|---|---|")
    say(
        f"| REPORT handled | {costs['report'] * 1e6:.1f} µs | {reports_per_s:.0f}"
        f" | {100 * parts['REPORT handling']:.3f} |"
    )
    say(
        f"| TCP_INFO sample | {costs['sample'] * 1e6:.1f} µs | 50"
        f" | {100 * parts['TCP_INFO sampling (50/s)']:.3f} |"
    )
    say(
        f"| snapshot for the node report | {costs['snapshot'] * 1e6:.0f} µs | 1"
        f" | {100 * parts['node-report snapshot (1/s)']:.3f} |"
    )
    say(f"| total | | | {100 * sum(parts.values()):.3f} |")
    say("")
    # The same on a real server: fixed heartbeats in both runs, only the quality work differs.
    off = await idle_run(args.conns, args.seconds, 30, quality=False, adaptive=False)
    burst = 2 * args.conns
    on = await idle_run(args.conns, args.seconds, 30, quality=True, adaptive=False, burst=burst)
    run = f"{args.conns} idle connections, {args.seconds:g} s, 30 s heartbeats"
    say(f"| server, {run} | off | on |")
    say("|---|---|---|")
    say(f"| CPU, % of a core | {off['cpu_pct']:.2f} | {on['cpu_pct']:.2f} |")
    say(f"| difference | | {on['cpu_pct'] - off['cpu_pct']:+.2f} |")
    say(f"| heartbeats answered | {off['beats']:.0f} | {on['beats']:.0f} |")
    say(f"| REPORTs in the window | {off['reports_window']:.0f} | {on['reports_window']:.0f} |")
    say(f"| REPORTs handled (whole run) | {off['reports']:.0f} | {on['reports']:.0f} |")
    say(f"| TCP_INFO samples (whole run) | {off['samples']:.0f} | {on['samples']:.0f} |")
    if on["report_s"] is not None:
        real = on["report_s"]
        say("")
        say(
            f"One REPORT on the real path (a burst of {burst} over 10 s, CPU above the idle rate):"
            f" {real * 1e6:.1f} µs; at {reports_per_s:.0f} REPORTs/s that is"
            f" {100 * real * reports_per_s:.2f} % of a core."
        )


async def main(args: argparse.Namespace) -> None:
    pin(LOAD_CORE)
    say(machine_line())
    if args.cpu_cost:
        await cpu_cost(args)
        return
    fixed, adaptive = virtual_hour(False), virtual_hour(True)
    say("| heartbeats per connection-hour (base 30 s, server max 300 s) | fixed | adaptive |")
    say("|---|---|---|")
    say(f"| exact, real sessions, virtual hour | {fixed} | {adaptive} ({adaptive / fixed:.0%}) |")
    off = await idle_run(args.conns, args.seconds, args.base, quality=False)
    on = await idle_run(args.conns, args.seconds, args.base, quality=True)
    say(
        f"| measured, {args.conns} connections, {args.seconds:g} s at base {args.base} s"
        f" (scaled to 30 s) | {off['per_conn_hour']:.1f} | {on['per_conn_hour']:.1f} |"
    )
    say("")
    say("| server, idle | fixed, no quality | adaptive + REPORT + TCP_INFO |")
    say("|---|---|---|")
    say(f"| CPU, % of a core | {off['cpu_pct']:.2f} | {on['cpu_pct']:.2f} |")
    say(f"| heartbeats answered | {off['beats']:.0f} | {on['beats']:.0f} |")
    say(f"| REPORTs handled | {off['reports']:.0f} | {on['reports']:.0f} |")
    say(f"| TCP_INFO samples | {off['samples']:.0f} | {on['samples']:.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--base", type=int, default=3, help="heartbeat base interval, seconds")
    parser.add_argument(
        "--cpu-cost",
        action="store_true",
        help="only part 3: the server CPU of REPORTs and TCP_INFO sampling, on against off",
    )
    uvloop.run(main(parser.parse_args()))
