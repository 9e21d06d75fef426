"""Every command of README.md and docs/*.md runs as written, against the server ``make run`` starts.

The rules are docs/contributing.md's: a fenced block whose info string is
``sh runnable``, ``python runnable`` or ``toml runnable`` is run (``toml``:
checked with ``longlink check-config``); ``runnable background`` starts a
command that runs until stopped (``longlink listen``): the next block runs
once it has printed its first line, and it must still be running at the end
of the file. ``norun`` marks a block that is not run here (it starts servers
of its own, runs for minutes, or is a fragment). Every ``sh``/``python``
block must say one or the other.

The server is ``make run`` itself (demo mode, API key ``demo-key``, ticket
secret of the Makefile), in a private data directory. When its default
ports (8080, 7000, 7001) are taken, as on a busy CI machine, it runs on free
ports instead, and the blocks get them: ``127.0.0.1:8080``, ``:7000`` and
``:7001`` in their text are replaced by the real ports, and ``LONGLINK_URL``
is set for the CLI's default ``--url``.

A block fails when it exits non-zero, prints a traceback, or prints an API
error (``{"error":``).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import WAIT

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([A-Za-z]+)([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
#: Languages whose blocks must be marked runnable or norun.
MARKED = {"sh", "bash", "shell", "console", "python", "py"}
DEFAULT_PORTS = {"http": 8080, "ws": 7000, "tcp": 7001}
READY = re.compile(r"^longlink ready http=(\d+) ws=(\d+) tcp=(\d+)$")
BLOCK_TIMEOUT_S = 60 * max(1.0, WAIT / 5)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    words: tuple[str, ...]
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def runnable(self) -> bool:
        return "runnable" in self.words

    @property
    def background(self) -> bool:
        return "background" in self.words


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        words = tuple(match.group(2).split())
        found.append(Block(path, line, match.group(1), words, match.group(3)))
    return found


def runnable_docs() -> list[Path]:
    return [path for path in DOCS if any(b.runnable for b in blocks(path))]


# ---------------------------------------------------------------- the markers


def test_every_shell_and_python_block_is_marked() -> None:
    unmarked = [
        b.where
        for path in DOCS
        for b in blocks(path)
        if b.lang in MARKED and not ({"runnable", "norun"} & set(b.words))
    ]
    assert not unmarked, f"mark these blocks runnable or norun (docs/contributing.md): {unmarked}"


def test_the_marked_blocks_are_many() -> None:
    counted = [b for path in DOCS for b in blocks(path) if b.runnable]
    assert len(counted) >= 15
    readme = [b for b in blocks(ROOT / "README.md") if b.runnable]
    assert {b.lang for b in readme} == {"sh", "python"}
    assert not [b for b in blocks(ROOT / "docs" / "backend-quickstart.md") if "norun" in b.words]


# ---------------------------------------------------------------- the server make run starts


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Server:
    ports: dict[str, int]
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def substituted(self) -> bool:
        return self.ports != DEFAULT_PORTS

    def text(self, block: str) -> str:
        """The block with the real ports in place of the default ones."""
        for name, default in DEFAULT_PORTS.items():
            port = self.ports[name]
            block = re.sub(rf"(127\.0\.0\.1|localhost):{default}\b", rf"\g<1>:{port}", block)
        return block


def _make_run(data: Path, log: Path, ports: dict[str, int] | None) -> Server | None:
    """``make run`` (the venv as it is: -o keeps make from reinstalling); None if it failed
    to start (a port taken meanwhile)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGLINK_")}
    env["LONGLINK_DATA_DIR"] = str(data)
    if ports is not None:
        env.update(LONGLINK_HTTP_PORT="0", LONGLINK_WS_PORT="0", LONGLINK_TCP_PORT="0")
    with log.open("ab") as err:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "-s", "-o", ".venv/.installed", "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()  # the ready line, or EOF when it failed
    match = READY.match(line)
    if match is None:
        proc.wait(WAIT)
        proc.stdout.close()
        return None
    return Server(
        dict(zip(("http", "ws", "tcp"), map(int, match.groups()), strict=True)), proc, log
    )


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal the process group of ``proc`` (its shell and what it started); kill if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(WAIT * 2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(WAIT)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("make-run")
    log = base / "server.log"
    running = None
    if all(_free(port) for port in DEFAULT_PORTS.values()):
        running = _make_run(base / "data", log, None)
    if running is None:  # the default ports are taken: free ones, substituted in the blocks
        running = _make_run(base / "data", log, {})
    assert running is not None, log.read_text()
    yield running
    _stop(running.proc)
    if running.proc.stdout is not None:
        running.proc.stdout.close()


# ---------------------------------------------------------------- running the blocks


@dataclass
class Background:
    """A command left running: its output is read by a thread; ``started`` at its first line."""

    block: Block
    proc: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.decode("utf-8", "replace"))
            self.started.set()
        self.started.set()  # the end of its output: started, or stopped already

    @property
    def output(self) -> str:
        return "".join(self.lines)


