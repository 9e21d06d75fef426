"""``longlink push`` (a business backend's push) and ``longlink listen`` (an end-user client)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import typing
from dataclasses import dataclass, field
from typing import Any

import click
import msgspec
import uvloop

from longlink.backend import NO_RETRY, LonglinkBackendSync
from longlink.cli.failures import Exit, Failure, failure_of, failure_of_stop, reported
from longlink.cli.output import emit_json, json_option, key_option, status, url_option
from longlink.client import (
    Backoff,
    Client,
    ClientError,
    ConnectionClosed,
    Disconnected,
    ErrorEvent,
    Kicked,
    Message,
    Reconnected,
    Recovery,
    ServerEvent,
)
from longlink.client.transport import TransportKind

__all__ = ["listen", "push"]

#: The transports the Python SDK speaks.
TRANSPORTS: tuple[str, ...] = typing.get_args(TransportKind)
#: Seconds a request to the server may take.
TIMEOUT_S = 10.0


def api_client(url: str, key: str | None) -> LonglinkBackendSync:
    """The backend client the commands use: no retries (a command says what failed)."""
    if not key:
        raise Failure(
            Exit.AUTH,
            "no_key",
            "no API key: pass it with --key or LONGLINK_API_KEY (make run uses demo-key)",
        )
    return LonglinkBackendSync(url, key, retry=NO_RETRY, timeout=TIMEOUT_S)


# ---------------------------------------------------------------- push


@click.command()
@click.argument("data")
@url_option
@key_option
@click.option("--user", "users", multiple=True, help="Push to a user (repeatable).")
@click.option("--device", "devices", multiple=True, help="Push to a device (repeatable).")
@click.option("--room", "rooms", multiple=True, help="Push to a room (repeatable).")
@click.option("--area", "areas", multiple=True, help="Push to an area (repeatable).")
@click.option("--all", "everyone", is_flag=True, help="Push to every connection.")
@click.option("--high", is_flag=True, help="High priority.")
@click.option("--guaranteed", is_flag=True, help="Ack, retry and keep offline.")
@click.option("--ttl", type=click.IntRange(min=1), help="Seconds the message stays deliverable.")
@click.option("--raw", is_flag=True, help="Send DATA as bytes (data_b64), not JSON.")
@json_option
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
    as_json: bool,
) -> None:
    """Push DATA (JSON, or else a plain string) to users, devices, rooms, areas or all.

    Prints the message id ("longlink trace ID" tells what became of it).
    """
    chosen: list[tuple[str, Any]] = [
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
        chosen.append(("all", True))
    if len(chosen) != 1:
        raise click.UsageError(
            "give exactly one kind of target: --user, --device, --room, --area or --all"
        )
    payload: dict[str, Any] = {}
    if raw:
        payload["raw"] = data.encode()
    else:
        try:
            payload["data"] = json.loads(data)
        except json.JSONDecodeError:
            payload["data"] = data
    with reported(url, as_json=as_json), api_client(url, key) as api:
        msg_id = api.push(
            dict(chosen),
            **payload,
            priority="high" if high else "low",
            guaranteed=guaranteed,
            ttl_s=ttl,
        )
    if as_json:
        emit_json({"msg_id": str(msg_id)})
    else:
        click.echo(msg_id)


# ---------------------------------------------------------------- listen


@click.command()
@url_option
@click.option("--user", help="User name (servers in demo mode).")
@click.option("--device", help="Device id.")
@click.option("--ticket", envvar="LONGLINK_TICKET", help="Business ticket (JWT) instead of --user.")
@click.option("--room", "rooms", multiple=True, help="Room to join (repeatable).")
@click.option("--transport", type=click.Choice(TRANSPORTS), default="ws", show_default=True)
@click.option("--count", type=click.IntRange(min=0), default=0, help="Exit after N messages.")
@click.option(
    "--no-reconnect",
    "once",
    is_flag=True,
    help="Exit on the first failure instead of reconnecting.",
)
@json_option
def listen(
    url: str,
    user: str | None,
    device: str | None,
    ticket: str | None,
    rooms: tuple[str, ...],
    transport: str,
    count: int,
    once: bool,
    as_json: bool,
) -> None:
    """Connect like an end-user client and print every message received.

    Each message is a line "MSG_ID [ROOM] DATA" on stdout (with --json, an
    object); status lines go to stderr. Without --no-reconnect a lost
    connection, an unreachable server or a busy one is tried again; a refused
    ticket, too many rooms or a kick end it (exit codes: docs/cli.md).
    """
    if not user and not ticket:
        raise click.UsageError("give --user (demo mode) or --ticket")
    options = _Listen(url, user, device, ticket, rooms, transport, count, not once, as_json)
    with contextlib.suppress(KeyboardInterrupt), reported(url, as_json=as_json):
        uvloop.run(options.run())


@dataclass
class _Listen:
    url: str
    user: str | None
    device: str | None
    ticket: str | None
    rooms: tuple[str, ...]
    transport: str
    count: int
    reconnect: bool
    as_json: bool
    kicked: Kicked | None = None
    error: ErrorEvent | None = None
    stopped: str = ""
    backoff: Backoff = field(default_factory=lambda: Backoff(0.5, 10.0))

    def client(self) -> Client:
        return Client(
            self.url,
            user=self.user,
            device=self.device,
            ticket=self.ticket,
            rooms=self.rooms,
            transport=typing.cast(TransportKind, self.transport),
            reconnect=self.reconnect,
            connect_timeout_s=TIMEOUT_S,
        )

    async def run(self) -> None:
        client = await self.connect()
        events = asyncio.create_task(self.watch(client))
        try:
            await self.receive(client)
        except ConnectionClosed as exc:
            await asyncio.wait([events])
            raise failure_of_stop(exc.reason, self.kicked, self.error) from exc
        finally:
            events.cancel()
            await client.close()

    async def connect(self) -> Client:
        """The first connection; failures worth retrying are retried unless --no-reconnect."""
        while True:
            client = self.client()
            try:
                ok = await client.connect()
            except ClientError as exc:
                await client.close()
                failure = failure_of(exc, self.url)
                if failure is None or not (self.reconnect and failure.retryable):
                    raise
                delay = self.backoff.next_delay()
                status(f"{failure.message}; retrying in {delay:.1f} s", as_json=self.as_json)
                await asyncio.sleep(delay)
                continue
            status(
                "connected",
                as_json=self.as_json,
                conn=ok.conn_id,
                user=ok.user,
                node=ok.node,
                rooms=list(ok.rooms),
            )
            return client

    async def receive(self, client: Client) -> None:
        seen = 0
        async for message in client:
            self.print_message(message)
            seen += 1
            if self.count and seen >= self.count:
                return

    def print_message(self, message: Message) -> None:
        try:
            value: Any = message.json()
            text = json.dumps(value, ensure_ascii=False)
        except msgspec.DecodeError:
            value, text = None, message.data.decode("utf-8", "replace")
        if self.as_json:
            line: dict[str, Any] = {"msg_id": str(message.msg_id), "room": message.room}
            if value is None and text != "null":
                line["data_b64"] = base64.b64encode(message.data).decode()
            else:
                line["data"] = value
            if message.guaranteed:
                line["guaranteed"] = True
            emit_json(line)
        else:
            room = f"[{message.room}] " if message.room is not None else ""
            click.echo(f"{message.msg_id} {room}{text}")

    async def watch(self, client: Client) -> None:
        """Print the client's events; remember the KICK or ERROR that may end it."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                event = await client.next_event()
                if isinstance(event, Kicked):
                    self.kicked = event
                    status("kicked", as_json=self.as_json, reason=event.reason)
                elif isinstance(event, ErrorEvent):
                    self.error = event
                    status("error", as_json=self.as_json, code=event.code, message=event.message)
                elif isinstance(event, Disconnected):
                    self.stopped = event.reason
                    then = "reconnecting" if event.will_reconnect else "stopped"
                    status(f"disconnected ({then})", as_json=self.as_json, reason=event.reason)
                elif isinstance(event, Reconnected):
                    self.kicked, self.error = None, None
                    status(
                        "reconnected",
                        as_json=self.as_json,
                        conn=event.auth_ok.conn_id,
                        node=event.auth_ok.node,
                        attempts=event.attempts,
                    )
                elif isinstance(event, Recovery) and not event.recovered:
                    status("missed messages not recovered", as_json=self.as_json, room=event.room)
                elif isinstance(event, ServerEvent):
                    if self.as_json:
                        emit_json({"event": event.data})
                    else:
                        click.echo(f"event {json.dumps(event.data, ensure_ascii=False)}")
