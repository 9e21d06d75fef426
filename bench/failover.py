"""Failover: a longlink process killed with SIGKILL on Redis, while messages flow.

A deployment of separate processes on one Redis (its own ``redis-server`` on a free
port): a gateway, the API (+ control) and two dispatch workers, all pinned to core 0.
The load generator holds ``--failover-conns`` connections in one room on the gateway
and publishes ``--failover-rate`` messages/s to the room. One second after counting
starts, one dispatch worker is killed with SIGKILL; the run goes on long enough for
its unacknowledged messages to be claimed by the other (``claim_idle_ms``, 10 s by
default). Measured at the sample connections: the longest push -> receipt (the
messages the dead worker held: how long they waited), the longest silence between two
messages, and whether every message arrived.

Only the dispatch worker so far: killing a gateway needs clients that reconnect
elsewhere (the SDK's backoff), killing the API a publisher that retries on another one;
the load generator does neither yet (docs/benchmarks.md, "What remains").
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from harness import API_KEY, Server, Snapshot, usage
from scenarios import Context, loadgen, longlink_env, running, tokens_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_server(ctx: Context) -> tuple[Server, int]:
    """A ``redis-server`` of its own (nothing saved), answering PING."""
    data = ctx.workdir / "redis"
    data.mkdir(exist_ok=True)
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
            "--save", "", "--appendonly", "no", "--daemonize", "no"]  # fmt: skip
    server = Server("redis", argv, log=ctx.workdir / "redis.log")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return server, port
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"redis-server did not answer: {server.tail()}")


def failover(ctx: Context) -> list[dict[str, Any]]:
    args = ctx.args
    rows: list[dict[str, Any]] = []
    if not _have("redis-server"):
        ctx.notes.append("failover: no redis-server on PATH")
        ctx.done()
        return rows
    ctx.step("failover: a dispatch worker killed with SIGKILL (Redis)")
    secret = secrets.token_hex(32)
    redis, port = redis_server(ctx)
    procs: list[Server] = []
    with running(redis):
        try:
            bus = {"LONGLINK_BUS": f"redis://127.0.0.1:{port}/0"}
            kinds = [("g1", "gateway"), ("api", "api,control"), ("d1", "dispatch"),
                     ("d2", "dispatch")]  # fmt: skip
            for name, roles in kinds:
                env = longlink_env(ctx, f"failover-{name}", args.failover_aggregate_ms, secret)
                env.update(bus, LONGLINK_NODE_ID=name)
                server = Server(name, [*_longlink(), "serve", "--role", roles], env=env,
                                log=ctx.workdir / f"failover-{name}.log")  # fmt: skip
                procs.append(server)
                server.wait_ready()
            gateway, api, victim = procs[0], procs[1], procs[2]
            rows.append(_kill_run(ctx, gateway, api, victim, secret, "dispatch"))
        finally:
            for server in procs:
                server.stop()
    ctx.done()
    return rows


def _kill_run(
    ctx: Context, gateway: Server, api: Server, victim: Server, secret: str, kind: str
) -> dict[str, Any]:
    args = ctx.args
    tokens = tokens_file(ctx, args.failover_conns, secret)
    killed: dict[str, float] = {}
    snaps: dict[int, Snapshot] = {}

    def kill() -> None:
        killed["at"] = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)

    def on_mark(n: int) -> None:
        snaps[n] = Snapshot.take(gateway.pid, None)
        if n == 1:
            threading.Timer(1.0, kill).start()

    with loadgen(
        gateway.ports["ws"], "longlink", http_port=api.ports["http"], tokens=tokens,
        api_key=API_KEY, codec=args.codec,
    ) as gen:  # fmt: skip
        gen.connect(args.failover_conns)
        time.sleep(0.5)
        report = gen.run(
            args.failover_rate,
            args.failover_seconds,
            2.0,
            on_mark=on_mark,
            drain=15,
        )
        gen.close()
    if len(snaps) == 2:
        report.update(usage(snaps[1], snaps[2]))
    report.update(
        kind=kind,
        conns=args.failover_conns,
        rate=args.failover_rate,
        killed=bool(killed),
        victim_exit=victim.proc.wait(timeout=5) if killed else None,
        # every message (push -> receipt) that waited longer than the normal tail did so
        # because the killed worker held it: the longest wait is the failover time
        failover_s=report["max_ms"] / 1000,
        lost=report["published"] - report["final_total"] // max(1, args.failover_conns),
    )
    return report


def _have(program: str) -> bool:
    return any(os.access(Path(d) / program, os.X_OK) for d in os.get_exec_path())


def _longlink() -> list[str]:
    import sys

    return [str(Path(sys.executable).parent / "longlink")]
