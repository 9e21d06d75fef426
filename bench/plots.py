"""The PNG plots of ``make bench`` (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def headline(results: dict[str, Any], path: Path) -> Path | None:
    rows = [r for r in results.get("headline", []) if "saturated" in r]
    if not rows:
        return None
    best: dict[str, tuple[str, float]] = {}
    for r in rows:  # the best round of each server
        rate = r["saturated"]["deliveries_s"]
        if r["key"] not in best or rate > best[r["key"]][1]:
            best[r["key"]] = (r["server"], rate)
    for c in results.get("ceiling", []):
        if c.get("messages_per_write") == 1:
            best["flood"] = ("C flood server, 1 msg per write", c["deliveries_s"])
    items = sorted(best.items(), key=lambda kv: kv[1][1])
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(items) + 1.6))
    colors = [
        "#d62728" if key == "longlink" else "#7f7f7f" if key == "flood" else "#1f77b4"
        for key, _ in items
    ]
    ax.barh([label for _, (label, _) in items], [v for _, (_, v) in items], color=colors)
    for y, (_, (_, value)) in enumerate(items):
        ax.text(value, y, f" {value / 1000:,.0f}k", va="center")
    args = results["args"]
    ax.set_xlabel("deliveries/s, one core (saturated)")
    ax.set_title(f"Room fan-out, {args['conns']:,} connections, no aggregation")
    ax.margins(x=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def fanout(results: dict[str, Any], path: Path) -> Path | None:
    rows = results.get("fanout", [])
    if not rows:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    off = [r for r in rows if r["aggregate_ms"] == 0]
    if off:
        left.plot(
            [r["conns"] for r in off],
            [r["deliveries_s"] for r in off],
            "o-",
            label="aggregation off (saturated)",
        )
    series = [
        (window, rate)
        for window in sorted({r["aggregate_ms"] for r in rows if r["aggregate_ms"]})
        for rate in sorted({r["rate"] for r in rows if r["aggregate_ms"] == window})
    ]
    for n, (window, rate) in enumerate(series, 1):  # one colour per series, on both sides
        pts = [r for r in rows if r["aggregate_ms"] == window and r["rate"] == rate]
        label = f"{window} ms window, {rate:,.0f} msg/s"
        xs = [r["conns"] for r in pts]
        left.plot(xs, [r["deliveries_s"] for r in pts], "s--", color=f"C{n}", label=label)
        right.plot(xs, [r["p99_ms"] for r in pts], "s--", color=f"C{n}", label=label)
    left.set_xlabel("connections in the room")
    left.set_ylabel("deliveries/s")
    left.set_yscale("log")
    left.legend(fontsize=8)
    left.set_title("Deliveries/s")
    right.set_xlabel("connections in the room")
    right.set_ylabel("push → receipt p99, ms")
    right.legend(fontsize=8)
    right.set_title("Latency p99 (aggregated)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def memory(results: dict[str, Any], path: Path) -> Path | None:
    rows = results.get("memory", [])
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        style = "o-" if r["mode"] == "ramp" else "x--"
        ax.plot(
            [s["conns"] for s in r["steps"]],
            [s["kib_per_conn"] for s in r["steps"]],
            style,
            label=f"{r['transport']}, {r['mode']}",
        )
    ax.axhline(3.0, color="grey", linewidth=0.8, linestyle=":", label="target 3 KiB")
    ax.set_xlabel("idle authenticated connections")
    ax.set_ylabel("RSS growth, KiB per connection")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title("Idle memory per connection")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def users(results: dict[str, Any], path: Path) -> Path | None:
    rows = results.get("users", [])
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    x = [r["deliveries_s"] for r in rows]
    ax.plot(x, [r["p50_ms"] for r in rows], "o-", label="p50")
    ax.plot(x, [r["p99_ms"] for r in rows], "s-", label="p99")
    ax.axhline(50, color="grey", linewidth=0.8, linestyle=":", label="target p99 50 ms")
    ax.set_xlabel("per-user pushes delivered/s")
    ax.set_ylabel("push → receipt, ms")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(f"Per-user pushes, {rows[0]['users']:,} users")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def readmit(results: dict[str, Any], path: Path) -> Path | None:
    rows = results.get("readmit", [])
    if not rows or not rows[0].get("timeline"):
        return None
    r = rows[0]
    step = r.get("bucket_ms", 100) / 1000
    counts = r["timeline"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar([i * step for i in range(len(counts))], counts, width=step, align="edge")
    ax.axvline(r["restart_s"], color="grey", linestyle=":", label="process ready again")
    ax.set_xlabel("seconds after the gateway was killed")
    ax.set_ylabel(f"clients re-admitted per {step * 1000:.0f} ms")
    ax.set_title(f"{r['conns']:,} clients back after a gateway restart (SDK backoff, full jitter)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def all_plots(results: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    made = []
    for name, draw in (
        ("headline", headline),
        ("fanout", fanout),
        ("memory", memory),
        ("users", users),
        ("readmit", readmit),
    ):
        path = draw(results, directory / f"bench-{name}.png")
        if path is not None:
            made.append(path)
    return made
