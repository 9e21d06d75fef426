"""What the benchmark scripts share: gauges from /proc, pinning, child processes, clients.

A plain module beside the scripts (``python bench/X.py`` puts ``bench/`` first on
``sys.path``, for the script and for the copies of it that it starts), so each
script does ``from common import ...``. Everything here runs in the load
generator or the driver, never in the server under test; the client protocols
sit on the load generator's hot path: keep them lean (``__slots__``, one read
buffer for every connection, no work per byte or per message).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import os
import platform
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from importlib import metadata
from typing import Any, Protocol, cast

import msgspec
from danmaku import Danmaku

#: The cores this benchmark may use, read at import, before anything is pinned: a
#: child this process starts after pinning itself inherits the pin, and
#: ``pin(core, child_pid)`` must still give it a core of its own.
CORES = frozenset(os.sched_getaffinity(0))


def say(*words: object) -> None:
    """Print one line at once (a parent reads it as it comes)."""
    print(*words, flush=True)


# =========================================================================== the machine


def pin(core: int, pid: int = 0) -> None:
    """Run ``pid`` (0: this process) on ``core`` alone, when there is more than one core.

    Checked against :data:`CORES`, not the process's own affinity: a server started
    by a process that already pinned itself must still get its own core.
    """
    if len(CORES) > 1 and core in CORES:
        os.sched_setaffinity(pid, {core})


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int = 0) -> int:
    """Resident memory of process ``pid`` (0: this one), KiB."""
    with open(f"/proc/{pid or 'self'}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def cores_ticks(cores: Collection[int]) -> tuple[int, int]:
    """(busy, total) jiffies of some cores from /proc/stat: softirq work included.

    On loopback the receiver's TCP processing largely runs in the sender's softirq
    context, and not all of it is charged to the sending process's CPU time.
    """
    busy = total = 0
    with open("/proc/stat") as stat:
        for line in stat:
            name = line.split(maxsplit=1)[0]
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
                ticks = [int(t) for t in line.split()[1:9]]
                total += sum(ticks)
                busy += sum(ticks) - ticks[3] - ticks[4]  # idle, iowait
    return busy, total


def machine_ticks() -> tuple[int, int, int]:
    """(busy, irq + softirq, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(t) for t in stat.readline().split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], ticks[5] + ticks[6], sum(ticks)


def machine_line() -> str:
    """``machine: <CPU model>, <n> cores, <memory> GiB, Linux <release>``."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    return f"machine: {model}, {os.cpu_count()} cores, {memory:.0f} GiB, Linux {platform.release()}"


def package_versions(*packages: str) -> str:
    """``name version, …`` of installed packages."""
    return ", ".join(f"{package} {metadata.version(package)}" for package in packages)


# =========================================================================== processes


async def stdin_lines() -> asyncio.StreamReader:
    """This process's stdin as a stream: the commands of the parent."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


class Lines:
    """The lines a child prints, read by a thread, taken with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.queue.put(line)
        self.queue.put("")

    def next(self, timeout: float, what: str) -> str:
        try:
            line = self.queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no {what} within {timeout:.0f} s") from None
        if not line:
            raise RuntimeError(f"process exited (code {self.proc.wait()}) before {what}")
        return line


class Commanded:
    """A child process spoken to with one-line commands on its stdin; its lines read by
    :class:`Lines`; ``quit`` asks it to end (killed if it does not within 10 s)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines = Lines(proc)

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


