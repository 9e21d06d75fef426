"""Hostile clients against a real ``longlink serve`` (issue 14, failures 1, 4 and 8).

Each attacker is a raw socket on 127.0.0.1 with a 4 KiB receive buffer that
authenticates, then sends one kind of frame in a loop and never reads (the
issue's recipe: RSS 54 → 437 MB in 15 s before the fix). Bounded: at most
``FRAMES`` frames or ``ATTACK_S`` seconds each. Throughout, a well-behaved
SDK client on the same server receives a push every 100 ms; afterwards the
server's RSS (``/proc/PID/status``) must have stayed within ``RSS_BUDGET``
of where it started, and each attacker must have been closed (or, where the
server stopped reading from it, be held by TCP's own flow control).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from longlink.client import Client
from longlink.protocol import FrameDecoder, Op, encode_frame
from longlink.protocol import websocket as wsp
from tests.conftest import API_KEY, WAIT
from tests.e2e.test_cli import start_server

FRAMES = 100_000
ATTACK_S = 8.0
RSS_BUDGET = 48 << 20
MAX_RSS_SEEN: dict[str, int] = {}


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    ports: dict[str, int]
    peak: int = 0
    samples: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    def sample(self) -> int:
        value = rss(self.proc.pid)
        self.peak = max(self.peak, value)
        return value


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    proc, ports = await start_server(
        tmp_path,
        LONGLINK_AUTH_TIMEOUT_S="2",
        LONGLINK_MAX_CONNS_PER_IP="5000",
        LONGLINK_HTTP_MAX_CONNS_PER_IP="5000",
    )
    try:
        yield Server(proc, ports)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def token(server: Server, user: str) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        response = await http.post("/v1/connect", json={"user": user})
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


# ---------------------------------------------------------------- the attacker


class Hostile:
    """A raw client that authenticates, then only sends (4 KiB receive buffer)."""

    def __init__(self, transport: str, port: int) -> None:
        self.transport = transport
        self.port = port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)
        self.loop = asyncio.get_running_loop()
        self.decoder = FrameDecoder(1 << 20)
        self.ws = wsp.WsReader(1 << 20, require_mask=False)

    def frame(self, op: int, body: bytes = b"", seq: int = 1) -> bytes:
        raw = encode_frame(op, body, seq=seq)
        if self.transport == "ws":
            return wsp.encode_masked_frame(wsp.WsOpcode.BINARY, raw, os.urandom(4))
        return raw

    async def open(self, token: str | None) -> None:
        await self.loop.sock_connect(self.sock, ("127.0.0.1", self.port))
        if self.transport == "ws":
            key = base64.b64encode(os.urandom(16)).decode()
            await self.loop.sock_sendall(
                self.sock,
                (
                    f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode(),
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += await asyncio.wait_for(self.loop.sock_recv(self.sock, 4096), WAIT)
            assert head.startswith(b"HTTP/1.1 101"), head
        if token is not None:
            body = json.dumps({"token": token}).encode()
            await self.loop.sock_sendall(self.sock, self.frame(Op.AUTH, body))
            ops = await self.read_frames(until=Op.AUTH_OK)
            assert Op.AUTH_OK in ops, ops

    async def read_frames(self, until: int | None = None, timeout: float = WAIT) -> list[int]:  # noqa: ASYNC109
        """Ops (and ERROR codes as strings) read until ``until`` or EOF."""
        seen: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = await asyncio.wait_for(
                    self.loop.sock_recv(self.sock, 65536), deadline - time.monotonic()
                )
            except TimeoutError:
                break
            except ConnectionError:  # reset: closed with our unread bytes in its buffer
                seen.append("EOF")
                break
            if not data:
                seen.append("EOF")
                break
            if self.transport == "ws":
                payloads = [p for op, p in self.ws.feed(data) if op == wsp.WsOpcode.BINARY]
                frames = [f for p in payloads for f in FrameDecoder(1 << 20).feed(p)]
            else:
                frames = self.decoder.feed(data)
            for frame in frames:
                seen.append(frame.op)
                if frame.op == Op.ERROR:
                    seen.append(json.loads(frame.body)["code"])
            if until is not None and until in seen:
                break
        return seen

    async def flood(self, data: bytes, frames_per_send: int) -> str:
        """Send ``data`` until closed, ``FRAMES`` frames or ``ATTACK_S``: what ended it."""
        sent, started = 0, time.monotonic()
        while sent < FRAMES:
            left = ATTACK_S - (time.monotonic() - started)
            if left <= 0:
                return "time"
            try:
                await asyncio.wait_for(self.loop.sock_sendall(self.sock, data), left)
            except TimeoutError:
                return "blocked"  # the server stopped reading: TCP holds the client back
            except (ConnectionError, OSError):
                return "closed"
            sent += frames_per_send
        return "count"

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------- the good client


async def served_throughout(server: Server, transport: str, stop: asyncio.Event) -> list[float]:
    """A normal client gets a push every 100 ms until ``stop``; each push's latency."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with (
        Client(server.url, user="good", transport=transport) as client,  # type: ignore[arg-type]
        httpx.AsyncClient(base_url=server.url, headers=headers, timeout=WAIT) as http,
    ):
        while not stop.is_set():
            sent = time.monotonic()
            response = await http.post(
                "/v1/push", json={"to": {"users": ["good"]}, "data": "hi", "priority": "high"}
            )
            assert response.status_code == 202, response.text
            message = await client.next_message(timeout=WAIT)
            assert message.json() == "hi"
            latencies.append(time.monotonic() - sent)
            server.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
    return latencies


