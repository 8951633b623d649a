"""Migration 20 (bytes on disk at the origin, issue 16) on a real v19 database: an own
checkpoint written before keeps its full leaves (the only record of what those entries
were), the checkpoints signed after keep ``kept`` (``core/kept_leaves.py``), and the two
read as one log: each row hashes to its signed root, and a rewrite of the audit rows is
named at its first entry whether it falls before the migration or after."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from liaison_net.clock import ManualClock
from liaison_net.config import AuditConfig
from liaison_net.core import checkpoint as cp
from liaison_net.core import crypto, merkle
from liaison_net.core.audit import GENESIS, detail, entry_hash
from liaison_net.core.kept_leaves import KeptLeaves
from liaison_net.core.limits import DEFAULT_LIMITS
from liaison_net.metrics import NodeMetrics
from liaison_net.services.checkpoints import AuditCheckpoints
from liaison_net.services.intake import Keys
from liaison_net.store.node_store import NodeStore
from liaison_net.store.schema import SCHEMA_VERSION
from tests.core.factories import NOW
from tests.old_schema import database_at

V19 = 19
NL_KEY = crypto.signing_key_from_seed(b"\x11" * 32)
OLD = 130  # entries before the migration; an own checkpoint of 100 of them


def _v19_database(path: Path) -> list[bytes]:
    """130 audit entries and an own checkpoint of the first 100, as schema 19 kept it:
    every leaf in full. Returns the leaves."""
    db = database_at(path, V19)
    try:
        prev, leaves = GENESIS, []
        for seq in range(1, OLD + 1):
            text = detail(n=seq)
            prev = entry_hash(prev, seq, NOW + seq, "test.entry", None, "nl", text)
            db.execute("INSERT INTO audit (seq, at, event, envelope_id, actor, detail, hash) "
                       "VALUES (?, ?, ?, NULL, 'nl', ?, ?)", (seq, NOW + seq, "test.entry",
                                                             text, prev))
            leaves.append(merkle.leaf_hash(prev))
        signed = cp.sign_checkpoint(cp.Checkpoint("nl", 100, merkle.root(leaves[:100]), NOW),
                                    NL_KEY)
        db.execute("INSERT INTO checkpoints (node, size, root, at, signed, leaves, received) "
                   "VALUES ('nl', 100, ?, ?, ?, ?, ?)",
                   (signed.checkpoint.root, NOW, signed.raw, b"".join(leaves[:100]), NOW))
        db.execute("COMMIT")
    finally:
        db.close()
    return leaves


async def test_old_full_leaves_and_new_kept_ones_read_as_one_log(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    old_leaves = _v19_database(path)
    store = NodeStore(path, "nl")
    await store.open()
    clock = ManualClock(NOW + 1000)
    service = AuditCheckpoints(node_id="nl", store=store,
                               keys=Keys(own=NL_KEY, nodes={"nl": NL_KEY.public}),
                               config=AuditConfig(50, 3600.0), peers=[],
                               metrics=NodeMetrics(), limits=DEFAULT_LIMITS, clock=clock)
    try:
        await service.start()
        signed = await service.current()  # 30 entries since the last checkpoint: not yet
        assert signed is not None and signed.checkpoint.size == 100
        assert (await service.checkpoint_now()) is not None  # the 130 signed now
        for i in range(70):
            await store.audit(now=NOW + 2000 + i, event="test.entry", actor="nl",
                              audit_detail=detail(i=i))
        signed = await service.current()
        assert signed is not None and signed.checkpoint.size == 200
        rows = list(reversed(await store.checkpoints.of("nl")))
        local = cp.leaves(await store.audit_entries())
    finally:
        await store.close()
    assert local[:OLD] == old_leaves
    assert [(r.size, r.leaves is not None, r.kept is not None) for r in rows] == [
        (100, True, False), (130, False, True), (200, False, True)]
    assert rows[0].leaves == b"".join(old_leaves[:100])  # kept as it was
    kept = KeptLeaves()
    for row in rows:
        assert kept.add(row.size, row.leaves, row.kept) and kept.root() == row.root
    checkpoint = cp.Checkpoint("nl", 200, rows[-1].root, NOW)
    assert cp.first_difference(local, checkpoint, original=kept) is None
    for at in (7, 99, 100, 127, 128, 150, 199):  # before the migration and after
        rewritten = [*local[:at], *(merkle.leaf_hash(b"x%d" % i) for i in range(at, 200))]
        diff = cp.first_difference(rewritten, checkpoint, original=kept)
        assert diff is not None and (diff.first_index, diff.exact) == (at, True), at
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [
            (SCHEMA_VERSION,)]
        # What the new rows keep, against 32 bytes per leaf before.
        assert db.execute("SELECT SUM(length(kept)) FROM checkpoints").fetchone()[0] < (
            (200 - 100) * 32 // 4)
