"""The ``longlink`` command: ``serve``, ``push`` and ``listen``.

This is the only module that reads the environment, files and signals.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import click
import httpx
import uvloop

from longlink import __version__
from longlink.settings import ROLES, ConfigError, load_settings


@click.group()
@click.version_option(__version__, prog_name="longlink")
def main() -> None:
    """longlink: self-hosted long-connection real-time push."""


# ---------------------------------------------------------------- serve


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file.")
@click.option("--role", "roles", help=f"Comma-separated roles among {', '.join(ROLES)} (all).")
@click.option(
    "--log-level", default=lambda: os.environ.get("LONGLINK_LOG_LEVEL", "info"), show_default="info"
)
def serve(config_file: str | None, roles: str | None, log_level: str) -> None:
    """Run longlink (every role, embedded backends, unless told otherwise)."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    overrides: dict[str, Any] = {}
    if roles:
        overrides["roles"] = tuple(r.strip() for r in roles.split(",") if r.strip())
    try:
        settings = load_settings(config_file, **overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc

    def reread() -> Any:
        fresh = load_settings(config_file, **overrides)
        if fresh.token_secret != load_settings(config_file, **overrides).token_secret:
            # No token secret configured: each read makes a random one; keep the running one.
            fresh = fresh.replace(token_secret=settings.token_secret)
        return fresh

    try:
        uvloop.run(_serve(settings, reread))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot start: {exc}") from exc


async def _serve(settings: Any, reread: Callable[[], Any]) -> None:
    from longlink.node import Node

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Node(settings) as node:
        # Everything loaded so far lives as long as the process: keep it out of the
        # collector's full passes, which would otherwise take ~50 ms each under load.
        gc.freeze()
        # SIGHUP re-reads the file and the environment (docs/api-keys.md, "Reload").
        loop.add_signal_handler(signal.SIGHUP, _reload, node, reread)
        print(node.ready_line(), flush=True)
        if node.http is not None:
            url = node.http_url
            click.echo(f"  push API:  {url}/v1/push   (OpenAPI: {url}/openapi.json)", err=True)
            click.echo(f"  connect:   {url}/v1/connect   metrics: {url}/metrics", err=True)
            if settings.demo:
                click.echo(f"  demo page: {url}/   (a live room: open it in two tabs)", err=True)
            click.echo(f"  dashboard: {url}/admin   (asks for the API key)", err=True)
        if node.gateway is not None:
            ws, tcp = node.gateway.endpoints
            click.echo(f"  clients:   {ws}   tcp://{tcp}", err=True)
        if settings.demo:
            click.echo('  demo mode: /v1/connect accepts {"user": NAME}', err=True)
        await stop.wait()
        click.echo("longlink: draining", err=True)


def _reload(node: Any, reread: Callable[[], Any]) -> None:
    """SIGHUP: new API keys, limits, overload mark, secrets and TLS certificate; a bad
    file (or secret, or certificate) keeps the running ones and says so in the log."""
    log = logging.getLogger("longlink.cli")
    try:
        settings = reread()
        restart = node.reload(settings)
    except ConfigError as exc:
        log.error("reload failed, keeping the running configuration: %s", exc)
        return
    keys = len(settings.api_keys) + (1 if settings.api_key else 0)
    click.echo(f"longlink: reloaded ({keys} api keys)", err=True)
    if restart:
        log.warning("changed settings that need a restart: %s", ", ".join(restart))


# ---------------------------------------------------------------- push


def _default_url() -> str:
    port = os.environ.get("LONGLINK_HTTP_PORT", "8080")
    return os.environ.get("LONGLINK_URL", f"http://127.0.0.1:{port}")


@main.command()
@click.argument("data")
@click.option("--url", default=_default_url, show_default="http://127.0.0.1:8080")
@click.option("--key", envvar="LONGLINK_API_KEY", help="API key (env LONGLINK_API_KEY).")
@click.option("--user", "users", multiple=True, help="Push to a user (repeatable).")
@click.option("--device", "devices", multiple=True, help="Push to a device (repeatable).")
@click.option("--room", "rooms", multiple=True, help="Push to a room (repeatable).")
@click.option("--area", "areas", multiple=True, help="Push to an area (repeatable).")
@click.option("--all", "everyone", is_flag=True, help="Push to every connection.")
@click.option("--high", is_flag=True, help="High priority.")
@click.option("--guaranteed", is_flag=True, help="Ack, retry and keep offline.")
@click.option("--ttl", type=int, default=None, help="Seconds the message stays deliverable.")
@click.option("--raw", is_flag=True, help="Send DATA as bytes (data_b64), not JSON.")
def push(
    data: str,
    url: str,
    key: str | None,
    users: tuple[str, ...],
    devices: tuple[str, ...],
    rooms: tuple[str, ...],
    areas: tuple[str, ...],
    everyone: bool,
    high: bool,
    guaranteed: bool,
    ttl: int | None,
    raw: bool,
) -> None:
    """Push DATA (JSON, or a plain string) to users, devices, rooms, areas or all."""
    chosen = [
        (name, list(values))
        for name, values in (
            ("users", users),
            ("devices", devices),
            ("rooms", rooms),
            ("areas", areas),
        )
        if values
    ]
    if everyone:
        chosen.append(("all", True))  # type: ignore[arg-type]
    if len(chosen) != 1:
        raise click.UsageError(
            "give exactly one kind of target: --user, --device, --room, --area or --all"
        )
    body: dict[str, Any] = {"to": dict(chosen), "priority": "high" if high else "low"}
    if raw:
        body["data_b64"] = base64.b64encode(data.encode()).decode()
    else:
        try:
            body["data"] = json.loads(data)
        except json.JSONDecodeError:
            body["data"] = data
    if guaranteed:
        body["guaranteed"] = True
    if ttl is not None:
        body["ttl_s"] = ttl
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.post(f"{url}/v1/push", json=body, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"{url}: {exc}") from exc
    if response.status_code != 202:
        raise click.ClickException(f"{response.status_code}: {response.text}")
    click.echo(response.json()["msg_id"])


# ---------------------------------------------------------------- listen


@main.command()
@click.option("--url", default=_default_url, show_default="http://127.0.0.1:8080")
@click.option("--user", help="User name (servers in demo mode).")
@click.option("--device", help="Device id.")
@click.option("--ticket", help="Business ticket (JWT) instead of --user.")
@click.option("--room", "rooms", multiple=True, help="Room to join (repeatable).")
@click.option("--transport", type=click.Choice(["ws", "tcp"]), default="ws", show_default=True)
@click.option("--count", type=int, default=0, help="Exit after this many messages (0: never).")
def listen(
    url: str,
    user: str | None,
    device: str | None,
    ticket: str | None,
    rooms: tuple[str, ...],
    transport: str,
    count: int,
) -> None:
    """Connect like an end-user client and print every message received."""
    if not user and not ticket:
        raise click.UsageError("give --user (demo mode) or --ticket")
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_listen(url, user, device, ticket, rooms, transport, count))


async def _listen(
    url: str,
    user: str | None,
    device: str | None,
    ticket: str | None,
    rooms: tuple[str, ...],
    transport: str,
    count: int,
) -> None:
    from longlink.client import Client

    client = Client(
        url,
        user=user,
        device=device,
        ticket=ticket,
        rooms=rooms,
        transport="tcp" if transport == "tcp" else "ws",
    )
    async with client:
        ok = client.auth_ok
        if ok is not None:
            click.echo(
                f"connected: conn={ok.conn_id} user={ok.user} node={ok.node} rooms={ok.rooms}",
                err=True,
            )
        seen = 0
        async for message in client:
            try:
                text = json.dumps(message.json(), ensure_ascii=False)
            except Exception:
                text = message.data.decode("utf-8", "replace")
            click.echo(f"{message.msg_id} {text}")
            sys.stdout.flush()
            seen += 1
            if count and seen >= count:
                break


if __name__ == "__main__":
    main()
