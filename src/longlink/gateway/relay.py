"""Forwarding ``POST /v1/stream/{conn_id}`` to the gateway process that owns the session.

Several gateway processes may share the WebSocket port on one machine
(``LONGLINK_REUSE_PORT``, SO_REUSEPORT): the kernel spreads *connections*
over them, so a client's stream lives on one process and its next POST may
land on another. PROTOCOL.md §1.5 asks that POST be answered 204 all the
same, so the process that receives it forwards it to the owner.

Choices (docs/protocol.md, "HTTP stream"):

* **Who owns a session** is written in its id: every conn_id starts with
  its process's prefix (``{node}-{pid}{start}``, gateway/sessions.py), so
  the receiving process knows the owner from the URL alone, with no lookup.
* **How**: processes sharing a port share a machine, so the relay is a unix
  socket per process, ``{relay_dir}/{digest of the prefix}.sock`` (the
  directory is ``LONGLINK_STREAM_RELAY_DIR``, by default one per user under
  the system's temporary directory, mode 0700). A loopback hop costs tens
  of microseconds and needs neither Redis nor the node channel (whose
  queues are for pushes, not for a client's request/answer round trip).
* **What travels**: the conn_id, the bearer token and the body; the owner
  answers with the status its own :class:`~longlink.gateway.stream.StreamInbox`
  gives (204 after a held answer too, so back-pressure crosses the hop),
  and that is the POST's answer. An owner that is gone (its socket refuses
  or is missing) means the session is gone: 404, the client reconnects.

Wire, one request after the other on a connection, big-endian::

    request:  u16 len(conn_id) | u16 len(token) | u32 len(body) | conn_id | token | body
    answer:   u16 status

The relay listens when the port is shared (``reuse_port``) or a relay
directory is named (``stream_relay_dir``: gateways of one machine behind a
proxy that spreads connections over their ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import struct
import tempfile
from pathlib import Path

from longlink.gateway.stream import StreamInbox

log = logging.getLogger("longlink.gateway")

_REQUEST = struct.Struct(">HHI")
_ANSWER = struct.Struct(">H")
#: Longest conn_id and token relayed (an id is at most a few dozen bytes, a token ~300).
MAX_ID = 1024
MAX_TOKEN = 8192
#: Seconds a forwarded POST may take (the owner holds its answer while the client is
#: behind; past this the POST is answered 503 and the client's SDK reconnects).
FORWARD_TIMEOUT_S = 30.0


def default_dir() -> Path:
    """``{tmp}/longlink-relay-{uid}``: one per user, shared by that user's gateways."""
    return Path(tempfile.gettempdir()) / f"longlink-relay-{os.getuid()}"


def socket_path(directory: Path, owner: str) -> Path:
    """Where the process with conn_id prefix ``owner`` listens (short enough for
    ``sun_path`` whatever the node id)."""
    digest = hashlib.blake2b(owner.encode(), digest_size=12).hexdigest()
    return directory / f"{digest}.sock"


class Relay:
    """This process's relay socket and the forwarding of POSTs to the others."""

    def __init__(self, inbox: StreamInbox, directory: Path, owner: str, max_body: int) -> None:
        self.inbox = inbox
        self.directory = directory
        self.owner = owner
        self.max_body = max_body
        self.path = socket_path(directory, owner)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on this process's socket."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, str(self.path))
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        """Stop listening and remove the socket; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 1.0)

    # ------------------------------------------------------------------ owner side

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readexactly(_REQUEST.size)
                except asyncio.IncompleteReadError:
                    return
                id_len, token_len, body_len = _REQUEST.unpack(head)
                if id_len > MAX_ID or token_len > MAX_TOKEN or body_len > self.max_body:
                    return
                data = await reader.readexactly(id_len + token_len + body_len)
                conn_id = data[:id_len].decode("utf-8", "replace")
                token = data[id_len : id_len + token_len].decode("utf-8", "replace")
                status = self.inbox.deliver(conn_id, token, data[id_len + token_len :])
                if not isinstance(status, int):
                    status = await status
                writer.write(_ANSWER.pack(status))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    # ------------------------------------------------------------------ forwarding side

    async def forward(self, owner: str, conn_id: str, token: str, body: bytes) -> int:
        """Hand a POST to the process ``owner``; the status it answered (404: it is gone)."""
        raw_id, raw_token = conn_id.encode(), token.encode()
        if len(raw_id) > MAX_ID or len(raw_token) > MAX_TOKEN:
            return 404
        try:
            async with asyncio.timeout(FORWARD_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(
                    str(socket_path(self.directory, owner))
                )
                try:
                    writer.write(
                        _REQUEST.pack(len(raw_id), len(raw_token), len(body))
                        + raw_id
                        + raw_token
                        + body
                    )
                    (status,) = _ANSWER.unpack(await reader.readexactly(_ANSWER.size))
                    return int(status)
                finally:
                    writer.close()
        except (FileNotFoundError, ConnectionRefusedError):
            return 404  # the owner is gone: so is the session
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.warning("stream POST for %s: relay to %s failed: %r", conn_id, owner, exc)
            return 503
