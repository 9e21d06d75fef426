"""The suite's own safety net: a test's leftover tasks never hang the loop's close."""

from __future__ import annotations

import asyncio
import contextlib


async def test_a_task_that_swallows_a_cancellation_does_not_hang_the_suite() -> None:
    """Left running on purpose: it swallows the first cancellation at the loop's close
    (tests/conftest.py cancels again) and ends on the second."""

    async def stubborn() -> None:
        # what a library that turns a cancellation into another error amounts to:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        await asyncio.sleep(3600)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert not task.done()
