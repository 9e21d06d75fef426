"""Guaranteed pushes end to end, with acks: pushes/s and push→ack latency (docs/benchmarks.md).

One ``longlink serve`` (every role, embedded backends: the SQLite offline store
in a fresh data dir) runs in a subprocess pinned to core 0. This process,
pinned to core 1, is both the business backend and the end users:

* ``--users`` SDK clients (``longlink.client.Client``, auto-ack) connect as
  distinct users; each takes its messages as they come (so each is acked
  as it arrives) and records when;
* pushes go out as ``POST /v1/push/batch`` of ``--batch`` guaranteed
  messages, each to one user (round robin), at ``--rate`` messages per
  second (open loop: a batch every batch/rate seconds, whatever the answers),
  for ``--seconds``. With ``--rate 0`` the pushes are a closed loop with
  ``--inflight`` batches outstanding: the most the pipeline sustains.

Each payload carries its send time, so latency is measured on one clock:
**push → ack** is from just before the POST (whose 202 waits for the store's
commit) to the moment the SDK hands the message to the application, which
is when its ACK is queued and written. A sample of server-side traces
(``GET /v1/messages/{id}``: accepted → acked) checks it from the other side,
and ``GET /v1/stats/reach`` must show every delivery acked on the first try.

    python bench/guaranteed.py                       # 10,000/s for 10 s, 50 users
    python bench/guaranteed.py --rate 0 --seconds 10 # as fast as it goes
    python bench/guaranteed.py --sync normal         # store without fsync per commit
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from typing import Any

import httpx
import msgspec
import uvloop
from common import Http, cpu_seconds, paced, pin

from longlink.client import Client

API_KEY = "bench-key"
#: Trace events of a guaranteed message in order (the breakdown of accepted -> acked).
STEPS = ("stored", "queued", "dispatched", "written", "acked")
READY = re.compile(r"^longlink ready http=(\d+) ws=(\d+) tcp=(\d+)$")
SERVER_CORE = 0
LOAD_CORE = 1


def machine_busy_seconds() -> float:
    """CPU seconds spent by every process of the machine so far (from /proc/stat)."""
    with open("/proc/stat") as stat:
        ticks = [int(t) for t in stat.readline().split()[1:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def start_server(data_dir: str, args: argparse.Namespace) -> tuple[Any, int]:
    env = {
        **os.environ,
        "LONGLINK_HTTP_PORT": "0",
        "LONGLINK_WS_PORT": "0",
        "LONGLINK_TCP_PORT": "0",
        "LONGLINK_DEMO": "1",
        # Every load client comes from 127.0.0.1: no per-address limits.
        "LONGLINK_MAX_CONNS_PER_IP": "0",
        "LONGLINK_HTTP_MAX_CONNS_PER_IP": "0",
        "LONGLINK_CONNECT_RATE": "0",
        "LONGLINK_API_KEY": API_KEY,
        "LONGLINK_DATA_DIR": data_dir,
        "LONGLINK_LOG_LEVEL": "warning",
        "LONGLINK_STORE_SYNC": args.sync,
        "LONGLINK_TRACE_SCOPE": args.trace,
        "LONGLINK_QUEUE_SIZE": "1000000",
    }
    log = open(args.server_log, "ab") if args.server_log else None  # noqa: SIM115, ASYNC230
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longlink", "serve",
        env=env, stdout=asyncio.subprocess.PIPE,
        stderr=log if log is not None else asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    if log is not None:
        log.close()  # the child has its own copy
    pin(SERVER_CORE, proc.pid)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
    match = READY.match(line)
    if match is None:
        raise SystemExit(f"server did not start: {line!r}")
    return proc, int(match.group(1))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pin(LOAD_CORE)
    data_dir = tempfile.mkdtemp(prefix="longlink-bench-")
    proc, http_port = await start_server(data_dir, args)
    # Where each side runs, as the kernel has it (printed: a benchmark says its machine).
    placement = (sorted(os.sched_getaffinity(proc.pid)), sorted(os.sched_getaffinity(0)))
    url = f"http://127.0.0.1:{http_port}"
    latencies: list[float] = []
    received = 0
    done = asyncio.Event()
    total_expected = 0
    clients = [
        Client(url, user=f"user-{i}", transport=args.transport, max_queue=100_000)
        for i in range(args.users)
    ]
    decoder = msgspec.json.Decoder(dict[str, float])

    async def consume(client: Client) -> None:
        nonlocal received
        async for message in client:  # auto-ack: acked as it is taken
            now = time.monotonic()
            latencies.append(now - decoder.decode(message.data)["t"])
            received += 1
            got.add(message.msg_id)
            if total_expected and received >= total_expected:
                done.set()

    push_latencies: list[float] = []
    sent_ids: list[str] = []
    got: set[int] = set()
    http = Http(http_port, API_KEY)  # lean: this process is also every end user
    encode = msgspec.json.encode
    answers = msgspec.json.Decoder(dict[str, list[str]])
    try:
        for client in clients:
            await client.connect()
        readers = [asyncio.create_task(consume(c)) for c in clients]
        async with httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=60,
        ) as api:
            seq = 0

            async def push_batch() -> None:
                nonlocal seq
                messages = []
                t = time.monotonic()
                for _ in range(args.batch):
                    user = f"user-{seq % args.users}"
                    seq += 1
                    messages.append(
                        {
                            "to": {"users": [user]},
                            "data": {"t": t},
                            "guaranteed": True,
                            "priority": args.priority,
                        }
                    )
                body = encode({"messages": messages})
                status, answer = await http.request("POST", "/v1/push/batch", body)
                if status != 202:
                    raise SystemExit(f"push refused: {status} {answer!r}")
                push_latencies.append(time.monotonic() - t)
                sent_ids.extend(answers.decode(answer)["msg_ids"])

            # Warm-up: one batch, fully acked, not counted.
            total_expected = args.batch
            await push_batch()
            await asyncio.wait_for(done.wait(), 30)
            done.clear()
            total_expected = 0
            latencies.clear()
            push_latencies.clear()
            received = 0
            server_cpu, own_cpu = cpu_seconds(proc.pid), time.process_time()
            machine = machine_busy_seconds()
            started = time.monotonic()
            stop_at = started + args.seconds
            batches = 0
            if args.rate > 0:
                pending: set[asyncio.Task[None]] = set()
                async for _ in paced(args.batch / args.rate, args.seconds, started):
                    task = asyncio.create_task(push_batch())
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    batches += 1
                if pending:
                    await asyncio.gather(*pending)
            else:

                async def worker() -> None:
                    nonlocal batches
                    while time.monotonic() < stop_at:
                        batches += 1
                        await push_batch()

                await asyncio.gather(*(worker() for _ in range(args.inflight)))
            pushed_at = time.monotonic()
            total_expected = batches * args.batch
            if received >= total_expected:
                done.set()
            try:
                await asyncio.wait_for(done.wait(), 60)
            except TimeoutError:
                print(f"only {received} of {total_expected} arrived", file=sys.stderr)
                missing = [i for i in sent_ids if int(i) not in got]
                if missing:  # where did one of them stop? (its trace, if still kept)
                    trace = (await api.get(f"/v1/messages/{missing[0]}")).json()
                    print(f"trace of {missing[0]}: {trace}", file=sys.stderr)
            finished = time.monotonic()
            server_cpu = cpu_seconds(proc.pid) - server_cpu
            own_cpu = time.process_time() - own_cpu
            others = machine_busy_seconds() - machine - server_cpu - own_cpu
            reach = (await api.get("/v1/stats/reach")).json()
            server_side: list[float] = []
            steps: dict[str, list[float]] = {}
            if args.trace != "off":
                # The most recent traces (the tracer keeps the newest ones), 200 of them.
                for msg_id in sent_ids[-200:]:
                    trace = (await api.get(f"/v1/messages/{msg_id}")).json()
                    at = {e["event"]: e["at_ms"] for e in trace.get("events", [])}
                    if "accepted" in at and "acked" in at:
                        server_side.append(at["acked"] - at["accepted"])
                        previous = at["accepted"]
                        for step in STEPS:
                            if step in at:
                                steps.setdefault(step, []).append(at[step] - previous)
                                previous = at[step]
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    finally:
        http.close()
        for client in clients:
            await client.close()
        proc.terminate()
        await proc.wait()
    elapsed = finished - started
    return {
        "placement": placement,
        "messages": received,
        "expected": total_expected,
        "push_seconds": pushed_at - started,
        "elapsed": elapsed,
        "rate": received / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
        "push_p50_ms": percentile(push_latencies, 0.50) * 1000,
        "push_p99_ms": percentile(push_latencies, 0.99) * 1000,
        "server_p50_ms": percentile(server_side, 0.5),
        "server_p99_ms": percentile(server_side, 0.99),
        "steps": {step: statistics.fmean(v) for step, v in steps.items()},
        "reach": reach,
        "server_cpu_us": server_cpu / max(1, received) * 1e6,
        "server_cpu_share": server_cpu / elapsed,
        "client_cpu_us": own_cpu / max(1, received) * 1e6,
        "others_share": max(0.0, others) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rate", type=float, default=10_000, help="messages/s; 0: closed loop")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=100, help="messages per push request")
    parser.add_argument("--inflight", type=int, default=8, help="push requests at once (max)")
    parser.add_argument("--transport", choices=["ws", "tcp"], default="tcp")
    parser.add_argument("--priority", choices=["low", "high"], default="low")
    parser.add_argument("--sync", choices=["full", "normal"], default="full")
    parser.add_argument("--trace", choices=["all", "guaranteed", "off"], default="all")
    parser.add_argument("--server-log", help="append the server's stderr (warnings) to this file")
    args = parser.parse_args()
    result = uvloop.run(run(args))
    reach = result["reach"]
    mode = f"{args.rate:,.0f}/s open loop" if args.rate else f"closed loop x{args.inflight}"
    print(
        f"longlink guaranteed pushes, {mode}, {args.seconds:g} s, {args.users} users "
        f"({args.transport}), batches of {args.batch}, {args.priority} priority, "
        f"store sync={args.sync}, "
        f"trace={args.trace}"
    )
    print(
        f"  {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, {datetime.date.today()}; "
        f"server on cpus {result['placement'][0]}, load generator and clients on "
        f"{result['placement'][1]}"
    )
    print(
        f"  acked {result['messages']:,} of {result['expected']:,} in {result['elapsed']:.2f} s"
        f" (pushing took {result['push_seconds']:.2f} s): {result['rate']:,.0f} messages/s"
    )
    print(
        f"  push -> ack  p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  "
        f"max {result['max_ms']:.1f} ms  mean {result['mean_ms']:.1f} ms"
    )
    print(
        f"  202 of a batch  p50 {result['push_p50_ms']:.1f} ms  p99 {result['push_p99_ms']:.1f} ms"
    )
    print(
        f"  server trace accepted -> acked (last 200)  p50 {result['server_p50_ms']:.0f} ms  "
        f"p99 {result['server_p99_ms']:.0f} ms"
    )
    print(
        "  server steps, mean ms: "
        + ", ".join(f"{step} +{ms:.1f}" for step, ms in result["steps"].items())
    )
    print(
        f"  server CPU {result['server_cpu_us']:.0f} us/message "
        f"({result['server_cpu_share']:.0%} of a core; one core's worth: "
        f"{1e6 / result['server_cpu_us']:,.0f}/s); load generator and clients "
        f"{result['client_cpu_us']:.0f} us/message; other processes "
        f"{result['others_share']:.0%} of a core"
    )
    print(
        f"  reach: {reach['deliveries']:,} deliveries, {reach['acked']:,} acked, "
        f"first try {reach['first_try_reach']}, retries {reach['retries']}"
    )


if __name__ == "__main__":
    main()
