"""The scenarios of ``make bench``: each starts its servers, drives the load generator
and returns rows (plain dicts, the JSON of the results file).

* ``ceiling``   the load generator against a trivial C server that floods;
* ``headline``  unaggregated room fan-out, saturated, longlink and every peer;
* ``fanout``    longlink's room fan-out over connections x rate, aggregation off and on;
* ``memory``    idle memory per authenticated connection: WebSocket, TCP, HTTP stream,
                opened at a steady rate (ramp) or as fast as they come (storm); the storm
                also gives the connect rate with token verification;
* ``users``     per-user pushes through ``POST /v1/push/batch``: pushes/s, push -> receipt.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    API_KEY,
    BENCH,
    FLOOD,
    LOADGEN,
    PEERS,
    LoadGen,
    Server,
    Snapshot,
    quiet_machine,
    usage,
    write_tokens,
)

#: SO_RCVLOWAT of the connections that only count, by protocol: about 8 messages,
#: so that one read (one wake-up of the load generator) takes several.
LOWAT = {"ws": 8 * 102, "socketio": 8 * 115, "longlink": 8 * 190}
LOWAT_AGGREGATED = 16384


@dataclass(frozen=True)
class Peer:
    """A server of the side-by-side: how to start it and which protocol it speaks."""

    key: str
    label: str
    proto: str
    runtime: str  # longlink, python, node, c, none
    script: str = ""


PEERS_ALL = (
    Peer("longlink", "longlink (aggregation off)", "longlink", "longlink"),
    # The same server writing every message on its own (docs/benchmarks.md, "write join").
    Peer("longlink-1write", "longlink, one write per message", "longlink", "longlink"),
    Peer(
        "handroll",
        "hand-rolled uvloop (frame once, write to each)",
        "ws",
        "python",
        "peer_handroll.py",
    ),
    Peer("websockets", "websockets (broadcast)", "ws", "python", "peer_websockets.py"),
    Peer("node-ws", "Node ws", "ws", "node", "peer_ws.js"),
    Peer("node-socketio", "Node socket.io", "socketio", "node", "peer_socketio.js"),
    Peer(
        "python-socketio",
        "python-socketio (aiohttp, uvloop)",
        "socketio",
        "python",
        "peer_socketio.py",
    ),
    Peer("centrifugo", "Centrifugo", "centrifugo", "none"),
)
PEER_KEYS = tuple(p.key for p in PEERS_ALL)
CENTRIFUGO_MISSING = (
    "not installed: no Centrifugo binary on PyPI, npm or Debian (Debian packages only "
    "the Go library golang-github-centrifugal-centrifuge-dev)"
)


@dataclass
class Context:
    args: argparse.Namespace
    workdir: Path
    step: Callable[[str], None]  # the progress line: what runs now
    done: Callable[[], None]  # one step of the progress bar finished
    notes: list[str] = field(default_factory=list)


def unavailable(peer: Peer) -> str | None:
    """Why ``peer`` cannot run here (None: it can)."""
    if peer.runtime == "none":
        return CENTRIFUGO_MISSING
    if peer.runtime == "python" and not (PEERS / "venv" / "bin" / "python").exists():
        return "not installed: bench/.peers/venv missing (make bench-setup)"
    if peer.runtime == "node":
        if not shutil.which("node"):
            return "not installed: no node on PATH"
        if not (PEERS / "node" / "node_modules").exists():
            return "not installed: bench/.peers/node/node_modules missing (npm install failed?)"
    return None


def longlink_env(ctx: Context, name: str, aggregate_ms: int, secret: str) -> dict[str, str]:
    """Default settings but for free ports, an API key, the shared token secret, the
    aggregation window, a data directory of its own, no heartbeats needed in a run and
    no cap on connections per client address (they all come from 127.0.0.1)."""
    data = ctx.workdir / f"data-{name}"
    data.mkdir(parents=True, exist_ok=True)
    return {
        "LONGLINK_HTTP_PORT": "0",
        "LONGLINK_WS_PORT": "0",
        "LONGLINK_TCP_PORT": "0",
        "LONGLINK_API_KEY": API_KEY,
        "LONGLINK_TOKEN_SECRET": secret,
        "LONGLINK_AGGREGATE_MS": str(aggregate_ms),
        "LONGLINK_DATA_DIR": str(data),
        "LONGLINK_MAX_HEARTBEAT_S": "3600",
        # every client of the load generator comes from 127.0.0.1: no per-address cap
        "LONGLINK_MAX_CONNS_PER_IP": "0",
    }


def longlink_server(
    ctx: Context, name: str, aggregate_ms: int, secret: str, **extra: str
) -> Server:
    """``longlink serve``: every role in one process on the embedded backends; ``extra``
    are more environment variables (``LONGLINK_WRITE_JOIN="1"``)."""
    env = {**longlink_env(ctx, name, aggregate_ms, secret), **extra}
    longlink = Path(sys.executable).parent / "longlink"
    return Server(name, [str(longlink), "serve"], env=env, log=ctx.workdir / f"{name}.log")


def peer_server(ctx: Context, peer: Peer) -> Server:
    script = BENCH / "peers" / peer.script
    log = ctx.workdir / f"{peer.key}.log"
    if peer.runtime == "python":
        return Server(peer.key, [str(PEERS / "venv" / "bin" / "python"), str(script)], log=log)
    env = {"NODE_PATH": str(PEERS / "node" / "node_modules")}
    return Server(peer.key, ["node", str(script)], env=env, log=log)


@contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def loadgen(port: int, proto: str, **options: object) -> Iterator[LoadGen]:
    gen = LoadGen(port, proto, **options)
    try:
        yield gen
    finally:
        gen.stop()


def measured(
    gen: LoadGen,
    server: Server,
    rate: float,
    seconds: float,
    warmup: float,
    **options: Any,
) -> dict[str, Any]:
    """One ``run`` of the load generator with the CPU of both sides read at its marks."""
    snaps: dict[int, Snapshot] = {}
    rss: dict[int, int] = {}
    counted: dict[int, float] = {}
    http = server.ports.get("http") if server.name.startswith("longlink") else None

    def on_mark(n: int) -> None:
        snaps[n] = Snapshot.take(server.pid, gen.pid)
        rss[n] = server.rss_kib()
        if http:
            counted[n] = server_deliveries(http)

    report = gen.run(rate, seconds, warmup, on_mark=on_mark, **options)
    if len(snaps) == 2:
        report.update(usage(snaps[1], snaps[2]))
        if len(counted) == 2:  # the server's own count: a check of the load generator's
            wall = snaps[2].wall - snaps[1].wall
            report["server_deliveries_s"] = (counted[2] - counted[1]) / wall
    report["server_rss_mib"] = rss.get(2, 0) / 1024
    report["loadgen_limit"] = report.get("core1", 0) >= 90
    return report


def delivered_fraction(report: dict[str, Any], per_message: int | None = None) -> float:
    """Of the deliveries due (every message due, published or skipped because the server
    fell behind, times the connections it goes to), the share that arrived by the end."""
    due = (report["published"] + report["skipped"]) * (per_message or report["conns"])
    return report["final_total"] / due if due else float("nan")


def server_deliveries(port: int) -> float:
    """``longlink_deliveries_total`` (every priority) from the server's ``/metrics``."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return float("nan")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("longlink_deliveries_total{")
    )


