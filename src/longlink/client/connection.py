"""The client SDK: one long connection to longlink, kept alive across losses.

Lifetime
--------
:meth:`Client.connect` asks ``/v1/connect`` for a token and endpoints, opens
the first endpoint that answers, sends AUTH and waits for AUTH_OK, all in the
caller's task. Then two tasks run, tracked by the client:

* the *session task* (one per client) reads frames and dispatches them; when
  the connection is lost it either reconnects (backoff with full jitter, a
  fresh ``/v1/connect``, AUTH with the current :attr:`Client.rooms`) or stops
  for good;
* the *pump task* (one per connection) writes what the session's clock asks
  for (HEARTBEAT every ``AUTH_OK.heartbeat_s`` seconds) and queued ACKs, and
  aborts a connection from which nothing has arrived for 2.5 intervals
  (PROTOCOL.md §1.3 rule 3).

Every protocol decision — what AUTH carries, what a frame means, which
message is a duplicate, which ACK is owed, when to heartbeat, whether a loss
allows a reconnect — is the pure :class:`~longlink.protocol.client.ClientSession`'s;
this module only moves frames and time between it and the transport.

Reconnect or stop
-----------------
The session's table (:mod:`longlink.protocol.client`, rule 5) says whether a
loss allows a reconnect; besides it, AUTH refused or ``/v1/connect`` 4xx and
:meth:`Client.close` stop the client.

With ``reconnect=False`` every loss stops the client. A stopped client emits
:class:`Disconnected` with ``will_reconnect=False``; its iterators hand out
what was already received, then raise :class:`ConnectionClosed`.

Messages and acknowledgements
-----------------------------
Pushes are delivered in arrival order, BATCH frames unpacked in place, and
duplicates dropped by ``msg_id`` (a window of ``dedup_size`` ids). With
``auto_ack`` a guaranteed message is acked *when the application takes it*:
the moment :meth:`Client.next_message` (or ``__anext__``) returns it, its id is
queued and the pump task writes the ACK right away (several at once become one
``{"msg_ids": [...]}`` ACK). A duplicate of a guaranteed message is acked at
once, unless the original is still waiting to be taken (or, without
``auto_ack``, waiting for the application's :meth:`Client.ack`): that ack will
cover both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl as ssl_module
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from longlink.client.backoff import Backoff
from longlink.client.dialer import Dialer, transport_order
from longlink.client.errors import (
    AuthError,
    ClientError,
    ConnectFailed,
    ConnectionClosed,
    ControlError,
    ServerError,
    decode_reply,
)
from longlink.client.inbox import Inbox
from longlink.client.messages import ClientEvent, Disconnected, Message, Reconnected
from longlink.client.tls import tls_context
from longlink.client.transport import Transport, TransportKind
from longlink.protocol import Codec, Op, ProtocolError
from longlink.protocol.client import (
    ClientSession,
    Lost,
    Opened,
    Output,
    Refused,
    Reply,
    ack_frames,
)
from longlink.protocol.messages import AuthOk, JoinOk

logger = logging.getLogger(__name__)

#: Events kept for an application that does not read them (oldest dropped first).
EVENT_QUEUE_SIZE = 1000


@dataclass(eq=False, slots=True)
class _Link:
    """One authenticated connection."""

    transport: Transport
    auth_ok: AuthOk
    opened_at: float
    pump: asyncio.Task[None] | None = None


class Client:
    """An end-user connection to longlink: pushes in, requests out, reconnects built in.

    Use it as an async context manager (``connect()`` on enter, ``close()`` on
    exit) and iterate over it for :class:`Message` values::

        async with Client("http://127.0.0.1:8080", user="u1", rooms=["lobby"]) as client:
            async for message in client:
                print(message.room, message.json())

    Give either ``ticket`` (a JWT from the business backend) or ``user`` (demo
    mode servers only; without ``device`` the one the server picks at the first
    connection is asked for again on reconnects). ``transports`` are tried in
    order, control's advice first (PROTOCOL.md §1.5): by default WebSocket,
    then the HTTP stream where WebSocket fails; ``transport`` names a single
    one (``"ws"``, ``"stream"`` or ``"tcp"``). ``rooms`` are joined at AUTH;
    :attr:`rooms` is the set re-sent on every reconnect, each with the last msg
    id received from it so the server sends what was missed (a
    :class:`~longlink.client.Recovery` event tells whether it could).
    ``heartbeat_s`` asks the server for an interval (it clamps it); with
    ``adaptive_heartbeat`` the interval grows while the connection stays
    healthy and falls back at once on a missed reply (PROTOCOL.md §1.6 rule
    2); with ``report`` a connection-quality REPORT goes after connecting and
    once a minute (§1.6 rule 1).

    Extensions beyond the contract: ``request_timeout_s`` bounds JOIN, LEAVE
    and UPSTREAM (then :class:`TimeoutError`); ``max_queue`` bounds received
    messages not yet taken (the reader then waits, pushing back on the
    server); ``http_client`` replaces the client's own ``httpx.AsyncClient``
    (it is not closed by :meth:`close`); ``ssl`` is used for ``https://``,
    ``wss://`` URLs and TCP endpoints marked ``tls`` (default: the platform's
    CAs), ``ca_file`` (PEM) builds such a context trusting that CA (a private
    or test CA); ``rng`` makes the reconnect jitter reproducible.
    """

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        device: str | None = None,
        ticket: str | None = None,
        transport: TransportKind | None = None,
        transports: Sequence[str] | None = None,
        rooms: Iterable[str] = (),
        codecs: Sequence[str] = (Codec.BROTLI.label, Codec.ZLIB.label),
        heartbeat_s: int | None = None,
        adaptive_heartbeat: bool = True,
        report: bool = True,
        region: str | None = None,
        auto_ack: bool = True,
        reconnect: bool = True,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
        dedup_size: int = 10_000,
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 10.0,
        max_queue: int = 10_000,
        http_client: httpx.AsyncClient | None = None,
        ssl: ssl_module.SSLContext | None = None,
        ca_file: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if ticket is None and user is None:
            raise ValueError("give a ticket, or a user for a server in demo mode")
        kinds = transport_order(transport, transports)
        if ca_file is not None:
            if ssl is not None:
                raise ValueError("give ssl or ca_file, not both")
            ssl = tls_context(ca_file)
        self.url = url
        #: The last AUTH_OK, ``None`` before the first connection.
        self.auth_ok: AuthOk | None = None
        self._session = ClientSession(
            rooms=rooms,
            codecs=codecs,
            heartbeat_s=heartbeat_s,
            dedup_size=dedup_size,
            auto_ack=auto_ack,
            adaptive_heartbeat=adaptive_heartbeat,
            report=report,
        )
        self._dialer = Dialer(
            url,
            kinds,
            http_client,
            ticket=ticket,
            user=user,
            device=device,
            region=region,
            timeout_s=connect_timeout_s,
            ssl=ssl,
        )
        self._owns_http = http_client is None
        self._reconnect = reconnect
        self._request_timeout_s = request_timeout_s
        self._backoff = Backoff(backoff_initial_s, backoff_max_s, rng)
        self._messages: Inbox[Message] = Inbox(max_queue)
        self._events: Inbox[ClientEvent] = Inbox(EVENT_QUEUE_SIZE, drop_oldest=True)
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._wakeup = asyncio.Event()  # ACKs were queued: the pump writes them
        self._link: _Link | None = None
        self._session_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connect_lock = asyncio.Lock()
        self._stopped: str | None = None  # why the client stopped for good
        self._closing = False
        self._closed = asyncio.Event()

    @property
    def rooms(self) -> set[str]:
        """Rooms sent in AUTH on every (re)connect; kept up to date by join/leave."""
        return self._session.rooms

    @property
    def online(self) -> dict[str, int]:
        """Online counts per room as last reported by HEARTBEAT_OK and JOIN_OK (a room
        left keeps its last count; only those two replies change this dict)."""
        return self._session.online

    @property
    def last_ids(self) -> dict[str, int]:
        """The last msg id received from each room (sent as ``since`` on reconnect)."""
        return self._session.last_ids

    # ------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Client:
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """Whether a connection is up and authenticated right now."""
        return self._link is not None

    async def connect(self) -> AuthOk:
        """Connect and authenticate; return AUTH_OK. Calling it again returns the last one.

        Endpoints from ``/v1/connect`` are tried in order. Raises
        :class:`AuthError` (credentials refused), :class:`ControlError`
        (``/v1/connect`` failed) or :class:`ConnectFailed` (no endpoint
        reachable); the first connection is not retried, later losses are.
        """
        self._check_open()
        async with self._connect_lock:
            self._check_open()
            if self._session_task is not None and self.auth_ok is not None:
                return self.auth_ok
            link, opened = await self._establish()
            if self._closing:  # close() was called meanwhile
                link.transport.abort()
                raise ConnectionClosed("client closed")
            await self._attach(link, opened)
            self._session_task = self._spawn(self._run(link), "longlink-client-session")
            return link.auth_ok

    async def close(self) -> None:
        """Close the connection and stop every task; idempotent, safe to call concurrently."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            await self._messages.close("client closed", discard=True)
            await self._events.close("client closed", discard=True)
            if self._session_task is not None:
                self._session_task.cancel()
                await asyncio.wait([self._session_task])
            link = self._link
            if link is not None:
                with contextlib.suppress(ClientError, TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._flush_acks(link.transport)
                await self._detach(link, "client closed")
            if self._tasks:  # pumps of connections torn down mid-way
                for task in self._tasks:
                    task.cancel()
                await asyncio.wait(self._tasks)
            if self._owns_http and self._dialer.http is not None:
                await self._dialer.http.aclose()
        finally:
            self._closed.set()

    # ------------------------------------------------------------ application API

    def __aiter__(self) -> Client:
        return self

    async def __anext__(self) -> Message:
        return await self.next_message()

    async def next_message(self, timeout: float | None = None) -> Message:  # noqa: ASYNC109
        """The next pushed message, deduplicated, in arrival order.

        With ``auto_ack`` a guaranteed message is acked as it is returned.
        Raises :class:`TimeoutError` after ``timeout`` seconds, and
        :class:`ConnectionClosed` once the client is closed or stopped (after
        the messages already received, unless :meth:`close` was called).
        """
        message = await self._messages.get(timeout)
        # No await after the get: a cancelled caller loses nothing.
        self._session.taken(message)
        if self._session.acks_queued:
            self._wakeup.set()
        return message

    async def next_event(self, timeout: float | None = None) -> ClientEvent:  # noqa: ASYNC109
        """The next :class:`ClientEvent` (EVENT, unanswered ERROR, KICK, recovery results,
        disconnects, reconnects).

        Only the last 1000 are kept for an application that does not read
        them. Raises like :meth:`next_message`.
        """
        return await self._events.get(timeout)

    async def join(self, room: str) -> int:
        """Join ``room`` and return its online count; the room is then re-joined on reconnect.

        Raises :class:`ServerError` (``room_limit``, ``not_allowed``, …),
        :class:`ConnectionClosed` when not connected (add the room to
        :attr:`rooms` to have it joined at the next AUTH), :class:`TimeoutError`.
        """
        reply = await self._request(lambda: self._session.join(room))
        ok = decode_reply(reply.body, JoinOk)
        self._session.joined(room)
        return ok.online

    async def leave(self, room: str) -> None:
        """Leave ``room``. It is dropped from :attr:`rooms` first, so even if this
        raises :class:`ConnectionClosed` a reconnect will not re-join it."""
        await self._request(lambda: self._session.leave(room))

    async def upstream(self, data: bytes) -> None:
        """Send ``data`` to the business backend and wait for the server's UPSTREAM_OK.

        Raises :class:`ServerError` (e.g. ``rate_limited``), :class:`ConnectionClosed`,
        :class:`TimeoutError`.
        """
        await self._request(lambda: self._session.request(Op.UPSTREAM, data))

    async def ack(self, msg_id: int | Sequence[int]) -> None:
        """Acknowledge guaranteed messages yourself (for ``auto_ack=False``).

        One id travels in the ACK header, several as ``{"msg_ids": [...]}``.
        While the connection is down the ids are kept and sent after the
        reconnect, so there is nothing to retry. Raises
        :class:`ConnectionClosed` only once the client is closed or stopped.
        """
        ids = [i for i in ([msg_id] if isinstance(msg_id, int) else msg_id) if i]
        if not ids:
            return
        if self._closing or self._stopped is not None:
            raise ConnectionClosed(self._stopped or "client closed")
        self._session.acked(ids)
        link = self._link
        if link is not None:
            try:
                for frame in ack_frames(ids):
                    await link.transport.send(frame)
                return
            except ConnectionClosed:
                pass
        self._session.queue_acks(ids)

    # ------------------------------------------------------------ connecting

    def _check_open(self) -> None:
        if self._closing:
            raise ConnectionClosed("client closed")
        if self._stopped is not None:
            raise ConnectionClosed(self._stopped)

    async def _establish(self) -> tuple[_Link, Output]:
        """A fresh grant, then the first endpoint that authenticates (see Dialer)."""
        transport, opened = await self._dialer.dial(self._session)
        auth_ok = next(item.auth_ok for item in opened if isinstance(item, Opened))
        return _Link(transport, auth_ok, asyncio.get_running_loop().time()), opened

    async def _attach(self, link: _Link, opened: Output) -> None:
        self._link = link
        self.auth_ok = link.auth_ok
        dialer = self._dialer
        if dialer.ticket is None and dialer.device is None:
            # Demo mode picks a device id when none is given; keep it across reconnects.
            dialer.device = link.auth_ok.device
        link.pump = self._spawn(self._pump(link), f"longlink-client-pump-{link.auth_ok.conn_id}")
        logger.info(
            "connected conn_id=%s node=%s heartbeat_s=%d",
            link.auth_ok.conn_id,
            link.auth_ok.node,
            link.auth_ok.heartbeat_s,
        )
        for item in opened:
            if isinstance(item, ClientEvent):  # e.g. recovery results of the AUTH
                await self._events.put(item)

    async def _detach(self, link: _Link, reason: str) -> None:
        """Tear one connection down: pump, transport, then requests in flight."""
        if self._link is link:
            self._link = None
        if link.pump is not None:
            link.pump.cancel()
            await asyncio.wait([link.pump])
        try:
            await link.transport.close()
        except BaseException:
            link.transport.abort()
            raise
        finally:
            for seq in self._session.lost():
                future = self._pending.get(seq)
                if future is not None and not future.done():
                    future.set_exception(ConnectionClosed(reason))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------ session task

    async def _run(self, link: _Link) -> None:
        """The session task: run the connections one after the other; never dies silently."""
        try:
            await self._serve(link)
        except Exception as exc:  # a bug: stop loudly rather than leave the app waiting
            logger.exception("client session failed")
            if self._link is not None:
                await self._detach(self._link, f"internal error: {exc!r}")
            await self._stop(f"internal error: {exc!r}")

    async def _serve(self, link: _Link) -> None:
        """Read until the connection ends, then reconnect or stop; repeat."""
        loop = asyncio.get_running_loop()
        while True:
            loss = await self._read(link)
            logger.info("disconnected conn_id=%s: %s", link.auth_ok.conn_id, loss.reason)
            await self._detach(link, loss.reason)
            if loop.time() - link.opened_at >= self._backoff.maximum:
                self._backoff.reset()  # that one held: start the delays over
            if not (loss.reconnect and self._reconnect):
                await self._stop(loss.reason)
                return
            await self._events.put(Disconnected(loss.reason, will_reconnect=True))
            new_link = await self._reconnect_loop()
            if new_link is None:
                return
            link = new_link

    async def _read(self, link: _Link) -> Lost:
        loop = asyncio.get_running_loop()
        session = self._session
        while True:
            try:
                frame = await link.transport.recv()
            except ConnectionClosed:
                return session.closed_by_server()
            except ProtocolError as exc:
                return Lost(f"bad frame from the server: {exc}", reconnect=True)
            try:
                out = session.receive(frame, loop.time())
            except ProtocolError as exc:
                # One bad body does not break the stream; a guaranteed message is resent.
                logger.warning("dropped a bad %s frame: %s", _op_name(frame.op), exc)
                continue
            for item in out:
                if isinstance(item, Message):
                    await self._messages.put(item)
                elif isinstance(item, Reply | Refused):
                    self._answer(item)
                elif isinstance(item, Lost):
                    return item
                elif isinstance(item, ClientEvent):
                    await self._events.put(item)

    def _answer(self, item: Reply | Refused) -> None:
        future = self._pending.get(item.seq)
        if future is None or future.done():
            return
        if isinstance(item, Reply):
            future.set_result(item)
        else:
            future.set_exception(ServerError(item.code, item.message))

    async def _pump(self, link: _Link) -> None:
        """Queued ACKs and the session's clock (heartbeats, liveness) for ``link``."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._wakeup.clear()
                await self._flush_acks(link.transport)
                out, wake = self._session.poll(loop.time())
                for item in out:
                    if isinstance(item, Lost):
                        logger.warning(
                            "conn_id=%s %s: dropping it", link.auth_ok.conn_id, item.reason
                        )
                        link.transport.abort()  # the session task sees the loss and reconnects
                        return
                    await link.transport.send(item)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(None if math.isinf(wake) else wake):
                        await self._wakeup.wait()
        except ConnectionClosed:
            return  # the session task sees the loss and handles it

    async def _flush_acks(self, transport: Transport) -> None:
        """Write every queued ACK; ids not written stay queued, first in line."""
        session = self._session
        while session.acks_queued:
            ids = session.take_acks()
            try:
                for frame in ack_frames(ids):
                    await transport.send(frame)
            except BaseException:
                session.requeue_acks(ids)
                raise

    async def _reconnect_loop(self) -> _Link | None:
        """Try until connected (returns the link) or refused for good (stops, returns None)."""
        attempts = 0
        not_before = 0.0
        while True:
            attempts += 1
            await asyncio.sleep(max(self._backoff.next_delay(), not_before))
            not_before = 0.0
            try:
                link, opened = await self._establish()
            except AuthError as exc:
                await self._stop(f"authentication refused: {exc}")
                return None
            except ControlError as exc:
                if not exc.retryable:
                    await self._stop(f"/v1/connect refused: {exc}")
                    return None
                not_before = exc.retry_after or 0.0
                logger.warning("reconnect attempt %d: %s", attempts, exc)
                continue
            except ConnectFailed as exc:
                logger.warning("reconnect attempt %d: %s", attempts, exc)
                continue
            await self._events.put(Reconnected(link.auth_ok, attempts))
            await self._attach(link, opened)
            return link

    async def _stop(self, reason: str) -> None:
        """Stop for good: the application drains what was received, then gets ConnectionClosed."""
        self._stopped = reason
        await self._events.put(Disconnected(reason, will_reconnect=False))
        await self._messages.close(reason, discard=False)
        await self._events.close(reason, discard=False)

    # ------------------------------------------------------------ requests

    async def _request(self, make: Any) -> Reply:
        """Send the request ``make()`` builds (seq, frame); its reply carries the same seq."""
        self._check_open()
        link = self._link
        if link is None:
            raise ConnectionClosed("not connected (reconnecting)")
        seq, frame = make()
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[seq] = future
        try:
            await link.transport.send(frame)
            async with asyncio.timeout(self._request_timeout_s):
                return await future
        finally:
            del self._pending[seq]
            self._session.forget(seq)
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # mark an unawaited failure as seen


def _op_name(op: int) -> str:
    try:
        return Op(op).name
    except ValueError:
        return f"op {op}"
