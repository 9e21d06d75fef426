"""Getting an authenticated connection: ``/v1/connect``, endpoints in order, AUTH → AUTH_OK.

:meth:`Dialer.dial` is used for the first connection and for every reconnect
alike, so each connection has a fresh token (PROTOCOL.md §2.1) and is made to
a node that is listed right now. It raises:

* :class:`AuthError` when the server refuses the credentials (ERROR at AUTH,
  or ``/v1/connect`` 401/403). An expired token gets one fresh grant first.
* :class:`ControlError` when ``/v1/connect`` fails otherwise.
* :class:`ConnectFailed` when no listed endpoint could be opened and
  authenticated (unreachable, timed out, ``server_busy``, closed at AUTH).
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from dataclasses import dataclass, field

import httpx
import msgspec

from longlink.client.control import Grant, connect_request, fetch_grant
from longlink.client.errors import AuthError, ConnectFailed, ConnectionClosed
from longlink.client.messages import error_of, kick_reason
from longlink.client.transport import Transport, TransportKind, open_transport
from longlink.protocol import ErrorCode, Op, ProtocolError, encode_frame
from longlink.protocol.messages import AuthOk, decode_body


@dataclass(slots=True)
class Dialer:
    """What a client needs to open a connection; ``device`` may be filled in later.

    Without ``http`` an ``httpx.AsyncClient`` is made on first use; whoever
    made the dialer closes it (``Client.close`` does).
    """

    url: str
    kind: TransportKind
    http: httpx.AsyncClient | None = None
    ticket: str | None = None
    user: str | None = None
    device: str | None = None
    region: str | None = None
    codecs: list[str] = field(default_factory=lambda: ["br", "zlib"])
    heartbeat_s: int | None = None
    timeout_s: float = 10.0
    ssl: ssl_module.SSLContext | None = None

    async def dial(self, rooms: list[str]) -> tuple[Transport, AuthOk]:
        """An open transport on which AUTH (with ``rooms``) got AUTH_OK."""
        try:
            return await self._try_endpoints(await self._grant(), rooms)
        except AuthError as exc:
            if exc.code != ErrorCode.TOKEN_EXPIRED:
                raise
        # PROTOCOL §1.3 rule 2: the token expired on the way; one fresh grant.
        return await self._try_endpoints(await self._grant(), rooms)

    async def _grant(self) -> Grant:
        body = connect_request(
            ticket=self.ticket,
            user=self.user,
            device=self.device,
            region=self.region,
            transport=self.kind,
        )
        if self.http is None:
            self.http = httpx.AsyncClient(timeout=self.timeout_s)
        return await fetch_grant(self.http, self.url, body, timeout_s=self.timeout_s)

    async def _try_endpoints(self, grant: Grant, rooms: list[str]) -> tuple[Transport, AuthOk]:
        failures: list[str] = []
        for endpoint in grant.endpoints:  # best first (§2.1)
            address = endpoint.address(self.kind)
            if not address:
                continue
            try:
                transport = await open_transport(
                    self.kind, address, ssl=self.ssl, timeout_s=self.timeout_s
                )
            except ConnectFailed as exc:
                failures.append(str(exc))
                continue
            try:
                auth_ok = await self._handshake(transport, grant.token, rooms)
            except AuthError as exc:
                await transport.close()
                if exc.code != ErrorCode.SERVER_BUSY:
                    raise
                failures.append(f"{endpoint.node}: server_busy")
                continue
            except (ConnectionClosed, ProtocolError, TimeoutError) as exc:
                transport.abort()
                failures.append(f"{endpoint.node}: {exc!r}")
                continue
            except BaseException:
                transport.abort()
                raise
            return transport, auth_ok
        detail = "; ".join(failures) or f"no endpoint serves {self.kind}"
        raise ConnectFailed(f"no endpoint could be reached ({detail})")

    async def _handshake(self, transport: Transport, token: str, rooms: list[str]) -> AuthOk:
        """Send AUTH and wait for AUTH_OK (PROTOCOL §1.3 rules 1-2)."""
        auth: dict[str, object] = {"token": token, "rooms": rooms, "codecs": self.codecs}
        if self.heartbeat_s is not None:
            auth["heartbeat_s"] = self.heartbeat_s
        await transport.send(encode_frame(Op.AUTH, msgspec.json.encode(auth)))
        async with asyncio.timeout(self.timeout_s):
            while True:
                frame = await transport.recv()
                if frame.op == Op.AUTH_OK:
                    return decode_body(frame.body, AuthOk)
                if frame.op == Op.ERROR:
                    error = error_of(frame.body)
                    raise AuthError(error.code, error.message)
                if frame.op == Op.KICK:
                    raise ConnectionClosed(f"kicked during AUTH: {kick_reason(frame.body)}")
                # Nothing else may precede AUTH_OK (§1.3 rule 1): skip it.
