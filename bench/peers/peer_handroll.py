"""The hand-rolled fan-out, the Python ceiling: a bare uvloop WebSocket server that
frames each message once and ``transport.write``s the same bytes to every subscriber.

A peer of ``make bench`` (bench/run.py): subscribers connect to ``/sub``, the publisher
to ``/pub``; every binary message of the publisher goes to every subscriber. Prints
``ready port=P``; runs until killed. Nothing but the standard library and uvloop.

    python bench/peers/peer_handroll.py [PORT]
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys
from typing import cast

import uvloop

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 8192
subscribers: dict[asyncio.Transport, None] = {}  # in join order


def frame(payload: bytes, opcode: int = 2) -> bytes:
    """An unmasked server frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class Conn(asyncio.Protocol):
    __slots__ = ("buffer", "publisher", "transport", "upgraded")

    def __init__(self) -> None:
        self.buffer = b""
        self.upgraded = False
        self.publisher = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self.transport.close()
                return
            head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
            key = ""
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "sec-websocket-key":
                    key = value.strip()
            accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
            )
            self.upgraded = True
            self.publisher = head.startswith("GET /pub")
            if not self.publisher:
                subscribers[self.transport] = None
        if self.publisher:
            self.relay()
        else:
            self.buffer = b""  # subscribers send nothing the benchmark needs

    def relay(self) -> None:
        """Each whole message of the publisher: framed once, written to every subscriber."""
        buffer = self.buffer
        while len(buffer) >= 2:
            opcode, n = buffer[0] & 0x0F, buffer[1] & 0x7F
            at = 2
            if n == 126:
                n, at = int.from_bytes(buffer[2:4], "big"), 4
            elif n == 127:
                n, at = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < at + 4 + n:
                break
            payload = unmask(buffer[at + 4 : at + 4 + n], buffer[at : at + 4])
            buffer = buffer[at + 4 + n :]
            if opcode == 8:
                self.transport.close()
                return
            if opcode in (1, 2):
                data = frame(payload, opcode)
                for transport in subscribers:
                    transport.write(data)
        self.buffer = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        subscribers.pop(self.transport, None)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Conn, "127.0.0.1", port, backlog=4096)
    print(f"ready port={server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
