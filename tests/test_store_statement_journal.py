"""The writer's statement journal stays in memory (issue 16, light load): every write of a
group runs in its own savepoint, and SQLite keeps what the savepoint would restore in a
statement journal that spills to a temporary file (``etilqs_*``, created, unlinked, written
page by page, closed) once it passes 64 KiB. At 20/s that was one file and ~47 ``pwrite``
calls per commit on each node, never synced and thrown away at the commit.
``temp_store=MEMORY`` on the writer connection keeps it in memory; counted here as the
files the writer connection holds open in the middle of such a write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from liaison_net.store.database import WriteTxn
from liaison_net.store.node_store import NodeStore

ROWS = 200  # rows of BLOB bytes each: far more than 64 KiB of pages rewritten in one write
BLOB = 2_000

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


def _temporary_files_open() -> int:
    """SQLite's temporary files of this process (unlinked at once: seen only by their fd)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (the listing's own fd)
        count += "etilqs_" in target
    return count


async def test_a_large_write_keeps_its_statement_journal_in_memory(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "nl.sqlite3", "nl")
    await store.open()
    try:
        async def fill(txn: WriteTxn) -> None:
            txn.conn.execute("CREATE TABLE scratch (id INTEGER PRIMARY KEY, b BLOB)")
            txn.conn.executemany("INSERT INTO scratch (b) VALUES (zeroblob(?))",
                                 [(BLOB,)] * ROWS)

        async def rewrite(txn: WriteTxn) -> int:
            # Inside the write's savepoint: every page of the table is journalled first.
            txn.conn.execute("UPDATE scratch SET b = randomblob(?)", (BLOB,))
            return _temporary_files_open()

        await store.db.write(fill)
        assert await store.db.write(rewrite) == 0
        assert await store.db.write(_count_rows) == ROWS  # the write itself committed
    finally:
        await store.close()


async def _count_rows(txn: WriteTxn) -> int:
    row = txn.conn.execute("SELECT COUNT(*) FROM scratch WHERE length(b) = ?",
                           (BLOB,)).fetchone()
    return int(row[0])
