"""Getting an authenticated connection: ``/v1/connect``, endpoints in order, AUTH → AUTH_OK.

:meth:`Dialer.dial` is used for the first connection and for every reconnect
alike, so each connection has a fresh token (PROTOCOL.md §2.1) and is made to
a node that is listed right now. It raises:

* :class:`AuthError` when the server refuses the credentials (ERROR at AUTH,
  or ``/v1/connect`` 401/403). An expired token gets one fresh grant first.
* :class:`ControlError` when ``/v1/connect`` fails otherwise.
* :class:`ConnectFailed` when no listed endpoint could be opened and
  authenticated (unreachable, timed out, ``server_busy``, closed at AUTH).

Transports (PROTOCOL.md §1.5): the client's ``transports`` are tried in
control's order of advice (``/v1/connect`` answers ``transports`` best
first), each on every endpoint before the next transport. A transport that
could not carry an AUTH_OK on any endpoint is *failed*: the dialer reports
it in every later ``/v1/connect`` (``"failed": ["ws"]``), so control can put
the HTTP stream first, until it works again.

Every attempt also names in the session's next REPORT (``failed``, PROTOCOL.md
§1.6 rule 1) each transport that failed on any endpoint (could not be opened,
or closed before AUTH_OK; ``server_busy`` is the node's, not the transport's),
even when a later endpoint then worked over it: once per attempt, at most 64.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from longlink.client.control import Endpoint, Grant, connect_request, fetch_grant
from longlink.client.errors import AuthError, ConnectFailed, ConnectionClosed
from longlink.client.tls import tls_context
from longlink.client.transport import TRANSPORT_KINDS, Transport, TransportKind, open_transport
from longlink.protocol import ErrorCode, ProtocolError
from longlink.protocol.client import AuthRefused, ClientSession, Lost, Opened, Output


@dataclass(slots=True)
class Dialer:
    """What a client needs to open a connection; ``device`` may be filled in later.

    Without ``http`` an ``httpx.AsyncClient`` is made on first use; whoever
    made the dialer closes it (``Client.close`` does).
    """

    url: str
    kinds: tuple[TransportKind, ...]
    http: httpx.AsyncClient | None = None
    ticket: str | None = None
    user: str | None = None
    device: str | None = None
    region: str | None = None
    timeout_s: float = 10.0
    ssl: ssl_module.SSLContext | None = None
    #: Transports that failed and have not worked since (reported to control).
    failed: list[str] = field(default_factory=list)
    #: The transport of the last connection made.
    kind: TransportKind = "ws"

    async def dial(self, session: ClientSession) -> tuple[Transport, Output]:
        """An open transport on which the session's AUTH got AUTH_OK.

        Returns the transport and what the session made of the AUTH_OK
        (:class:`Opened` first, then e.g. recovery results).
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            grant = await self._grant()
            return await self._try_endpoints(grant, session, started, loop.time() - started)
        except AuthError as exc:
            if exc.code != ErrorCode.TOKEN_EXPIRED:
                raise
        # PROTOCOL §1.3 rule 2: the token expired on the way; one fresh grant.
        started = loop.time()
        grant = await self._grant()
        return await self._try_endpoints(grant, session, started, loop.time() - started)

    async def _grant(self) -> Grant:
        body = connect_request(
            ticket=self.ticket,
            user=self.user,
            device=self.device,
            region=self.region,
            transports=list(self.kinds),
            failed=self.failed,
        )
        if self.http is None:
            verify = self.ssl if self.ssl is not None else tls_context()
            self.http = httpx.AsyncClient(timeout=self.timeout_s, verify=verify)
        return await fetch_grant(self.http, self.url, body, timeout_s=self.timeout_s)

    def order(self, grant: Grant) -> list[TransportKind]:
        """The client's transports in control's order of advice, the rest after them."""
        advised = [k for k in (grant.transports or []) if k in self.kinds]
        return [*advised, *(k for k in self.kinds if k not in advised)]

    async def _try_endpoints(
        self, grant: Grant, session: ClientSession, started: float, control_s: float
    ) -> tuple[Transport, Output]:
        """``started``: when this attempt began; ``control_s``: what the grant took (REPORT)."""
        failures: list[str] = []
        for kind in self.order(grant):
            busy = sum(1 for f in failures if f.endswith(": server_busy"))
            tried = len(failures) - busy
            found = await self._try_kind(kind, grant, session, started, control_s, failures)
            busy = sum(1 for f in failures if f.endswith(": server_busy"))
            # It failed on an endpoint (a busy node is not the transport's fault): the next
            # REPORT names it, once for this attempt (§1.6 rule 1).
            broken = len(failures) - busy > tried
            if broken:
                session.transport_failed(kind)
            if found is not None:
                if kind in self.failed:
                    self.failed.remove(kind)
                self.kind = kind
                return found
            if broken and kind not in self.failed:
                # It failed on the endpoints that offer it: reported to /v1/connect until it
                # works again.
                self.failed.append(kind)
        detail = "; ".join(failures) or f"no endpoint serves {', '.join(self.kinds)}"
        raise ConnectFailed(f"no endpoint could be reached ({detail})")

    async def _try_kind(
        self,
        kind: TransportKind,
        grant: Grant,
        session: ClientSession,
        started: float,
        control_s: float,
        failures: list[str],
    ) -> tuple[Transport, Output] | None:
        loop = asyncio.get_running_loop()
        for endpoint in grant.endpoints:  # best first (§2.1)
            address = endpoint.address(kind)
            if not address:
                continue
            opening = loop.time()
            try:
                transport = await open_transport(
                    kind,
                    address,
                    ssl=self._ssl_for(endpoint, kind),
                    timeout_s=self.timeout_s,
                    http=self.http,
                )
            except ConnectFailed as exc:
                failures.append(str(exc))
                continue
            steps = {
                "control": round(control_s * 1000),
                "transport": round((loop.time() - opening) * 1000),
            }
            try:
                opened = await self._handshake(
                    kind, transport, grant.token, session, started, steps
                )
            except AuthError as exc:
                await transport.close()
                if exc.code != ErrorCode.SERVER_BUSY:
                    raise
                failures.append(f"{endpoint.node}: server_busy")
                continue
            except (ConnectionClosed, ProtocolError, TimeoutError) as exc:
                transport.abort()
                await transport.close()
                failures.append(f"{endpoint.node} ({kind}): {exc!r}")
                continue
            except BaseException:
                transport.abort()
                raise
            return transport, opened
        return None

    def _ssl_for(self, endpoint: Endpoint, kind: TransportKind) -> ssl_module.SSLContext | None:
        """TLS for ``wss://`` URLs and for a TCP port the endpoint marks ``tls``."""
        if kind == "tcp" and not endpoint.tls:
            return None
        if self.ssl is None:
            self.ssl = tls_context()  # the platform's CAs, shared
        return self.ssl

    async def _handshake(
        self,
        kind: TransportKind,
        transport: Transport,
        token: str,
        session: ClientSession,
        started: float,
        steps: dict[str, int],
    ) -> Output:
        """Send AUTH and wait for AUTH_OK (PROTOCOL §1.3 rules 1-2)."""
        loop = asyncio.get_running_loop()
        auth = session.connect(token, loop.time(), transport=kind, started=started, steps=steps)
        await transport.send(auth)
        async with asyncio.timeout(self.timeout_s):
            while True:
                out = session.receive(await transport.recv(), loop.time())
                for item in out:
                    if isinstance(item, Opened):
                        return out
                    if isinstance(item, AuthRefused):
                        raise AuthError(item.code, item.message)
                    if isinstance(item, Lost):
                        raise ConnectionClosed(f"{item.reason} during AUTH")
                # Nothing else may precede AUTH_OK (§1.3 rule 1): skip it.


def transport_order(
    transport: TransportKind | None, transports: Sequence[str] | None
) -> tuple[TransportKind, ...]:
    """The transports to try, in order, from the client's ``transport`` and ``transports``
    options (neither: WebSocket, then the HTTP stream); raises ``ValueError``."""
    if transport is not None and transports is not None:
        raise ValueError("give transport or transports, not both")
    names = [transport] if transport is not None else list(transports or ("ws", "stream"))
    kinds = tuple(k for k in TRANSPORT_KINDS for name in names if name == k)
    unknown = [name for name in names if name not in TRANSPORT_KINDS]
    if unknown or not names:
        raise ValueError(f"transports must be among {TRANSPORT_KINDS}, not {names!r}")
    order = {name: index for index, name in enumerate(names)}
    return tuple(sorted(dict.fromkeys(kinds), key=order.__getitem__))
