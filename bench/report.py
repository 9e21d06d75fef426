"""What ``make bench`` writes: the machine, markdown tables, plots, the docs section.

The tables go into docs/benchmarks.md between the markers :data:`BEGIN` and
:data:`END` (the rest of the file is left alone); the plots into docs/img/.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import PEERS, ROOT

BEGIN = "<!-- bench:results:begin (written by make bench: bench/run.py) -->"
END = "<!-- bench:results:end -->"
DOC = ROOT / "docs" / "benchmarks.md"
IMG = ROOT / "docs" / "img"

#: Headline targets of issue 15: longlink's saturated deliveries/s over each server's.
TARGETS = {
    "handroll": 0.9,
    "websockets": 1.4,
    "node-ws": 1.3,
    "node-socketio": 1.3,
    "python-socketio": 12.0,
}


# =========================================================================== machine


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, Any]:
    """CPU, cores, memory, kernel, and the versions of everything that was measured."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    versions: dict[str, str] = {"python": platform.python_version()}
    for package in ("longlink-server", "uvloop", "msgspec", "brotli", "uvicorn"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package.removesuffix("-server")] = metadata.version(package)
    peers_python = PEERS / "venv" / "bin" / "python"
    if peers_python.exists():
        code = (
            "import importlib.metadata as m\n"
            "for p in ('python-socketio', 'aiohttp', 'websockets', 'uvloop'):\n"
            "    print(p, m.version(p))"
        )
        for line in _run([str(peers_python), "-c", code]).splitlines():
            name, _, version = line.partition(" ")
            versions[f"peers: {name}"] = version
    node = _run(["node", "--version"])
    if node:
        versions["node"] = node.lstrip("v")
        for package in ("ws", "socket.io"):
            manifest = PEERS / "node" / "node_modules" / package / "package.json"
            if manifest.exists():
                versions[f"peers: {package}"] = json.loads(manifest.read_text())["version"]
    versions["gcc"] = _run(["gcc", "-dumpfullversion"])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory),
        "kernel": platform.release(),
        "commit": _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "versions": versions,
    }


def machine_line(m: dict[str, Any]) -> str:
    v = m["versions"]
    peers = ", ".join(
        f"{k.removeprefix('peers: ')} {val}" for k, val in v.items() if k.startswith("peers: ")
    )
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"CPython {v.get('python')}, uvloop {v.get('uvloop', '?')}; "
        f"node {v.get('node', '—')}; peers: {peers or '—'}; gcc {v.get('gcc', '?')}; "
        f"longlink {v.get('longlink', '?')} at commit {m.get('commit') or '?'}"
    )


# =========================================================================== tables


