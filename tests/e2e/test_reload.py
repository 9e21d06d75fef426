"""SIGHUP to a real ``longlink serve --config FILE``: keys change without a restart."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
from pathlib import Path

import httpx

from tests.conftest import WAIT, fresh_bus
from tests.e2e.test_cli import READY

OLD = '[[api_keys]]\nname = "old"\nkey = "old-secret"\n'
NEW = (
    '[[api_keys]]\nname = "new"\nkey_sha256 = "'
    + hashlib.sha256(b"new-secret").hexdigest()
    + '"\ntargets = ["users"]\n'
)


async def stderr_line_with(proc: asyncio.subprocess.Process, text: str) -> str:
    """The next stderr line containing ``text`` (earlier lines are skipped)."""
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), WAIT)).decode()
        assert line, f"stderr closed before {text!r}"
        if text in line:
            return line


async def status(http: httpx.AsyncClient, key: str) -> int:
    body = {"to": {"users": ["u1"]}, "data": 1}
    response = await http.post("/v1/push", json=body, headers={"Authorization": f"Bearer {key}"})
    return response.status_code


async def test_sighup_swaps_keys_and_a_bad_file_keeps_them(tmp_path: Path, bus: str) -> None:
    await fresh_bus(bus)
    config = tmp_path / "longlink.toml"
    config.write_text(OLD)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LONGLINK_")}
    environ.update(
        LONGLINK_HTTP_PORT="0",
        LONGLINK_WS_PORT="0",
        LONGLINK_TCP_PORT="0",
        LONGLINK_DATA_DIR=str(tmp_path),
        LONGLINK_LOG_LEVEL="warning",
        LONGLINK_BUS=bus,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longlink", "serve", "--config", str(config),
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), WAIT * 2)).decode().strip()
        match = READY.match(line)
        assert match, f"unexpected first line {line!r}"
        url = f"http://127.0.0.1:{match.group(1)}"
        async with httpx.AsyncClient(base_url=url, timeout=WAIT) as http:
            assert await status(http, "old-secret") == 202
            assert await status(http, "new-secret") == 401

            config.write_text(NEW)
            proc.send_signal(signal.SIGHUP)
            assert "(1 api keys)" in await stderr_line_with(proc, "longlink: reloaded")
            assert await status(http, "old-secret") == 401
            assert await status(http, "new-secret") == 202

            config.write_text("no_such_setting = 1\n" + NEW)
            proc.send_signal(signal.SIGHUP)
            failed = await stderr_line_with(proc, "reload failed")
            assert "no_such_setting" in failed
            assert await status(http, "new-secret") == 202

            config.write_text("heartbeat_s = 10\n" + NEW)
            proc.send_signal(signal.SIGHUP)
            await stderr_line_with(proc, "longlink: reloaded")
            assert "heartbeat_s" in await stderr_line_with(proc, "need a restart")

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), WAIT * 2) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