@dataclass
class Runner:
    server: Server
    work: Path
    background: list[Background] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LONGLINK_")}
        env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("VIRTUAL_ENV", None)
        if self.server.substituted:
            env["LONGLINK_URL"] = f"http://127.0.0.1:{self.server.ports['http']}"
        return env

    def command(self, block: Block, index: int) -> list[str]:
        text = self.server.text(block.text)
        if block.lang == "toml":
            path = self.work / f"block-{index}.toml"
            path.write_text(text)
            return [str(ROOT / ".venv" / "bin" / "longlink"), "check-config", "--no-env", str(path)]
        if block.lang in ("python", "py"):
            path = self.work / f"block-{index}.py"
            path.write_text(text)
            return [str(ROOT / ".venv" / "bin" / "python"), str(path)]
        path = self.work / f"block-{index}.sh"
        path.write_text(text)
        return ["bash", "-e", "-o", "pipefail", str(path)]

    def run(self, block: Block, index: int) -> None:
        proc = subprocess.Popen(
            self.command(block, index),
            cwd=self.work,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if block.background:
            running = Background(block, proc)
            self.background.append(running)
            if not running.started.wait(BLOCK_TIMEOUT_S):
                raise AssertionError(f"{block.where} printed nothing")
            if proc.poll() is not None:
                self._check(block, proc.wait(), running.output)
            return
        try:
            output, _ = proc.communicate(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _stop(proc, signal.SIGKILL)
            raise AssertionError(f"{block.where} did not finish") from None
        self._check(block, proc.returncode, output.decode("utf-8", "replace"))

    def finish(self) -> None:
        """Background commands must still run (or have ended well); then they are stopped."""
        for running in self.background:
            code = running.proc.poll()
            _stop(running.proc, signal.SIGINT)
            running.reader.join(WAIT)
            if running.proc.stdout is not None:
                running.proc.stdout.close()
            if code is not None:
                self._check(running.block, code, running.output)

    @staticmethod
    def _check(block: Block, code: int, output: str) -> None:
        assert code == 0, f"{block.where} exited {code}:\n{output}"
        assert "Traceback" not in output, f"{block.where}:\n{output}"
        assert '{"error":' not in output.replace(" ", ""), f"{block.where}:\n{output}"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("doc", runnable_docs(), ids=lambda path: path.name)
def test_the_blocks_run_as_written(doc: Path, server: Server, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for entry in ROOT.iterdir():  # the repository's files, read-only use; its data dir not
        if entry.name not in ("data", ".git"):
            (work / entry.name).symlink_to(entry)
    runner = Runner(server, work)
    try:
        for index, block in enumerate(b for b in blocks(doc) if b.runnable):
            runner.run(block, index)
    finally:
        runner.finish()
    assert server.proc.poll() is None, server.log.read_text()
