"""Commands that need no server: ``ticket``, ``hash-key``, ``check-config``."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import click

from longlink.backend import sign_ticket
from longlink.cli.failures import Exit, Failure, reported
from longlink.cli.output import emit_json, json_option, print_table
from longlink.settings import ENV_NAMES, ConfigError, Settings, load_settings

__all__ = ["check_config", "effective_settings", "hash_key", "masked", "ticket"]

MASKED = "********"


# ---------------------------------------------------------------- ticket


@click.command()
@click.argument("user")
@click.option("--device", help="The device claim (optional).")
@click.option(
    "--ttl", type=click.IntRange(min=1), default=300, show_default=True, help="Seconds valid."
)
@click.option(
    "--secret",
    envvar="LONGLINK_TICKET_SECRET",
    show_envvar=True,
    help="The server's ticket secret (prefer the variable: arguments show in ps).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Take ticket_secret from this TOML file (and LONGLINK_* variables).",
)
@json_option
def ticket(
    user: str,
    device: str | None,
    ttl: int,
    secret: str | None,
    config_file: str | None,
    as_json: bool,
) -> None:
    """Sign a business ticket for USER, as your backend would (for testing).

    Prints the HS256 JWT that ``longlink listen --ticket`` and ``POST
    /v1/connect {"ticket": …}`` take; the secret is the server's
    ``ticket_secret``.
    """
    with reported(as_json=as_json):
        if not secret and config_file:
            secret = load_settings(config_file).ticket_secret
        if not secret:
            raise Failure(
                Exit.AUTH,
                "no_secret",
                "no ticket secret: set LONGLINK_TICKET_SECRET (make run uses "
                "demo-ticket-secret-0123456789abcdef), or give --config FILE",
            )
        token = sign_ticket(secret, user, device, ttl_s=ttl)
    if as_json:
        claims: dict[str, Any] = {"user": user, "expires_at": int(time.time()) + ttl}
        if device is not None:
            claims["device"] = device
        emit_json({"ticket": token, **claims})
    else:
        click.echo(token)


# ---------------------------------------------------------------- hash-key


@click.command("hash-key")
@click.argument("key", required=False)
@click.option("--generate", is_flag=True, help="Make a new random key and print it too.")
@json_option
def hash_key(key: str | None, generate: bool, as_json: bool) -> None:
    """Print the key_sha256 line of an API key for the TOML file.

    The key is read from standard input (a hidden prompt on a terminal)
    unless given as KEY, which other users may see in ps. With --generate a
    new random key is made: give it to the backend, put the hash in the file.
    """
    if generate and key:
        raise click.UsageError("give KEY or --generate, not both")
    if generate:
        key = secrets.token_urlsafe(32)
    elif key is None:
        if sys.stdin.isatty():
            key = click.prompt("API key", hide_input=True, confirmation_prompt=True)
        else:
            key = sys.stdin.read()
    # The server strips the key it is shown (Authorization: Bearer <key>): so does this.
    key = (key or "").strip()
    if not key:
        raise click.UsageError("the key is empty")
    digest = hashlib.sha256(key.encode()).hexdigest()
    if as_json:
        emit_json({"key": key, "key_sha256": digest} if generate else {"key_sha256": digest})
        return
    if generate:
        click.echo("# give the backend this key (it is not kept anywhere):")
        click.echo(f"# {key}")
    click.echo(f'key_sha256 = "{digest}"')


# ---------------------------------------------------------------- check-config


def masked(name: str, value: Any) -> Any:
    """``value`` with secrets hidden: ``api_key`` and every field named ``*secret*``."""
    if value and (name in ("api_key", "key") or "secret" in name):
        return MASKED
    return value


def effective_settings(
    settings: Settings, file_keys: set[str], environ: dict[str, str]
) -> list[tuple[str, Any, str]]:
    """``(name, value (secrets masked), source)`` for every setting but the API keys.

    The source is ``file``, ``env`` (``LONGLINK_*``, which wins) or ``default``.
    """
    rows = []
    for field in dataclasses.fields(settings):
        if field.name == "api_keys":
            continue
        value = getattr(settings, field.name)
        source = "default"
        if field.name in file_keys:
            source = "file"
        if ENV_NAMES.get(field.name) in environ:
            source = f"env {ENV_NAMES[field.name]}"
        if field.name == "token_secret" and source == "default":
            value = "(random per start)"
        else:
            value = masked(field.name, value)
        if isinstance(value, tuple):
            value = list(value)
        rows.append((field.name, value, source))
    return rows


def _warnings(settings: Settings, *, token_secret_set: bool) -> list[str]:
    """What is valid but probably not meant."""
    found = []
    if not settings.api_key and not settings.api_keys:
        found.append("no API key: every push is refused (401); set api_key or [[api_keys]]")
    if not settings.demo and not settings.ticket_secret:
        found.append("no ticket_secret and demo off: no client can connect (/v1/connect)")
    if settings.demo and settings.host not in ("127.0.0.1", "localhost", "::1"):
        found.append(f"demo mode on {settings.host}: anyone may connect as any user")
    if not token_secret_set and settings.bus != "memory":
        found.append("several processes share a bus: give them one token_secret")
    if settings.webhook_url and not settings.webhook_secret:
        found.append("webhook_url without webhook_secret: events go unsigned")
    return found


def _validate(settings: Settings) -> None:
    """The checks a starting node makes that need no I/O (ConfigError)."""
    from longlink.api.schemas import Limits
    from longlink.trace import Tracer

    Limits.from_settings(settings)
    Tracer.from_settings(settings)
    if settings.overload_mark < 1:
        raise ConfigError("overload_depth: must be at least 1")
    if settings.id_node is not None and not 0 <= settings.id_node < 1024:
        raise ConfigError(f"id_node {settings.id_node}: use a number from 0 to 1023")


@click.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--no-env", is_flag=True, help="Ignore LONGLINK_* variables (the file alone).")
@json_option
def check_config(file: str, no_env: bool, as_json: bool) -> None:
    """Validate the TOML FILE and print the settings a server would run with.

    LONGLINK_* variables override the file, as for serve (--no-env: the file
    alone). Secrets are masked. Exit 0 when valid, 12 when not.
    """
    environ = {} if no_env else dict(os.environ)
    with reported(as_json=as_json):
        settings = load_settings(file, environ=environ)
        _validate(settings)
    file_keys = set(tomllib.loads(Path(file).read_text()))
    rows = effective_settings(settings, file_keys, environ)
    keys: list[dict[str, Any]] = [
        {
            "name": entry.name,
            "key": MASKED if entry.key else None,
            "key_sha256": entry.key_sha256,
            "targets": list(entry.targets),
            "room_prefixes": list(entry.room_prefixes),
            "high_priority": entry.high_priority,
            "guaranteed": entry.guaranteed,
            "rate": entry.rate,
            "burst": entry.burst,
            "max_ttl_s": entry.max_ttl_s,
        }
        for entry in settings.api_keys
    ]
    token_set = "token_secret" in file_keys or "LONGLINK_TOKEN_SECRET" in environ
    warnings = _warnings(settings, token_secret_set=token_set)
    if as_json:
        emit_json(
            {
                "valid": True,
                "file": file,
                "settings": {name: value for name, value, _ in rows},
                "sources": {name: source for name, _, source in rows if source != "default"},
                "api_keys": keys,
                "warnings": warnings,
            }
        )
        return
    click.echo(f"{file}: valid")
    print_table(["setting", "value", "source"], rows)
    if keys:
        print_table(
            ["api key", "key", "targets", "rooms", "high", "guaranteed", "rate", "burst"],
            [
                (
                    k["name"],
                    k["key"] or f"sha256 {k['key_sha256'][:12]}…",
                    ",".join(k["targets"]),
                    ",".join(k["room_prefixes"]) or "any",
                    "yes" if k["high_priority"] else "no",
                    "yes" if k["guaranteed"] else "no",
                    f"{k['rate']:g}" if k["rate"] else "no limit",
                    f"{k['burst']:g}",
                )
                for k in keys
            ],
        )
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
