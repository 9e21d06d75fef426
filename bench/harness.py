"""The processes of ``make bench`` and what is read off them.

* :class:`Server`: a server under test (longlink or a peer) in its own process group,
  pinned to core 0 with ``taskset`` (every thread it starts inherits the pin), its
  stdout read line by line (``ready port=P`` / ``longlink ready http=H ws=W tcp=T``),
  its stderr kept in a log file;
* :class:`LoadGen`: the compiled load generator (bench/loadgen/) pinned to core 1,
  spoken to with one-line commands, answering JSON lines;
* :class:`Snapshot` / :func:`usage`: CPU of both processes, busy time of each core
  and of the whole machine, so that every figure says whether the load generator had
  room and how much else ran on the machine meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import CORES, Commanded, Lines, cpu_seconds, rss_kib

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEERS = BENCH / ".peers"
LOADGEN = PEERS / "bin" / "loadgen"
FLOOD = PEERS / "bin" / "flood"
SERVER_CORE = 0
LOAD_CORE = 1
API_KEY = "bench-key"
ROOM = "bench"


#: Niceness of every server and load generator (``--nice``): below 0 they go ahead of
#: other work on a shared machine (it needs the privilege); the same for every peer.
NICE = [0]


def pinned(core: int) -> list[str]:
    """``taskset -c CORE`` when there is such a core and more than one (else nothing), and
    ``nice -n N`` under ``--nice``: both apply to every thread the program starts."""
    prefix = []
    if len(CORES) > 1 and core in CORES and shutil.which("taskset"):
        prefix = ["taskset", "-c", str(core)]
    if NICE[0]:
        prefix += ["nice", "-n", str(NICE[0])]
    return prefix


class Server:
    """A server under test: started pinned to core 0, stopped with its whole group."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        log: Path,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.log_path = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [*pinned(SERVER_CORE), *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        self.lines = Lines(self.proc)
        self.ports: dict[str, int] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60) -> dict[str, int]:
        """The ``key=port`` fields of the first line that says ``ready``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.next(max(0.1, left), f"{self.name} ready")
            except (TimeoutError, RuntimeError) as exc:
                raise RuntimeError(f"{exc}; log: {self.tail()}") from None
            words = line.split()
            if "ready" in words:
                self.ports = {
                    k: int(v) for k, _, v in (w.partition("=") for w in words) if v.isdigit()
                }
                return self.ports

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def answer(self, timeout: float) -> dict[str, Any]:
        """The next JSON line of the server (the flood server's answers)."""
        while True:
            line = self.lines.next(timeout, f"{self.name} answer")
            if line.startswith("{"):
                result: dict[str, Any] = json.loads(line)
                return result

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def tail(self, lines: int = 8) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


class LoadGen(Commanded):
    """The load generator (bench/loadgen/main.c has its commands) pinned to core 1."""

    def __init__(self, port: int, proto: str, **options: object) -> None:
        argv = [str(LOADGEN), "--port", str(port), "--proto", proto]
        for key, value in options.items():
            if value is not None:
                argv += [f"--{key.replace('_', '-')}", str(value)]
        super().__init__(
            subprocess.Popen(
                [*pinned(LOAD_CORE), *argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
        self.answer("ready", 10)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def answer(
        self, word: str, timeout: float, on_mark: Callable[[int], None] | None = None
    ) -> dict[str, Any]:
        """The answer ``{"ok": word, ...}``; ``{"mark": n}`` lines on the way go to ``on_mark``."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.next(max(0.1, deadline - time.monotonic()), f"loadgen {word}")
            if not line.startswith("{"):
                continue
            message: dict[str, Any] = json.loads(line)
            if "mark" in message:
                if on_mark is not None:
                    on_mark(int(message["mark"]))
                continue
            if message.get("ok") == word:
                if "error" in message:
                    raise RuntimeError(f"loadgen {word}: {message['error']}")
                return message

    def connect(self, total: int, rate: float = 0, concurrency: int = 200) -> dict[str, Any]:
        """Open subscribers until ``total`` are ready (``rate``/s; 0: as fast as they come)."""
        self.send(f"connect {total} {rate} {concurrency}")
        return self.answer("connect", 120 + (total / rate if rate else 0))

    def run(
        self,
        rate: float,
        seconds: float,
        warmup: float,
        *,
        samples: int = 32,
        target: str = "room",
        drain: float = 5,
        on_mark: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        self.send(f"run {rate} {seconds} {warmup} {samples} {target} {drain}")
        return self.answer("run", seconds + drain + 60, on_mark)

    def close(self) -> None:
        self.send("close")
        self.answer("close", 30)


# =========================================================================== usage


def _cores() -> dict[int, tuple[int, int]]:
    """(busy, total) jiffies per core, softirq included."""
    cores: dict[int, tuple[int, int]] = {}
    with open("/proc/stat") as stat:
        for line in stat:
            name = line.split(maxsplit=1)[0]
            if name.startswith("cpu") and name[3:].isdigit():
                ticks = [int(t) for t in line.split()[1:9]]
                cores[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    return cores


@dataclass
class Snapshot:
    """CPU of the server and the load generator, and the cores' busy time, at one instant."""

    wall: float
    server: float
    loadgen: float
    cores: dict[int, tuple[int, int]]

    @staticmethod
    def take(server_pid: int, loadgen_pid: int | None) -> Snapshot:
        return Snapshot(
            time.monotonic(),
            cpu_seconds(server_pid),
            cpu_seconds(loadgen_pid) if loadgen_pid else 0.0,
            _cores(),
        )


def usage(first: Snapshot, last: Snapshot) -> dict[str, float]:
    """Between two snapshots: the server's and the load generator's CPU (% of a core),
    core 0's and core 1's busy time (%), and the rest of the machine in cores (kernel
    work not charged to either process, and anything else that ran)."""
    wall = max(1e-9, last.wall - first.wall)

    def busy(core: int) -> float:
        if core not in first.cores or core not in last.cores:
            return float("nan")
        b = last.cores[core][0] - first.cores[core][0]
        t = last.cores[core][1] - first.cores[core][1]
        return 100 * b / t if t else float("nan")

    server = (last.server - first.server) / wall
    loadgen = (last.loadgen - first.loadgen) / wall
    all_busy = sum(busy(c) for c in last.cores if c in first.cores) / 100
    return {
        "server_cpu": 100 * server,
        "core0": busy(SERVER_CORE),
        "loadgen_cpu": 100 * loadgen,
        "core1": busy(LOAD_CORE),
        "rest_cores": max(0.0, all_busy - server - loadgen),
    }


def quiet_machine(max_busy: float = 0.3, wait: float = 15) -> float:
    """Wait (up to ``wait`` s) until the machine is idle but for ``max_busy`` cores;
    returns the busy cores seen last (the machine is shared with other work)."""
    deadline = time.monotonic() + wait
    while True:
        first = _cores()
        time.sleep(0.5)
        last = _cores()
        busy = sum((last[c][0] - first[c][0]) / max(1, last[c][1] - first[c][1]) for c in last)
        if busy <= max_busy or time.monotonic() >= deadline:
            return busy


def write_tokens(path: Path, count: int, secret: str) -> None:
    """``user<i> <token>`` lines: connection tokens signed with the shared secret, as
    ``POST /v1/connect`` would hand them out (the load generator presents them in AUTH)."""
    from longlink.control.tokens import TokenIssuer

    issuer = TokenIssuer(secret, 24 * 3600)
    with open(path, "w") as out:
        for i in range(count):
            token, _ = issuer.issue(f"user{i}", f"dev{i}")
            out.write(f"user{i} {token}\n")