class Child(Commanded):
    """A copy of ``script`` in a child process, spoken to with one-line commands and answers."""

    def __init__(self, script: str, *args: str) -> None:
        super().__init__(
            subprocess.Popen(
                [sys.executable, os.path.abspath(script), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )

    def expect(self, word: str, timeout: float) -> list[str]:
        """The words after ``word`` on the next line starting with it (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.next(max(0.0, deadline - time.monotonic()), repr(word))
            fields = line.split()
            if fields and fields[0] == word:
                return fields[1:]


# =========================================================================== connections


class WsClient(asyncio.BufferedProtocol):
    """A load generator's WebSocket client: the upgrade request, then reads into one
    buffer shared by every connection (only the sizes of most reads count).

    Subclasses write ``buffer_updated``: while ``head`` is not None, hand the read to
    :meth:`upgraded`; after that, the read is ``shared[:nbytes]``.
    """

    __slots__ = ("done", "head", "shared", "transport")

    #: The error of ``done`` when the connection closes before it is set.
    closed_early = "closed during the handshake"

    def __init__(self, shared: memoryview, done: asyncio.Future[None]) -> None:
        self.shared = shared
        self.done = done
        self.head: bytearray | None = bytearray()  # the server's answer; None once upgraded

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: longlink.v1\r\n\r\n"
            ).encode()
        )

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.shared  # every connection reads into the same buffer: only sizes count

    def upgraded(self, nbytes: int) -> bytes | None:
        """Take a read of the server's answer: once a whole 101 has arrived, the bytes
        after it (``head`` is then None); until then None. A refusal fails ``done``."""
        head = self.head
        assert head is not None
        head += self.shared[:nbytes]
        end = head.find(b"\r\n\r\n")
        if end < 0:
            return None
        if not head.startswith(b"HTTP/1.1 101"):
            self.done.set_exception(RuntimeError(bytes(head[:end]).decode()))
            return None
        self.head = None
        return bytes(head[end + 4 :])

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(self.closed_early))


class StreamRecord:
    """What a sample connection records of the byte stream it receives.

    After each read that completed a frame: the stream offset (``ends``) and the
    messages up to it (``messages``). Every connection of a room (on one gateway)
    receives the same stream, so :meth:`messages_at` turns any connection's byte
    count into the messages it has received. Subclasses decode (``feed``) and fill
    ``frames``, ``latencies`` ((receipt, push → receipt) seconds) and the rest.
    """

    __slots__ = ("ends", "frames", "latencies", "messages", "position")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.ends: list[int] = []  # stream offset after the last whole frame of a read
        self.messages: list[int] = []  # messages in the stream up to that offset
        self.latencies: list[tuple[float, float]] = []  # (receipt, push → receipt) seconds
        self.position = 0
        self.frames = 0

    def messages_at(self, nbytes: int) -> int:
        """Messages in the first ``nbytes`` bytes of the stream."""
        index = bisect.bisect_right(self.ends, nbytes) - 1
        return self.messages[index] if index >= 0 else 0

    def report(self) -> dict[str, Any]:
        """The record (not the latencies) as JSON values, for :meth:`from_report`."""
        return {
            "ends": self.ends,
            "messages": self.messages,
            "frames": self.frames,
            "position": self.position,
        }

    @staticmethod
    def from_report(report: dict[str, Any]) -> StreamRecord:
        """A record as another process reported it (:meth:`report`), to map byte counts."""
        record = StreamRecord()
        record.ends, record.messages = report["ends"], report["messages"]
        record.frames, record.position = report["frames"], report["position"]
        return record


def set_rcvlowat(transport: asyncio.BaseTransport, nbytes: int) -> None:
    """SO_RCVLOWAT: the kernel reports the socket readable only once ``nbytes`` wait,
    so one read (one Python callback) takes several frames; 1 (or 0) is the default."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, max(1, nbytes))


class Counting(Protocol):
    """A connection that counts the bytes it received."""

    nbytes: int


async def quiet(conns: Sequence[Counting], seconds: float, give_up: float) -> None:
    """Return once no byte arrived on any connection for ``seconds`` (``give_up`` at most)."""
    end = time.monotonic() + give_up
    last = -1
    while time.monotonic() < end:
        total = sum(c.nbytes for c in conns)
        if total == last:
            return
        last = total
        await asyncio.sleep(seconds)


# =========================================================================== pushes


class _Stale(Exception):
    """A kept-alive connection the server had closed (no answer at all)."""


class Http:
    """A minimal HTTP/1.1 keep-alive client for the pushes.

    httpx costs the load generator more than the server spends per request (without
    ``sniffio`` installed, httpcore retries a failing import on every request), and
    the load generator must stay lean. Idle connections are kept and reused, one
    request at a time each.
    """

    def __init__(self, port: int, api_key: str) -> None:
        self.port = port
        self.auth = f"Authorization: Bearer {api_key}\r\n"
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def connect(self) -> None:
        """Open a keep-alive connection now, so that no request waits for it."""
        self._idle.append(await asyncio.open_connection("127.0.0.1", self.port))

    async def request(
        self, method: str, path: str, body: bytes = b"", *, auth: bool = True
    ) -> tuple[int, bytes]:
        """(status, body) of one request: on an idle connection, else a new one."""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.auth if auth else ''}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        while self._idle:
            reader, writer = self._idle.pop()
            try:
                return await self._exchange(reader, writer, head + body)
            except (_Stale, ConnectionResetError, BrokenPipeError):
                continue  # the server closed this idle keep-alive connection: take another
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        return await self._exchange(reader, writer, head + body)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bytes]:
        try:
            writer.write(request)
            status_line = await reader.readline()
            if not status_line:
                raise _Stale  # closed before answering: the request was not taken
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            answer = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        self._idle.append((reader, writer))
        return int(status_line.split()[1]), answer

    async def json(self, method: str, path: str, body: Any = None) -> Any:
        """The decoded JSON answer of a request with a JSON ``body``; a 3xx-5xx raises."""
        status, answer = await self.request(
            method, path, b"" if body is None else msgspec.json.encode(body), auth=True
        )
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {answer[:200]!r}")
        return json.loads(answer)

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


