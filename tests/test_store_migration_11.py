"""Migration 11 (bytes on disk, issue 16) on a real v10 database full of data: every
envelope, inbox row, hop, effect and evidence cover survives, the audit chain (no longer
storing ``prev``) still verifies and still grows, and tampering is still found."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from liaison_net.core.audit import GENESIS, detail, entry_hash
from liaison_net.core.envelope import Envelope, Precedence
from liaison_net.core.limits import HOUR_MS
from liaison_net.errors import Conflict
from liaison_net.store import maintenance
from liaison_net.store.node_store import NodeStore
from liaison_net.store.schema import SCHEMA_VERSION
from tests.core.factories import NOW, Officer, seal_from
from tests.old_schema import database_at

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")
CAROL = Officer("nl/avisser")
V10 = 10


def _v10_database(path: Path, envelopes: list[Envelope]) -> int:
    """A database at schema 10 (4 KiB pages, as before), filled as the v10 store wrote it:
    envelopes, inbox rows, hops in every state, an effect, an evidence cover and an audit
    chain storing each ``prev``. Returns the number of audit entries."""
    db = database_at(path, V10, page_size=4096)
    try:
        prev, seq = GENESIS, 0
        states = ["queued", "delivered", "refused", "expired"]
        for i, env in enumerate(envelopes):
            h = env.header
            db.execute(
                "INSERT INTO envelopes (id, raw, sender, kind, precedence, created, expires, "
                "retain_until, received, ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (h.id, env.to_bytes(), h.sender, h.kind.value, int(h.precedence), h.created,
                 h.expires, h.tag.retain_until, NOW, h.ref))
            db.execute("INSERT INTO inbox (officer, envelope_id, relayed) VALUES (?, ?, ?)",
                       (CAROL.id, h.id, NOW + i))
            db.execute(
                "INSERT INTO hops (node, envelope_id, state, precedence, expires, updated, "
                "reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                ("be", h.id, states[i % 4], int(h.precedence), h.expires, NOW,
                 "refused.x" if states[i % 4] == "refused" else None))
            for event, actor in (("envelope.accepted", ALICE.id), ("envelope.relayed", "nl")):
                seq += 1
                text = detail(peer="be", n=i)
                digest = entry_hash(prev, seq, NOW + seq, event, h.id, actor, text)
                db.execute(
                    "INSERT INTO audit (seq, at, event, envelope_id, actor, detail, prev, hash) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, NOW + seq, event, h.id, actor, text, prev, digest))
                prev = digest
        db.execute("INSERT INTO effects (kind, envelope_id, args, created, next_attempt) "
                   "VALUES ('evidence', ?, x'80', ?, ?)", (envelopes[0].id, NOW, NOW))
        db.execute("INSERT INTO evidence_covers (envelope_id, carrier) VALUES (?, ?)",
                   (envelopes[0].id, envelopes[1].id))
        db.execute("COMMIT")
    finally:
        db.close()
    return seq


def _envelopes(n: int) -> list[Envelope]:
    return [seal_from(ALICE, [BOB, CAROL], now=NOW + i, expires=NOW + i + HOUR_MS,
                      precedence=Precedence.FLASH if i == 5 else Precedence.PRIORITY)
            for i in range(n)]


async def test_a_v10_database_keeps_all_its_data_at_v11(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    envelopes = _envelopes(12)
    entries = _v10_database(path, envelopes)
    store = NodeStore(path, "nl")
    await store.open()
    try:
        for env in envelopes:
            assert await store.envelope_bytes(env.id) == env.to_bytes()
        inbox = await store.inbox(CAROL.id, after=0, limit=100)
        assert [item.envelope_id for item in inbox] == [env.id for env in envelopes]
        states = ["queued", "delivered", "refused", "expired"]
        for i, env in enumerate(envelopes):
            state, reason = (await store.hop_states(env.id))["be"]
            assert state == states[i % 4]
            assert reason == ("refused.x" if state == "refused" else None)
        assert await store.effects.pending() == 1
        assert [e.ref for e in await store.effects.due(NOW, 10)] == [envelopes[0].id]
        assert await store.verify_audit() == (entries, None)
        # The outbox (now on partial indexes) still finds the queued hops, flash first.
        queued = [env.id for i, env in enumerate(envelopes) if i % 4 == 0]
        batch = [eid for eid, _ in await store.next_batch("be", 10, now=NOW)]
        flash = envelopes[5].id
        assert flash not in queued  # i=5 is a delivered hop: never sent again
        assert batch == queued
        assert await store.queue_depth() == {"be": len(queued)}
        # The chain grows from the migrated head and verifies end to end.
        new = seal_from(ALICE, [BOB], now=NOW + 100, expires=NOW + 100 + HOUR_MS)
        await store.accept(new, now=NOW + 100, actor=ALICE.id, event="envelope.accepted",
                           local_recipients=[], remote_nodes=["be"], audit_detail=detail())
        assert await store.verify_audit() == (entries + 1, None)
        expired = await store.expire_due(NOW + 2 * HOUR_MS)
        assert sorted(eid for eid, _, _ in expired) == sorted([*queued, new.id])
        assert await store.verify_audit() == (entries + 2 + len(queued), None)
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        columns = {r[1] for r in db.execute("PRAGMA table_info(audit)")}
        assert "prev" not in columns
        assert db.execute("SELECT c.envelope_id, i.envelope_id FROM evidence_covers c "
                          "JOIN inbox i ON i.seq = c.inbox_seq").fetchall() == [
            (envelopes[0].id, envelopes[1].id)]


async def test_a_v10_backup_is_checked_with_its_stored_links(tmp_path: Path) -> None:
    """``admin restore`` checks a copy made before migration 11 (it still stores prev)."""
    path = tmp_path / "old.sqlite3"
    entries = _v10_database(path, _envelopes(3))
    assert maintenance.check_copy(path) == entries


def _tamper(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute(sql)


async def _verify(path: Path) -> tuple[int, int | None]:
    store = NodeStore(path, "nl")
    await store.open()
    try:
        return await store.verify_audit()
    finally:
        await store.close()


async def test_without_prev_a_deleted_entry_still_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    _v10_database(path, _envelopes(4))
    _tamper(path, "DELETE FROM audit WHERE seq = 4")  # renumbered to hide the gap
    _tamper(path, "UPDATE audit SET seq = seq - 1 WHERE seq > 4")
    assert await _verify(path) == (7, 4)


async def test_without_prev_an_edited_entry_still_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    _v10_database(path, _envelopes(4))
    assert await _verify(path) == (8, None)  # migrated: prev dropped
    _tamper(path, "UPDATE audit SET actor = 'nl/someone-else' WHERE seq = 3")
    assert await _verify(path) == (8, 3)


async def test_a_migrated_copy_with_an_edited_entry_fails_its_check(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    _v10_database(path, _envelopes(4))
    assert await _verify(path) == (8, None)
    assert maintenance.check_copy(path) == 8
    _tamper(path, "UPDATE audit SET detail = '{}' WHERE seq = 6")
    with pytest.raises(Conflict, match="broken at entry 6"):
        maintenance.check_copy(path)
