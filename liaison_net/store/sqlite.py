"""The SQLite engine of a node's database: one file in WAL mode with full fsync, made
private (0600) before SQLite first opens it, a page quota for ``[store] max_db_mb``, and
the test for "out of space" that tells a full disk from other I/O faults. ``Database``
(database.py) drives it through the ``Backend`` protocol, as it drives
``postgres.PostgresBackend``; nothing here knows about groups, riders or the audit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiosqlite

from liaison_net.errors import NotFound
from liaison_net.lazy_log import LazyLogger

log = LazyLogger("liaison.store")  # structlog when it first logs (lazy_log.py)

#: Page size of a new database. An envelope row (1-2 KiB) fits twice in a 4 KiB page and
#: leaves a sixth of it unused; in 16 KiB pages the unused tail is spread over ~9 rows
#: (issue 16: bytes on disk per envelope; docs/performance.md). A commit writes whole
#: pages to the WAL, so a one-envelope commit writes more bytes; measured, not slower.
PAGE_SIZE = 16384
SQLITE_FULL = 13  # primary result code: "database or disk is full" (also max_page_count)
SQLITE_IOERR = 10
#: An I/O error with less free space than this on the database's filesystem is taken as
#: ENOSPC (SQLite reports some out-of-space paths, e.g. WAL-index growth, as I/O errors).
LOW_SPACE_BYTES = 1024 * 1024


def quota_pages(max_db_mb: float, page_size: int) -> int:
    """``max_db_mb`` as a page count for ``PRAGMA max_page_count`` (at least one page)."""
    return max(1, int(max_db_mb * 1024 * 1024) // page_size)


def is_out_of_space(exc: BaseException, directory: Path | None = None) -> bool:
    """True for SQLITE_FULL (disk full or the page quota), an OSError ENOSPC, or an SQLite
    I/O error while the database's filesystem has (almost) no space left."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == SQLITE_FULL:
        return True
    if "database or disk is full" in str(exc):
        return True
    if code is not None and code & 0xFF == SQLITE_IOERR and directory is not None:
        try:
            return shutil.disk_usage(directory).free < LOW_SPACE_BYTES
        except OSError:
            return False
    return False


