"""A node's database: group commit, migrations, the audit head and storage faults, written
once over a ``Backend``: ``sqlite.SqliteBackend`` (WAL, full fsync, a page quota), or
``postgres.PostgresBackend`` (``[store] backend = "postgresql"``). Store modules write SQL
in SQLite's dialect; the backend translates it (``dialect``). What follows is said of
SQLite; PostgreSQL does the same with its own connection (see ``postgres``).

Every write goes through ``Database.write``: the caller hands over an async function of
a ``WriteTxn``, and a single writer task runs all pending ones in one transaction, each
inside its own SAVEPOINT (one failing write rolls back alone), then commits once. The
callers' awaits return only after that commit, which is fsync'd (``synchronous=FULL``):
that is what lets the node answer "accepted" truthfully without paying one fsync per
envelope. Reads use a second connection so they never wait behind a commit.

One thread hop per group, not per statement. The writer owns a plain ``sqlite3``
connection in a thread of its own, and the whole group (BEGIN, every write function,
COMMIT) runs there in one call. A write function is still an ``async def`` awaiting
``txn.execute``, but those awaits never suspend: ``WriteTxn`` runs each statement at once
on the thread it is called from, so ``_drive`` runs the coroutine to its end with one
``send``. A write function that awaits anything else is a bug in it: it is refused alone
(``NodeFault``) like any other failing write.

Storage faults. A group that cannot be written fails whole, and every write in it gets
``Unavailable`` (nothing of it was stored); the writer keeps running, so the next group
after the cause is gone simply succeeds. No space (a full disk, or the operator's
``[store] max_db_mb`` quota, enforced as SQLite's ``max_page_count`` on the writer
connection so it fails exactly as a full disk does) is told apart as ``StorageFull``, and
``storage`` records it for /healthz and the metrics until a group commits again.

Riders. A write that nothing waits on (the effect drain storing the few envelopes it
issued) may be queued with ``rides=True``: it does not start a group of its own but joins
the next one a plain write starts, or, if none comes, commits alone ``ride_s`` after it was
queued. At 20 envelopes/s that took the origin from 3.9 commits (fsyncs) per envelope to
2.9, the destination from 3.0 to 2.1 (docs/performance.md, lane commits16). A rider is just
as durable once its await returns; what it owes stays in its rows meanwhile (an effect row
is sealed again after a crash). A write someone waits on must not ride. The sender's
``finish_hops`` rides (lane release16) because nothing waits on it any more: the
transaction is over at the peer's answer, and only its envelopes' claims wait for the write
(federation/inflight.py). When it held the transaction in flight until the next accept, the
light load's latency doubled (lane commits16). Riders still waiting when the database
closes are committed then, in one last group, so a clean stop leaves nothing to redo.

Early riders (``early_riders``; a node's SQLite store). Riding saves the fsync but not
the riders' SQL: it ran in the plain write's group, ahead of it, on the path of the
envelope that started the group (at 20/s, the destination's group was the drain's
``complete_effects`` and the sender's ``finish_hops`` before the received envelope's
``accept_many``: ~0.45 of its ~0.75 ms, docs/performance.md, lane light16d). So while
riders wait, the writer thread begins their group at once and runs them in it (each in
its savepoint, as always), leaving it open; a rider queued meanwhile runs there too; the
plain write that comes runs only its own SQL, then the one COMMIT. Nothing is visible or
answered before that commit, exactly as before. A group that turns out not to begin with
the open group's writes (close commits only the riders whose caller still waits) rolls
it back and runs from the start; a storage error in it rolls it back too (its riders
run again in their group). The price: the write lock is held while the riders wait (up
to ``ride_s``), so another process's write waits that long behind it (and its busy
handler's sleep: ~330 ms measured). So a group's BEGIN asks whether another writer is
there: one that has the file open (each writer holds a shared lock on ``<file>-writers``
while connected, ``sqlite.announce_writer``), or another connection that committed since
the last (SQLite's ``data_version``); early riders then stay off for ``OTHERS_QUIET_S``,
and an early group begun as it is seen is rolled back at once. Seeing only commits was
not enough: a writer's first BEGIN (a worker's open, an admin command) had to catch the
lock free in the moment between two open groups, and behind a node under steady load it
waited 0.8-9 s or failed at busy_timeout (review16j). Off on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from liaison_net import timeline
from liaison_net.clock import SYSTEM_CLOCK, Clock
from liaison_net.core.audit import GENESIS, entry_hash, stored_detail, stored_event
from liaison_net.errors import (
    Conflict,
    LiaisonError,
    NodeFault,
    StorageFull,
    Unavailable,
)
from liaison_net.lazy_log import LazyLogger
from liaison_net.store.dialect import split_script
from liaison_net.store.key_cache import KeyCache
from liaison_net.store.many_rows import insert_rows
from liaison_net.store.schema import MIGRATIONS, SCHEMA_VERSION
from liaison_net.store.sqlite import SqliteBackend

log = LazyLogger("liaison.store")  # structlog when it first logs (lazy_log.py)

T = TypeVar("T")
WriteFn = Callable[["WriteTxn"], Awaitable[T]]

#: How long a rider (``Database.write(rides=True)``) waits for a plain write's group before
#: it commits alone. Well above the gap between two envelopes at the light load's 20/s: at
#: 0.05 s (that gap) the riders a received envelope left (its "relayed" evidence, the
#: answer of the evidence's transaction) timed out just as the next envelope came, in 6-13 %
#: of the gaps at the destination, and that envelope's write waited for their commit (6-9
#: of the light load's slowest 20 of 400: docs/performance.md, lane lightp16).
RIDE_S = 0.25
#: Early riders stay off this long after another connection (another worker of the node,
#: an admin command) was seen committing to the database: an open group would hold that
#: writer's writes up to ``RIDE_S`` behind it (plus its busy handler's sleep, up to 0.1 s).
#: Workers of one node each write at least every third of ``[delivery] lease_s`` (10 s by
#: default) when they try or renew a sender lease with any effect; a minute covers that.
OTHERS_QUIET_S = 60.0
#: A drain's write for more envelopes than this does not ride: its commit is already spread
#: over them, and waiting would only slow a catch-up (effects owed after an outage).
RIDE_MAX_ENVELOPES = 4


@dataclass(slots=True)
class _Queued:
    """One write waiting for the writer: its function, its caller's future, whether it
    rides (see the module docstring) and when it was queued (loop time)."""

    fn: WriteFn[Any]
    future: asyncio.Future[Any]
    rides: bool = False
    at: float = 0.0


FULL_DETAIL = ("storage full, nothing stored: {cause}; the node resumes by itself when "
               "space returns (free disk space or raise [store] max_db_mb)")


@dataclass
class StorageState:
    """Whether writes are being refused for lack of space, for /healthz and the metrics."""

    full: bool = False
    last_full_ms: int | None = None  # wall clock when a write was last refused for space
    since_ms: int | None = None  # start of the current full spell
    refused_writes: int = 0  # writes refused for space since start
    cause: str = ""

    def to_json(self) -> dict[str, object]:
        return {"state": "full" if self.full else "ok", "since_ms": self.since_ms,
                "last_full_ms": self.last_full_ms, "refused_writes": self.refused_writes,
                "cause": self.cause}


#: Statements that change what ``KeyCache`` holds (cards, rotations, revocations): any
#: statement that is not a plain SELECT and names one of these tables.
_KEY_TABLES = re.compile(r"\b(directory|key_history|revocations)\b", re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def changes_keys(sql: str) -> bool:
    """True if ``sql`` may change a card, a superseded key or a revocation (over-eager is
    safe: it only empties the cache). The store's statements are constants, hence the
    memo."""
    return (not sql.lstrip()[:6].upper().startswith("SELECT")
            and _KEY_TABLES.search(sql) is not None)


class Cursor:
    """A statement's results in the writer thread, with the awaitable fetches the write
    functions use (``rowcount``, ``lastrowid``, ``fetchone``, ``fetchall``)."""

    __slots__ = ("_cur",)

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)

    @property
    def lastrowid(self) -> int | None:
        return getattr(self._cur, "lastrowid", None)  # SQLite only; PostgreSQL: RETURNING

    async def fetchone(self) -> Any:
        return self._cur.fetchone()

    async def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall())


class Backend(Protocol):
    """What one database engine gives ``Database``: its connections and its dialect. The
    group commit, the audit chain head, the storage state and the migrations' order are
    ``Database``'s, written once for both engines (``sqlite.SqliteBackend``,
    ``postgres.PostgresBackend``).

    The ``*_writer`` methods and ``begin``/``space`` run on the writer thread; the reader's
    are coroutines on the event loop."""

    name: str  # "sqlite" or "postgresql"
    where: str  # for messages: the file, or the DSN (it never holds a password)
    #: Any error of the driver (a group that meets one fails whole, nothing stored).
    errors: tuple[type[BaseException], ...]
    #: A constraint refused one statement: that write alone is refused (``Conflict``).
    integrity_errors: tuple[type[BaseException], ...]
    #: Storage trouble inside a write function (disk full, I/O, connection lost): not the
    #: write's fault, so the whole group fails instead of that write alone.
    storage_errors: tuple[type[BaseException], ...]
    #: Whether ``space`` measures anything (else "full" ends at the next commit).
    measures_space: bool

    def prepare(self) -> None: ...
    def connect_writer(self) -> Any: ...
    def writer(self) -> Any: ...
    def close_writer(self) -> None: ...
    def after_migrate(self, conn: Any) -> None: ...
    def begin(self, conn: Any) -> None: ...
    def sql(self, text: str) -> str: ...
    def ddl(self, text: str) -> str: ...
    def space(self, conn: Any) -> tuple[int, int] | None: ...
    def others_writing(self, conn: Any) -> bool: ...
    def out_of_space(self, exc: BaseException) -> bool: ...
    async def open_reader(self, *, read_only: bool) -> None: ...
    async def fetchall(self, sql: str, params: tuple[Any, ...]) -> list[Any]: ...
    async def close_reader(self) -> None: ...


def _file_stamp(backend: Backend) -> tuple[int, int] | None:
    """The database file's (mtime, size), for the timeline only: only a WAL checkpoint
    writes that file, so a change across a COMMIT says the commit ran one."""
    path = getattr(backend, "path", None)
    if not isinstance(path, Path):
        return None
    with contextlib.suppress(OSError):
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_size
    return None


class WriteTxn:
    """What a write function may do: run SQL and append audit entries, in the group's txn.

    Every method runs at once, on the writer thread, without suspending (see the module
    docstring); a statement that touches keys empties the key cache until the group ends.
    SQL is written in SQLite's dialect and translated for the backend (``dialect``)."""

    def __init__(self, db: Database, conn: Any) -> None:
        self._db = db
        self._sql = db.backend.sql
        self._integrity = db.backend.integrity_errors
        self.conn = conn
        self.effects_added = False  # an effect row was written: wake the drain after commit
        self.keys_changed = False  # a card/rotation/revocation statement ran in this group
        self.on_commit: list[Callable[[], None]] = []  # the current write's (``after_commit``)

    def weakened(self, principal: str) -> None:
        """After a statement that may make ``principal``'s key invalid (a revocation, a
        superseded key, a new card): decisions made on it before are decided again
        (``KeyCache.weakened_since``, ``EnvelopeStore._keys_unchanged``)."""
        self._db.key_cache.note_weakened(principal)

    def _note(self, sql: str) -> None:
        if not self.keys_changed and changes_keys(sql):
            self.keys_changed = True
            self._db.key_cache.begin_change()

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Cursor:
        """Run one statement; a constraint that refuses it raises ``Conflict`` (the
        caller's savepoint, or the group's per-write one, takes it back)."""
        self._note(sql)
        try:
            return Cursor(self.conn.execute(self._sql(sql), params))
        except self._integrity as exc:
            raise Conflict(f"refused by a database constraint: {exc}") from exc

    async def executemany(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        self._note(sql)
        try:
            if hasattr(self.conn, "executemany"):
                self.conn.executemany(self._sql(sql), params)
            else:  # psycopg: executemany is a cursor's
                with self.conn.cursor() as cur:
                    cur.executemany(self._sql(sql), params)
        except self._integrity as exc:
            raise Conflict(f"refused by a database constraint: {exc}") from exc

    async def insert_rows(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """``sql`` (an INSERT of one row) for each of ``rows`` in order, in a few
        statements of many rows (``many_rows``); a constraint refusing any row raises
        ``Conflict``, as ``execute``."""
        self._note(sql)
        try:
            insert_rows(self.conn, self._sql, sql, rows)
        except self._integrity as exc:
            raise Conflict(f"refused by a database constraint: {exc}") from exc

    async def audit(self, at: int, event: str, actor: str, detail: str,
                    envelope_id: bytes | None = None) -> None:
        self._db._append_audit(self.conn, at, event, actor, detail, envelope_id)

    async def audit_many(self, at: int,
                         entries: list[tuple[str, str, str, bytes | None]]) -> None:
        """Several audit entries (event, actor, detail, envelope id) at ``at``, chained in
        order exactly as ``audit`` one by one would chain them, in one statement."""
        self._db._append_audits(self.conn, at, entries)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the event loop once this write is committed (never if it is
        refused or the group fails), before its caller's await returns and before the
        effect drain is woken: how a commit hands what it queued to whoever sends it
        without that reader reading it back (``federation/inflight.py``). Quick and
        non-blocking, like any callback on the loop."""
        self.on_commit.append(callback)

    async def savepoint(self, name: str) -> tuple[int, bytes]:
        """A nested savepoint inside this write; the audit head to restore with it."""
        self.conn.execute(f"SAVEPOINT {name}")
        return self._db._audit_head

    async def rollback_to(self, name: str, head: tuple[int, bytes]) -> None:
        """Undo everything since ``savepoint(name)``, audit entries included: the chain
        continues from ``head`` (the entry rolled back must not become a ``prev``)."""
        self.conn.execute(f"ROLLBACK TO {name}")
        self._db._audit_head = head

    async def release(self, name: str) -> None:
        self.conn.execute(f"RELEASE {name}")


class SuspendedWrite(RuntimeError):
    """A write function awaited something other than its ``WriteTxn`` (a bug in it)."""


def _drive(awaitable: Awaitable[T]) -> T:
    """Run a write function's coroutine to its end on this thread. Its only awaits are
    ``WriteTxn`` calls, which never suspend, so one ``send`` finishes it."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]  # the coroutine's own return
    steps.close()
    raise SuspendedWrite("a write function awaited something other than its transaction")


@dataclass
class _GroupOutcome:
    """What the writer thread hands back for one group."""

    results: list[tuple[bool, Any]] = field(default_factory=list)  # (ok, value or error)
    failure: BaseException | None = None  # the whole group failed: nothing stored
    effects_added: bool = False
    after_commit: list[Callable[[], None]] = field(default_factory=list)  # of the writes kept
    space_before: tuple[int, int] | None = None
    space_after: tuple[int, int] | None = None
    #: COMMIT was sent when the group failed: over a network (PostgreSQL) the server may
    #: have committed it before the connection was lost, so "nothing stored" is not known.
    in_commit: bool = False


@dataclass
class _OpenGroup:
    """A group's transaction open on the writer thread: the writes run in it so far (in
    order) and what they gave."""

    conn: Any
    txn: WriteTxn
    out: _GroupOutcome
    fns: list[WriteFn[Any]] = field(default_factory=list)


class Database:
    def __init__(self, path: Path | None = None, *, group_commit_max: int = 512,
                 max_db_mb: float | None = None, clock: Clock = SYSTEM_CLOCK,
                 backend: Backend | None = None, ride_s: float = RIDE_S,
                 early_riders: bool = False) -> None:
        if backend is None:
            assert path is not None, "a SQLite database needs its path"
            backend = SqliteBackend(path, max_db_mb=max_db_mb)
        self.backend: Backend = backend
        self.path = path
        self.clock = clock  # the node's: when a write was refused for space (/healthz)
        self._group_commit_max = group_commit_max
        self.ride_s = ride_s  # a rider's longest wait for a plain write's group
        #: Riders run while they wait, their group left open for the plain write (module
        #: docstring, "Early riders"); the write lock is then held while they wait.
        self.early_riders = early_riders
        #: That open group, on the writer thread only (``_run_early``, ``_run_group``).
        self._early: _OpenGroup | None = None
        #: When (``time.monotonic``) a group last found another connection's commit: early
        #: riders wait ``OTHERS_QUIET_S`` after it. Set on the writer thread.
        self.others_seen_at = -OTHERS_QUIET_S
        self.max_db_mb = max_db_mb
        self.storage = StorageState()
        #: Signer and officer keys read on every envelope (``key_store``, ``directory_store``).
        self.key_cache = KeyCache()
        #: Called with the number of writes just refused for lack of space (metrics).
        self.on_storage_full: Callable[[int], None] | None = None
        #: Called after a commit that wrote effect rows (wakes the effect drain).
        self.on_effects: Callable[[], None] | None = None
        #: The writer's one worker thread: the backend's writer connection lives there.
        self._thread: ThreadPoolExecutor | None = None
        self._reading = False
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        #: Taken from the queue for the next group (riders waiting for a plain write); kept
        #: here so that a writer restarted by its supervisor finds them.
        self._held: list[_Queued] = []
        self._task: asyncio.Task[None] | None = None
        self._opened = False
        self._writer_failed = False
        self._audit_head: tuple[int, bytes] = (0, GENESIS)
        self.commits = 0
        #: Groups committed with no plain write in them (riders that waited ``ride_s``).
        self.rider_commits = 0
        #: Writes committed or refused per kind (the write function's qualified name) and
        #: commits per the kind of the group's first plain write ("rides" if none): what
        #: a node commits per envelope and why (the node logs them at ``node.stopped``).
        self.writes_by: dict[str, int] = {}
        self.commits_by: dict[str, int] = {}

    def _to_writer_thread(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``fn(*args)`` on the writer thread, in a copy of the caller's context (as
        ``asyncio.to_thread`` does: the log lines it writes keep the node's bound fields)."""
        assert self._thread is not None, "database writer not open"
        return asyncio.get_running_loop().run_in_executor(
            self._thread, functools.partial(contextvars.copy_context().run, fn, *args))

    async def _in_writer_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._to_writer_thread(fn, *args)

    async def open(self, *, writer: bool = True) -> None:
        """Connect and migrate. ``writer``: run the group-commit writer in a task of our own
        (CLI, tests); a node passes False and supervises ``run_writer`` itself."""
        where = self.backend.where
        try:
            self.backend.prepare()
            self._thread = ThreadPoolExecutor(max_workers=1,
                                              thread_name_prefix="liaison-writer")
            await self._in_writer_thread(self._open_writer)
            await self.backend.open_reader(read_only=False)
            self._reading = True
        except self.backend.errors as exc:
            await self._abandon()
            if self.backend.out_of_space(exc):
                raise StorageFull(FULL_DETAIL.format(
                    cause=f"cannot open database {where}: {exc}")) from exc
            raise Unavailable(f"cannot open database {where}: {exc}") from exc
        except BaseException:
            await self._abandon()
            raise
        self._opened = True
        if writer:
            self._task = asyncio.create_task(self.run_writer(), name="group-commit")

    def _open_writer(self) -> None:
        """On the writer thread: connect, migrate, then the backend's own settings."""
        conn = self.backend.connect_writer()
        try:
            self._migrate(conn)
            self.backend.after_migrate(conn)
        except BaseException:
            self.backend.close_writer()
            raise

    async def open_read_only(self) -> None:
        """Only a reader (a SQLite file opened ``mode=ro``): for admin commands that look
        while the node runs. No migration, no writer task (``write`` raises Unavailable),
        so the node stays the database's one writer."""
        try:
            await self.backend.open_reader(read_only=True)
            self._reading = True
        except self.backend.errors as exc:
            await self._abandon()
            raise Unavailable(f"cannot open database {self.backend.where}: {exc}") from exc

    async def _abandon(self) -> None:
        """Close what a failed ``open`` opened: an aiosqlite connection left open keeps its
        non-daemon thread alive, and the process would hang at exit instead of failing."""
        await self.backend.close_reader()
        self._reading = False
        await self._stop_writer_thread()

    async def _stop_writer_thread(self) -> None:
        if self._thread is not None:
            with contextlib.suppress(Exception):
                await self._in_writer_thread(self._close_writer)
            self._thread.shutdown(wait=False)  # idle now: its thread ends at once
            self._thread = None

    def _close_writer(self) -> None:
        """On the writer thread: an early group still open is rolled back with the
        connection (its riders were answered "nothing stored", or committed by
        ``_commit_riders`` in a group of their own)."""
        early, self._early = self._early, None
        if early is not None:
            self._discard(early)
        self.backend.close_writer()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._opened = False
        try:
            await self._commit_riders()
        finally:  # cancelled meanwhile, still: no write left unanswered, nothing left open
            self._fail_queued(Unavailable("database closed, nothing stored"))
            await self.backend.close_reader()
            self._reading = False
            await self._stop_writer_thread()

    async def _commit_riders(self) -> None:
        """Riders still waiting for a plain write at close are committed in one last group
        rather than failed: no one waits for their answer, but what they record (a sender's
        answered hops: its record task is shielded, it outlives the sender's) would
        otherwise be redone after the restart (those envelopes sent again, answered
        duplicate). A rider whose caller was cancelled is not committed: at a node's stop
        the effect drain's caller is (its task is cancelled first), and the drain issues
        those envelopes again after the restart, as before. Plain writes still queued are
        failed ("nothing stored"): their callers were cancelled and were answered
        nothing."""
        queued, self._held = self._held, []
        while not self._queue.empty():
            queued.append(self._queue.get_nowait())
        riders = [q for q in queued if q.rides and not q.future.done()]
        self._held = [q for q in queued if not q.rides]
        if not riders or self._thread is None or self._writer_failed:
            self._held.extend(riders)
            return
        await self._commit_group(riders)

    def _migrate(self, conn: Any) -> None:
        backend = self.backend
        while True:
            # The version is read under the write lock, so that two processes opening a new
            # database at once (a node and `admin enrol-officer`, two enrolments, two
            # workers) never both run the same migration.
            backend.begin(conn)
            try:
                conn.execute(backend.ddl(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)"))
                rows = conn.execute("SELECT version FROM schema_version").fetchall()
                current = rows[0][0] if rows else 0
                if current > SCHEMA_VERSION:
                    raise NodeFault(f"database schema {current} is newer than this program "
                                    f"({SCHEMA_VERSION}); upgrade liaison_net")
                if current == SCHEMA_VERSION:
                    conn.execute("COMMIT")
                    return
                for statement in split_script(MIGRATIONS[current]):
                    conn.execute(backend.ddl(statement))
                conn.execute("DELETE FROM schema_version")
                conn.execute(backend.sql("INSERT INTO schema_version VALUES (?)"),
                             (current + 1,))
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(*backend.errors):
                    conn.execute("ROLLBACK")
                raise

    def _load_audit_head_in(self, conn: Any) -> tuple[int, bytes]:
        row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(row[0]), bytes(row[1])) if row else (0, GENESIS)

    # --- reads --------------------------------------------------------------------------

    async def fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        assert self._reading, "database not open"
        try:
            return await self.backend.fetchall(self.backend.sql(sql), params)
        except self.backend.errors as exc:
            raise Unavailable(f"database read failed: {exc}") from exc

    async def fetchone(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    # --- writes -------------------------------------------------------------------------

    async def write(self, fn: WriteFn[T], *, rides: bool = False) -> T:
        """Run ``fn`` in the next group transaction; return once that transaction is durable.

        ``rides``: no one is answered on it, so it waits for a group a plain write starts
        (at most ``ride_s``) instead of paying a commit of its own (module docstring)."""
        if (not self._opened or self._writer_failed
                or (self._task is not None and self._task.done())):
            raise Unavailable("database writer is not running")
        # A supervised writer between restarts: the write waits in the queue for it.
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put_nowait(_Queued(fn, future, rides, loop.time() if rides else 0.0))
        return await future

    async def run_writer(self) -> None:
        """The group-commit writer, until cancelled. If it fails unexpectedly, the writes
        of its group get ``Unavailable`` (nothing of them stored) and the exception goes to
        whoever runs it (the node's supervisor restarts it; queued writes wait).

        Cancelled while a group runs on the writer thread, it returns at once, and the
        group's callers get its true outcome when the thread finishes it (a group cannot be
        stopped halfway, and "nothing stored" must never be said of a commit)."""
        if not self._opened or self._thread is None:
            raise Unavailable("database not open")
        while True:
            await self._commit_group(await self._next_group())

    async def _commit_group(self, batch: list[_Queued]) -> None:
        """Run one group on the writer thread and answer its writes. Cancelled meanwhile,
        it returns at once and the callers get the group's true outcome when the thread
        finishes it; a failure of the writer itself fails them "nothing stored" and
        goes on to whoever runs the writer."""
        if timeline.enabled():  # "w.group3r": three writes, all riders
            timeline.mark(f"w.group{len(batch)}{'r' if all(q.rides for q in batch) else ''}")
        work = self._to_writer_thread(self._run_group, [q.fn for q in batch],
                                      self.storage.full)
        try:
            outcome = await asyncio.shield(work)
        except asyncio.CancelledError:
            work.add_done_callback(functools.partial(self._settle_later, batch))
            raise
        except BaseException:
            self._fail_batch(batch, Unavailable("database writer failed, nothing stored"))
            raise
        self._settle(batch, outcome)
        timeline.mark("w.settled")

    async def _next_group(self) -> list[_Queued]:
        """The writes of the next group: all that are queued (up to ``group_commit_max``);
        if they are all riders, first wait for a plain write until the oldest rider has
        waited ``ride_s``. Cancelled while waiting, the writes stay held for the next."""
        held, limit = self._held, self._group_commit_max
        if not held:
            held.append(await self._queue.get())
        while len(held) < limit and not self._queue.empty():
            held.append(self._queue.get_nowait())
        if all(q.rides for q in held):
            if self._early_allowed():
                self._start_early([q.fn for q in held])
            deadline = held[0].at + self.ride_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    while len(held) < limit:
                        held.append(await self._queue.get())
                        if not held[-1].rides:
                            break
                        if self._early_allowed():
                            self._start_early([q.fn for q in held])
            while len(held) < limit and not self._queue.empty():
                held.append(self._queue.get_nowait())
        batch, self._held = held[:limit], held[limit:]
        return batch

    def _early_allowed(self) -> bool:
        """Early riders, unless storage is full or another writer was seen lately: its
        writes would wait for the lock the open group holds (``OTHERS_QUIET_S``)."""
        return (self.early_riders and not self.storage.full
                and time.monotonic() - self.others_seen_at >= OTHERS_QUIET_S)

    def _start_early(self, fns: list[WriteFn[Any]]) -> None:
        """Run the waiting riders now on the writer thread, uncommitted (``_run_early``).
        Not awaited: the group that commits them is queued behind it on the same thread."""
        work = self._to_writer_thread(self._run_early, fns)
        work.add_done_callback(_log_early_failure)

    def _count(self, batch: list[_Queued]) -> None:
        """Per-kind counts of a group just committed (``writes_by``, ``commits_by``)."""
        lead = "rides"
        for q in batch:
            kind = getattr(q.fn, "__qualname__", "?").removesuffix(".<locals>.op")
            self.writes_by[kind] = self.writes_by.get(kind, 0) + 1
            if lead == "rides" and not q.rides:
                lead = kind
        self.commits_by[lead] = self.commits_by.get(lead, 0) + 1
        if lead == "rides":
            self.rider_commits += 1

    def _settle_later(self, batch: list[_Queued],
                      work: asyncio.Future[_GroupOutcome]) -> None:
        if work.cancelled() or work.exception() is not None:
            self._fail_batch(batch, Unavailable("database writer failed, nothing stored"))
        else:
            self._settle(batch, work.result())

    @staticmethod
    def _fail_batch(batch: list[_Queued], error: Unavailable) -> None:
        for q in batch:
            if not q.future.done():
                q.future.set_exception(error)

    def writer_failed(self) -> None:
        """The writer was given up on: refuse writes (503) instead of queueing them."""
        self._writer_failed = True
        self._fail_queued(Unavailable("database writer failed; see /healthz"))

    def _fail_queued(self, error: Unavailable) -> None:
        held, self._held = self._held, []
        self._fail_batch(held, error)
        while not self._queue.empty():
            future = self._queue.get_nowait().future
            if not future.done():
                future.set_exception(error)

    def _run_group(self, fns: list[WriteFn[Any]], check_space: bool) -> _GroupOutcome:
        """On the writer thread: one transaction, each write in its own SAVEPOINT, one
        COMMIT. Every write's savepoint has the same name (each is released before the
        next begins): a name per position made up to ``group_commit_max`` distinct
        statements, which pushed the writes' own out of the connection's statement cache
        (128), so a large group compiled them again. Storage errors fail the whole group
        (``failure``); anything else escapes (the writer task fails, its supervisor
        restarts it).

        A group begun early (``_run_early``: its riders already run, uncommitted) is
        continued when its writes are the first of ``fns``; otherwise it is rolled back and
        the group runs from the start."""
        early, self._early = self._early, None
        if early is not None and not _begins(early.fns, fns):
            self._discard(early)
            early = None
        group = early if early is not None else self._begin(check_space)
        if isinstance(group, _GroupOutcome):
            return group  # BEGIN failed: nothing stored
        return self._finish(group, fns[len(group.fns):])

    def _run_early(self, fns: list[WriteFn[Any]]) -> None:
        """On the writer thread, while riders wait for a plain write (``early_riders``):
        their group begun and ``fns`` (all the riders waiting, in order) run now,
        uncommitted, so that the plain write that comes finds only its own SQL and the
        COMMIT on its path. An open group whose writes begin ``fns`` runs only the ones
        after them. Kept in ``_early`` for ``_run_group``; a storage error rolls it back
        (the group then runs them again)."""
        group = self._early
        self._early = None
        if group is not None and not _begins(group.fns, fns):
            self._discard(group)
            group = None
        if group is None:
            begun = self._begin(check_space=False)
            if isinstance(begun, _GroupOutcome):
                return
            if time.monotonic() - self.others_seen_at < OTHERS_QUIET_S:
                self._discard(begun)  # another writer waits: the lock is not kept open
                return
            group = begun
        try:
            self._run_writes(group, fns[len(group.fns):])
        except BaseException:
            self._discard(group)
            raise
        self._early = group

    def _begin(self, check_space: bool) -> _OpenGroup | _GroupOutcome:
        """On the writer thread: the group's transaction begun (the write lock taken), or
        the outcome of a group that could not begin."""
        backend = self.backend
        out = _GroupOutcome()
        try:
            # The backend's writer connection, with no transaction left open by a group
            # that died halfway (PostgreSQL: connected again if the server went away).
            conn = backend.writer()
        except backend.errors as exc:
            out.failure = exc
            return out
        try:
            backend.begin(conn)
            if check_space:
                out.space_before = backend.space(conn)
            # Re-read the chain head under the write lock: an admin command in another
            # process (enrolment, rotation) may have appended entries since our last commit.
            self._audit_head = self._load_audit_head_in(conn)
            if self.early_riders and backend.others_writing(conn):
                self.others_seen_at = time.monotonic()
        except self._group_errors() as exc:
            with contextlib.suppress(*backend.errors):  # may be no transaction to roll back
                conn.execute("ROLLBACK")
            out.failure = exc
            return out
        if timeline.enabled():
            timeline.mark("w.begun")
        return _OpenGroup(conn, WriteTxn(self, conn), out)

    def _run_writes(self, group: _OpenGroup, fns: list[WriteFn[Any]]) -> None:
        """On the writer thread: each of ``fns`` in its own savepoint of the open group.
        A write that fails alone is refused alone; storage errors escape (the group
        fails)."""
        backend, conn, txn, out = self.backend, group.conn, group.txn, group.out
        marking = timeline.enabled()
        for fn in fns:
            group.fns.append(fn)
            savepoint_head = self._audit_head
            conn.execute("SAVEPOINT w")
            txn.on_commit = []
            try:
                value = _drive(fn(txn))
            except backend.storage_errors:
                raise  # disk full, I/O error, connection lost: the whole group fails
            except Exception as exc:
                # This write alone is refused (ours, a constraint, or a bug in it); the
                # rest of the group still commits and the writer keeps running.
                conn.execute("ROLLBACK TO w")
                self._audit_head = savepoint_head
                if isinstance(exc, backend.integrity_errors):
                    exc = Conflict(f"refused by a database constraint: {exc}")
                elif not isinstance(exc, LiaisonError):
                    log.exception("store.write_failed")
                    exc = NodeFault("internal error while storing")
                out.results.append((False, exc))
            else:
                out.results.append((True, value))
                out.after_commit.extend(txn.on_commit)
            conn.execute("RELEASE w")
            if marking:  # "w.wrote:EnvelopeStore.accept_many": which write took how long
                timeline.mark("w.wrote:" + getattr(fn, "__qualname__", "?")
                              .removesuffix(".<locals>.op"))

    def _finish(self, group: _OpenGroup, fns: list[WriteFn[Any]]) -> _GroupOutcome:
        """On the writer thread: the rest of the group's writes, then its COMMIT."""
        backend, conn, txn, out = self.backend, group.conn, group.txn, group.out
        try:
            self._run_writes(group, fns)
            if out.space_before is not None:
                out.space_after = backend.space(conn)
            out.in_commit = True
            timeline.mark("w.commit")
            file_before = _file_stamp(backend) if timeline.enabled() else None
            conn.execute("COMMIT")
            timeline.mark("w.durable")
            if file_before is not None and _file_stamp(backend) != file_before:
                timeline.mark("w.checkpointed")  # the database file itself was written
            out.effects_added = txn.effects_added
        except self._group_errors() as exc:
            # Disk full, I/O error, locked, connection lost: nothing of this batch was
            # stored (PostgreSQL: unless COMMIT itself was lost on the way back, see
            # ``postgres``; a client's retry with the same envelope id is then a duplicate).
            with contextlib.suppress(*backend.errors):  # may be no transaction to roll back
                conn.execute("ROLLBACK")
            out.failure = exc
        finally:
            if txn.keys_changed:  # committed or rolled back: the cache may fill again
                self.key_cache.end_change()
        return out

    def _group_errors(self) -> tuple[type[BaseException], ...]:
        """What fails a whole group: storage errors, and a bad value or OS error there."""
        return (*self.backend.errors, ValueError, OSError)

    def _discard(self, group: _OpenGroup) -> None:
        """On the writer thread: an early group that is not to be committed, rolled back
        (its writes run again in the group they end up in)."""
        with contextlib.suppress(*self.backend.errors):
            group.conn.execute("ROLLBACK")
        if group.txn.keys_changed:
            self.key_cache.end_change()

    def _settle(self, batch: list[_Queued], out: _GroupOutcome) -> None:
        """On the event loop: storage state, the effect drain's wake-up, then each caller's
        answer (only now that the group is committed, or known not to be)."""
        if out.failure is not None:
            exc = out.failure
            error: Unavailable
            if self.backend.out_of_space(exc):
                error = StorageFull(FULL_DETAIL.format(cause=str(exc)[:200]))
                self._storage_full(len(batch), str(exc)[:200])
            else:
                error = Unavailable(f"storage failed, nothing stored: {exc}")
                if out.in_commit and self.backend.name == "postgresql":
                    error = Unavailable(
                        "storage failed during commit, outcome unknown: send the same "
                        f"envelope again (a stored one is answered duplicate): {exc}")
            self._fail_batch(batch, error)
            return
        self.commits += 1
        self._count(batch)
        # "Full" ends only when a write that needed space succeeds (new pages, or pages taken
        # back from the freelist), not when an in-place update happens to fit.
        before, after = out.space_before, out.space_after
        if self.storage.full and (
                not self.backend.measures_space
                or (before is not None and after is not None
                    and (after[0] > before[0] or after[1] < before[1]))):
            log.warning("storage.resumed", refused_writes=self.storage.refused_writes,
                        full_since_ms=self.storage.since_ms)
            self.storage.full = False
            self.storage.since_ms = None
        # First what the commit hands over (the sender's offers, the live inbox's wake-up),
        # then the callers, and only then the effect drain: its evidence work (a read, a
        # seal) must not go before the envelope's own path.
        for callback in out.after_commit:
            try:
                callback()
            except Exception:  # a hint's bug must not keep the answers from the callers
                log.exception("store.after_commit_failed")
        for q, (ok, value) in zip(batch, out.results, strict=True):
            future = q.future
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        if out.effects_added and self.on_effects is not None:
            self.on_effects()

    def _storage_full(self, writes: int, cause: str) -> None:
        state = self.storage
        now = self.clock.now_ms()
        if not state.full:
            log.warning("storage.full", cause=cause, refused_writes=writes,
                        reason="writes refused, nothing acknowledged; resumes when space "
                               "returns")
            state.since_ms = now
        state.full = True
        state.last_full_ms = now
        state.refused_writes += writes
        state.cause = cause
        if self.on_storage_full is not None:
            self.on_storage_full(writes)

    def _append_audit(self, conn: Any, at: int, event: str, actor: str,
                      detail: str, envelope_id: bytes | None) -> None:
        rows, head = self._audit_rows(at, [(event, actor, detail, envelope_id)])
        conn.execute(self.backend.sql(_INSERT_AUDIT), rows[0])
        self._audit_head = head

    def _append_audits(self, conn: Any, at: int,
                       entries: list[tuple[str, str, str, bytes | None]]) -> None:
        """``_append_audit`` for each of ``entries`` in turn, the rows in few statements."""
        if not entries:
            return
        rows, head = self._audit_rows(at, entries)
        insert_rows(conn, self.backend.sql, _INSERT_AUDIT, rows)
        self._audit_head = head

    def _audit_rows(self, at: int, entries: list[tuple[str, str, str, bytes | None]]
                    ) -> tuple[list[tuple[Any, ...]], tuple[int, bytes]]:
        """The rows of ``entries`` (event, actor, detail, envelope id), chained on from the
        head, and the head after them (moved by the caller once they are inserted)."""
        seq, digest = self._audit_head
        rows: list[tuple[Any, ...]] = []
        for event, actor, detail, envelope_id in entries:
            seq += 1
            digest = entry_hash(digest, seq, at, event, envelope_id, actor, detail)
            # No ``prev``: the row before's hash (migration 11); the event by its code and
            # the detail's frequent pieces by theirs (19).
            rows.append((seq, at, stored_event(event), envelope_id, actor,
                         stored_detail(detail), digest))
        return rows, (seq, digest)


def _begins(run: list[WriteFn[Any]], fns: list[WriteFn[Any]]) -> bool:
    """Whether the writes ``run`` are the first of ``fns`` (the same functions, in order)."""
    return len(run) <= len(fns) and all(a is b for a, b in zip(run, fns, strict=False))


def _log_early_failure(work: asyncio.Future[None]) -> None:
    """An early group that failed was rolled back: its riders run again in their group."""
    if not work.cancelled() and work.exception() is not None:
        log.warning("store.early_riders_failed", error=str(work.exception())[:200])


_INSERT_AUDIT = ("INSERT INTO audit (seq, at, event, envelope_id, actor, detail, hash) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)")