async def paced(
    interval: float, seconds: float, start: float | None = None
) -> AsyncIterator[float]:
    """Open loop: wake at ``start`` (default: now), ``start + interval``, … while before
    ``start + seconds``, and yield the time (``time.monotonic()``). A late tick is not
    skipped: the schedule never waits for answers, it catches up."""
    if start is None:
        start = time.monotonic()
    n = 0
    while (due := start + n * interval) < start + seconds:
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield time.monotonic()
        n += 1


def error_key(status: int, answer: bytes) -> str:
    """``status code``, e.g. ``503 overloaded``, to count refusals by kind."""
    try:
        return f"{status} {json.loads(answer)['error']['code']}"
    except Exception:
        return f"{status} {answer[:80].decode(errors='replace')}"


class RoomPublisher:
    """``POST /v1/push/batch`` to one room at ``rate`` messages/s, open loop.

    ``requests_per_s(rate)`` requests a second, each of danmaku-like messages stamped
    with their push time (``time.monotonic()``, the clock the sample connections
    read), sent by ``connections`` workers, each with a keep-alive connection of its
    own, so that a slow answer never holds the next request. Counts ``sent``,
    ``accepted`` and ``refused`` messages, ``errors`` by kind, and each request's
    round trip.
    """

    def __init__(
        self,
        port: int,
        api_key: str,
        room: str,
        *,
        connections: int = 8,
        requests_per_s: Callable[[float], float] = lambda rate: 100.0,
        encode: Callable[[Any], bytes] = msgspec.json.encode,
    ) -> None:
        self.http = Http(port, api_key)
        self.room = room
        self.connections = connections
        self.requests_per_s = requests_per_s
        self.encode = encode
        self.stream = Danmaku(seed=3)
        self.sent = self.accepted = self.refused = 0
        self.errors: dict[str, int] = {}  # error_key() -> requests
        self.rtts: list[float] = []  # request to response, seconds

    async def run(self, rate: float, seconds: float) -> None:
        """Publish for ``seconds``, then wait (two minutes at most) for every answer;
        the connections are closed on return."""
        requests: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue()
        workers = [asyncio.create_task(self._worker(requests)) for _ in range(self.connections)]
        per_request = max(1, round(rate / self.requests_per_s(rate)))
        try:
            async for now in paced(per_request / rate, seconds):
                messages = [
                    {"to": {"rooms": [self.room]}, "data": self.stream.next_dict(t=now)}
                    for _ in range(per_request)
                ]
                requests.put_nowait((self.encode({"messages": messages}), per_request))
                self.sent += per_request
            async with asyncio.timeout(120):
                await requests.join()
        finally:
            for worker in workers:
                worker.cancel()
            self.http.close()

    async def _worker(self, requests: asyncio.Queue[tuple[bytes, int]]) -> None:
        await self.http.connect()  # one connection per worker, open before its first request
        while True:
            body, count = await requests.get()
            began = time.monotonic()
            try:
                status, answer = await self.http.request("POST", "/v1/push/batch", body)
            except Exception as exc:
                status, answer = 0, repr(exc).encode()
            self.rtts.append(time.monotonic() - began)
            if status == 202:
                self.accepted += count
            else:
                self.refused += count
                error = error_key(status, answer)
                self.errors[error] = self.errors.get(error, 0) + 1
            requests.task_done()
