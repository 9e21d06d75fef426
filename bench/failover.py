"""Failover and re-admission: longlink processes killed with SIGKILL while in use.

``failover``: a deployment of separate processes on one Redis (its own ``redis-server``
on a free port), all pinned to core 0; the load generator holds ``--failover-conns``
connections in one room and publishes ``--failover-rate`` messages/s to it. One second
after counting starts one process is killed with SIGKILL, by kind:

* ``dispatch``: two dispatch workers, one killed; its unacknowledged messages wait
  until the other finds it dead (its liveness key expired: ``consumer_ttl_ms``,
  ``longlink.bus.consumers``) and claims them;
* ``gateway``: two gateways, the clients spread over both; the clients of the killed
  one reconnect, with the SDK's backoff and full jitter, to the other;
* ``api``: two API processes; the publisher's connections to the killed one fail and
  it goes on with the other.

*Messages flowing again after* is the longest a message waited (push -> receipt) or a
sample connection heard nothing, whichever is longer.

``readmit``: one ``longlink serve`` with ``--readmit-conns`` WebSocket clients that
reconnect like the SDK; the process is killed with SIGKILL and started again on the
same ports; measured: how long until every client is admitted again, and the
re-admissions per 100 ms (a thundering herd would be one spike).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness import API_KEY, Server, Snapshot, usage
from scenarios import Context, loadgen, longlink_env, running, tokens_file

#: The processes of each kind of run: (name, roles); the first one of ``victim`` is killed.
LAYOUTS = {
    "dispatch": [("g1", "gateway"), ("api1", "api,control"), ("d1", "dispatch"),
                 ("d2", "dispatch")],
    "gateway": [("g1", "gateway"), ("g2", "gateway"), ("api1", "api,control"),
                ("d1", "dispatch")],
    "api": [("g1", "gateway"), ("api1", "api,control"), ("api2", "api,control"),
            ("d1", "dispatch")],
}  # fmt: skip
VICTIM = {"dispatch": "d1", "gateway": "g1", "api": "api1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_server(ctx: Context, name: str) -> tuple[Server, int]:
    """A ``redis-server`` of its own (nothing saved), answering PING."""
    data = ctx.workdir / name
    data.mkdir(exist_ok=True)
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
            "--save", "", "--appendonly", "no", "--daemonize", "no"]  # fmt: skip
    server = Server("redis", argv, log=ctx.workdir / f"{name}.log")
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


def longlink_bin() -> str:
    return str(Path(sys.executable).parent / "longlink")


def have(program: str) -> bool:
    return any(os.access(Path(d) / program, os.X_OK) for d in os.get_exec_path())


# =========================================================================== failover


def failover(ctx: Context) -> list[dict[str, Any]]:
    args = ctx.args
    rows: list[dict[str, Any]] = []
    for kind in args.failover_kinds:
        if not have("redis-server"):
            ctx.notes.append("failover: no redis-server on PATH")
            ctx.done()
            continue
        ctx.step(f"failover: a {kind} process killed with SIGKILL (Redis)")
        try:
            rows.append(_failover_one(ctx, kind))
        except Exception as exc:
            rows.append({"kind": kind, "error": f"{type(exc).__name__}: {exc}"})
        ctx.done()
    return rows


def _failover_one(ctx: Context, kind: str) -> dict[str, Any]:
    args = ctx.args
    secret = secrets.token_hex(32)
    redis, port = redis_server(ctx, f"redis-{kind}")
    procs: dict[str, Server] = {}
    with running(redis):
        try:
            for name, roles in LAYOUTS[kind]:
                env = longlink_env(ctx, f"failover-{kind}-{name}", args.failover_aggregate_ms,
                                   secret)  # fmt: skip
                env.update(LONGLINK_BUS=f"redis://127.0.0.1:{port}/0", LONGLINK_NODE_ID=name)
                server = Server(name, [longlink_bin(), "serve", "--role", roles], env=env,
                                log=ctx.workdir / f"failover-{kind}-{name}.log")  # fmt: skip
                procs[name] = server
                server.wait_ready()
            return _kill_run(ctx, kind, procs, secret)
        finally:
            for server in procs.values():
                server.stop()


def _kill_run(ctx: Context, kind: str, procs: dict[str, Server], secret: str) -> dict[str, Any]:
    args = ctx.args
    victim = procs[VICTIM[kind]]
    gateways = [p.ports["ws"] for p in procs.values() if "ws" in p.ports]
    apis = [p.ports["http"] for p in procs.values() if p.name.startswith("api")]
    tokens = tokens_file(ctx, args.failover_conns, secret)
    killed: dict[str, float] = {}
    snaps: dict[int, Snapshot] = {}
    watched = procs["g2" if kind == "gateway" else "g1"]  # a gateway that lives on

    def kill() -> None:
        killed["at"] = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)

    def on_mark(n: int) -> None:
        snaps[n] = Snapshot.take(watched.pid, None)
        if n == 1:
            threading.Timer(1.0, kill).start()

    with loadgen(
        gateways[0], "longlink", http_port=apis[0], tokens=tokens, api_key=API_KEY,
        codec=args.codec, reconnect=1,
        alt_ports=",".join(map(str, gateways[1:])) or None,
        http_alt_ports=",".join(map(str, apis[1:])) or None,
    ) as gen:  # fmt: skip
        gen.connect(args.failover_conns)
        time.sleep(0.5)
        seconds = args.failover_seconds if kind == "dispatch" else args.failover_seconds / 2
        report = gen.run(args.failover_rate, seconds, 2.0, on_mark=on_mark, drain=15)
        gen.send("readmit 30")
        readmit = gen.answer("readmit", 60)
        gen.close()
    if len(snaps) == 2:
        report.update(usage(snaps[1], snaps[2]))
    longest = max(report["max_ms"], report["max_gap_ms"]) / 1000
    report.update(
        kind=kind,
        conns=args.failover_conns,
        rate=args.failover_rate,
        killed=bool(killed),
        failover_s=longest,
        readmit=readmit,
    )
    return report


# =========================================================================== re-admission


def readmit(ctx: Context) -> list[dict[str, Any]]:
    """Kill ``longlink serve`` under ``--readmit-conns`` reconnecting clients, start it
    again on the same ports, and time the clients' return."""
    args = ctx.args
    n = args.readmit_conns
    ctx.step(f"re-admission: {n:,} clients after a gateway restart")
    secret = secrets.token_hex(32)
    env = longlink_env(ctx, "readmit", 50, secret)
    first = Server("readmit-1", [longlink_bin(), "serve"], env=env,
                   log=ctx.workdir / "readmit-1.log")  # fmt: skip
    rows: list[dict[str, Any]] = []
    with running(first):
        ports = first.wait_ready()
        tokens = tokens_file(ctx, n, secret)
        with loadgen(ports["ws"], "longlink", tokens=tokens, reconnect=1) as gen:
            connected = gen.connect(n)
            time.sleep(1)
            killed_at = time.monotonic()
            os.kill(first.pid, signal.SIGKILL)
            first.proc.wait()
            env.update(LONGLINK_HTTP_PORT=str(ports["http"]), LONGLINK_WS_PORT=str(ports["ws"]),
                       LONGLINK_TCP_PORT=str(ports["tcp"]))  # fmt: skip
            second = Server("readmit-2", [longlink_bin(), "serve"], env=env,
                            log=ctx.workdir / "readmit-2.log")  # fmt: skip
            with running(second):
                second.wait_ready()
                restarted_s = time.monotonic() - killed_at
                gen.send(f"readmit {args.readmit_timeout}")
                answer = gen.answer("readmit", args.readmit_timeout + 30)
                gen.close()
    rows.append(
        {
            "conns": connected["conns"],
            "connect_per_s": connected["per_s"],
            "restart_s": restarted_s,
            **answer,
        }
    )
    ctx.done()
    return rows
