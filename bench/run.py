"""``make bench``: every scenario of issue 15 in one run, on this machine.

Servers run pinned to core 0, the compiled load generator (bench/loadgen/) to core 1;
the peers are installed by ``make bench-setup`` into bench/.peers/ (a venv, npm). Writes
bench/results/<time>.json, PNG plots in docs/img/ and the tables between the markers of
docs/benchmarks.md. The defaults take about 10 minutes; ``--quick`` is a smoke run.

    .venv/bin/python bench/run.py                       # everything (make bench)
    .venv/bin/python bench/run.py --quick --no-doc      # a short smoke run
    .venv/bin/python bench/run.py --scenarios headline --rounds 2
    .venv/bin/python bench/run.py --scenarios fanout --fanout-conns 15000 --fanout-rates 1000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import failover
import harness
import plots
import report
import scenarios
from harness import ROOT
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

RESULTS = ROOT / "bench" / "results"
SCENARIOS = {**scenarios.SCENARIOS, "failover": failover.failover, "readmit": failover.readmit}
QUICK = {
    "conns": 1000,
    "seconds": 3.0,
    "warmup": 1.0,
    "fixed_seconds": 2.0,
    "fixed_deliveries": 20_000,
    "ceiling_bursts": [16],
    "fanout_conns": [500, 1000],
    "fanout_rates": [200.0],
    "fanout_seconds": 3.0,
    "memory_conns": [1000, 2000],
    "memory_transports": ["ws", "tcp"],
    "users": 200,
    "users_rates": [2000.0, 5000.0],
    "users_seconds": 2.0,
    "failover_conns": 200,
    "readmit_conns": 1000,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--scenarios",
        nargs="+",
        choices=list(SCENARIOS),
        default=list(SCENARIOS),
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run (~2 min)")
    p.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: write the tables and plots of that run (bench/results/*.json)",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the servers and the load generator (e.g. -10 on a shared machine; "
        "needs the privilege)",
    )
    p.add_argument(
        "--disturbed",
        type=float,
        default=0.8,
        help="a saturated side-by-side run during which other work used more than this many "
        "cores is measured once more, and the quieter of the two kept",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=1.5,
        help="before each measured run, wait up to this long for other work on the machine "
        "to calm down (the machine may be shared)",
    )
    p.add_argument(
        "--no-doc",
        dest="doc",
        action="store_false",
        help="do not write docs/benchmarks.md and docs/img/ (results JSON only)",
    )
    head = p.add_argument_group("headline (unaggregated fan-out, side by side)")
    head.add_argument("--conns", type=int, default=5000, help="connections in the room")
    head.add_argument(
        "--peers", nargs="+", choices=scenarios.PEER_KEYS, default=list(scenarios.PEER_KEYS)
    )
    head.add_argument("--rounds", type=int, default=1, help="side-by-side rounds")
    head.add_argument("--seconds", type=float, default=6.0, help="saturated run, seconds")
    head.add_argument("--warmup", type=float, default=1.5, help="seconds before counting")
    head.add_argument(
        "--window", type=int, default=32, help="saturated: messages the publisher keeps in flight"
    )
    head.add_argument(
        "--fixed-deliveries",
        type=int,
        default=100_000,
        help="deliveries/s of the fixed-rate run after the saturated one",
    )
    head.add_argument("--fixed-seconds", type=float, default=4.0)
    head.add_argument(
        "--ceiling-bursts",
        type=int,
        nargs="+",
        default=[1, 16],
        help="messages per write of the flood server (load generator ceiling)",
    )
    fan = p.add_argument_group("fanout (longlink, connections x rate)")
    fan.add_argument("--fanout-conns", type=int, nargs="+", default=[1000, 5000, 10000, 19000])
    fan.add_argument(
        "--fanout-windows",
        type=int,
        nargs="+",
        default=[0, 50],
        help="aggregate_ms of the servers (0: aggregation off, saturated)",
    )
    fan.add_argument(
        "--fanout-rates",
        type=float,
        nargs="+",
        default=[200.0, 1000.0],
        help="messages/s to the room (aggregated runs)",
    )
    fan.add_argument("--fanout-seconds", type=float, default=4.0)
    fan.add_argument(
        "--codec",
        choices=["br", "zlib", "none"],
        default="br",
        help="codec the clients ask for in aggregated runs",
    )
    mem = p.add_argument_group("memory (idle connections) and connect storm")
    mem.add_argument("--memory-conns", type=int, nargs="+", default=[5000, 10000, 19000])
    mem.add_argument(
        "--memory-transports",
        nargs="+",
        choices=["ws", "tcp", "stream"],
        default=["ws", "tcp"],
        help="stream: the HTTP stream transport (PROTOCOL.md 1.5), once the server has it",
    )
    mem.add_argument("--ramp-rate", type=float, default=2500, help="connections/s (ramp)")
    mem.add_argument(
        "--storm-concurrency", type=int, default=1000, help="handshakes at once in a storm"
    )
    usr = p.add_argument_group("users (per-user pushes)")
    usr.add_argument("--users", type=int, default=1000)
    usr.add_argument(
        "--users-rates", type=float, nargs="+", default=[5000.0, 10000.0, 20000.0, 30000.0]
    )
    usr.add_argument("--users-seconds", type=float, default=4.0)
    fail = p.add_argument_group("failover (Redis, a process killed with SIGKILL)")
    fail.add_argument("--failover-conns", type=int, default=500)
    fail.add_argument("--failover-rate", type=float, default=200.0, help="room messages/s")
    fail.add_argument(
        "--failover-seconds",
        type=float,
        default=16.0,
        help="run length when a dispatch worker is killed (longer than claim_idle_ms after "
        "the kill); the other kinds run half as long",
    )
    fail.add_argument("--failover-aggregate-ms", type=int, default=50)
    fail.add_argument(
        "--failover-kinds",
        nargs="+",
        choices=list(failover.LAYOUTS),
        default=list(failover.LAYOUTS),
        help="which process is killed",
    )
    fail.add_argument(
        "--readmit-conns", type=int, default=10_000, help="clients of the restarted gateway"
    )
    fail.add_argument("--readmit-timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if p.get_default(key) == getattr(args, key):
                setattr(args, key, value)
    sizes = (args.conns, *args.fanout_conns, *args.memory_conns, args.users, args.readmit_conns)
    for n in sizes:
        if n > 19_000:
            p.error("at most 19,000 connections: a process may hold 20,000 descriptors")
    return args


def shared_note(results: dict[str, Any]) -> str:
    """A sentence when other work used the machine during the measured windows."""
    rests: list[float] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("rest_cores"), float):
                rests.append(value["rest_cores"])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk({k: v for k, v in results.items() if k not in ("machine", "args")})
    if not rests:
        return ""
    worst = max(rests)
    if worst <= 0.3:
        return (
            f"The rest of the machine (other processes, kernel work not charged to the "
            f"two) stayed at or below {worst:.2f} cores during the measured windows."
        )
    return (
        f"**The machine was shared** with other work during this run: outside the server "
        f"and the load generator, up to {worst:.2f} cores were busy in some measured "
        f"windows (column *rest of machine*); read those rows with care."
    )


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    console = Console()
    if args.render:  # the tables and plots of an earlier run, measured again: nothing
        earlier: dict[str, Any] = json.loads(args.render.read_text())
        versions = earlier["machine"]["versions"]
        for name, version in report.machine()["versions"].items():
            versions.setdefault(name, version)  # only what the run could not read
        write(console, earlier, report.IMG if args.doc else RESULTS / args.render.stem, args.doc)
        return
    missing = scenarios.missing_tools()
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run `make bench-setup` first")
    harness.NICE[0] = args.nice
    started = time.monotonic()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: dict[str, Any] = {"machine": report.machine(), "args": vars(args)}
    console.print(f"[bold]make bench[/]: {report.machine_line(results['machine'])}")
    with (
        tempfile.TemporaryDirectory(prefix="longlink-bench-") as tmp,
        Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        task = progress.add_task("starting", total=scenarios.steps(args))
        ctx = scenarios.Context(
            args=args,
            workdir=Path(tmp),
            step=lambda text: progress.update(task, description=text),
            done=lambda: progress.advance(task),
        )
        for name in args.scenarios:
            began = time.monotonic()
            try:
                results[name] = SCENARIOS[name](ctx)
            except Exception as exc:  # one scenario failing must not lose the others
                ctx.notes.append(f"{name}: failed: {type(exc).__name__}: {exc}")
                progress.console.print(f"[red]{name} failed[/]: {exc}")
                results[name] = []
            progress.console.print(f"{name}: {time.monotonic() - began:.0f} s")
        results["notes"] = ctx.notes
    results["elapsed_s"] = time.monotonic() - started
    results["shared_note"] = shared_note(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{stamp}.json"
    results["file"] = str(path.relative_to(ROOT))
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    write(console, results, report.IMG if args.doc else RESULTS / stamp, args.doc)


def write(console: Console, results: dict[str, Any], img: Path, doc: bool) -> None:
    """The plots, the markdown section (into docs/benchmarks.md when ``doc``), a summary."""
    made = plots.all_plots(results, img)
    section = report.markdown(results, made)
    if doc:
        report.update_doc(section)
    console.print(section.replace(report.BEGIN, "").replace(report.END, ""), markup=False)
    console.print(
        f"results: {results['file']}; plots: {', '.join(str(p) for p in made)}"
        + ("; tables in docs/benchmarks.md" if doc else "")
    )


if __name__ == "__main__":
    main()
