"""Helpers for long-running loops that must stop when they are cancelled.

A library may swallow a cancellation (a timeout inside a client library that
fires at the same moment turns the ``CancelledError`` into a ``TimeoutError``,
which a loop then logs and survives). The task stays *cancelling* but gets no
new ``CancelledError``, so a ``while True`` loop runs on and ``close()`` waits
forever. Loops test :func:`cancel_requested` each turn instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Self


def cancel_requested() -> bool:
    """True when the current task has been asked to cancel (even if the error was lost)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def stop_tasks(*tasks: asyncio.Task[None] | None) -> None:
    """Cancel ``tasks`` (None is skipped) and wait until each has ended."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task


log = logging.getLogger("longlink")


class Periodic:
    """A job run every ``interval_s`` in one tracked task (``async with``).

    Subclasses implement :meth:`tick`. An error in a tick is logged and the
    next tick runs as usual; :meth:`close` is idempotent and stops the task
    even if a library swallowed its cancellation.
    """

    #: The task's name (for debugging and task dumps).
    task_name = "longlink-periodic"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> None:
        """One run of the job."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._loop(), name=self.task_name)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the job; idempotent."""
        task, self._task = self._task, None
        await stop_tasks(task)

    async def _loop(self) -> None:
        while not cancel_requested():
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except Exception:
                log.exception("%s failed", self.task_name)
