"""The embedded offline store: one SQLite file in WAL mode, group-committed.

``SqliteStore(path)`` opens (or creates) the file and its schema at once, so
a bad ``data_dir`` stops the process at start. After that:

* calls are queued as *jobs*; once per loop turn every job queued so far runs
  in **one transaction** (group commit), and jobs queued while it commits form
  the next one. So many concurrent ``put`` calls (one per push request) cost
  one commit, and the 202 of each is sent after the commit that holds its
  message. Reads run in the same batches, so a caller sees its own writes;
* the statements run on the event loop: SQLite answers them in microseconds
  from its page cache, and a thread would cost a GIL hand-over per row
  (``executemany`` releases the GIL at every step), each up to the 5 ms
  switch interval while the loop is busy. Only the ``COMMIT`` that waits for
  the disk (``synchronous=FULL``) runs on a writer thread: one hand-over per
  transaction, and the loop never waits for an fsync. A batch of reads only
  (every client that connects asks for its pending messages) writes nothing
  and commits nothing: it is answered in the same loop turn, no thread.

Durability: WAL with ``synchronous=FULL`` (the default) fsyncs every commit,
so an accepted message survives a process kill and a power loss;
``synchronous="normal"`` survives a process kill (the OS has the pages) and
may lose the last commits on power loss, for no fsync per commit.

Limits: one process. Several processes may open the same file (SQLite locks
it), but only one event loop per store object. Message ids (unsigned 64-bit)
are stored minus 2**63, which fits SQLite's signed INTEGER and keeps their order.

Schema: ``messages`` holds each message once (packed with
:func:`longlink.model.pack_message`) with its expiry; ``pending`` holds one
row per (recipient, message). A message leaves ``messages`` when its last
recipient acks it or when it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from longlink.model import Message, pack_message, unpack_message
from longlink.store.base import StoreError, recipients_of

__all__ = ["FILE_NAME", "SqliteStore"]

#: The file name inside ``settings.data_dir``.
FILE_NAME = "offline.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    msg_id     INTEGER PRIMARY KEY,
    expires_ms INTEGER NOT NULL,
    body       BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages (expires_ms);
CREATE TABLE IF NOT EXISTS pending (
    recipient TEXT NOT NULL,
    msg_id    INTEGER NOT NULL,
    PRIMARY KEY (recipient, msg_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_by_msg ON pending (msg_id);
"""

_OFFSET = 1 << 63
#: Most jobs in one transaction (one loop callback runs them: a few milliseconds).
BATCH_JOBS = 256

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
#: A queued job: what it runs, who waits for it, whether it writes.
Queued = tuple[Job, asyncio.Future[Any], bool]


def _sql(msg_id: int) -> int:
    """An unsigned 64-bit id as SQLite's signed INTEGER, order kept."""
    return msg_id - _OFFSET


def _unsql(value: int) -> int:
    return value + _OFFSET


