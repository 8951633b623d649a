"""Reading a node's database from outside the node: what the drills (chaos, bench) count.

The drills judge a node by its file, the ground truth, not by what the node under test
says. This module is the one place they do it, so no SQL and no SQLite import lives
outside ``store/``. It only reads (WAL readers never block the node's writer), and it
imports nothing heavy: the bench's sink process loads it. ``ReadError`` is any miss of
such a read (no file yet, not migrated yet, busy during recovery); pollers retry on it.

A node on PostgreSQL is named by a ``PgDatabase`` instead of its file (``Where``); the same
reads run there, in the store's one SQL dialect (``dialect``), the driver loaded only then.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class PgReadError(Exception):
    """A read from a node's PostgreSQL database failed (down, restarting, not migrated)."""


ReadError = (sqlite3.Error, PgReadError)
SQLITE_VERSION = sqlite3.sqlite_version  # for the bench report's machine facts


@dataclass(frozen=True)
class PgDatabase:
    """A node's database on PostgreSQL: its DSN (no password) and its password file."""

    dsn: str
    password_file: Path


#: A node's database: its SQLite file, or its PostgreSQL database.
Where = Path | PgDatabase


class _PgReads:
    """A psycopg connection with sqlite3's ``execute`` (store SQL, translated)."""

    def __init__(self, where: PgDatabase, timeout: float) -> None:
        import psycopg

        from liaison_net.store.dialect import statement

        self._statement = statement
        self._errors = psycopg.Error
        try:
            self._conn = psycopg.connect(
                where.dsn, password=where.password_file.read_text().strip(),
                autocommit=True, connect_timeout=max(1, int(timeout)))
        except (psycopg.Error, OSError) as exc:
            raise PgReadError(str(exc)) from exc

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self._conn.execute(self._statement(sql), params).fetchall())
        except self._errors as exc:
            raise PgReadError(str(exc)) from exc

    def close(self) -> None:
        self._conn.close()


@contextlib.contextmanager
def _connect(where: Where, timeout: float) -> Iterator[Any]:
    if isinstance(where, PgDatabase):
        conn: Any = _PgReads(where, timeout)
    else:
        conn = sqlite3.connect(where, timeout=timeout)
    try:
        yield conn
    finally:
        conn.close()


def node_facts(database: Where, ids: set[bytes],
               ) -> tuple[Counter[tuple[str, bytes]], set[bytes], dict[str, int]]:
    """(inbox rows per (officer, envelope id), envelope ids held, hop state -> count),
    restricted to ``ids`` except the hop counts (every envelope's)."""
    inbox: Counter[tuple[str, bytes]] = Counter()
    held: set[bytes] = set()
    outbox: dict[str, int] = {}
    with _connect(database, 30) as db:
        for officer, envelope_id in db.execute("SELECT officer, envelope_id FROM inbox"):
            key = bytes(envelope_id)
            if key in ids:
                inbox[(str(officer), key)] += 1
        for (envelope_id,) in db.execute("SELECT id FROM envelopes"):
            key = bytes(envelope_id)
            if key in ids:
                held.add(key)
        for state, count in db.execute("SELECT state, COUNT(*) FROM hops GROUP BY state"):
            outbox[str(state)] = int(count)
    return inbox, held, outbox


def effect_facts(database: Where, officers: set[str], ids: set[bytes],
                 ) -> tuple[list[tuple[str, bytes]], list[tuple[bytes, str, str]],
                            list[tuple[str, bytes, str]], dict[str, bytes]]:
    """What a node holds of the effects the soak counts (``chaos/effects.py``):
    (officer, raw envelope) of every evidence and notice in the inbox of ``officers``;
    (envelope id, officer, role) of every tracked request among ``ids``; (peer, envelope id,
    state) of every hop among ``ids`` that ended refused or expired; and the node signing
    keys it holds (node -> Ed25519 public), to verify what other nodes signed."""
    effects: list[tuple[str, bytes]] = []
    requests: list[tuple[bytes, str, str]] = []
    failed: list[tuple[str, bytes, str]] = []
    with _connect(database, 30) as db:
        for officer, raw in db.execute(
                "SELECT i.officer, e.raw FROM inbox i JOIN envelopes e ON e.id = i.envelope_id "
                "WHERE e.kind IN ('evidence', 'notice') AND e.purged IS NULL"):
            if str(officer) in officers:
                effects.append((str(officer), bytes(raw)))
        for envelope_id, officer, role in db.execute(
                "SELECT envelope_id, officer, role FROM requests"):
            if bytes(envelope_id) in ids:
                requests.append((bytes(envelope_id), str(officer), str(role)))
        for node, envelope_id, state in db.execute(
                "SELECT node, envelope_id, state FROM hops "
                "WHERE state IN ('refused', 'expired')"):
            if bytes(envelope_id) in ids:
                failed.append((str(node), bytes(envelope_id), str(state)))
        keys = {str(n): bytes(k) for n, k in db.execute(
            "SELECT node, signing_public FROM node_keys")}
    return effects, requests, failed, keys