def _n(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    if isinstance(value, (int, float)):
        if value < 0:
            return "—"
        return f"{value:,.{digits}f}"
    return str(value)


def _lat(r: dict[str, Any]) -> str:
    if not r.get("latencies"):
        return "—"
    digits = 1 if r["p99_ms"] < 20 else 0
    return " / ".join(_n(r[k], digits) for k in ("p50_ms", "p99_ms", "max_ms"))


def _server_count(r: dict[str, Any]) -> str:
    """`` (server: N)``: longlink's own count of deliveries, a check of the clients'."""
    counted = r.get("server_deliveries_s")
    return f" (server: {_n(counted)})" if counted is not None else ""


def _cpu(r: dict[str, Any]) -> str:
    return (
        f"{_n(r.get('server_cpu'))} / {_n(r.get('core0'))} | "
        f"{_n(r.get('loadgen_cpu'))} / {_n(r.get('core1'))} | {_n(r.get('rest_cores'), 2)}"
    )


CPU_HEAD = "server CPU % / core 0 % | load gen CPU % / core 1 % | rest of machine, cores"


def headline_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """longlink's saturated deliveries/s over each other server's (mean over rounds)."""
    rates: dict[str, list[float]] = {}
    for r in rows:
        if "saturated" in r:
            rates.setdefault(r["key"], []).append(r["saturated"]["deliveries_s"])
    if "longlink" not in rates:
        return {}
    ours = sum(rates["longlink"]) / len(rates["longlink"])
    means = {k: sum(v) / len(v) for k, v in rates.items()}
    return {k: ours / mean for k, mean in means.items() if k != "longlink" and mean > 0}


def table_headline(results: dict[str, Any]) -> list[str]:
    rows = results.get("headline", [])
    ceiling = results.get("ceiling", [])
    if not rows and not ceiling:
        return []
    args = results["args"]
    out = [
        f"**Unaggregated room fan-out, {args['conns']:,} WebSocket connections in one room, "
        f"saturated** (publisher keeps {args['window']} messages of 100 bytes in flight; "
        f"{args['seconds']:g} s runs counted after {args['warmup']:g} s); before it, the same "
        f"connections at {args['fixed_deliveries']:,} deliveries/s (latency at a fixed rate).",
        "",
        f"| server | deliveries/s saturated | longlink ÷ this | push → receipt p50 / p99 / max ms "
        f"(saturated: queueing) | at {args['fixed_deliveries'] // 1000}k/s: delivered, "
        f"p50 / p99 ms | {CPU_HEAD} | idle KiB per conn | RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = headline_ratios(rows)
    for r in rows:
        if "skipped" in r or "error" in r:
            out.append(f"| {r['server']} | {r.get('skipped') or r.get('error')} |" + " |" * 9)
            continue
        s, f = r["saturated"], r["fixed"]
        offered = f["rate"] * r["conns"]
        fraction = f["deliveries_s"] / offered if offered else 0
        name = f"**{r['server']}**" if r["key"] == "longlink" else r["server"]
        if args.get("rounds", 1) > 1:
            name += f" (round {r['round']})"
        ratio = "—" if r["key"] == "longlink" else _n(ratios.get(r["key"]), 2)
        fixed = f"{fraction:.0%}, {_n(f.get('p50_ms'))} / {_n(f.get('p99_ms'))}"
        out.append(
            f"| {name} | **{_n(s['deliveries_s'])}**{_server_count(s)} | {ratio} | {_lat(s)} "
            f"| {fixed} "
            f"| {_cpu(s)} | {_n(r['idle_kib_per_conn'], 1)} | {_n(s.get('server_rss_mib'))} |"
        )
    for c in ceiling:
        out.append(
            f"| *load generator's ceiling*: {c['server']}, {c['messages_per_write']} "
            f"message(s) per write | {_n(c['deliveries_s'])} | — | {_lat(c)} | — "
            f"| {_cpu(c)} | — | — |"
        )
    if ratios:
        out += ["", "Targets (issue 15, longlink ÷ each server, same run):", ""]
        for key, want in TARGETS.items():
            if key in ratios:
                got = ratios[key]
                verdict = "met" if got >= want else f"missed by {want - got:.2f}"
                out.append(f"- {key}: {got:.2f}× (target ≥ {want}×): {verdict}")
    return out


def table_fanout(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = [
        "**longlink room fan-out**, connections added step by step to one server; "
        "aggregation off saturated, on at each rate (`br` batches).",
        "",
        f"| aggregate_ms | conns | msg/s | deliveries/s (offered → delivered) "
        f"| delivered (by the end) "
        f"| msgs per frame | p50 / p99 / max ms | {CPU_HEAD} | RSS MiB | complete |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        offered = r["rate"] * r["conns"]
        delivered = (
            f"{_n(offered)} → {_n(r['deliveries_s'])}"
            if offered
            else f"saturated → **{_n(r['deliveries_s'])}**{_server_count(r)}"
        )
        fraction = "—" if r["delivered_fraction"] is None else f"{r['delivered_fraction']:.1%}"
        complete = f"{r['complete']:,}/{r['conns']:,}" if offered else "—"
        out.append(
            f"| {r['aggregate_ms']} | {r['conns']:,} | {_n(r['rate']) if offered else 'sat.'} "
            f"| {delivered} | {fraction} | {_n(r.get('msgs_per_frame'), 1)} | {_lat(r)} "
            f"| {_cpu(r)} | {_n(r.get('server_rss_mib'))} | {complete} |"
        )
    return out


def table_memory(rows: list[dict[str, Any]], sizes: list[int]) -> list[str]:
    if not rows:
        return []
    sizes = sorted(sizes)
    heads = " | ".join(f"KiB/conn at {n:,}" for n in sizes)
    out = [
        "**Idle memory per authenticated connection** (server RSS growth over 10 warm "
        "connections; *ramp*: a steady rate; *storm*: as fast as they come), and the "
        "connect rate (AUTH with token verification, to AUTH_OK).",
        "",
        f"| transport | opened | {heads} | connections/s (p99 connect ms) "
        f"| RSS MiB at the top | RSS after all closed |",
        "|---|---|" + "---|" * len(sizes) + "---|---|---|",
    ]
    for r in rows:
        if r.get("error") or len(r["steps"]) < len(sizes):
            why = r.get("error", "incomplete")
            out.append(f"| {r['transport']} | {r['mode']} | {why} |" + " |" * (len(sizes) + 2))
            continue
        kib = " | ".join(_n(s["kib_per_conn"], 2) for s in r["steps"])
        rates = ", ".join(
            f"{_n(s['connect_per_s'])} ({_n(s['connect_p99_ms'])})" for s in r["steps"]
        )
        failed = sum(s["failed"] for s in r["steps"])
        note = f" ({failed} failed)" if failed else ""
        out.append(
            f"| {r['transport']} | {r['mode']} | {kib} | {rates}{note} "
            f"| {_n(r['steps'][-1]['rss_mib'])} | {_n(r.get('after_close_mib'))} |"
        )
    return out


def table_users(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = [
        f"**Per-user pushes** through `POST /v1/push/batch` (each message to one of "
        f"{rows[0]['users']:,} connected users in turn, open loop, a request every 10 ms).",
        "",
        f"| offered pushes/s | delivered/s | delivered (by the end) "
        f"| push → receipt p50 / p99 / max ms "
        f"| POST round trip p50 / p99 ms | {CPU_HEAD} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {_n(r['rate'])} | {_n(r['deliveries_s'])} | {r['delivered_fraction']:.1%} "
            f"| {_lat(r)} | {_n(r['rtt_p50_ms'], 1)} / {_n(r['rtt_p99_ms'], 1)} | {_cpu(r)} |"
        )
    return out


def table_failover(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = [
        "**Failover**: separate processes on Redis (gateways, API, dispatch workers, two "
        "of the kind killed); one process killed with SIGKILL one second into counting "
        "while messages flow to a room. *Messages flowing again after* is the longest a "
        "message waited (push → receipt) or a sample connection heard nothing, whichever "
        "is longer; target ≤ 2 s. Clients of a killed gateway reconnect to the other with "
        "the SDK's backoff (full jitter from 0.2 s); room messages are at most once, so "
        "those sent while a client was away are not counted as delivered to it.",
        "",
        "| killed | conns | msg/s | messages flowing again after (s) | longest wait / "
        "silence ms | p50 / p99 ms | clients re-admitted (s) | complete |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['kind']} | {r['error']} |" + " |" * 6)
            continue
        back = r.get("readmit", {})
        readmitted = (
            f"{back['back']:,}/{back['lost']:,} in {back['seconds']:.1f}"
            if back.get("lost")
            else "—"
        )
        out.append(
            f"| one {r['kind']} process | {r['conns']:,} | {_n(r['rate'])} | "
            f"**{r['failover_s']:.1f}** | {_n(r['max_ms'])} / {_n(r['max_gap_ms'])} "
            f"| {_n(r['p50_ms'])} / {_n(r['p99_ms'])} | {readmitted} "
            f"| {r['complete']:,}/{r['conns']:,} |"
        )
    return out


def table_readmit(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = [
        "**Re-admission after a gateway restart**: `longlink serve` killed with SIGKILL "
        "under its clients and started again on the same ports; the clients reconnect "
        "with the SDK's schedule (attempt n waits uniform [0, min(10 s, 0.2 s × 2ⁿ)]). "
        "Target: 10k clients within 10 s, no thundering herd (plot).",
        "",
        "| clients | process back after (s) | re-admitted | all back after (s) "
        "| attempts | busiest 100 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        peak = max(r.get("timeline") or [0])
        out.append(
            f"| {r['conns']:,} | {r['restart_s']:.1f} | {r['back']:,}/{r['lost']:,} "
            f"| **{r['seconds']:.1f}** | {r['attempts']:,} | {peak:,} |"
        )
    return out


def markdown(results: dict[str, Any], plots: list[Path]) -> str:
    m = results["machine"]
    out = [
        BEGIN,
        "",
        f"Last `make bench`: {m['date']}, {results['elapsed_s']:.0f} s. Machine: "
        f"{machine_line(m)}. Server pinned to core 0, load generator (bench/loadgen/) to "
        f"core 1"
        + (f", both at niceness {results['args']['nice']}" if results["args"].get("nice") else "")
        + f". Results: `{results['file']}`.",
        "",
    ]
    if results.get("shared_note"):
        out += [results["shared_note"], ""]
    for part in (
        table_headline(results),
        table_fanout(results.get("fanout", [])),
        table_memory(results.get("memory", []), results["args"]["memory_conns"]),
        table_users(results.get("users", [])),
        table_failover(results.get("failover", [])),
        table_readmit(results.get("readmit", [])),
    ):
        if part:
            out += [*part, ""]
    for note in results.get("notes", []):
        out.append(f"- {note}")
    if results.get("notes"):
        out.append("")
    for plot in plots:
        rel = os.path.relpath(plot, DOC.parent)
        out.append(f"![{plot.stem}]({rel})")
    out += ["", END]
    return "\n".join(out)


def update_doc(section: str, doc: Path = DOC) -> None:
    """Put ``section`` between the markers of ``doc`` (appended if there are none)."""
    text = doc.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start >= 0 and end > start:
        text = text[:start] + section + text[end + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n## Last run of `make bench`\n\n" + section + "\n"
    doc.write_text(text)
