"""Each connection's outbox: one budget for everything the server writes to a client.

The outbox of a connection is its transport's write buffer; this module is
the one policy applied to it, by every writer — room fan-out and single
pushes (:mod:`~longlink.gateway.delivery`), guaranteed messages and their
retries (:mod:`~longlink.gateway.guarantee`) and the session's own replies
(HEARTBEAT_OK, JOIN_OK, ERROR, …; :mod:`~longlink.gateway.connection`):

* **soft limit** (``outbox_soft_kib``): the transport's high-water mark. Past
  it the transport calls ``pause_writing``: the connection is *behind*. Its
  reading is paused too, so a client that sends without reading cannot make
  the server write replies without bound (its requests wait in the kernel,
  TCP pushes back on it). When its buffer is down to a quarter of the limit
  (``resume_writing``) both resume.
* while behind, low-priority pushes to it are dropped (counted in
  ``Connection.dropped`` and ``longlink_slow_client_drops_total``);
  high-priority and guaranteed ones and replies are still written unless
  they would take the buffer past the
* **hard limit** (``outbox_hard_kib``): the connection is then closed with
  ``server_busy`` and its transport aborted :data:`SLOW_ABORT_S` later if it
  still cannot flush.

A slow client never slows anyone else: nothing here waits for a connection,
and a connection that keeps up costs the write loop one set lookup while
some client is behind (none otherwise).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from longlink.gateway.metrics import GatewayMetrics
from longlink.protocol import ErrorCode, ProtocolError

if TYPE_CHECKING:
    from longlink.gateway.connection import Connection

SLOW_ABORT_S = 2.0  # a client closed as too slow gets this long to take its ERROR


class Outbox:
    """The outbox policy of one gateway's connections (see the module docstring)."""

    __slots__ = ("behind", "hard_limit", "metrics", "soft_limit")

    def __init__(self, soft_kib: int, hard_kib: int, metrics: GatewayMetrics) -> None:
        self.soft_limit = soft_kib * 1024
        self.hard_limit = max(hard_kib * 1024, self.soft_limit)
        self.metrics = metrics
        #: Connections over the soft limit, until they drain.
        self.behind: set[Connection] = set()

    def pause(self, conn: Connection) -> None:
        """``conn``'s buffer passed the soft limit (its transport's ``pause_writing``)."""
        self.behind.add(conn)
        if conn.transport is not None:
            conn.transport.pause_reading()

    def resume(self, conn: Connection) -> None:
        """``conn``'s buffer drained (``resume_writing``), or it closed."""
        if conn in self.behind:
            self.behind.discard(conn)
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.resume_reading()

    def admits(self, conn: Connection, size: int, messages: int, low: bool) -> bool:
        """Whether ``size`` more bytes may be written to ``conn``, which is behind.

        Low priority: no (``messages`` are counted as dropped). Anything else:
        yes while the buffer stays within the hard limit; past it the
        connection is closed with ``server_busy`` and False returned.
        """
        transport = conn.transport
        if transport is None:
            return False
        if low:
            conn.dropped += messages
            self.metrics.slow_drops.labels("low").inc(messages)
            return False
        if transport.get_write_buffer_size() + size <= self.hard_limit:
            return True
        self.metrics.slow_drops.labels("high").inc(messages)
        self.too_slow(conn)
        return False

    def over_hard(self, conn: Connection, size: int) -> bool:
        """True (and ``conn`` closed as too slow) if ``size`` more bytes would pass the
        hard limit; for writers that do not check :attr:`behind` first (replies)."""
        transport = conn.transport
        if transport is None or transport.get_write_buffer_size() + size <= self.hard_limit:
            return False
        self.too_slow(conn)
        return True

    def too_slow(self, conn: Connection) -> None:
        """Close ``conn`` with ``server_busy``; cut it if it cannot flush that either."""
        self.metrics.slow_closes.inc()
        conn.apply(conn.fail(ProtocolError(ErrorCode.SERVER_BUSY, "client reads too slowly")))
        asyncio.get_running_loop().call_later(SLOW_ABORT_S, _abort, conn)


def _abort(conn: Connection) -> None:
    """Cut a connection closed for slowness that still has not flushed."""
    if conn.transport is not None:
        conn.transport.abort()