def _query(database: Where, sql: str,
           params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with _connect(database, 10) as db:
        return list(db.execute(sql, params))


def officers(database: Where) -> set[str]:
    """The officers in the node's directory (any node's, as far as it has heard)."""
    return {str(r[0]) for r in _query(database, "SELECT officer FROM directory")}


def has_card(database: Where, officer: str) -> bool:
    return bool(_query(database, "SELECT 1 FROM directory WHERE officer = ?", (officer,)))


def inbox_envelope_ids(database: Where, officer: str) -> list[bytes]:
    """One entry per inbox row of ``officer`` (duplicates, if any, repeated)."""
    rows = _query(database, "SELECT envelope_id FROM inbox WHERE officer = ?", (officer,))
    return [bytes(r[0]) for r in rows if isinstance(r[0], bytes)]


def queued_hops(database: Where, peer: str) -> int:
    rows = _query(database, "SELECT COUNT(*) FROM hops WHERE node = ? AND state = 'queued'",
                  (peer,))
    count = rows[0][0]
    assert isinstance(count, int)  # COUNT(*) always is
    return count


class InboxPoller:
    """One officer's inbox rows committed since the last poll, on one kept connection.

    A poll first asks SQLite whether anything was committed since the last query
    (``PRAGMA data_version``, which moves with every commit of another connection) and
    queries the inbox only then: the bench's sink polls every half millisecond, and the
    query each time cost it about a tenth of a core beside the nodes it measures."""

    def __init__(self, database: Path, officer: str, *, limit: int = 20000) -> None:
        self.database = database
        self.officer = officer
        self.limit = limit
        self.last = 0  # the inbox seq of the last row seen
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None  # data_version at the last query

    def poll(self) -> list[bytes] | None:
        """Envelope ids of the new rows, in order; None while there is no file yet, the
        table is not migrated yet, or the database is busy (try again)."""
        if self._conn is None:
            if not self.database.exists():
                return None
            self._conn = sqlite3.connect(self.database, timeout=5, isolation_level=None)
        try:
            # Read before the query: a commit after it moves the version, so none is missed.
            version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            if version == self._version:
                return []
            rows = self._conn.execute(
                "SELECT seq, envelope_id FROM inbox WHERE officer = ? AND seq > ? "
                "ORDER BY seq LIMIT ?", (self.officer, self.last, self.limit)).fetchall()
        except sqlite3.Error:
            return None
        # A full page may leave rows behind: query again next time, whatever the version.
        self._version = version if len(rows) < self.limit else None
        if rows:
            self.last = rows[-1][0]
        return [bytes(r[1]) for r in rows]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PgInboxPoller:
    """``InboxPoller`` for a node on PostgreSQL: one kept connection, one indexed query per
    poll (there is no ``data_version`` to ask first); None while the server or the table
    is not there (try again)."""

    def __init__(self, database: PgDatabase, officer: str, *, limit: int = 20000) -> None:
        self.database = database
        self.officer = officer
        self.limit = limit
        self.last = 0
        self._conn: _PgReads | None = None

    def poll(self) -> list[bytes] | None:
        try:
            if self._conn is None:
                self._conn = _PgReads(self.database, 5)
            rows = self._conn.execute(
                "SELECT seq, envelope_id FROM inbox WHERE officer = ? AND seq > ? "
                "ORDER BY seq LIMIT ?", (self.officer, self.last, self.limit))
        except PgReadError:
            self.close()
            return None
        if rows:
            self.last = int(rows[-1][0])
        return [bytes(r[1]) for r in rows]

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def database_bytes(database: Path) -> int:
    """The database's size as SQLite counts it, ``page_count x page_size`` (pages still only
    in the WAL included): the bench's bytes on disk per envelope. Read-only, so it never
    checkpoints nor deletes the WAL it measures around."""
    uri = f"{database.resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
        pages = db.execute("PRAGMA page_count").fetchone()
        size = db.execute("PRAGMA page_size").fetchone()
    return int(pages[0]) * int(size[0])
