"""The SQLite connection of a node: WAL, full fsync, migrations, and group commit.

Every write goes through ``Database.write``: the caller hands over an async function of
the connection, and a single writer task runs all pending ones in one transaction, each
inside its own SAVEPOINT (one failing write rolls back alone), then commits once. The
callers' awaits return only after that commit, which is fsync'd (``synchronous=FULL``):
that is what lets the node answer "accepted" truthfully without paying one fsync per
envelope. Reads use a second connection so they never wait behind a commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import structlog

from liaison_net.core.audit import GENESIS, entry_hash
from liaison_net.errors import Conflict, LiaisonError, NodeFault, Unavailable
from liaison_net.store.schema import MIGRATIONS, SCHEMA_VERSION

log = structlog.get_logger("liaison.store")

T = TypeVar("T")
WriteFn = Callable[["WriteTxn"], Awaitable[T]]


class WriteTxn:
    """What a write function may do: run SQL and append audit entries, in the group's txn."""

    def __init__(self, db: Database, conn: aiosqlite.Connection) -> None:
        self._db = db
        self.conn = conn

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> aiosqlite.Cursor:
        return await self.conn.execute(sql, params)

    async def executemany(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        await self.conn.executemany(sql, params)

    async def audit(self, at: int, event: str, actor: str, detail: str,
                    envelope_id: bytes | None = None) -> None:
        await self._db._append_audit(self.conn, at, event, actor, detail, envelope_id)


class Database:
    def __init__(self, path: Path, *, group_commit_max: int = 512) -> None:
        self.path = path
        self._group_commit_max = group_commit_max
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[tuple[WriteFn[Any], asyncio.Future[Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._audit_head: tuple[int, bytes] = (0, GENESIS)
        self.commits = 0

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = await aiosqlite.connect(self.path, isolation_level=None)
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                           "busy_timeout=10000"):
                await self._writer.execute(f"PRAGMA {pragma}")
            await self._migrate(self._writer)
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await self._reader.execute("PRAGMA busy_timeout=10000")
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot open database {self.path}: {exc}") from exc
        self._task = asyncio.create_task(self._write_loop(), name="group-commit")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
        rows = list(await (await conn.execute("SELECT version FROM schema_version")).fetchall())
        current = rows[0][0] if rows else 0
        if current > SCHEMA_VERSION:
            raise NodeFault(f"database schema {current} is newer than this program "
                            f"({SCHEMA_VERSION}); upgrade liaison_net")
        for version in range(current, SCHEMA_VERSION):
            await conn.execute("BEGIN IMMEDIATE")
            try:
                await _run_script(conn, MIGRATIONS[version])
                await conn.execute("DELETE FROM schema_version")
                await conn.execute("INSERT INTO schema_version VALUES (?)", (version + 1,))
                await conn.execute("COMMIT")
            except BaseException:
                await conn.execute("ROLLBACK")
                raise

    @staticmethod
    async def _load_audit_head_in(conn: aiosqlite.Connection) -> tuple[int, bytes]:
        cursor = await conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        row = await cursor.fetchone()
        return (row[0], bytes(row[1])) if row else (0, GENESIS)

    # --- reads --------------------------------------------------------------------------

    async def fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        assert self._reader is not None, "database not open"
        try:
            cursor = await self._reader.execute(sql, params)
            return list(await cursor.fetchall())
        except sqlite3.Error as exc:
            raise Unavailable(f"database read failed: {exc}") from exc

    async def fetchone(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    # --- writes -------------------------------------------------------------------------

    async def write(self, fn: WriteFn[T]) -> T:
        """Run ``fn`` in the next group transaction; return once that transaction is durable."""
        if self._task is None or self._task.done():
            raise Unavailable("database writer is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put((fn, future))
        return await future

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._group_commit_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit_batch(batch)

    async def _commit_batch(self, batch: list[tuple[WriteFn[Any], asyncio.Future[Any]]]) -> None:
        conn = self._writer
        assert conn is not None
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            await conn.execute("BEGIN IMMEDIATE")
            # Re-read the chain head under the write lock: an admin command in another
            # process (enrolment, rotation) may have appended entries since our last commit.
            self._audit_head = await self._load_audit_head_in(conn)
            txn = WriteTxn(self, conn)
            for i, (fn, future) in enumerate(batch):
                savepoint_head = self._audit_head
                await conn.execute(f"SAVEPOINT w{i}")
                try:
                    value = await fn(txn)
                except sqlite3.OperationalError:
                    raise  # disk full, I/O error: the whole group fails below
                except Exception as exc:
                    # This write alone is refused (ours, a constraint, or a bug in it); the
                    # rest of the group still commits and the writer keeps running.
                    await conn.execute(f"ROLLBACK TO w{i}")
                    self._audit_head = savepoint_head
                    if isinstance(exc, sqlite3.IntegrityError):
                        exc = Conflict(f"refused by a database constraint: {exc}")
                    elif not isinstance(exc, LiaisonError):
                        log.exception("store.write_failed")
                        exc = NodeFault("internal error while storing")
                    results.append((future, False, exc))
                else:
                    results.append((future, True, value))
                await conn.execute(f"RELEASE w{i}")
            await conn.execute("COMMIT")
            self.commits += 1
        except (sqlite3.Error, ValueError) as exc:
            # Disk full, I/O error, locked: nothing of this batch was stored.
            with contextlib.suppress(sqlite3.Error):  # no transaction may be left to roll back
                await conn.execute("ROLLBACK")
            error = Unavailable(f"storage failed, nothing stored: {exc}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for future, ok, value in results:
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    async def _append_audit(self, conn: aiosqlite.Connection, at: int, event: str, actor: str,
                            detail: str, envelope_id: bytes | None) -> None:
        seq, prev = self._audit_head
        seq += 1
        digest = entry_hash(prev, seq, at, event, envelope_id, actor, detail)
        await conn.execute(
            "INSERT INTO audit (seq, at, event, envelope_id, actor, detail, prev, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, at, event, envelope_id, actor, detail, prev, digest),
        )
        self._audit_head = (seq, digest)


async def _run_script(conn: aiosqlite.Connection, script: str) -> None:
    """executescript() would COMMIT our transaction; run statement by statement instead."""
    for statement in script.split(";"):
        if statement.strip():
            await conn.execute(statement)
