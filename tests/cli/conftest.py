"""The real ``longlink`` command in subprocesses, against a real node on free ports."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from longlink.node import Node
from tests.conftest import API_KEY, WAIT, node_settings

TICKET_SECRET = "ticket-secret-for-the-test-suite-0123456789"


@dataclass
class Run:
    """A finished command: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def error(self) -> dict[str, Any]:
        """The ``--json`` failure on stderr (its last line)."""
        detail: dict[str, Any] = json.loads(self.err.strip().splitlines()[-1])["error"]
        return detail


def cli_env(url: str | None = None, **env: str) -> dict[str, str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LONGLINK_") or k == "LONGLINK_TEST_TIMEOUT_SCALE"
    }
    if url is not None:
        environ["LONGLINK_URL"] = url
    environ["LONGLINK_API_KEY"] = API_KEY
    environ.update(env)
    return environ


async def run_cli(
    *args: str, url: str | None = None, stdin: bytes | None = None, **env: str
) -> Run:
    """``python -m longlink ARGS`` with ``LONGLINK_URL`` and the all-scope API key set."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longlink", *args,
        env=cli_env(url, **env),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin), WAIT * 3)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def start_cli(*args: str, url: str | None = None, **env: str) -> asyncio.subprocess.Process:
    """A long-running command (``listen``); its stdout and stderr are pipes."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longlink", *args,
        env=cli_env(url, **env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def stopped(proc: asyncio.subprocess.Process) -> Run:
    """Wait for ``proc`` to exit (killed after the timeout: the test then fails)."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), WAIT * 3)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("the command did not exit") from None
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def connected(proc: asyncio.subprocess.Process) -> str:
    """Wait for listen's ``connected`` status line on stderr; return it."""
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), WAIT * 3)
    assert b"connected" in line, line
    return line.decode()


@pytest.fixture
async def node(tmp_path: Any) -> AsyncIterator[Node]:
    """A real node on free ports, embedded backends, demo mode and a ticket secret."""
    async with Node(node_settings(tmp_path, ticket_secret=TICKET_SECRET)) as running:
        yield running
