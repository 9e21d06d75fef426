"""One authenticated connection and its pump task (PROTOCOL.md §1.3 rules 3 and 5).

A :class:`Link` lives from AUTH_OK until the transport is lost. Its *pump*
task, started by the client for each link, does the writing that is not a
request:

* HEARTBEAT every ``AUTH_OK.heartbeat_s`` seconds (none when it is 0);
* the ACKs queued in the client's :class:`~longlink.client.acks.AckLedger`,
  as soon as they are queued;
* liveness: a link from which nothing has arrived for
  :data:`DEAD_AFTER_INTERVALS` intervals is aborted, which the client's
  session task sees as a loss (and reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass

from longlink.client.acks import AckLedger
from longlink.client.errors import ConnectionClosed
from longlink.client.transport import Transport
from longlink.protocol import Op, encode_frame
from longlink.protocol.messages import AuthOk

logger = logging.getLogger(__name__)

#: Nothing received for this many heartbeat intervals: the connection is dead.
DEAD_AFTER_INTERVALS = 2.5

_HEARTBEAT = encode_frame(Op.HEARTBEAT)


@dataclass(eq=False, slots=True)
class Link:
    """One authenticated connection; ``last_rx`` is the loop time of the last frame in."""

    transport: Transport
    auth_ok: AuthOk
    opened_at: float
    last_rx: float
    error_code: str | None = None  # the fatal ERROR the server sent before closing
    pump: asyncio.Task[None] | None = None


async def pump(link: Link, acks: AckLedger) -> None:
    """Heartbeats, queued ACKs and liveness of ``link``, until it is lost or cancelled."""
    loop = asyncio.get_running_loop()
    interval = float(link.auth_ok.heartbeat_s)
    next_beat = loop.time() + interval if interval > 0 else math.inf
    try:
        while True:
            acks.wakeup.clear()
            await acks.flush(link.transport.send)
            now = loop.time()
            if now >= next_beat:
                if now - link.last_rx > DEAD_AFTER_INTERVALS * interval:
                    logger.warning(
                        "conn_id=%s silent for %.1fs: dropping it",
                        link.auth_ok.conn_id,
                        now - link.last_rx,
                    )
                    link.transport.abort()
                    return
                await link.transport.send(_HEARTBEAT)
                next_beat = now + interval
                continue
            deadline = None if math.isinf(next_beat) else next_beat
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await acks.wakeup.wait()
    except ConnectionClosed:
        return  # the session task sees the loss and handles it
