"""What the SQLite store adds to the contract: WAL, group commit, survival of kill -9."""

from __future__ import annotations

import asyncio
import math
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from longlink.settings import ConfigError
from longlink.store.base import StoreError, recipients_of_conn
from longlink.store.sqlite import BATCH_JOBS, FILE_NAME, SqliteStore
from tests.conftest import WAIT
from tests.contracts.test_store import ALICE, NOW, ids, message


async def test_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    store = SqliteStore.in_dir(tmp_path / "nested" / "dir")
    try:
        await store.put([message(1)])
        db = sqlite3.connect(tmp_path / "nested" / "dir" / FILE_NAME)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()
    finally:
        await store.close()


async def test_concurrent_puts_share_commits(tmp_path: Path) -> None:
    store = SqliteStore.in_dir(tmp_path)
    try:
        await asyncio.gather(*(store.put([message(i)]) for i in range(1, 1001)))
        # 1000 puts made in one loop turn: transactions of BATCH_JOBS puts each.
        assert store.commits <= math.ceil(1000 / BATCH_JOBS) + 1
        assert len(await store.pending(ALICE, NOW, limit=2000)) == 1000
    finally:
        await store.close()


def test_a_bad_directory_fails_at_once(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError):
        SqliteStore.in_dir(blocker / "data")
    with pytest.raises(ValueError):
        SqliteStore.in_dir(tmp_path, synchronous="sometimes")


async def test_a_node_with_a_bad_data_dir_is_a_config_error(tmp_path: Path) -> None:
    from longlink.node import Node
    from tests.conftest import node_settings

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError):
        async with Node(node_settings(tmp_path, data_dir=str(blocker / "data"))):
            pass


_KILLED_WRITER = """
import asyncio, os, signal, sys, time
from longlink.model import Message, Target
from longlink.store.sqlite import SqliteStore

async def main() -> None:
    store = SqliteStore.in_dir(sys.argv[1], synchronous=sys.argv[2])
    now = int(time.time() * 1000)
    await store.put([Message(7, Target(users=["alice"]), b"kept", guaranteed=True,
                             accepted_ms=now)])
    print("put", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint

asyncio.run(main())
"""


@pytest.mark.parametrize("sync", ["full", "normal"])
async def test_a_put_that_returned_survives_kill_9(tmp_path: Path, sync: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_WRITER, str(tmp_path), sync,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), WAIT * 2) == b"put\n"
    assert await asyncio.wait_for(proc.wait(), WAIT) == -signal.SIGKILL
    store = SqliteStore.in_dir(tmp_path)
    try:
        pending = await store.pending(recipients_of_conn("alice", "x"), int(time.time() * 1000))
        assert ids(pending) == [7] and pending[0].payload == b"kept"
    finally:
        await store.close()