def tokens_file(ctx: Context, count: int, secret: str) -> Path:
    path = ctx.workdir / f"tokens-{secrets.token_hex(4)}.txt"
    write_tokens(path, count, secret)
    return path


# =========================================================================== ceiling


def ceiling(ctx: Context) -> list[dict[str, Any]]:
    """The load generator against bench/peers/flood.c: how much it can count."""
    args = ctx.args
    rows: list[dict[str, Any]] = []
    if not FLOOD.exists():
        ctx.notes.append("ceiling: bench/.peers/bin/flood missing (make bench-setup)")
        return rows
    ctx.step(f"ceiling: flood server, {args.conns:,} connections")
    with running(Server("flood", [str(FLOOD)], log=ctx.workdir / "flood.log")) as server:
        port = server.wait_ready()["port"]
        with loadgen(port, "ws", lowat=LOWAT["ws"]) as gen:
            gen.connect(args.conns)
            for burst in args.ceiling_bursts:
                quiet_machine(wait=ctx.args.quiet_wait)
                server.send(f"flood {args.seconds + 1} {burst}")
                report = measured(gen, server, 0, args.seconds, args.warmup, target="none", drain=2)
                flood = server.answer(30)
                report.update(
                    server="flood (C, epoll)",
                    messages_per_write=burst,
                    conns=args.conns,
                    server_writes=flood.get("writes", 0),
                )
                rows.append(report)
    ctx.done()
    return rows


# =========================================================================== headline


