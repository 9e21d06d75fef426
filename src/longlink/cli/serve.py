"""``longlink serve``: run longlink until SIGTERM (drain, exit 0); SIGHUP reloads."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from typing import Any

import click
import uvloop

from longlink.cli.failures import Exit, Failure
from longlink.logs import configure_logging
from longlink.settings import LOG_FORMATS, LOG_LEVELS, ROLES, ConfigError, Settings, load_settings

__all__ = ["banner", "serve"]


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file.")
@click.option("--role", "roles", help=f"Comma-separated roles among {', '.join(ROLES)} (all).")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="Log level (default: log_level, env LONGLINK_LOG_LEVEL, else info).",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    help="text or json lines (default: log_format, env LONGLINK_LOG_FORMAT, else text).",
)
def serve(
    config_file: str | None, roles: str | None, log_level: str | None, log_format: str | None
) -> None:
    """Run longlink (every role, embedded backends, unless told otherwise)."""
    overrides: dict[str, Any] = {}
    if roles:
        overrides["roles"] = tuple(r.strip() for r in roles.split(",") if r.strip())
    if log_format:
        overrides["log_format"] = log_format
    if log_level:
        overrides["log_level"] = log_level.lower()
    try:
        settings = load_settings(config_file, **overrides)
    except ConfigError as exc:
        raise Failure(Exit.CONFIG, "config", f"invalid configuration: {exc}") from exc
    configure_logging(settings)

    def reread() -> Settings:
        fresh = load_settings(config_file, **overrides)
        if fresh.token_secret != load_settings(config_file, **overrides).token_secret:
            # No token secret configured: each read makes a random one; keep the running one.
            fresh = fresh.replace(token_secret=settings.token_secret)
        return fresh

    try:
        uvloop.run(_serve(settings, reread))
    except ConfigError as exc:
        raise Failure(Exit.CONFIG, "config", f"invalid configuration: {exc}") from exc
    except OSError as exc:
        raise Failure(Exit.ERROR, "cannot_start", f"cannot start: {exc}") from exc


def banner(settings: Settings, node: Any) -> list[str]:
    """The lines under the ready line: where everything is, and how demo mode is entered."""
    lines: list[str] = []
    if node.http is not None:
        url = node.http_url
        lines.append(f"  push API:  {url}/v1/push   (API docs: {url}/docs)")
        lines.append(f"  connect:   {url}/v1/connect   ready: {url}/readyz")
        lines.append(f"  metrics:   {url}/metrics")
        if settings.demo:
            lines.append(f"  demo page: {url}/   (a live room: open it in two tabs)")
        lines.append(f"  dashboard: {url}/admin   (asks for the API key)")
    if node.gateway is not None:
        ws, tcp = node.gateway.endpoints
        lines.append(f"  clients:   {ws}   tcp://{tcp}   {node.gateway.stream_endpoint}")
    if settings.demo:
        lines.append('  demo mode: /v1/connect accepts {"user": NAME}')
        if settings.api_key:
            # Demo mode is for trying longlink out: say the key (make run: demo-key).
            lines.append(f"  API key:   {settings.api_key}   (LONGLINK_API_KEY, every scope)")
        else:
            lines.append("  API key:   none: set LONGLINK_API_KEY to push")
        if settings.ticket_secret:
            lines.append("  tickets:   signed with LONGLINK_TICKET_SECRET (longlink ticket USER)")
    return lines


#: gc.set_threshold of a serving process: a young collection every 10,000 net
#: allocations (default 700), the middle one every 50 of those, a full one every 100
#: middle ones (and, as always, only once the long-lived objects grew by a quarter).
GC_THRESHOLDS = (10_000, 50, 100)


async def _serve(settings: Settings, reread: Callable[[], Settings]) -> None:
    from longlink.node import Node

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Node(settings) as node:
        # Everything loaded so far lives as long as the process: keep it out of the
        # collector's full passes, which would otherwise take ~50 ms each under load.
        gc.freeze()
        # Connections are long-lived and few of their objects form cycles; at the
        # default thresholds a storm of 19,000 connections ran ~9 full passes over them
        # (up to 200 ms each, ~15 % of the CPU per connection): collect less often.
        gc.set_threshold(*GC_THRESHOLDS)
        # SIGHUP re-reads the file and the environment (docs/api-keys.md, "Reload").
        loop.add_signal_handler(signal.SIGHUP, _reload, node, reread)
        print(node.ready_line(), flush=True)
        for line in banner(settings, node):
            click.echo(line, err=True)
        await stop.wait()
        click.echo("longlink: draining", err=True)


def _reload(node: Any, reread: Callable[[], Settings]) -> None:
    """SIGHUP: new API keys, limits, overload mark, secrets and TLS certificate; a bad
    file (or secret, or certificate) keeps the running ones and says so in the log."""
    log = logging.getLogger("longlink.cli")
    try:
        settings = reread()
        restart = node.reload(settings)
    except ConfigError as exc:
        log.error("reload failed, keeping the running configuration: %s", exc)
        return
    configure_logging(settings)  # the log masks the secrets now in force too
    keys = len(settings.api_keys) + (1 if settings.api_key else 0)
    click.echo(f"longlink: reloaded ({keys} api keys)", err=True)
    if restart:
        log.warning("changed settings that need a restart: %s", ", ".join(restart))