async def under_attack(server: Server, transport: str, attack: Any) -> tuple[Any, list[float]]:
    """Run ``attack()`` while the good client is served; (its result, push latencies)."""
    stop = asyncio.Event()
    good = asyncio.ensure_future(served_throughout(server, transport, stop))
    try:
        result = await attack()
    finally:
        stop.set()
    latencies = await asyncio.wait_for(good, WAIT * 2)
    return result, latencies


# ---------------------------------------------------------------- the attacks

#: kind -> (op, body): frames a client sends without reading.
ATTACKS: dict[str, tuple[int, bytes]] = {
    "heartbeat": (Op.HEARTBEAT, b""),
    "join": (Op.JOIN, b'{"room": "lobby"}'),
    "invalid_join": (Op.JOIN, b'{"room": ""}'),
    "upstream": (Op.UPSTREAM, b"x" * 100),  # no webhook: not_allowed
    "auth_again": (Op.AUTH, b'{"token": "x"}'),
    "bad_json": (Op.LEAVE, b"{"),
}


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_clients_that_send_without_reading_are_closed(server: Server, transport: str) -> None:
    port = server.ports[transport]
    base = server.sample()
    outcomes: dict[str, tuple[str, list[Any], float]] = {}

    async def attacks() -> None:
        for kind, (op, body) in ATTACKS.items():
            hostile = Hostile(transport, port)
            await hostile.open(await token(server, f"bad-{kind}"))
            batch = b"".join(hostile.frame(op, body, seq=i) for i in range(64))
            started = time.monotonic()
            ended = await hostile.flood(batch, 64)
            took = time.monotonic() - started
            seen = await hostile.read_frames(timeout=WAIT)  # read at last: what was said
            hostile.close()
            outcomes[kind] = (ended, seen, took)
            server.sample()

    _, latencies = await under_attack(server, transport, attacks)
    growth = server.peak - base
    print(f"\n{transport}: RSS {base >> 20} MiB -> peak {server.peak >> 20} MiB")
    for kind, (ended, seen, took) in outcomes.items():
        codes = sorted({s for s in seen if isinstance(s, str) and s != "EOF"})
        print(f"  {kind:12} {ended:7} after {took:5.2f} s; errors {codes}; EOF {'EOF' in seen}")
    MAX_RSS_SEEN[f"send-without-reading {transport}"] = growth
    assert growth < RSS_BUDGET, f"RSS grew by {growth >> 20} MiB"
    for kind, (ended, seen, _) in outcomes.items():
        # ("count": all 100,000 frames fit in the socket buffers before the close was seen.)
        assert ended != "time", (kind, ended)
        # Closed with unread bytes in its buffer, the server's last ERROR (rate_limited)
        # may be lost to the reset: what the client read shows its answers, then the end.
        assert "EOF" in seen or ended == "blocked", (kind, seen[-5:])
    assert latencies and max(latencies) < 1.0, max(latencies)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_a_thousand_sockets_that_never_auth(server: Server, transport: str) -> None:
    port = server.ports[transport]
    base = server.sample()
    loop = asyncio.get_running_loop()
    socks: list[socket.socket] = []

    async def attack() -> float:
        for _ in range(1000):
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            socks.append(sock)
        server.sample()
        started = time.monotonic()
        # The AUTH deadline (2 s here) closes every one of them.
        for sock in socks:
            left = WAIT * 2 - (time.monotonic() - started)
            with contextlib.suppress(ConnectionError):
                assert (
                    await asyncio.wait_for(loop.sock_recv(sock, 4096), max(left, 0.1)) is not None
                )
        return time.monotonic() - started

    try:
        took, latencies = await under_attack(server, transport, attack)
    finally:
        for sock in socks:
            sock.close()
    growth = server.peak - base
    print(f"\n{transport}: 1000 silent sockets closed within {took:.2f} s;"
          f" RSS {base >> 20} -> {server.peak >> 20} MiB")  # fmt: skip
    MAX_RSS_SEEN[f"1000 never AUTH {transport}"] = growth
    assert growth < RSS_BUDGET
    assert latencies and max(latencies) < 1.0


