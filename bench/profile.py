"""Profile ``longlink serve`` under one workload of ``make bench``, with py-spy.

    .venv/bin/python bench/profile.py connect --conns 5000          # a connect storm
    .venv/bin/python bench/profile.py users --rate 20000            # per-user batch pushes
    .venv/bin/python bench/profile.py fanout --conns 15000 --rate 1000
    .venv/bin/python bench/profile.py connect --no-profile          # the figure alone

The server runs pinned to core 0 as in ``make bench`` (``bench/harness.py``); py-spy (in
the ``bench`` extra, which ``make bench-setup`` installs; not a dependency of longlink)
samples it while the workload runs and writes a flame graph (SVG, or ``--format raw``:
collapsed stacks).
The load generator's figure of the same run is printed as JSON. ``--env K=V`` passes
settings to the server (e.g. ``--env LONGLINK_AGGREGATE_MS=50``).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
from harness import API_KEY, ROOT, LoadGen, Server, Snapshot, usage, write_tokens

SUFFIX = {"flamegraph": "svg", "raw": "txt", "speedscope": "json"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("workload", choices=["connect", "users", "fanout"])
    p.add_argument("--conns", type=int, default=5000, help="connections (users: users)")
    p.add_argument("--rate", type=float, default=20000, help="pushes/s (users), msg/s (fanout)")
    p.add_argument("--seconds", type=float, default=6.0, help="users, fanout: measured time")
    p.add_argument("--rounds", type=int, default=3, help="connect: storms, closed in between")
    p.add_argument("--concurrency", type=int, default=1000, help="connect: handshakes at once")
    p.add_argument("--transport", choices=["ws", "tcp"], default="ws")
    p.add_argument("--aggregate-ms", type=int, default=50)
    p.add_argument("--env", action="append", default=[], metavar="K=V")
    p.add_argument("--nice", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "profile")
    p.add_argument("--rate-hz", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--no-profile", action="store_true", help="the figure without py-spy")
    p.add_argument("--format", choices=["flamegraph", "raw", "speedscope"], default="flamegraph")
    args = p.parse_args()
    harness.NICE[0] = args.nice

    secret = secrets.token_hex(32)
    work = Path(tempfile.mkdtemp(prefix="longlink-profile-"))
    env = {
        "LONGLINK_HTTP_PORT": "0",
        "LONGLINK_WS_PORT": "0",
        "LONGLINK_TCP_PORT": "0",
        "LONGLINK_API_KEY": API_KEY,
        "LONGLINK_TOKEN_SECRET": secret,
        "LONGLINK_AGGREGATE_MS": str(args.aggregate_ms),
        "LONGLINK_DATA_DIR": str(work / "data"),
        "LONGLINK_MAX_HEARTBEAT_S": "3600",
        "LONGLINK_MAX_CONNS_PER_IP": "0",
        **dict(item.split("=", 1) for item in args.env),
    }
    longlink = str(Path(sys.executable).parent / "longlink")
    server = Server("longlink", [longlink, "serve"], env=env, log=work / "server.log")
    try:
        ports = server.wait_ready()
        tokens = work / "tokens.txt"
        write_tokens(tokens, args.conns, secret)
        port = ports["tcp"] if args.transport == "tcp" else ports["ws"]
        proto = "longlink-tcp" if args.transport == "tcp" else "longlink"
        gen = LoadGen(port, proto, tokens=tokens, http_port=ports["http"], api_key=API_KEY)
        try:
            result = run(args, server, gen)
        finally:
            gen.stop()
    finally:
        server.stop()
    print(json.dumps(result, indent=1))


def run(args: argparse.Namespace, server: Server, gen: LoadGen) -> dict[str, Any]:
    name = f"{args.workload}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.workload != "connect":
        gen.connect(args.conns)  # set up before sampling starts
        time.sleep(1)
    spy = None if args.no_profile else py_spy(args, server.pid, args.out / name)
    first = Snapshot.take(server.pid, gen.pid)
    try:
        if args.workload == "connect":
            storms = []
            for _ in range(args.rounds):
                storms.append(gen.connect(args.conns, 0, args.concurrency))
                gen.close()
            result: dict[str, Any] = {
                "per_s": [round(s["per_s"]) for s in storms],
                "p99_ms": [s["p99_ms"] for s in storms],
                "failed": [s["failed"] for s in storms],
            }
        else:
            target = "users" if args.workload == "users" else "room"
            report = gen.run(args.rate, args.seconds, 1.0, target=target, drain=5)
            result = {k: v for k, v in report.items() if not isinstance(v, (list, dict))}
    finally:
        last = Snapshot.take(server.pid, gen.pid)
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            spy.wait(timeout=60)
    result.update(usage(first, last))
    # CPU time per unit of work: steadier than a rate on a machine shared with other work.
    cpu_us = (last.server - first.server) * 1e6
    if args.workload == "connect":
        result["server_cpu_us_per_conn"] = cpu_us / (args.rounds * args.conns)
    if spy is not None:
        result["profile"] = str(args.out / f"{name}.{SUFFIX[args.format]}")
    return result


def py_spy(args: argparse.Namespace, pid: int, stem: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    stem.parent.mkdir(parents=True, exist_ok=True)
    argv = [exe, "record", "--pid", str(pid), "--rate", str(args.rate_hz), "--nonblocking",
            "--format", args.format, "--output", f"{stem}.{SUFFIX[args.format]}"]  # fmt: skip
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached
    return spy


if __name__ == "__main__":
    main()