def headline(ctx: Context) -> list[dict[str, Any]]:
    """Unaggregated room fan-out at ``--conns``, saturated, longlink and every peer, in
    this one run; then the same connections at a fixed ``--fixed-deliveries`` a second."""
    args = ctx.args
    rows: list[dict[str, Any]] = []
    for round_no in range(1, args.rounds + 1):
        for key in args.peers:
            peer = next(p for p in PEERS_ALL if p.key == key)
            why = unavailable(peer)
            if why:
                if round_no == 1:
                    rows.append({"server": peer.label, "key": peer.key, "skipped": why})
                ctx.done()
                continue
            ctx.step(f"headline: {peer.label}, {args.conns:,} connections (round {round_no})")
            try:
                rows.append(_headline_one(ctx, peer, round_no))
            except Exception as exc:  # a peer that fails is a row that says so
                rows.append(
                    {
                        "server": peer.label,
                        "key": peer.key,
                        "round": round_no,
                        "error": f"{type(exc).__name__}: {exc}",
                    }
                )
            ctx.done()
    return rows


def _headline_one(ctx: Context, peer: Peer, round_no: int) -> dict[str, Any]:
    args = ctx.args
    secret = secrets.token_hex(32)
    if peer.key == "longlink":
        server = longlink_server(ctx, f"longlink-headline-{round_no}", 0, secret)
    elif peer.key == "longlink-1write":
        name = f"longlink-1write-headline-{round_no}"
        server = longlink_server(ctx, name, 0, secret, LONGLINK_WRITE_JOIN="1")
    else:
        server = peer_server(ctx, peer)
    with running(server):
        ports = server.wait_ready()
        options: dict[str, object] = {"lowat": LOWAT[peer.proto], "window": args.window}
        if peer.proto == "longlink":
            port = ports["ws"]
            options.update(
                http_port=ports["http"],
                tokens=tokens_file(ctx, args.conns, secret),
                api_key=API_KEY,
            )
        else:
            port = ports["port"]
        with loadgen(port, peer.proto, **options) as gen:
            rss0 = server.rss_kib()
            connected = gen.connect(args.conns)
            time.sleep(1)
            rss1 = server.rss_kib()
            # The fixed rate first, on a server with nothing queued (one that cannot keep
            # up has at most --window messages queued after it: drained before the next)
            quiet_machine(wait=ctx.args.quiet_wait)
            fixed_rate = args.fixed_deliveries / args.conns
            fixed = measured(gen, server, fixed_rate, args.fixed_seconds, 1.0, drain=30)
            quiet_machine(wait=ctx.args.quiet_wait)
            saturated = measured(gen, server, 0, args.seconds, args.warmup)
            if saturated.get("rest_cores", 0) > args.disturbed:
                # other work took the machine meanwhile: once more, keep the quieter one
                quiet_machine(wait=ctx.args.quiet_wait)
                again = measured(gen, server, 0, args.seconds, args.warmup)
                again["retried"] = True
                if again.get("rest_cores", 0) < saturated.get("rest_cores", 0):
                    saturated = again
            gen.close()
    return {
        "server": peer.label,
        "key": peer.key,
        "round": round_no,
        "conns": connected["conns"],
        "connect_per_s": connected["per_s"],
        "idle_kib_per_conn": (rss1 - rss0) / max(1, args.conns),
        "saturated": saturated,
        "fixed": {**fixed, "rate": fixed_rate},
    }


# =========================================================================== fan-out sweep


def fanout(ctx: Context) -> list[dict[str, Any]]:
    """longlink's room fan-out: connections added step by step to one server, the rate
    swept at each step; one server with aggregation off, one per window."""
    args = ctx.args
    rows: list[dict[str, Any]] = []
    top = max(args.fanout_conns)
    for window in args.fanout_windows:
        secret = secrets.token_hex(32)
        name = f"longlink-fanout-{window}"
        with running(longlink_server(ctx, name, window, secret)) as server:
            ports = server.wait_ready()
            codec = args.codec if window else "none"
            lowat = LOWAT_AGGREGATED if window else LOWAT["longlink"]
            tokens = tokens_file(ctx, top, secret)
            with loadgen(
                ports["ws"],
                "longlink",
                http_port=ports["http"],
                tokens=tokens,
                codec=codec,
                lowat=lowat,
                window=args.window,
                api_key=API_KEY,
            ) as gen:
                for conns in sorted(args.fanout_conns):
                    ctx.step(f"fan-out: {conns:,} connections, aggregate_ms {window}")
                    connected = gen.connect(conns)
                    time.sleep(0.5)
                    for rate in args.fanout_rates if window else [0.0]:
                        quiet_machine(wait=ctx.args.quiet_wait)
                        report = measured(
                            gen, server, rate, args.fanout_seconds, args.warmup, drain=10
                        )
                        offered = rate * conns
                        report.update(
                            aggregate_ms=window,
                            conns=connected["conns"],
                            rate=rate,
                            codec=codec,
                            delivered_fraction=delivered_fraction(report) if offered else None,
                        )
                        rows.append(report)
                    ctx.done()
    return rows


