"""A real redis-server for the tests that need one, and a real Redis Cluster.

When the ``redis-server`` binary exists, one is started on a free port in a
temporary folder (no persistence unless asked). Otherwise
``LONGLINK_TEST_REDIS_URL`` names one. Under ``CI=true`` having neither is a
failure, never a skip.

:class:`RedisClusterServers` makes a 3-primary Redis Cluster the same way
(``redis-server --cluster-enabled yes`` three times, then ``redis-cli
--cluster create``), with AOF on so a primary can be restarted with its data;
``LONGLINK_TEST_REDIS_CLUSTER_URL`` (``redis+cluster://…``) names one instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A redis-server process of our own on 127.0.0.1 (restartable, for failover tests)."""

    def __init__(
        self,
        directory: str,
        *,
        appendonly: bool = False,
        port: int | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra = list(extra)
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
            *self.extra,
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


class RedisClusterServers:
    """Three redis-server processes joined into one Redis Cluster (no replicas), AOF on."""

    def __init__(self, directory: str, primaries: int = 3) -> None:
        self.servers: list[RedisServer] = []
        for i in range(primaries):
            folder = os.path.join(directory, f"n{i}")
            os.makedirs(folder)
            extra = [
                "--cluster-enabled", "yes",
                "--cluster-port", str(free_port()),  # not port + 10000: that may pass 65535
                "--cluster-config-file", os.path.join(folder, "nodes.conf"),
                "--cluster-node-timeout", "2000",
                "--cluster-require-full-coverage", "no",
                "--appendfsync", "everysec",
            ]  # fmt: skip
            self.servers.append(RedisServer(folder, appendonly=True, extra=extra))

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    def start(self) -> None:
        for server in self.servers:
            server.start()
        addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.wait_ok()

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Until every primary says ``cluster_state:ok`` (the slots are all served)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [_cli(s.port, "cluster", "info") for s in self.servers]
            if all("cluster_state:ok" in state for state in states):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the cluster did not become ok: {states}")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def owner(self, key: str) -> RedisServer:
        """The primary that serves ``key``'s slot now."""
        from longlink.bus.keys import slot

        port = self._slot_owner(slot(key))
        return next(s for s in self.servers if s.port == port)

    def _slot_owner(self, slot: int) -> int:
        for line in _cli(self.servers[0].port, "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2]:
                continue
            port = int(fields[1].split("@")[0].rpartition(":")[2])
            for part in fields[8:]:
                low, _, high = part.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return port
        raise LookupError(f"no primary serves slot {slot}")

    def restart(self, server: RedisServer) -> None:
        """SIGKILL ``server`` and start it again on its port with its data (AOF, nodes.conf)."""
        server.stop(kill=True)
        server.start()
        self.wait_ok()


def redis_cluster_available() -> bool:
    return (
        shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None
    ) or bool(os.environ.get("LONGLINK_TEST_REDIS_CLUSTER_URL"))


@contextmanager
def redis_cluster_servers() -> Iterator[RedisClusterServers | None]:
    """A private cluster for the block; None when ``LONGLINK_TEST_REDIS_CLUSTER_URL`` names one."""
    if not redis_cluster_available():
        message = "no redis-server/redis-cli binaries and no LONGLINK_TEST_REDIS_CLUSTER_URL"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    if os.environ.get("LONGLINK_TEST_REDIS_CLUSTER_URL"):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="longlink-cluster-") as directory:
        cluster = RedisClusterServers(directory)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


class RedisSentinelSet:
    """A primary, one replica and one Sentinel (quorum 1) watching them, as ``MASTER``."""

    MASTER = "longlink"

    def __init__(self, directory: str, *, down_after_ms: int = 1000) -> None:
        self.directory = directory
        self.down_after_ms = down_after_ms
        folders = [os.path.join(directory, name) for name in ("a", "b", "sentinel")]
        for folder in folders:
            os.makedirs(folder)
        fast_sync = ["--repl-diskless-sync-delay", "0"]  # not 5 s before the first sync
        self.primary = RedisServer(folders[0], extra=fast_sync)
        self.replica = RedisServer(
            folders[1], extra=[*fast_sync, "--replicaof", "127.0.0.1", str(self.primary.port)]
        )
        self.sentinel_port = free_port()
        self.sentinel_dir = folders[2]
        self.sentinel: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.MASTER}/0"

    def start(self) -> None:
        self.primary.start()
        self.replica.start()
        config = os.path.join(self.sentinel_dir, "sentinel.conf")
        with open(config, "w") as file:
            file.write(
                f"port {self.sentinel_port}\n"
                "bind 127.0.0.1\n"
                f"dir {self.sentinel_dir}\n"
                f"logfile {os.path.join(self.sentinel_dir, 'sentinel.log')}\n"
                f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary.port} 1\n"
                f"sentinel down-after-milliseconds {self.MASTER} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.MASTER} 5000\n"
            )
        self.sentinel = subprocess.Popen(["redis-server", config, "--sentinel"])
        self._wait(lambda: _cli(self.primary.port, "info", "replication"), "state=online")
        self._wait(lambda: _cli(self.sentinel_port, "sentinel", "replicas", self.MASTER), "ip")

    def primary_port(self) -> int:
        """The port of the primary the Sentinel names now."""
        reply = _cli(self.sentinel_port, "sentinel", "get-master-addr-by-name", self.MASTER)
        return int(reply.split()[1])

    @staticmethod
    def _wait(read: Callable[[], str], wanted: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                text = read()
                if wanted in text:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"waited for {wanted!r}, got {text!r}")

    def stop(self) -> None:
        if self.sentinel is not None and self.sentinel.poll() is None:
            self.sentinel.terminate()
            self.sentinel.wait(10)
        self.replica.stop()
        self.primary.stop()


def _cli(port: int, *args: str) -> str:
    result = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=5
    )
    return result.stdout


@contextmanager
def redis_sentinel_set() -> Iterator[RedisSentinelSet]:
    """A running primary + replica + Sentinel for the block (needs the binaries)."""
    if not redis_cluster_available() or os.environ.get("LONGLINK_TEST_REDIS_CLUSTER_URL"):
        message = "no redis-server/redis-cli binaries: the Sentinel tests start their own"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    with tempfile.TemporaryDirectory(prefix="longlink-sentinel-") as directory:
        servers = RedisSentinelSet(directory)
        try:
            servers.start()
            yield servers
        finally:
            servers.stop()
