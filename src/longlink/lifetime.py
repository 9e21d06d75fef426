"""Helpers for long-running loops that must stop when they are cancelled.

A library may swallow a cancellation (a timeout inside a client library that
fires at the same moment turns the ``CancelledError`` into a ``TimeoutError``,
which a loop then logs and survives). The task stays *cancelling* but gets no
new ``CancelledError``, so a ``while True`` loop runs on and ``close()`` waits
forever. Loops test :func:`cancel_requested` each turn instead.
"""

from __future__ import annotations

import asyncio


def cancel_requested() -> bool:
    """True when the current task has been asked to cancel (even if the error was lost)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
