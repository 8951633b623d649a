"""Operator maintenance of a node database file: online backup, restore.

Backups use SQLite's online backup API, so they are consistent snapshots taken while the
node runs (WAL readers never block the writer). A restore checks the copy's integrity and
its audit chain before it replaces anything, and never overwrites a database silently.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from liaison_net.core.audit import AuditEntry, first_broken
from liaison_net.errors import Conflict, NotFound, Unavailable
from liaison_net.store.audit_store import ENTRY_COLUMNS, linked


def _connect_ro(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise NotFound(f"no node database at {path}")
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise Unavailable(f"cannot open {path}: {exc}") from exc


def backup(path: Path, out: Path) -> int:
    """Snapshot the live database into ``out`` (created 0600); return its size in bytes."""
    if out.exists():
        raise Conflict(f"{out} exists; choose a new backup file")
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Created 0600 before SQLite opens it: its journal then gets the same mode.
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        with closing(_connect_ro(path)) as src, closing(sqlite3.connect(out)) as dst:
            src.backup(dst)
            # The copy inherits the node's WAL mode, and any later reader (check_copy,
            # restore, an operator's sqlite3) would leave -wal/-shm files beside it: as a
            # rollback-journal database the backup is one self-contained file.
            dst.execute("PRAGMA journal_mode=DELETE").fetchall()
    except sqlite3.Error as exc:
        out.unlink(missing_ok=True)
        raise Unavailable(f"backup failed: {exc}") from exc
    return out.stat().st_size


def check_copy(path: Path) -> int:
    """Integrity and audit-chain check of a backup; returns its audit entry count."""
    with closing(_connect_ro(path)) as db:
        if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise Conflict(f"{path} fails SQLite's integrity check")
        columns = {r[1] for r in db.execute("PRAGMA table_info(audit)")}
        if "prev" in columns:  # a copy from before migration 11 stores each link
            entries = [AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7])
                       for r in db.execute("SELECT seq, at, event, envelope_id, actor, "
                                           "detail, prev, hash FROM audit ORDER BY seq")]
        else:
            entries = linked(db.execute(f"SELECT {ENTRY_COLUMNS} FROM audit ORDER BY seq"))
    broken = first_broken(entries)
    if broken is not None:
        raise Conflict(f"{path}: audit chain broken at entry {broken}")
    return len(entries)


def restore(backup_path: Path, target: Path, *, replace: bool) -> int:
    """Put a checked backup in place of a (stopped) node's database."""
    entries = check_copy(backup_path)
    if target.exists() and not replace:
        raise Conflict(f"{target} exists; stop the node and pass --replace to overwrite it")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(target.parent, 0o700)  # the node's data directory: its own alone
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    tmp = target.with_suffix(".restoring")
    tmp.unlink(missing_ok=True)  # left by an interrupted restore
    # 0600 from the first byte: never a moment when the copy is readable by others.
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as dst, \
            backup_path.open("rb") as src:
        shutil.copyfileobj(src, dst)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, target)
    return entries
