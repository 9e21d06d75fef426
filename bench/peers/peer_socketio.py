"""python-socketio on aiohttp (uvloop): ``emit`` to a room.

A peer of ``make bench`` (bench/run.py), written as the library's documentation
shows it: ``socketio.AsyncServer(async_mode="aiohttp")`` with its defaults.
Subscribers emit ``join(room)`` (acknowledged once in the room); the publisher
emits ``pub(data)``, which the server emits as ``msg`` to the room ``bench``.
Prints ``ready port=P``.

    python bench/peers/peer_socketio.py [PORT]
"""

from __future__ import annotations

import asyncio
import sys

import socketio
import uvloop
from aiohttp import web

ROOM = "bench"
sio = socketio.AsyncServer(async_mode="aiohttp")


async def join(sid: str, room: str) -> bool:
    await sio.enter_room(sid, room)
    return True  # the acknowledgement: the client now is in the room


async def pub(sid: str, data: str) -> None:
    await sio.emit("msg", data, room=ROOM)


sio.on("join", join)  # what the @sio.event decorator does (mypy: it is untyped)
sio.on("pub", pub)


async def main(port: int) -> None:
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    print(f"ready port={runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
