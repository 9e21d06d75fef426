"""Delivery bookkeeping: which pushes are duplicates and which ACKs are still owed.

PROTOCOL.md §1.3 rule 5: the server resends a guaranteed message until it is
acked, and the client drops duplicates by ``msg_id``. :class:`AckLedger`
decides, for each arriving push, whether the application sees it, and keeps
the ACKs waiting to be written:

* a new message is delivered; if guaranteed, its ACK is *owed* by whoever
  acks it (taking it with ``auto_ack``, or the application's own ``ack()``);
* a duplicate is dropped; if guaranteed and its ACK is not owed any more (or
  was never ours to give), the ACK is queued at once so the server stops;
* queued ids are written by :meth:`AckLedger.flush`: one id in the ACK
  header, several as ``{"msg_ids": [...]}`` (§1.2 op 6).

Everything is bounded: ``size`` recent ids, and as many owed and queued ones.
An id forgotten early costs at most one more redelivery, which is acked then.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from longlink.client.dedup import RecentIds
from longlink.client.messages import Message
from longlink.protocol import Op, encode_frame
from longlink.protocol.messages import AckBody, encode_body

#: Most ids in one ACK frame (keeps it far below the 64 KiB client frame limit).
MAX_ACK_IDS = 1000


class AckLedger:
    """Dedup window, owed ACKs and queued ACKs of one client (all connections)."""

    def __init__(self, dedup_size: int, *, auto_ack: bool) -> None:
        self.auto_ack = auto_ack
        self.seen = RecentIds(dedup_size)
        #: Set when ids are queued; the writer waits on it.
        self.wakeup = asyncio.Event()
        self._limit = max(dedup_size, MAX_ACK_IDS)
        self._owed: OrderedDict[int, None] = OrderedDict()
        self._queued: OrderedDict[int, None] = OrderedDict()

    @property
    def queued(self) -> int:
        """How many ids wait to be written."""
        return len(self._queued)

    def admit(self, message: Message) -> bool:
        """Whether the application should see ``message`` (False: a duplicate, dropped)."""
        msg_id = message.msg_id
        if not msg_id:
            return True  # not a message id (§1.1): nothing to deduplicate
        if not self.seen.add(msg_id):
            if message.guaranteed and msg_id not in self._owed:
                self.queue([msg_id])
            return False
        if message.guaranteed:
            self._owed[msg_id] = None
            if len(self._owed) > self._limit:
                self._owed.popitem(last=False)
        return True

    def taken(self, message: Message) -> None:
        """The application took ``message``: with ``auto_ack`` its ACK is queued now."""
        if self.auto_ack and message.guaranteed and message.msg_id:
            self._owed.pop(message.msg_id, None)
            self.queue([message.msg_id])

    def acked(self, ids: Iterable[int]) -> None:
        """The application acked ``ids`` itself; later duplicates are acked by the ledger."""
        for msg_id in ids:
            self._owed.pop(msg_id, None)

    def queue(self, ids: Iterable[int]) -> None:
        """Queue ACKs for ``ids`` and wake the writer."""
        queued = self._queued
        for msg_id in ids:
            queued[msg_id] = None
        while len(queued) > self._limit:
            queued.popitem(last=False)  # the server resends it; its duplicate is acked then
        self.wakeup.set()

    async def flush(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Write every queued ACK with ``send``; ids not written stay queued, first in line."""
        queued = self._queued
        while queued:
            ids = [queued.popitem(last=False)[0] for _ in range(min(len(queued), MAX_ACK_IDS))]
            try:
                for frame in ack_frames(ids):
                    await send(frame)
            except BaseException:
                for msg_id in reversed(ids):
                    queued[msg_id] = None
                    queued.move_to_end(msg_id, last=False)
                raise


def ack_frames(ids: list[int]) -> list[bytes]:
    """ACK frames for ``ids``: the header for one id, JSON bodies for more (§1.2 op 6)."""
    if len(ids) == 1:
        return [encode_frame(Op.ACK, msg_id=ids[0])]
    return [
        encode_frame(Op.ACK, encode_body(AckBody(ids[i : i + MAX_ACK_IDS])))
        for i in range(0, len(ids), MAX_ACK_IDS)
    ]
