"""Inbox: the bounded queue between the reader task and the application."""

from __future__ import annotations

import asyncio

import pytest

from longlink.client import ConnectionClosed
from longlink.client.inbox import Inbox
from tests.conftest import WAIT


async def test_fifo() -> None:
    inbox: Inbox[int] = Inbox(10)
    for i in range(3):
        await inbox.put(i)
    assert [await inbox.get(WAIT) for _ in range(3)] == [0, 1, 2]


async def test_get_times_out() -> None:
    inbox: Inbox[int] = Inbox(1)
    with pytest.raises(TimeoutError):
        await inbox.get(0.01)


async def test_full_inbox_makes_put_wait_for_a_get() -> None:
    inbox: Inbox[int] = Inbox(1)
    await inbox.put(1)
    blocked = asyncio.create_task(inbox.put(2))
    await asyncio.sleep(0)  # let it reach the wait (not waiting for an event)
    assert not blocked.done() and len(inbox) == 1
    assert await inbox.get(WAIT) == 1
    await asyncio.wait_for(blocked, WAIT)
    assert await inbox.get(WAIT) == 2


async def test_drop_oldest_never_waits() -> None:
    inbox: Inbox[int] = Inbox(2, drop_oldest=True)
    for i in range(5):
        await asyncio.wait_for(inbox.put(i), WAIT)
    assert inbox.dropped == 3
    assert [await inbox.get(WAIT), await inbox.get(WAIT)] == [3, 4]


async def test_close_hands_out_the_rest_then_raises() -> None:
    inbox: Inbox[str] = Inbox(5)
    await inbox.put("a")
    await inbox.close("kicked: banned", discard=False)
    await inbox.put("ignored")
    assert await inbox.get(WAIT) == "a"
    with pytest.raises(ConnectionClosed, match="kicked: banned"):
        await inbox.get(WAIT)


async def test_close_wakes_waiting_readers_and_writers() -> None:
    inbox: Inbox[int] = Inbox(1)
    await inbox.put(0)
    writer = asyncio.create_task(inbox.put(1))
    reader_inbox: Inbox[int] = Inbox(1)
    reader = asyncio.create_task(reader_inbox.get())
    await asyncio.sleep(0)
    await inbox.close("closed", discard=True)
    await reader_inbox.close("closed", discard=True)
    await asyncio.wait_for(writer, WAIT)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(reader, WAIT)
    with pytest.raises(ConnectionClosed):
        await inbox.get(WAIT)  # discarded
    assert inbox.closed
