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

    python bench/quality.py                       # 2,000 connections, about 3 minutes
    python bench/quality.py --conns 10000 --seconds 120
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx
import uvloop
from common import cpu_seconds, machine_line, pin, say

from longlink.client import Client
from longlink.protocol import FrameDecoder, decode_frame
from longlink.protocol.client import ClientSession
from longlink.protocol.server import AuthRequest, HeartbeatRequest, ServerSession, SessionRules

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


async def idle_run(conns: int, seconds: float, base: int, quality: bool) -> dict[str, Any]:
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
                    adaptive_heartbeat=quality,
                    report=quality,
                    connect_timeout_s=60,
                )
                await client.connect()
                clients.append(client)

        await asyncio.gather(*(one(i) for i in range(conns)))
        beats0 = await metric(http, "longlink_heartbeats_total")
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        await asyncio.sleep(seconds)
        beats = await metric(http, "longlink_heartbeats_total") - beats0
        cpu = cpu_seconds(server.pid) - cpu0
        elapsed = time.monotonic() - t0
        reports = await metric(http, 'longlink_quality_reports_total{outcome="accepted"}')
        samples = await metric(http, "longlink_quality_kernel_samples_total")
        await asyncio.gather(*(c.close() for c in clients))
        await http.aclose()
        return {
            "beats": beats,
            "per_conn_hour": beats / conns / elapsed * 3600 * base / 30,  # in 30 s units
            "cpu_pct": 100 * cpu / elapsed,
            "reports": reports,
            "samples": samples,
            "elapsed": elapsed,
        }
    finally:
        server.terminate()
        server.wait(10)


async def main(args: argparse.Namespace) -> None:
    pin(LOAD_CORE)
    say(machine_line())
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
    uvloop.run(main(parser.parse_args()))
