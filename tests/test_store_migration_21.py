"""Migration 21 on a real v20 database: an officer's inbox is read by page through an index
of (officer, seq), not by reading every row of the officer's and sorting them (what SQLite
did with only the UNIQUE (officer, envelope_id) index: a page's cost grew with the inbox),
and an envelope's local deliveries (``status``) are a lookup, not a scan of the inbox."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from liaison_net.store.node_store import NodeStore
from liaison_net.store.schema import SCHEMA_VERSION
from tests.old_schema import database_at

V20 = 20
PAGE_QUERY = ("SELECT seq, envelope_id FROM inbox WHERE officer = ? AND seq > ? "
              "ORDER BY seq LIMIT ?")
DELIVERIES_QUERY = ("SELECT officer, relayed, acked FROM inbox WHERE envelope_id = ? "
                    "ORDER BY officer")


def _plan(path: Path, query: str, args: tuple[object, ...]) -> str:
    db = sqlite3.connect(path)
    try:
        return " | ".join(str(r[3]) for r in db.execute(f"EXPLAIN QUERY PLAN {query}", args))
    finally:
        db.close()


def _v20_database(path: Path) -> None:
    """An inbox of two officers' rows, interleaved, as schema 20 kept it; each envelope
    has its row in ``envelopes`` (the store's page joins it)."""
    db = database_at(path, V20)
    try:
        columns = [r[1] for r in db.execute("PRAGMA table_info(envelopes)")]
        for seq in range(1, 41):
            eid = seq.to_bytes(16, "big")
            values = {c: 0 for c in columns}
            values.update(id=eid, sender="nl/alice", kind="message", raw=b"x")
            db.execute(f"INSERT INTO envelopes ({', '.join(values)}) "
                       f"VALUES ({', '.join('?' * len(values))})", tuple(values.values()))
            officer = "be/desk" if seq % 2 else "be/other"
            db.execute("INSERT INTO inbox (seq, officer, envelope_id, relayed) "
                       "VALUES (?, ?, ?, 0)", (seq, officer, eid))
        db.execute("COMMIT")
    finally:
        db.close()


async def test_an_inbox_page_is_a_range_of_the_officers_index(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    _v20_database(path)
    before = _plan(path, PAGE_QUERY, ("be/desk", 10, 5))
    assert "TEMP B-TREE" in before  # schema 20: every row of the officer's, sorted
    eid = (11).to_bytes(16, "big")
    assert "SCAN" in _plan(path, DELIVERIES_QUERY, (eid,))  # schema 20: the whole inbox
    store = NodeStore(path, "be")
    await store.open()
    try:
        page = await store.inbox("be/desk", after=10, limit=5)
        local = await store.local_deliveries(eid)
    finally:
        await store.close()
    assert [item.seq for item in page] == [11, 13, 15, 17, 19]
    assert local == [("be/desk", 0, None)]
    deliveries = _plan(path, DELIVERIES_QUERY, (eid,))
    assert "inbox_by_envelope" in deliveries and "SCAN" not in deliveries, deliveries
    after = _plan(path, PAGE_QUERY, ("be/desk", 10, 5))
    assert "inbox_by_officer" in after and "TEMP B-TREE" not in after, after
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        db.close()
