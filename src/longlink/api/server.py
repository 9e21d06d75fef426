"""Serve an ASGI app with uvicorn on the running event loop.

:class:`HttpServer` binds its own socket (so port 0 picks a free port, read
back from :attr:`HttpServer.port`), never touches signals or the event loop
policy (the CLI owns both), and shuts down gracefully on exit::

    async with HttpServer(build_app(services), host="127.0.0.1", port=0) as server:
        print(server.port)
        ...

Shutdown order (uvicorn's): stop accepting, close idle keep-alive
connections, let requests in flight finish for up to ``graceful_timeout_s``,
then cancel what is left.

Connections go through :class:`~longlink.api.guard.GuardedHttpProtocol`
(header, body and connection limits uvicorn lacks; ``limits``). With
``ssl`` the listener speaks HTTPS; the context object is used as given, so
loading a new certificate into it (SIGHUP) serves new connections with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl as ssl_module
from collections.abc import Generator
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from longlink.api.guard import HttpLimits, guarded_protocol

__all__ = ["HttpServer"]

logger = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    """uvicorn without signal handlers, telling us when it accepts."""

    def __init__(self, config: uvicorn.Config, started: asyncio.Event) -> None:
        super().__init__(config)
        self._started_event = started

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Signals belong to the CLI (STYLE.md: the cli package is the only place that reads them).
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._started_event.set()


class HttpServer:
    """An HTTP listener for ``app`` on ``host:port``; an async context manager.

    ``port=0`` binds a free port; :attr:`port` tells which once started.
    :meth:`close` is idempotent and waits for the shutdown to finish.
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        backlog: int = 2048,
        graceful_timeout_s: int = 5,
        limits: HttpLimits | None = None,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self._app = app
        self._host = host
        self._requested_port = port
        self._backlog = backlog
        self._graceful_timeout_s = graceful_timeout_s
        self._limits = limits or HttpLimits()
        self._ssl = ssl
        self._sock: socket.socket | None = None
        self._port: int | None = None
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    @property
    def host(self) -> str:
        """The address the listener binds."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port; raises RuntimeError before :meth:`start`."""
        if self._port is None:
            raise RuntimeError("HttpServer is not started")
        return self._port

    async def _bind(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self._host or None,
            self._requested_port,
            type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE,
        )
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(self._backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def start(self) -> None:
        """Bind and serve; returns once uvicorn accepts connections."""
        if self._task is not None or self._closing is not None:
            raise RuntimeError("HttpServer can be started once")
        try:
            self._sock = sock = await self._bind()
            self._port = int(sock.getsockname()[1])
            limits = self._limits
            config = uvicorn.Config(
                self._app,
                http=guarded_protocol(limits),
                timeout_keep_alive=limits.keepalive_s,  # type: ignore[arg-type]
                host=self._host,
                port=self._port,
                loop="none",  # serve on the running loop; the caller installed uvloop
                lifespan="off",
                log_config=None,  # leave the process's logging configuration alone
                log_level="warning",
                access_log=False,
                ws="none",
                proxy_headers=False,
                server_header=False,
                backlog=self._backlog,
                timeout_graceful_shutdown=self._graceful_timeout_s,
            )
            config.load()
            config.ssl = self._ssl  # uvicorn builds one from files only: ours is reloadable
            started = asyncio.Event()
            self._server = _Uvicorn(config, started)
            self._task = asyncio.create_task(
                self._server.serve(sockets=[sock]), name=f"http-server:{self._port}"
            )
            waiter = asyncio.create_task(started.wait())
            try:
                await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if not started.is_set():
                error = self._task.exception() if not self._task.cancelled() else None
                raise RuntimeError(f"HTTP server on port {self._port} did not start") from error
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop accepting, finish requests in flight, release the socket; idempotent."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._shutdown())
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:
                logger.exception("HTTP server on port %s failed", self._port)
        if self._sock is not None:
            self._sock.close()

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