async def test_a_slow_reader_of_high_priority_pushes_is_closed_server_busy(server: Server) -> None:
    hostile = Hostile("tcp", server.ports["tcp"])
    await hostile.open(await token(server, "slow"))
    base = server.sample()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    payload = "x" * 30_000
    body = {"to": {"users": ["slow"]}, "data": payload, "priority": "high"}

    async def attack() -> int:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=WAIT) as http:
            for n in range(400):  # 12 MB against a 1 MiB hard limit
                assert (await http.post("/v1/push", json=body)).status_code == 202
                if n % 20 == 0:
                    server.sample()
            return n

    await under_attack(server, "tcp", attack)
    seen = await hostile.read_frames(timeout=WAIT)
    hostile.close()
    growth = server.peak - base
    print(f"\nslow reader: RSS {base >> 20} -> {server.peak >> 20} MiB; closed {'EOF' in seen}")
    MAX_RSS_SEEN["slow reader"] = growth
    assert "server_busy" in seen and "EOF" in seen
    assert growth < RSS_BUDGET


async def test_http_port_attacks_leave_everyone_served(server: Server) -> None:
    """1,500 idle HTTP sockets and a 136 MiB header line (failure 2) while clients are served."""
    loop = asyncio.get_running_loop()
    base = server.sample()
    socks: list[socket.socket] = []

    async def attack() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["http"])
        answer = asyncio.ensure_future(reader.read())
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        with contextlib.suppress(ConnectionError):
            while not answer.done() and sent < 136 << 20:
                writer.write(b"a" * 65536)
                await writer.drain()
                sent += 65536
        head = (await asyncio.wait_for(answer, WAIT))[:12]
        writer.close()
        server.sample()
        for _ in range(1500):
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", server.ports["http"]))
            socks.append(sock)
        server.sample()
        # Connections past http_max_connections (1024) were answered 503 and closed.
        refused = 0
        for sock in socks:
            with contextlib.suppress(TimeoutError, ConnectionError):
                data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 0.01)
                refused += data.startswith(b"HTTP/1.1 503")
        return refused, head

    try:
        (refused, head), latencies = await under_attack(server, "tcp", attack)
    finally:
        for sock in socks:
            sock.close()
    growth = server.peak - base
    print(f"\nHTTP: {refused} of 1500 idle sockets refused 503; header line answered {head!r};"
          f" RSS {base >> 20} -> {server.peak >> 20} MiB")  # fmt: skip
    assert head == b"HTTP/1.1 431"
    assert refused >= 1500 - 1024 - 5
    assert growth < RSS_BUDGET
    assert latencies and max(latencies) < 1.0