# =========================================================================== idle memory


def memory(ctx: Context) -> list[dict[str, Any]]:
    """RSS growth per authenticated idle connection, by transport, ramp and storm."""
    args = ctx.args
    rows: list[dict[str, Any]] = []
    top = max(args.memory_conns)
    for transport in args.memory_transports:
        proto = {"ws": "longlink", "tcp": "longlink-tcp", "stream": "longlink-stream"}[transport]
        for mode in ("ramp", "storm"):
            ctx.step(f"idle memory: {transport}, {mode}, up to {top:,} connections")
            secret = secrets.token_hex(32)
            name = f"longlink-memory-{transport}-{mode}"
            with running(longlink_server(ctx, name, 50, secret)) as server:
                ports = server.wait_ready()
                port = ports["tcp"] if transport == "tcp" else ports["ws"]
                tokens = tokens_file(ctx, top, secret)
                with loadgen(port, proto, tokens=tokens) as gen:
                    gen.connect(10, 0, 10)
                    time.sleep(1)
                    base = server.rss_kib()
                    row: dict[str, Any] = {
                        "transport": transport,
                        "mode": mode,
                        "base_mib": base / 1024,
                        "steps": [],
                    }
                    for conns in sorted(args.memory_conns):
                        if mode == "ramp":
                            connected = gen.connect(conns, args.ramp_rate, 200)
                        else:
                            connected = gen.connect(conns, 0, args.storm_concurrency)
                        if connected["conns"] <= 10:
                            row["error"] = (
                                f"no connection was admitted ({connected['failed']:,} failed); "
                                f"server log: {server.tail(2)}"
                            )
                            break
                        time.sleep(1.0)
                        rss = server.rss_kib()
                        row["steps"].append(
                            {
                                "conns": connected["conns"],
                                "new": connected["new"],
                                "failed": connected["failed"],
                                "connect_s": connected["seconds"],
                                "connect_per_s": connected["per_s"],
                                "connect_p99_ms": connected["p99_ms"],
                                "rss_mib": rss / 1024,
                                "kib_per_conn": (rss - base) / max(1, connected["conns"] - 10),
                            }
                        )
                    gen.close()
                    time.sleep(1.0)
                    row["after_close_mib"] = server.rss_kib() / 1024
            rows.append(row)
            ctx.done()
    return rows


# =========================================================================== per-user pushes


def users(ctx: Context) -> list[dict[str, Any]]:
    """Pushes each to one user (round robin over ``--users`` connected users) through
    ``POST /v1/push/batch``, open loop at each rate: pushes/s delivered, push -> receipt."""
    args = ctx.args
    rows: list[dict[str, Any]] = []
    secret = secrets.token_hex(32)
    ctx.step(f"per-user pushes: {args.users:,} users")
    with running(longlink_server(ctx, "longlink-users", 50, secret)) as server:
        ports = server.wait_ready()
        tokens = tokens_file(ctx, args.users, secret)
        with loadgen(
            ports["ws"], "longlink", http_port=ports["http"], tokens=tokens, api_key=API_KEY
        ) as gen:
            gen.connect(args.users)
            for rate in args.users_rates:
                ctx.step(f"per-user pushes: {args.users:,} users, {rate:,.0f}/s")
                quiet_machine(wait=ctx.args.quiet_wait)
                report = measured(
                    gen, server, rate, args.users_seconds, 1.0, target="users", drain=5
                )
                report.update(
                    users=args.users,
                    rate=rate,
                    delivered_fraction=delivered_fraction(report, per_message=1),
                )
                rows.append(report)
                ctx.done()
            gen.close()
    return rows


SCENARIOS: dict[str, Callable[[Context], list[dict[str, Any]]]] = {
    "ceiling": ceiling,
    "headline": headline,
    "fanout": fanout,
    "memory": memory,
    "users": users,
}


def steps(args: argparse.Namespace) -> int:
    """Progress-bar steps of the scenarios chosen."""
    count = 0
    for name in args.scenarios:
        if name == "ceiling":
            count += 1
        elif name == "headline":
            count += len(args.peers) * args.rounds
        elif name == "fanout":
            count += len(args.fanout_conns) * len(args.fanout_windows)
        elif name == "memory":
            count += 2 * len(args.memory_transports)
        elif name == "users":
            count += len(args.users_rates)
        elif name == "failover":
            count += len(args.failover_kinds)
        elif name == "readmit":
            count += 1
    return count


def missing_tools() -> list[str]:
    return [str(p) for p in (LOADGEN,) if not p.exists()]
