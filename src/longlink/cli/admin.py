"""Daily questions for the push API: ``online``, ``trace``, ``kick``, ``nodes``, ``drain``.

Each is one call of the backend client (:mod:`longlink.backend`) with the
API key of ``--key`` / ``LONGLINK_API_KEY``; ``--json`` prints the server's
answer as it is.
"""

from __future__ import annotations

import time
from typing import Any

import click

from longlink.cli.clients import api_client
from longlink.cli.failures import reported
from longlink.cli.output import (
    ago,
    clock,
    emit_json,
    json_option,
    key_option,
    print_table,
    url_option,
)

__all__ = ["drain", "kick", "nodes", "online", "trace", "trace_rows"]


@click.command()
@click.argument("room", required=False)
@url_option
@key_option
@json_option
def online(room: str | None, url: str, key: str | None, as_json: bool) -> None:
    """Who is online: in total, per room and per area; or in ROOM."""
    with reported(url, as_json=as_json), api_client(url, key) as api:
        answer = api.room(room) if room is not None else api.online()
    if as_json:
        emit_json(answer)
        return
    if room is not None:
        area = f" (area {answer['area']})" if answer.get("area") else ""
        click.echo(f"{answer['room']}: {answer['online']} online{area}")
        return
    click.echo(f"{answer['total']} online")
    rooms = sorted(answer.get("rooms", {}).items(), key=lambda item: (-item[1], item[0]))
    if rooms:
        print_table(["room", "online"], rooms, right=["online"])
    areas = sorted(answer.get("areas", {}).items(), key=lambda item: (-item[1], item[0]))
    if areas:
        print_table(["area", "online"], areas, right=["online"])


def trace_rows(events: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """The timeline of a trace: clock time, ms since the first event, event, its details."""
    if not events:
        return []
    start = events[0]["at_ms"]
    rows = []
    for event in events:
        detail = " ".join(
            f"{name}={_value(value)}"
            for name, value in event.items()
            if name not in ("at_ms", "event")
        )
        rows.append((clock(event["at_ms"]), f"+{event['at_ms'] - start}", event["event"], detail))
    return rows


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


@click.command()
@click.argument("msg_id", type=click.IntRange(min=1, max=(1 << 64) - 1))
@url_option
@key_option
@json_option
def trace(msg_id: int, url: str, key: str | None, as_json: bool) -> None:
    """What became of message MSG_ID (accepted, queued, written, acked, …): a timeline."""
    with reported(url, as_json=as_json), api_client(url, key) as api:
        answer = api.message_trace(msg_id)
    if as_json:
        emit_json(answer)
        return
    events = answer.get("events", [])
    print_table(
        ["time", "ms", "event", "detail"],
        trace_rows(events),
        title=f"message {answer['msg_id']}",
        right=["ms"],
    )
    if answer.get("dropped_events"):
        click.echo(f"({answer['dropped_events']} later events not kept)")


@click.command()
@click.argument("user")
@click.option("--reason", default="kicked", show_default=True, help="Sent to the client in KICK.")
@url_option
@key_option
@json_option
def kick(user: str, reason: str, url: str, key: str | None, as_json: bool) -> None:
    """Close USER's connections with KICK (their SDKs do not reconnect)."""
    with reported(url, as_json=as_json), api_client(url, key) as api:
        kicked = api.kick(user, reason)
    if as_json:
        emit_json({"user": user, "kicked": kicked})
    else:
        click.echo(f"kicked {kicked} connection{'s' if kicked != 1 else ''} of {user}")


@click.command()
@url_option
@key_option
@json_option
def nodes(url: str, key: str | None, as_json: bool) -> None:
    """The gateway nodes: region, connections, load, health, endpoints."""
    with reported(url, as_json=as_json), api_client(url, key) as api:
        answer = api.nodes()
    if as_json:
        emit_json({"nodes": answer})
        return
    if not answer:
        click.echo("no gateway node has reported")
        return
    now_ms = int(time.time() * 1000)
    rows = [
        (
            node["node"],
            node.get("region", ""),
            "draining" if node.get("draining") else ("up" if node.get("healthy") else "silent"),
            node.get("connections", 0),
            f"{node.get('load', 0.0):.2f}",
            ago(node.get("reported_ms", 0), now_ms),
            node.get("ws") or "-",
            node.get("tcp") or "-",
        )
        for node in answer
    ]
    print_table(
        ["node", "region", "state", "connections", "load", "reported", "ws", "tcp"],
        rows,
        right=["connections", "load"],
    )


@click.command()
@click.argument("node")
@click.option("--undo", is_flag=True, help="Take the node back (stop draining).")
@url_option
@key_option
@json_option
def drain(node: str, undo: bool, url: str, key: str | None, as_json: bool) -> None:
    """Stop sending clients to NODE and move its clients elsewhere (--undo: take it back)."""
    with reported(url, as_json=as_json), api_client(url, key) as api:
        answer = api.drain(node, not undo)
    if as_json:
        emit_json(answer)
    elif answer["draining"]:
        click.echo(f"{node} is draining: control sends it no client, its clients move")
    else:
        click.echo(f"{node} takes clients again")
