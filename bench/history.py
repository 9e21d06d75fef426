"""Room history figures (docs/rooms.md): memory per kept message, Redis commands per message.

Everything runs here, on 127.0.0.1, and stops by itself:

1. **Embedded memory**: ``MemoryHistory`` filled with 1,000 rooms x 100 messages
   (payloads of 100 and 1,000 bytes); ``tracemalloc`` gives the bytes each kept
   message costs, payload included, and what it costs beside its payload.
2. **Redis memory**: its own ``redis-server`` (no persistence), the same messages
   written with ``RedisHistory``; ``used_memory`` before and after, per message.
3. **Redis commands per room message**: a real ``Node`` (every role) on that Redis
   and one TCP client in the room; ``--messages`` room pushes (``POST /v1/push/batch``
   of 10, about ``--rate`` a second) until the client has them all, history off
   (``history_size`` 0) then on, aggregation on (50 ms) and off. ``MONITOR``
   counts every command Redis ran: those the longlink process sent, and those its
   Lua scripts ran (the queue's XADD of each message, the history's XADD of each
   message, TIME, XTRIM and PEXPIRE).
4. **CPU of the embedded history path**: what history adds per room message in
   one process — the entry dispatch makes, ``MemoryHistory.keep`` in the node
   channel, the gateway's last-id bookkeeping — timed over 200,000 messages in
   windows of 50 (``time.process_time``), beside what the same messages cost
   without it. The fan-out itself (one write per connection) is not in it: the
   history costs per message, not per delivery.

    python bench/history.py                 # about half a minute
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import socket
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator

import httpx
import redis.asyncio as aioredis
import uvloop
from common import machine_line, say
from danmaku import Danmaku

from longlink.client.raw import RawConnection
from longlink.history.base import HistoryEntry
from longlink.history.memory import ENTRY_OVERHEAD, MemoryHistory
from longlink.history.redis import RedisHistory
from longlink.node import Node
from longlink.protocol import Op, decode_frame
from longlink.protocol.client import unpack_pushes
from longlink.protocol.messages import Auth, AuthOk, decode_body, encode_body
from longlink.settings import Settings

API_KEY = "bench-key"
ROOMS = 1000
PER_ROOM = 100


def entries(payload: int) -> list[tuple[str, HistoryEntry]]:
    now_ms = int(time.time() * 1000)
    return [
        (f"room-{r}", HistoryEntry(r * PER_ROOM + i + 1, now_ms, os.urandom(payload), True))
        for r in range(ROOMS)
        for i in range(PER_ROOM)
    ]


# =========================================================================== 1. embedded


def embedded(payload: int) -> tuple[float, float]:
    """(bytes per kept message, bytes beside the payload) of MemoryHistory."""
    kept = entries(payload)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    history = MemoryHistory(PER_ROOM, 300, 1 << 40)
    for start in range(0, len(kept), 500):  # as dispatch hands them over: steps
        history.keep(kept[start : start + 500])
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    # The entries were made before the measure (dispatch makes them); what the history adds
    # is its slots and indexes. Count the entry objects and payloads in, as they are kept.
    entry_bytes = sum(_size(entry) for _, entry in kept[:1000]) / 1000
    per = (after - before) / len(kept) + entry_bytes
    return per, per - payload


def _size(entry: HistoryEntry) -> int:
    import sys

    return sys.getsizeof(entry) + sys.getsizeof(entry.payload)


# =========================================================================== 2-3. Redis


@contextlib.asynccontextmanager
async def redis_server() -> AsyncIterator[tuple[str, aioredis.Redis]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="longlink-history-") as data:
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", data]
        argv += ["--save", "", "--appendonly", "no"]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = aioredis.Redis(host="127.0.0.1", port=port)
        try:
            for _ in range(100):
                with contextlib.suppress(Exception):
                    if await client.ping():
                        break
                await asyncio.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0", client
        finally:
            await client.aclose()
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)


async def redis_memory(client: aioredis.Redis, payload: int) -> float:
    await client.flushdb()
    before = int((await client.info("memory"))["used_memory"])
    history = RedisHistory(client, PER_ROOM, 300)
    kept = entries(payload)
    for start in range(0, len(kept), 500):
        await history.append(kept[start : start + 500])
    after = int((await client.info("memory"))["used_memory"])
    return (after - before) / len(kept)


async def commands(url: str, client: aioredis.Redis, args: argparse.Namespace) -> None:
    say()
    say(
        f"Redis commands per room message: {args.messages} messages to one room with one"
        f" client, batches of 10, ~{args.rate:.0f}/s"
    )
    say(
        "| aggregate_ms | history | sent by longlink / msg | run in scripts / msg"
        " | sent, by command | in scripts, by command |"
    )
    say("|---|---|---|---|---|---|")
    for window in (50, 0):
        for size in (0, 100):
            await client.flushdb()
            sent, scripted = await one_run(url, client, window, size, args)
            say(
                f"| {window} | {'on' if size else 'off'} | {_total(sent, args)}"
                f" | {_total(scripted, args)} | {_detail(sent, args)} | {_detail(scripted, args)} |"
            )


def _total(counts: dict[str, int], args: argparse.Namespace) -> str:
    return f"{sum(counts.values()) / args.messages:.2f}"


def _detail(counts: dict[str, int], args: argparse.Namespace) -> str:
    top = sorted(counts.items(), key=lambda item: -item[1])[:5]
    return ", ".join(f"{name} {n / args.messages:.2f}" for name, n in top if n)


async def one_run(
    url: str, client: aioredis.Redis, window: int, size: int, args: argparse.Namespace
) -> tuple[dict[str, int], dict[str, int]]:
    """Commands during the pushes: (sent by the longlink process, run by Lua scripts)."""
    with tempfile.TemporaryDirectory(prefix="longlink-history-") as data_dir:
        settings = Settings(
            http_port=0,
            ws_port=0,
            tcp_port=0,
            demo=True,
            api_key=API_KEY,
            bus=url,
            data_dir=data_dir,
            aggregate_ms=window,
            history_size=size,
            trace_scope="off",
            drain_timeout_s=1.0,
        )
        async with (
            Node(settings) as node,
            httpx.AsyncClient(
                base_url=node.http_url, headers={"Authorization": f"Bearer {API_KEY}"}
            ) as http,
        ):
            assert node.gateway is not None
            token = (await http.post("/v1/connect", json={"user": "bench"})).json()["token"]
            raw = await RawConnection.open("tcp", node.gateway.endpoints[1])
            await raw.send_frame(Op.AUTH, encode_body(Auth(token=token, rooms=["stage"])))
            auth_ok = await raw.recv_frame()
            assert auth_ok.op == Op.AUTH_OK, decode_body(auth_ok.body, AuthOk)
            await asyncio.sleep(0.5)  # the node's first reports settle
            sent_by: dict[str, int] = {}
            scripted: dict[str, int] = {}
            watching = asyncio.Event()
            monitor = asyncio.create_task(_monitor(client, sent_by, scripted, watching))
            await watching.wait()
            stream = Danmaku(seed=1)
            got = 0
            reader = asyncio.create_task(_read(raw, args.messages))
            began = time.monotonic()
            for sent in range(0, args.messages, 10):
                body = {
                    "messages": [
                        {"to": {"rooms": ["stage"]}, "data_b64": _b64(stream.next_json(t=0))}
                        for _ in range(10)
                    ]
                }
                response = await http.post("/v1/push/batch", json=body)
                assert response.status_code == 202, response.text
                await asyncio.sleep(max(0.0, began + (sent + 10) / args.rate - time.monotonic()))
            got = await asyncio.wait_for(reader, 60)
            assert got == args.messages, got
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
            await raw.close()
    return sent_by, scripted


async def _monitor(
    client: aioredis.Redis,
    sent_by: dict[str, int],
    scripted: dict[str, int],
    watching: asyncio.Event,
) -> None:
    async with client.monitor() as monitor:
        watching.set()
        while True:
            command = await monitor.next_command()
            words = str(command["command"]).split()
            name = words[0].lower() if words else "?"
            counts = scripted if command.get("client_type") == "lua" else sent_by
            counts[name] = counts.get(name, 0) + 1


async def _read(raw: RawConnection, count: int) -> int:
    got = 0
    while got < count:
        frame = decode_frame(await _frame_bytes(raw), 1 << 24)
        if frame.op == Op.PUSH:
            got += len(unpack_pushes(frame))
    return got


async def _frame_bytes(raw: RawConnection) -> bytes:
    from longlink.protocol import encode_frame

    frame = await raw.recv_frame(timeout=30)
    return encode_frame(
        frame.op,
        frame.body,
        flags=frame.flags,
        codec=frame.codec,
        seq=frame.seq,
        msg_id=frame.msg_id,
    )


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def cpu_per_message() -> tuple[float, float]:
    """(µs of CPU per room message the history path adds, µs of the same without it)."""
    from longlink.dispatch.dispatcher import _keep
    from longlink.model import Message, RoomBatch, Target

    now_ms = int(time.time() * 1000)
    stream = Danmaku(seed=3)
    window = 50
    messages = [
        Message(i + 1, Target(rooms=["stage"]), stream.next_json(t=0), accepted_ms=now_ms)
        for i in range(200_000)
    ]
    batches = [
        RoomBatch("stage", [m.msg_id for m in messages[i : i + window]], [b""])
        for i in range(0, len(messages), window)
    ]
    history = MemoryHistory(100, 300, 64 << 20)
    last: dict[str, int] = {}
    gc.collect()
    began = time.process_time()
    for start, batch in zip(range(0, len(messages), window), batches, strict=True):
        kept: list[tuple[str, HistoryEntry]] = []
        for message in messages[start : start + window]:
            _keep(kept, message)  # dispatch: the entries of a step
        history.keep(kept)  # the node channel
        last[batch.room] = batch.msg_ids[-1]  # the gateway: Recovery.planned_batches
    with_history = time.process_time() - began
    # The same loop without the history: what is left is the loop itself.
    began = time.process_time()
    for start, batch in zip(range(0, len(messages), window), batches, strict=True):
        for message in messages[start : start + window]:
            if message.history and message.target.rooms:
                pass
        last[batch.room] = batch.msg_ids[-1]
    bare = time.process_time() - began
    return 1e6 * (with_history - bare) / len(messages), 1e6 * bare / len(messages)


async def main(args: argparse.Namespace) -> None:
    say(f"date: {time.strftime('%Y-%m-%d')}")
    say(machine_line())
    say()
    say(f"Memory per kept message ({ROOMS:,} rooms x {PER_ROOM} messages):")
    say("| payload | embedded, per message | embedded, beside the payload | Redis, per message |")
    say("|---|---|---|---|")
    async with redis_server() as (url, client):
        for payload in (100, 1000):
            per, beside = embedded(payload)
            on_redis = await redis_memory(client, payload)
            say(f"| {payload} B | {per:.0f} B | {beside:.0f} B | {on_redis:.0f} B |")
        say(f"(the embedded bound counts each message as payload + {ENTRY_OVERHEAD} B)")
        await commands(url, client, args)
    added, loop = cpu_per_message()
    say()
    say(
        f"CPU the embedded history path adds per room message: {added:.2f} µs"
        f" (the bare loop: {loop:.2f} µs), windows of 50 messages"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="room messages per run")
    parser.add_argument("--rate", type=float, default=1000.0, help="messages per second")
    uvloop.run(main(parser.parse_args()))