class SqliteBackend:
    """One SQLite file: WAL, full fsync, a quota as ``max_page_count``; reads on a second
    connection (aiosqlite) so they never wait behind a commit."""

    name = "sqlite"
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    integrity_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)
    storage_errors: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)
    measures_space = True

    def __init__(self, path: Path, *, max_db_mb: float | None = None) -> None:
        self.path = path
        self.where = str(path)
        self.max_db_mb = max_db_mb
        self._writer: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._data_version: int | None = None  # the writer's, when last asked
        self._presence: int | None = None  # the writer's hold on ``<file>-writers``

    def prepare(self) -> None:
        private_files(self.path)

    def connect_writer(self) -> sqlite3.Connection:
        """On the writer thread: connect, set WAL and full fsync (``Database`` migrates)."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            # Before the first BEGIN (the migrations'): a node's open early group sees
            # this writer at its next one, not only after its first commit.
            self._presence = announce_writer(self.path)
            # busy_timeout first: another process may be creating this very database.
            conn.execute("PRAGMA busy_timeout=10000")
            # Only a new, empty file takes it (an existing one keeps its own page size).
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            _set_wal(conn)
            for pragma in ("synchronous=FULL", "foreign_keys=ON"):
                conn.execute(f"PRAGMA {pragma}")
        except BaseException:
            conn.close()
            self._leave()
            raise
        self._writer = conn
        self._data_version = None  # a new connection: nothing seen yet
        return conn

    def writer(self) -> sqlite3.Connection:
        conn = self._writer
        assert conn is not None, "database writer not open"
        if conn.in_transaction:  # left open by a group that died halfway
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        return conn

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._leave()

    def _leave(self) -> None:
        if self._presence is not None:
            os.close(self._presence)  # releases its lock
            self._presence = None

    def after_migrate(self, conn: sqlite3.Connection) -> None:
        # Each write of a group runs in its own savepoint, whose journal (the pages
        # ROLLBACK TO restores) spilled past 64 KiB to a temporary file: created, written
        # page by page and unlinked at every commit, never synced. In memory it is at
        # most the pages one write changes (it is emptied at each RELEASE). Set after the
        # migrations: it also keeps sorts in memory, and a migration's CREATE INDEX on a
        # large table should still spill to disk.
        conn.execute("PRAGMA temp_store=MEMORY")
        if self.max_db_mb is not None:
            self._apply_quota(conn, self.max_db_mb)

    def begin(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # the write lock: one writer group at a time

    def others_writing(self, conn: sqlite3.Connection) -> bool:
        """Whether another writer has the file open (``others_present``: another worker,
        an admin command, even one still waiting for its first write lock), or another
        connection committed to it since this one last asked (SQLite's ``data_version``
        moves only for others' commits: a writer that does not announce itself)."""
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        seen, self._data_version = self._data_version, version
        present = self._presence is not None and others_present(self._presence)
        return present or (seen is not None and version != seen)

    def sql(self, text: str) -> str:
        return text

    def ddl(self, text: str) -> str:
        return text

    def space(self, conn: sqlite3.Connection) -> tuple[int, int]:
        return _space(conn)

    def out_of_space(self, exc: BaseException) -> bool:
        return is_out_of_space(exc, self.path.parent)

    def _apply_quota(self, conn: sqlite3.Connection, max_db_mb: float) -> None:
        """The quota as SQLite's own page limit on the writer: past it, a write fails with
        SQLITE_FULL, just as on a full disk. Pages freed by deletes (the freelist) are
        reused first, so freeing space lets writes in again without a restart. SQLite never
        sets the limit below the current size; a database already over it takes no more."""
        page_size = (conn.execute("PRAGMA page_size").fetchone() or (4096,))[0]
        wanted = quota_pages(max_db_mb, int(page_size))
        row = conn.execute(f"PRAGMA max_page_count = {wanted}").fetchone()
        granted = int(row[0]) if row else wanted
        log.info("store.quota", max_db_mb=max_db_mb, page_size=page_size, max_pages=granted)
        if granted > wanted:
            log.warning("store.over_quota", max_db_mb=max_db_mb, pages=granted,
                        reason="the database is already larger than its quota; writes that "
                               "need new pages are refused until space is freed")

    async def open_reader(self, *, read_only: bool) -> None:
        """The read connection; ``read_only``: on an existing file opened ``mode=ro``."""
        if read_only:
            if not self.path.is_file():
                raise NotFound(f"no node database at {self.path}: has the node run yet?")
            self._reader = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True,
                                                   isolation_level=None)
        else:
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        await self._reader.execute("PRAGMA busy_timeout=10000")

    async def fetchall(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        assert self._reader is not None, "database not open"
        # One hop to the reader thread (execute and fetch together), not two.
        return list(await self._reader.execute_fetchall(sql, params))

    async def close_reader(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader.close()
        self._reader = None


def announce_writer(path: Path) -> int | None:
    """A shared lock on ``<file>-writers`` (0600, empty), held while this writer is
    connected: how another writer's ``others_present`` sees it before it has the write
    lock. A writer waiting for that lock (SQLite's busy handler: it tries again after
    sleeps of up to 100 ms) only gets it if the lock is free at one of its tries; a node
    whose early riders hold it from one group to the next left it free a moment between,
    and another process's open or first write waited 0.8-7 s, or failed at busy_timeout
    (review16j). It holds no data; a restore may leave it. None if it cannot be opened
    (left by a command run as another user, say): the node still opens its database, and
    sees that other writer by its commits alone, as before; so too if the filesystem has
    no ``flock``."""
    name = f"{path}-writers"
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        log.warning("store.writers_file_unusable", file=name, error=str(exc))
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError as exc:  # no locks on this filesystem (ENOLCK, EOPNOTSUPP): as above
        os.close(fd)
        log.warning("store.writers_file_unusable", file=name, error=str(exc))
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def others_present(fd: int) -> bool:
    """Whether another writer holds ``<file>-writers`` too (``announce_writer``'s ``fd``):
    our lock made exclusive fails while anyone else holds theirs, then is shared again.
    ``flock`` locks belong to the open file, so two stores of one process see each other
    as two processes do."""
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            fcntl.flock(fd, fcntl.LOCK_SH)  # a failed conversion may have dropped it
    except OSError:  # the lock cannot be asked: taken as another writer (riders not early)
        return True
    return False


def _space(conn: sqlite3.Connection) -> tuple[int, int]:
    """(pages in the database, pages on its freelist), in the current transaction."""
    pages = conn.execute("PRAGMA page_count").fetchone()
    free = conn.execute("PRAGMA freelist_count").fetchone()
    return (int(pages[0]) if pages else 0, int(free[0]) if free else 0)


def private_files(path: Path) -> None:
    """A node database is readable by its node alone: the directory 0700, the database and
    its -wal/-shm 0600 (SQLite gives the -wal/-shm the main file's mode when it creates
    them, so the main file is created 0600 before SQLite opens it)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.chmod(path.parent, 0o700)
    except PermissionError:  # a directory we do not own: the files are still private
        log.warning("store.directory_not_private", directory=str(path.parent))
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for name in (str(path), f"{path}-wal", f"{path}-shm", f"{path}-writers"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(name, 0o600)


def _set_wal(conn: sqlite3.Connection, *, attempts: int = 200) -> None:
    """``journal_mode=WAL`` needs a moment of exclusive access, and SQLite answers "locked"
    at once instead of calling the busy handler: retry while another process is creating
    or migrating the same new file (bounded, ~10 s like busy_timeout; on the writer
    thread, so the sleep blocks no event loop)."""
    for _ in range(attempts - 1):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
    conn.execute("PRAGMA journal_mode=WAL")
