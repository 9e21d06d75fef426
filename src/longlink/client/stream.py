"""The HTTP stream transport of the SDK (PROTOCOL.md §1.5), over ``httpx``.

For networks that break WebSocket: the first :meth:`StreamTransport.send`
(the AUTH frame) is the body of ``POST {url}``, whose chunked answer carries
the server's frames back to back for as long as the session lives; every
later ``send`` is a ``POST {url}/{conn_id}`` with ``Authorization: Bearer``
the AUTH's token, answered 204. The conn_id is read from the AUTH_OK that
comes first on the stream, the token from the AUTH frame sent first.

A reader task moves the response into a bounded queue of frames (cancelling
:meth:`~StreamTransport.recv` loses nothing; a full queue stops the reading,
so the server sees a slow reader as on any transport). POSTs go one at a
time, in order. Every way the stream can end surfaces as
:class:`~longlink.client.errors.ConnectionClosed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from urllib.parse import quote

import httpx

from longlink.client.errors import ConnectionClosed
from longlink.client.messages import MAX_SERVER_FRAME
from longlink.client.tls import tls_context
from longlink.protocol import Frame, FrameDecoder, Op, ProtocolError
from longlink.protocol.messages import Auth, AuthOk, decode_body

#: Frames read ahead of the application at most (then the response is not read).
QUEUE_FRAMES = 1024
_END = None


class StreamTransport:
    """One session over the HTTP stream; see the module docstring."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient | None = None,
        *,
        ssl: ssl_module.SSLContext | None = None,
        timeout_s: float = 10.0,
        max_frame: int = MAX_SERVER_FRAME,
    ) -> None:
        self.url = url.rstrip("/")
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(verify=ssl if ssl is not None else tls_context())
        self._timeout_s = timeout_s
        self._max_frame = max_frame
        self._frames: asyncio.Queue[Frame | ProtocolError | None] = asyncio.Queue(QUEUE_FRAMES)
        self._reader: asyncio.Task[None] | None = None
        self._response: httpx.Response | None = None
        self._lock = asyncio.Lock()  # one POST at a time, in order
        self._token = ""
        self._conn_id = ""
        self._opened = asyncio.Event()  # AUTH_OK arrived, or the stream ended
        self._ended = ""  # why the stream is over ("" while it lives)

    @property
    def conn_id(self) -> str:
        """The session's id, once AUTH_OK arrived (``""`` before)."""
        return self._conn_id

    async def send(self, data: bytes) -> None:
        """Open the stream with ``data`` (AUTH first), or POST ``data`` to the session."""
        async with self._lock:
            if self._ended:
                raise ConnectionClosed(self._ended)
            if self._reader is None:
                await self._open(data)
                return
            await self._opened.wait()
            if self._ended or not self._conn_id:
                raise ConnectionClosed(self._ended or "the stream ended before AUTH_OK")
            await self._post(data)

    async def _open(self, data: bytes) -> None:
        try:
            frames = FrameDecoder(len(data) or 1).feed(data)
        except ProtocolError:
            frames = []
        first = frames[0] if frames else None
        if first is not None and first.op == Op.AUTH:
            with contextlib.suppress(ProtocolError):
                self._token = decode_body(first.body, Auth).token
        timeout = httpx.Timeout(self._timeout_s, read=None)
        request = self._http.build_request(
            "POST",
            self.url,
            content=data,
            headers={"content-type": "application/octet-stream"},
            timeout=timeout,
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            self._end(f"cannot open the stream: {exc!r}")
            raise ConnectionClosed(self._ended) from exc
        if response.status_code != 200:
            await response.aclose()
            self._end(f"the stream was refused: HTTP {response.status_code}")
            raise ConnectionClosed(self._ended)
        self._response = response
        self._reader = asyncio.create_task(self._read(response), name="longlink-stream-reader")

    async def _post(self, data: bytes) -> None:
        url = f"{self.url}/{quote(self._conn_id, safe='')}"
        try:
            response = await self._http.post(
                url,
                content=data,
                headers={
                    "authorization": f"Bearer {self._token}",
                    "content-type": "application/octet-stream",
                },
                timeout=self._timeout_s * 3,
            )
        except httpx.HTTPError as exc:
            self.abort()
            raise ConnectionClosed(f"POST failed: {exc!r}") from exc
        if response.status_code != 204:
            self.abort()
            raise ConnectionClosed(f"POST answered HTTP {response.status_code}")

    async def _read(self, response: httpx.Response) -> None:
        decoder = FrameDecoder(self._max_frame)
        reason = "connection closed by the server"
        try:
            async for data in response.aiter_raw():
                for frame in decoder.feed(data):
                    if not self._conn_id and frame.op == Op.AUTH_OK:
                        with contextlib.suppress(ProtocolError):
                            self._conn_id = decode_body(frame.body, AuthOk).conn_id
                        self._opened.set()
                    await self._frames.put(frame)
        except ProtocolError as exc:
            await self._frames.put(exc)
            reason = f"bad frame: {exc}"
        except (httpx.HTTPError, OSError) as exc:
            reason = f"connection lost: {exc!r}"
        finally:
            self._end(reason)
            with contextlib.suppress(Exception):
                await response.aclose()
            # The end after every frame; never blocks (a full queue gets it when drained).
            with contextlib.suppress(asyncio.QueueFull):
                self._frames.put_nowait(_END)

    def _end(self, reason: str) -> None:
        if not self._ended:
            self._ended = reason
        self._opened.set()

    async def recv(self) -> Frame:
        """The next frame of the stream; :class:`ConnectionClosed` once it ended."""
        if self._reader is None:
            raise ConnectionClosed(self._ended or "the stream is not open (send AUTH first)")
        if self._ended and self._frames.empty():
            raise ConnectionClosed(self._ended)
        item = await self._frames.get()
        if item is _END:
            self._frames.put_nowait(_END)  # every later recv ends too
            raise ConnectionClosed(self._ended or "connection closed")
        if isinstance(item, ProtocolError):
            raise item
        return item

    async def close(self) -> None:
        """End the stream (the server sees the connection close) and free the HTTP client."""
        self._end("closed by the client")
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        self._reader = reader  # recv keeps answering ConnectionClosed
        response, self._response = self._response, None
        if response is not None:
            with contextlib.suppress(Exception):
                await response.aclose()
        with contextlib.suppress(asyncio.QueueFull):
            self._frames.put_nowait(_END)
        if self._owns_http:
            self._owns_http = False
            await self._http.aclose()

    def abort(self) -> None:
        """End at once: the reader stops, ``recv`` then raises."""
        self._end("aborted")
        if self._reader is not None:
            self._reader.cancel()
        with contextlib.suppress(asyncio.QueueFull):
            self._frames.put_nowait(_END)
