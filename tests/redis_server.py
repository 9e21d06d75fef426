"""A real redis-server for the tests that need one.

When the ``redis-server`` binary exists, one is started on a free port in a
temporary folder (no persistence unless asked). Otherwise
``LONGLINK_TEST_REDIS_URL`` names one. Under ``CI=true`` having neither is a
failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A redis-server process of our own on 127.0.0.1 (restartable, for failover tests)."""

    def __init__(self, directory: str, *, appendonly: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.directory,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--logfile", os.path.join(self.directory, "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self, *, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(10)
        self.process = None


def redis_available() -> bool:
    return shutil.which("redis-server") is not None or bool(
        os.environ.get("LONGLINK_TEST_REDIS_URL")
    )


def require_redis() -> None:
    """Skip without Redis, except under CI=true where that is a failure."""
    if redis_available():
        return
    message = "no redis-server binary and no LONGLINK_TEST_REDIS_URL"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def redis_url() -> Iterator[str]:
    """A Redis URL for the duration of the block (a private server when possible)."""
    require_redis()
    if shutil.which("redis-server") is None:
        yield os.environ["LONGLINK_TEST_REDIS_URL"]
        return
    with tempfile.TemporaryDirectory(prefix="longlink-redis-") as directory:
        server = RedisServer(directory)
        server.start()
        try:
            yield server.url
        finally:
            server.stop()
