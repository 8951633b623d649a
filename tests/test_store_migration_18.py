"""Migration 18 (bytes on disk at the origin, issue 16) on a real v17 database: the covers
an inbox reads stay in ``evidence_covers`` (naming the carrier by its inbox row), those of
a carrier still to be sent to a peer move to ``outgoing_covers`` (read by carrier), and
the index by carrier is gone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from liaison_net.core.envelope import Envelope, Kind
from liaison_net.core.limits import HOUR_MS
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, seal_from
from tests.old_schema import database_at

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")
V17 = 17


def _v17_database(path: Path, envelopes: list[Envelope], covered: list[bytes]) -> None:
    """``envelopes`` 0: a carrier in ALICE's inbox here; 1: a carrier queued for be (to be
    forgotten once delivered); 2: one queued for be from before forgetting existed; 3: one
    delivered to be long ago (nothing reads its covers any more). Each covers ``covered``."""
    db = database_at(path, V17)
    try:
        for i, env in enumerate(envelopes):
            h = env.header
            db.execute(
                "INSERT INTO envelopes (id, raw, sender, kind, precedence, created, expires, "
                "retain_until, received, ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (h.id, env.to_bytes(), h.sender, h.kind.value, int(h.precedence), h.created,
                 h.expires, h.tag.retain_until, NOW, h.ref))
            if i == 0:
                db.execute("INSERT INTO inbox (officer, envelope_id, relayed) VALUES (?, ?, ?)",
                           (ALICE.id, h.id, NOW))
            else:
                db.execute(
                    "INSERT INTO hops (node, envelope_id, state, precedence, expires, updated) "
                    "VALUES ('be', ?, ?, 0, ?, ?)",
                    (h.id, "delivered" if i == 3 else "queued", h.expires, NOW))
            if i == 1:
                db.execute("INSERT INTO forget_when_delivered (envelope_id, hops) "
                           "VALUES (?, 1)", (h.id,))
            db.executemany("INSERT INTO evidence_covers (envelope_id, carrier) VALUES (?, ?)",
                           [(eid, h.id) for eid in covered])
        db.execute("COMMIT")
    finally:
        db.close()


async def test_covers_are_split_by_who_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    carriers = [seal_from(ALICE, [ALICE], now=NOW + i, expires=NOW + i + HOUR_MS,
                          kind=Kind.EVIDENCE) for i in range(4)]
    covered = sorted(seal_from(ALICE, [BOB], now=NOW - i).id for i in range(3))
    _v17_database(path, carriers, covered)
    store = NodeStore(path, "nl")
    await store.open()
    try:
        for eid in covered:
            assert await store.evidence_for(ALICE.id, eid, limit=10) == [carriers[0].to_bytes()]
        assert await store.covers_of([c.id for c in carriers]) == {
            carriers[1].id: covered, carriers[2].id: covered}
        await store.finish_hops("be", now=NOW + 1, delivered=[carriers[1].id], refused=[])
        assert await store.covers_of([carriers[1].id]) == {}  # forgotten with its carrier
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert {bytes(r[0]) for r in db.execute(
            "SELECT i.envelope_id FROM evidence_covers c JOIN inbox i ON i.seq = c.inbox_seq")
            } == {carriers[0].id}
        assert "carrier" not in {r[1] for r in db.execute("PRAGMA table_info(evidence_covers)")}
        assert db.execute("SELECT name FROM sqlite_schema WHERE name = "
                          "'evidence_covers_carrier'").fetchall() == []
