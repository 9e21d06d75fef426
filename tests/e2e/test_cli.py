"""The real ``longlink`` command in subprocesses: serve, ready line, push, listen, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import API_KEY, WAIT, fresh_bus

READY = re.compile(r"^longlink ready http=(\d+) ws=(\d+) tcp=(\d+)$")


async def start_server(
    tmp_path: Any, *args: str, stderr: int = asyncio.subprocess.DEVNULL, **env: str
) -> tuple[asyncio.subprocess.Process, dict[str, int]]:
    """``longlink serve *args`` in demo mode on free ports with ``env`` added; its ports
    from the ready line (``stderr``: PIPE to read the server's log)."""
    environ = {
        **os.environ,
        "LONGLINK_HTTP_PORT": "0",
        "LONGLINK_WS_PORT": "0",
        "LONGLINK_TCP_PORT": "0",
        "LONGLINK_DEMO": "1",
        "LONGLINK_API_KEY": API_KEY,
        "LONGLINK_DATA_DIR": str(tmp_path),
        "LONGLINK_LOG_LEVEL": "warning",
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longlink", "serve", *args,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), WAIT * 2)).decode().strip()
    match = READY.match(line)
    assert match, f"unexpected first line {line!r}"
    ports = dict(zip(("http", "ws", "tcp"), map(int, match.groups()), strict=True))
    return proc, ports


@pytest.fixture
async def server(
    tmp_path: Any, bus: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, int]]]:
    await fresh_bus(bus)
    proc, ports = await start_server(tmp_path, LONGLINK_BUS=bus)
    yield proc, ports
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def run_cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longlink", *args,
        env={**os.environ, "LONGLINK_API_KEY": API_KEY},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), WAIT * 2)
    return proc.returncode or 0, out.decode()


async def test_serve_push_listen_and_sigterm(server: Any) -> None:
    proc, ports = server
    url = f"http://127.0.0.1:{ports['http']}"
    listener = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longlink", "listen", "--url", url,
        "--user", "terminal", "--room", "lobby", "--transport", "tcp", "--count", "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert listener.stderr is not None and listener.stdout is not None
    connected = await asyncio.wait_for(listener.stderr.readline(), WAIT * 2)
    assert connected.startswith(b"connected:"), connected
    code, out = await run_cli("push", "--url", url, "--room", "lobby", '{"hello": "world"}')
    assert code == 0, out
    msg_id = out.strip()
    line = await asyncio.wait_for(listener.stdout.readline(), WAIT)
    assert line.decode().strip() == f'{msg_id} [lobby] {{"hello": "world"}}'
    assert await asyncio.wait_for(listener.wait(), WAIT) == 0

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), WAIT * 2) == 0


async def test_push_with_wrong_key_fails_clearly(server: Any) -> None:
    _, ports = server
    code, out = await run_cli(
        "push", "--url", f"http://127.0.0.1:{ports['http']}", "--key", "wrong", "--all", "1"
    )
    assert code == 4 and "refused the API key" in out


async def test_bad_config_is_refused(tmp_path: Any) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_setting = 1\n")
    code, out = await run_cli("serve", "--config", str(bad))
    assert code == 12 and "no_such_setting" in out
