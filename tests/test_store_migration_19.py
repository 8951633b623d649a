"""Migration 19 (bytes on disk at the origin, issue 16) on a real v18 database: the audit
table spells its frequent events by a short code (``core/audit.py`` ``EVENT_CODES``); the
hash covers the name, so the migrated chain verifies as before, an event with no code
keeps its name, and ``audit_named`` reads the table with names for SQL readers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from liaison_net.core.audit import DETAIL_MARK, EVENT_CODES, GENESIS, detail, entry_hash
from liaison_net.store.maintenance import check_copy
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW
from tests.old_schema import database_at

V18 = 18
EID = b"\x01" * 16
ACCEPTED = detail(handling="H0", inboxes=[], layer="origin", purpose="a case",
                  recipients=["be/mpeeters"], tlp="AMBER", to=["be"])
#: (event, envelope id): two with codes, one without (stored by its name).
ROWS = [("envelope.accepted", EID), ("peer.backoff", None), ("envelope.relayed", EID),
        ("envelope.delivered_to_inbox", EID)]


def _v18_database(path: Path) -> None:
    db = database_at(path, V18)
    try:
        prev = GENESIS
        for seq, (event, eid) in enumerate(ROWS, start=1):
            text = detail(n=seq)
            prev = entry_hash(prev, seq, NOW + seq, event, eid, "nl", text)
            db.execute("INSERT INTO audit (seq, at, event, envelope_id, actor, detail, hash) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (seq, NOW + seq, event, eid, "nl", text,
                                                        prev))
        db.execute("COMMIT")
    finally:
        db.close()


def _stored(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT event FROM audit ORDER BY seq")]


async def test_a_v18_log_is_coded_and_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    _v18_database(path)
    store = NodeStore(path, "nl")
    await store.open()
    try:
        assert await store.verify_audit() == (4, None)
        assert [e.event for e in await store.audit_entries()] == [e for e, _ in ROWS]
        await store.audit(now=NOW + 9, event="envelope.accepted", actor="nl",
                          audit_detail=ACCEPTED, envelope_id=EID)
        assert await store.verify_audit() == (5, None)
        assert (await store.audit_entries())[-1].detail == ACCEPTED
    finally:
        await store.close()
    assert _stored(path) == ["1", "peer.backoff", "2", "3", "1"]
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT event FROM audit_named ORDER BY seq")] == [
            *(e for e, _ in ROWS), "envelope.accepted"]
        # Older details stay as they were; the new one is stored coded, read in full.
        stored = [r[0] for r in db.execute("SELECT detail FROM audit ORDER BY seq")]
        assert stored[:4] == [detail(n=seq) for seq in range(1, 5)]
        assert stored[4].startswith(DETAIL_MARK) and len(stored[4]) < len(ACCEPTED) // 2
        assert [r[0] for r in db.execute("SELECT detail FROM audit_named ORDER BY seq")] == [
            *(detail(n=seq) for seq in range(1, 5)), ACCEPTED]
        # The table and the code's registry agree (a code is never given twice).
        assert dict(db.execute("SELECT name, code FROM audit_events")) == EVENT_CODES
    assert len(set(EVENT_CODES.values())) == len(EVENT_CODES)
    assert all(c.isdigit() and not n.isdigit() for n, c in EVENT_CODES.items())
    assert check_copy(path) == 5  # a backup of a coded log checks as well


async def test_a_code_changed_to_another_breaks_the_chain(tmp_path: Path) -> None:
    """The codes are not hashed, what they stand for is: swapping ``envelope.relayed`` for
    ``envelope.accepted`` by its code, or one detail code for another, is caught at that
    row."""
    path = tmp_path / "n.sqlite3"
    _v18_database(path)
    store = NodeStore(path, "nl")
    await store.open()
    await store.audit(now=NOW + 9, event="envelope.accepted", actor="nl",
                      audit_detail=ACCEPTED, envelope_id=EID)
    await store.close()
    for seq, sql in [(3, "UPDATE audit SET event = '1' WHERE seq = 3"),
                     (5, "UPDATE audit SET detail = replace(detail, char(11), char(12)) "
                         "WHERE seq = 5")]:  # "tlp":"AMBER" -> "tlp":"GREEN"
        copy = tmp_path / f"copy-{seq}.sqlite3"
        with sqlite3.connect(path) as db, sqlite3.connect(copy) as out:
            db.backup(out)
        with sqlite3.connect(copy) as db:
            assert db.execute(sql).rowcount == 1
        store = NodeStore(copy, "nl")
        await store.open()
        try:
            assert await store.verify_audit() == (5, seq)
        finally:
            await store.close()


async def test_export_filters_by_name_whatever_the_spelling(tmp_path: Path) -> None:
    """A row coded and a row stored by its name (before its code was given) are both found
    when an export asks for the event by name."""
    from liaison_net.store.audit_query import AuditQuery, audit_head, matching

    path = tmp_path / "n.sqlite3"
    _v18_database(path)
    store = NodeStore(path, "nl")
    await store.open()
    try:
        await store.audit(now=NOW + 9, event="envelope.accepted", actor="nl",
                          audit_detail=detail(), envelope_id=EID)
        with sqlite3.connect(path) as db:  # as a row from before its code existed
            db.execute("UPDATE audit SET event = 'envelope.accepted' WHERE seq = 5")
        head = await audit_head(store.db)
        query = AuditQuery(0, NOW + 100, events=("envelope.accepted",))
        found = [e async for e in matching(store.db, query, head=head)]
        assert [(e.seq, e.event) for e in found] == [(1, "envelope.accepted"),
                                                      (5, "envelope.accepted")]
    finally:
        await store.close()
