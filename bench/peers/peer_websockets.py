"""The ``websockets`` library's fan-out: ``broadcast()`` to every subscriber.

A peer of ``make bench`` (bench/run.py), written as the library's documentation
shows it: ``websockets.asyncio.server.serve`` with its defaults, on uvloop;
subscribers connect to ``/sub``, the publisher to ``/pub``; every message of the
publisher goes to every subscriber with ``broadcast``. Prints ``ready port=P``.

    python bench/peers/peer_websockets.py [PORT]
"""

from __future__ import annotations

import sys

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

subscribers: dict[ServerConnection, None] = {}  # in join order


async def handler(connection: ServerConnection) -> None:
    if connection.request is not None and connection.request.path == "/pub":
        async for message in connection:
            broadcast(subscribers, message)
        return
    subscribers[connection] = None
    try:
        await connection.wait_closed()
    finally:
        subscribers.pop(connection, None)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, backlog=4096) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"ready port={bound}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
