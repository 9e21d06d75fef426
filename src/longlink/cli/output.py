"""How commands print: JSON lines for scripts (``--json``), rich tables for people.

Results go to stdout, status lines and failures to stderr. The options every
command that talks to a server shares (``--url``, ``--key``, ``--json``) are
here too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

__all__ = [
    "DEFAULT_URL",
    "ago",
    "clock",
    "emit_json",
    "json_option",
    "key_option",
    "print_table",
    "status",
    "stdout_console",
    "url_option",
]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URL = "http://127.0.0.1:8080"

url_option = click.option(
    "--url",
    envvar="LONGLINK_URL",
    default=DEFAULT_URL,
    show_default=True,
    show_envvar=True,
    help="The server's HTTP base URL.",
)
key_option = click.option(
    "--key",
    envvar="LONGLINK_API_KEY",
    show_envvar=True,
    help="API key (make run uses demo-key).",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (one object per line) for scripts."
)


def emit_json(value: Any, *, err: bool = False) -> None:
    """One JSON object on one line (stdout, or stderr with ``err``)."""
    click.echo(json.dumps(value, ensure_ascii=False, separators=(", ", ": ")), err=err)


def status(text: str, *, as_json: bool = False, **fields: Any) -> None:
    """A status line on stderr: ``text``, or ``{"status": text, **fields}`` with ``as_json``."""
    if as_json:
        emit_json({"status": text, **fields}, err=True)
    else:
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        click.echo(f"{text}: {extra}" if extra else text, err=True)


def stdout_console() -> Console:
    """A rich console on stdout: colours on a terminal, plain text (no wrapping) in a pipe."""
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, width=200, color_system=None)
    return console


def print_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    right: Iterable[str] = (),
) -> None:
    """A table on stdout; ``right`` names the columns aligned right (numbers)."""
    aligned = set(right)
    table = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
    for header in headers:
        table.add_column(header, justify="right" if header in aligned else "left")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console = stdout_console()
    with console.capture() as captured:
        console.print(table)
    # No padding at the ends of lines (rich pads the last column).
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def clock(at_ms: int) -> str:
    """``HH:MM:SS.mmm`` local time of a unix-ms timestamp."""
    return time.strftime("%H:%M:%S", time.localtime(at_ms / 1000)) + f".{at_ms % 1000:03d}"


def ago(at_ms: int, now_ms: int | None = None) -> str:
    """How long ago ``at_ms`` was, e.g. ``0.4 s ago``."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{max(0, now - at_ms) / 1000:.1f} s ago"