class SqliteStore:
    """:class:`~longlink.store.base.OfflineStore` on one SQLite file (module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "full") -> None:
        sync = synchronous.upper()
        if sync not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The connection is used by the writer thread only (one at a time).
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"{self.path}: cannot use WAL mode (got {mode})")
                db.execute(f"PRAGMA synchronous={sync}")
                db.execute("PRAGMA busy_timeout=5000")
                db.executescript(_SCHEMA)
            except BaseException:
                db.close()
                raise
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the offline store {self.path}: {exc}") from exc
        self._db = db
        self._fsync = sync == "FULL"
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="longlink-store")
        self._jobs: list[Queued] = []
        self._busy = False  # a batch is being run or committed
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        #: Transactions committed so far (tests and benchmarks read it).
        self.commits = 0

    @classmethod
    def in_dir(cls, data_dir: str | os.PathLike[str], *, synchronous: str = "full") -> SqliteStore:
        """The store file :data:`FILE_NAME` in ``data_dir`` (created if missing)."""
        return cls(Path(data_dir) / FILE_NAME, synchronous=synchronous)

    # ------------------------------------------------------------------ the seam

    async def put(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        rows: list[tuple[int, int, bytes]] = []
        keys: list[tuple[str, int]] = []
        for message in messages:
            recipients = recipients_of(message.target)
            if not recipients:
                raise ValueError(f"message {message.msg_id}: its target names no user or device")
            msg_id = _sql(message.msg_id)
            rows.append((msg_id, message.expires_ms, pack_message(message)))
            keys.extend((r, msg_id) for r in recipients)

        def job(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT OR IGNORE INTO messages (msg_id, expires_ms, body) VALUES (?, ?, ?)", rows
            )
            db.executemany("INSERT OR IGNORE INTO pending (recipient, msg_id) VALUES (?, ?)", keys)

        await self._run(job)

    async def pending(
        self, recipients: Sequence[str], now_ms: int, *, after: int = 0, limit: int = 500
    ) -> list[Message]:
        if not recipients or limit <= 0:
            return []
        marks = ",".join("?" * len(recipients))
        query = (
            "SELECT body FROM messages WHERE msg_id IN "
            f"(SELECT msg_id FROM pending WHERE recipient IN ({marks}) AND msg_id > ?) "
            "AND expires_ms > ? ORDER BY msg_id LIMIT ?"
        )
        args = (*recipients, _sql(after), now_ms, limit)

        def job(db: sqlite3.Connection) -> list[bytes]:
            return [row[0] for row in db.execute(query, args)]

        return [unpack_message(body) for body in await self._run(job, write=False)]

    async def ack(self, recipients: Sequence[str], msg_ids: Sequence[int]) -> None:
        await self.ack_many([(recipients, msg_ids)])

    async def ack_many(self, acks: Sequence[tuple[Sequence[str], Sequence[int]]]) -> None:
        keys: list[tuple[str, int]] = []
        for recipients, msg_ids in acks:
            keys.extend((r, _sql(i)) for i in dict.fromkeys(msg_ids) for r in recipients)
        if not keys:
            return
        orphans = [(i, i) for i in dict.fromkeys(i for _, i in keys)]

        def job(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM pending WHERE recipient = ? AND msg_id = ?", keys)
            # The message itself goes once no recipient is left waiting for it.
            db.executemany(
                "DELETE FROM messages WHERE msg_id = ?"
                " AND NOT EXISTS (SELECT 1 FROM pending WHERE msg_id = ?)",
                orphans,
            )

        await self._run(job)

    async def expire(self, now_ms: int, limit: int = 10_000) -> list[int]:
        def job(db: sqlite3.Connection) -> list[int]:
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT msg_id FROM messages WHERE expires_ms <= ? ORDER BY expires_ms LIMIT ?",
                    (now_ms, limit),
                )
            ]
            keys = [(i,) for i in ids]
            db.executemany("DELETE FROM pending WHERE msg_id = ?", keys)
            db.executemany("DELETE FROM messages WHERE msg_id = ?", keys)
            return ids

        return [_unsql(i) for i in await self._run(job)]

    async def count(self) -> int:
        def job(db: sqlite3.Connection) -> int:
            return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])

        return await self._run(job, write=False)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._idle.wait()  # what was asked before the close is committed
        self._thread.shutdown(wait=True)
        self._close_db()

    def _close_db(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

    # ------------------------------------------------------------------ group commit

    async def _run(self, job: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Queue ``job`` for the next transaction and wait for its commit.

        ``write=False``: the job only reads; a batch of such jobs needs no commit.
        """
        if self._closed:
            raise StoreError("the offline store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.append((job, future, write))
        if not self._busy:
            self._busy = True
            loop.call_soon(self._flush)  # after the callers of this loop turn have queued
        return await future

    def _flush(self) -> None:
        """Run the queued jobs in one transaction; commit it (off the loop when it fsyncs)."""
        batch = self._jobs[:BATCH_JOBS]
        del self._jobs[:BATCH_JOBS]
        if not batch:
            self._busy = False
            self._idle.set()
            return
        self._idle.clear()
        db = self._db
        writes = any(write for _, _, write in batch)
        try:
            # Reads only: one read transaction (a consistent view), nothing to commit.
            db.execute("BEGIN IMMEDIATE" if writes else "BEGIN DEFERRED")
            try:
                results = [job(db) for job, _, _ in batch]
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except Exception as exc:
            self._settle(batch, None, exc)
            return
        if not self._fsync or not writes:
            try:
                db.execute("COMMIT")  # no fsync (or nothing written): microseconds, done here
            except Exception as exc:
                self._rollback()
                self._settle(batch, None, exc)
                return
            self._settle(batch, results, None)
            return
        # COMMIT fsyncs the WAL: the writer thread waits for the disk, the loop does not.
        # Nothing else touches the connection until it is done (jobs queue meanwhile).
        done = asyncio.get_running_loop().run_in_executor(self._thread, self._commit)
        done.add_done_callback(lambda f: self._committed(batch, results, f))

    def _commit(self) -> None:
        try:
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _committed(self, batch: list[Queued], results: list[Any], done: Any) -> None:
        exc = done.exception()
        self._settle(batch, None if exc is not None else results, exc)

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def _settle(
        self,
        batch: list[Queued],
        results: list[Any] | None,
        exc: BaseException | None,
    ) -> None:
        """Answer the batch's callers, then start the next batch (jobs queued meanwhile)."""
        if results is not None:
            self.commits += 1
            for (_, future, _), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        else:
            error = StoreError(f"offline store {self.path}: {exc!r}")
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(error)
        # The next batch in the next loop turn: a burst (every client reconnecting
        # reads its pending messages) never holds the loop for long.
        asyncio.get_running_loop().call_soon(self._flush)
