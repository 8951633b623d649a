"""A database as an older release left it, for the migration tests: the schema up to a
version, built from the migrations themselves (``store/schema.py``, split as the store
splits them), inside an open transaction that the caller fills and commits."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from liaison_net.store.dialect import split_script
from liaison_net.store.schema import MIGRATIONS


def database_at(path: Path, version: int, *, page_size: int | None = None) -> sqlite3.Connection:
    """A new SQLite file at schema ``version``, in WAL mode, a transaction open."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        if page_size is not None:
            db.execute(f"PRAGMA page_size={int(page_size)}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE schema_version (version INTEGER)")
        db.execute("BEGIN")
        for script in MIGRATIONS[:version]:
            for statement in split_script(script):
                db.execute(statement)
        db.execute("INSERT INTO schema_version VALUES (?)", (version,))
    except BaseException:
        db.close()
        raise
    return db
