"""A multi-process longlink deployment on one machine, for the Redis tests.

``Cluster`` starts ``python -m longlink serve --role …`` processes that share
one redis-server (a private one the cluster owns, with AOF, so it can be
killed and restarted) and one token secret, reads each ready line, and kills
everything at the end.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import API_KEY, WAIT
from tests.redis_server import RedisServer

READY = re.compile(r"^longlink ready(?P<ports>( \w+=\d+)*)$")


@dataclass
class Process:
    name: str
    roles: str
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"


class Cluster:
    """Processes of one deployment sharing a private Redis."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.redis = RedisServer(str(directory), appendonly=True)
        self.processes: dict[str, Process] = {}

    async def __aenter__(self) -> Cluster:
        self.redis.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for process in self.processes.values():
            await self.kill(process.name)
        self.redis.stop()

    def base_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LONGLINK_BUS": self.redis.url,
            "LONGLINK_TOKEN_SECRET": "cluster-token-secret-0123456789abcdef",
            "LONGLINK_API_KEY": API_KEY,
            "LONGLINK_DEMO": "1",
            "LONGLINK_HTTP_PORT": "0",
            "LONGLINK_WS_PORT": "0",
            "LONGLINK_TCP_PORT": "0",
            "LONGLINK_LOG_LEVEL": "info",
            "LONGLINK_DRAIN_TIMEOUT_S": "2",
            "LONGLINK_CLAIM_IDLE_MS": "1000",
            "LONGLINK_RETRY_INTERVAL_S": "0.5",
            "LONGLINK_DATA_DIR": str(self.directory),
        }

    async def start(
        self, name: str, roles: str, *, own_node_id: bool = True, **env: str
    ) -> Process:
        """Start ``name``; its node id is its name unless ``own_node_id`` is False (the default)."""
        process = Process(name, roles, self._env(name, own_node_id, env))
        await self._spawn(process)
        self.processes[name] = process
        return process

    async def refused(self, name: str, roles: str, **env: str) -> str:
        """Start ``name`` expecting it to stop before it is ready; what it wrote to stderr."""
        log = open(self.directory / f"{name}.log", "ab")  # noqa: SIM115, ASYNC230
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "longlink", "serve", "--role", roles,
            env=self._env(name, True, env),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )  # fmt: skip
        log.close()
        out, _ = await asyncio.wait_for(proc.communicate(), WAIT * 3)
        assert proc.returncode not in (0, None), f"{name} started: {out!r}"
        assert not out.startswith(b"longlink ready"), f"{name} started: {out!r}"
        return self.log(name)

    def _env(self, name: str, own_node_id: bool, env: dict[str, str]) -> dict[str, str]:
        base = self.base_env()
        if own_node_id:
            base["LONGLINK_NODE_ID"] = name
        else:
            base.pop("LONGLINK_NODE_ID", None)
        return {**base, **env}

    async def _spawn(self, process: Process) -> None:
        log = open(self.directory / f"{process.name}.log", "ab")  # noqa: SIM115, ASYNC230
        process.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "longlink", "serve", "--role", process.roles,
            env=process.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )  # fmt: skip
        log.close()
        assert process.proc.stdout is not None
        line = (await asyncio.wait_for(process.proc.stdout.readline(), WAIT * 3)).decode()
        match = READY.match(line.strip())
        assert match, f"{process.name}: unexpected first line {line!r}; see {process.name}.log"
        process.ports = {
            key: int(value) for key, value in (item.split("=") for item in match["ports"].split())
        }

    async def restart(self, name: str) -> Process:
        """Start ``name`` again with the same roles and settings (new ports)."""
        process = self.processes[name]
        await self._spawn(process)
        return process

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.processes[name].proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(sig)
            try:
                await asyncio.wait_for(proc.wait(), WAIT * 3)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise AssertionError(f"{name} did not stop:\n{self.log(name)[-3000:]}") from None

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")


async def push(url: str, body: dict[str, Any]) -> int:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.post(
            f"{url}/v1/push", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
        )
    assert response.status_code == 202, response.text
    return int(response.json()["msg_id"])
