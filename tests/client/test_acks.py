"""AckLedger: who sees a push, and which ACKs are written when (PROTOCOL.md §1.3 rule 5)."""

from __future__ import annotations

import msgspec
import pytest

from longlink.client import ConnectionClosed, Message
from longlink.client.acks import MAX_ACK_IDS, AckLedger, ack_frames
from longlink.protocol import Op, decode_frame
from longlink.protocol.messages import decode_ack


def guaranteed(msg_id: int) -> Message:
    return Message(msg_id, b"", guaranteed=True)


class Wire:
    """Collects what flush() writes, as the acked id lists."""

    def __init__(self) -> None:
        self.acks: list[list[int]] = []
        self.fail = False

    async def send(self, data: bytes) -> None:
        if self.fail:
            raise ConnectionClosed("lost")
        frame = decode_frame(data)
        assert frame.op == Op.ACK
        self.acks.append(decode_ack(frame.body, frame.msg_id))


async def test_auto_ack_acks_when_taken_and_duplicates_wait_for_it() -> None:
    ledger = AckLedger(100, auto_ack=True)
    wire = Wire()
    assert ledger.admit(guaranteed(1))
    assert not ledger.admit(guaranteed(1))  # a retry while the original waits: silent
    await ledger.flush(wire.send)
    assert wire.acks == []
    ledger.taken(guaranteed(1))
    assert ledger.wakeup.is_set()
    await ledger.flush(wire.send)
    assert wire.acks == [[1]]
    assert not ledger.admit(guaranteed(1))  # after the ack: acked again at once
    await ledger.flush(wire.send)
    assert wire.acks == [[1], [1]]


async def test_manual_mode_leaves_acks_to_the_app() -> None:
    ledger = AckLedger(100, auto_ack=False)
    wire = Wire()
    assert ledger.admit(guaranteed(5))
    ledger.taken(guaranteed(5))
    assert not ledger.admit(guaranteed(5))
    await ledger.flush(wire.send)
    assert wire.acks == []
    ledger.acked([5])
    assert not ledger.admit(guaranteed(5))
    await ledger.flush(wire.send)
    assert wire.acks == [[5]]


async def test_plain_messages_and_id_zero() -> None:
    ledger = AckLedger(100, auto_ack=True)
    assert ledger.admit(Message(3, b""))
    assert not ledger.admit(Message(3, b""))
    assert ledger.admit(Message(0, b"")) and ledger.admit(Message(0, b""))
    ledger.taken(Message(3, b""))
    assert ledger.queued == 0


async def test_many_acks_are_grouped_and_kept_on_failure() -> None:
    ledger = AckLedger(10, auto_ack=True)
    wire = Wire()
    ledger.queue([1, 2, 3])
    wire.fail = True
    with pytest.raises(ConnectionClosed):
        await ledger.flush(wire.send)
    assert ledger.queued == 3
    ledger.queue([4])
    wire.fail = False
    await ledger.flush(wire.send)
    assert wire.acks == [[1, 2, 3, 4]]


def test_ack_frames_shapes() -> None:
    [one] = ack_frames([9])
    frame = decode_frame(one)
    assert (frame.op, frame.msg_id, frame.body) == (Op.ACK, 9, b"")
    frames = [decode_frame(f) for f in ack_frames(list(range(1, MAX_ACK_IDS + 3)))]
    assert [f.msg_id for f in frames] == [0, 0]
    bodies = [msgspec.json.decode(f.body)["msg_ids"] for f in frames]
    assert [len(b) for b in bodies] == [MAX_ACK_IDS, 2]
    assert all(len(f.body) + 20 < 64 * 1024 for f in frames)
