"""A node's store on PostgreSQL (psycopg 3): the same group commit as on SQLite.

``Database`` drives both engines the same way (see ``database``): one writer thread owns
one connection and runs a whole group of writes in one transaction, each write in its own
SAVEPOINT, then COMMIT; callers hear "accepted" only after COMMIT returned. Here that
connection is a synchronous psycopg one, so the write functions' awaits still never
suspend. Reads use a second, asynchronous connection in autocommit (each read its own
snapshot), so they never wait behind a group.

One writer group at a time per database, across every process that shares it: a group
starts with ``pg_advisory_xact_lock(WRITE_LOCK)``, held until its COMMIT or ROLLBACK. That
is SQLite's BEGIN IMMEDIATE again; it keeps the audit chain one chain (the head is read
under the lock) and makes identity values (inbox ``seq``) rise in commit order, so a
reader that follows ``seq`` never skips a row committed late.

Durability: COMMIT returns once PostgreSQL's ``synchronous_commit`` says it is durable
(docs/operations.md: what it takes to keep that true through a failover). A session that
finds ``synchronous_commit = off`` sets it to ``on``. A connection lost during COMMIT
leaves the outcome unknown: the writes get ``Unavailable``, a client retries with the same
envelope id, and the store's dedupe answers ``duplicate`` if it was in fact stored.

The server going away (restart, failover) fails the group in flight; the next group
connects again, as does the next read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import psycopg.errors
import structlog
from psycopg import pq

from liaison_net.errors import ConfigError
from liaison_net.store import dialect

log = structlog.get_logger("liaison.store")

#: The advisory lock key every writer group takes ("liaison" in ASCII, as a bigint).
WRITE_LOCK = 0x6C696169736F6E
#: Environment variable that may hold the password (else ``[store] password_file``).
PASSWORD_ENV = "LIAISON_PG_PASSWORD"
CONNECT_TIMEOUT_S = 10


def check_dsn(dsn: str) -> str:
    """``dsn`` if it is a libpq connection string or URL that holds no password (a
    password never goes in the node's TOML: use ``password_file`` or the environment)."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        raise ConfigError(f"store.dsn is not a PostgreSQL connection string: {exc}") from exc
    if "password" in params:
        raise ConfigError("store.dsn holds a password: remove it, and put the password in "
                          f"store.password_file (mode 0600) or ${PASSWORD_ENV}")
    if "passfile" in params:
        raise ConfigError("store.dsn names a passfile: use store.password_file instead")
    return dsn


def check_password_file(path: Path) -> Path:
    """``path`` if it is a regular file that only its owner may read or write."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"store.password_file {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"store.password_file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise ConfigError(f"store.password_file {path} is readable by others "
                          f"(mode {stat.S_IMODE(info.st_mode):04o}): chmod 600 it")
    return path


def read_password(password_file: Path | None) -> str | None:
    """The password: from ``password_file`` (checked again: it may have changed since the
    config was read), else ``$LIAISON_PG_PASSWORD``, else none (e.g. peer or cert auth)."""
    if password_file is not None:
        text = check_password_file(password_file).read_text(encoding="utf-8")
        return text.rstrip("\r\n")
    return os.environ.get(PASSWORD_ENV) or None


class PostgresBackend:
    """``database.Backend`` for PostgreSQL (psycopg 3)."""

    name = "postgresql"
    errors: tuple[type[BaseException], ...] = (psycopg.Error,)
    integrity_errors: tuple[type[BaseException], ...] = (psycopg.errors.IntegrityError,)
    storage_errors: tuple[type[BaseException], ...] = (psycopg.OperationalError,
                                                        psycopg.InterfaceError)
    measures_space = False  # "full" (SQLSTATE 53100) ends at the next commit

    def __init__(self, dsn: str, *, password_file: Path | None = None) -> None:
        self.dsn = check_dsn(dsn)
        self.where = f"postgresql ({dsn})"
        self.password_file = password_file
        self._writer: psycopg.Connection[Any] | None = None
        self._reader: psycopg.AsyncConnection[Any] | None = None
        self._read_only = False

    def _kwargs(self) -> dict[str, Any]:
        password = read_password(self.password_file)
        kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S,
                                  "application_name": "liaison-node"}
        if password is not None:
            kwargs["password"] = password
        return kwargs

    def prepare(self) -> None:
        """Nothing on disk of ours: the server keeps the files."""

    def connect_writer(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.dsn, **self._kwargs())
        try:
            row = conn.execute("SHOW synchronous_commit").fetchone()
            if row is not None and row[0] == "off":
                log.warning("store.synchronous_commit_off",
                            reason="the server's default would acknowledge commits not yet "
                                   "durable; this node's sessions set it to on")
                conn.execute("SET synchronous_commit TO on")
        except BaseException:
            conn.close()
            raise
        self._writer = conn
        return conn

    def writer(self) -> psycopg.Connection[Any]:
        conn = self._writer
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            log.info("store.reconnect", role="writer")
            return self.connect_writer()
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")  # left open by a group that died halfway
        return conn

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def after_migrate(self, conn: Any) -> None:
        """No quota of ours: PostgreSQL's disk is the operator's (``max_db_mb`` is refused
        for this backend in the config)."""

    def begin(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))

    def sql(self, text: str) -> str:
        return dialect.statement(text)

    def ddl(self, text: str) -> str:
        return dialect.ddl(text)

    def space(self, conn: Any) -> None:
        return None

    def others_writing(self, conn: Any) -> bool:
        """Not known here (and not asked: early riders are SQLite's only)."""
        return False

    def out_of_space(self, exc: BaseException) -> bool:
        if isinstance(exc, OSError):
            return exc.errno in (errno.ENOSPC, errno.EDQUOT)
        return isinstance(exc, psycopg.errors.DiskFull)

    async def open_reader(self, *, read_only: bool) -> None:
        self._read_only = read_only
        await self._connect_reader()

    async def _connect_reader(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self.dsn, **self._kwargs())
        if self._read_only:
            await conn.execute("SET default_transaction_read_only TO on")
        self._reader = conn
        return conn

    async def fetchall(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        conn = self._reader
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                await conn.close()
            conn = await self._connect_reader()
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall())

    async def close_reader(self) -> None:
        if self._reader is not None:
            try:
                await self._reader.close()
            finally:
                self._reader = None
