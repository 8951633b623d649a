"""Indexing what a batch carrier covers must not cost more as the inbox grows (issue 16,
saturation). The carrier's inbox row is looked up by (officer, envelope), the inbox's
unique index; looked up by envelope alone, SQLite scanned the whole inbox once per covered
id, at the origin for every "accepted" batch (``complete_effects``) and for every
"relayed" batch a peer sent back (``accept`` with ``covers``).

Counted, not timed: SQLite's virtual-machine instructions on the writer connection (its
progress handler), for the same write with an inbox of a few rows and of thousands."""

from __future__ import annotations

import os
from pathlib import Path

from liaison_net.core.audit import detail
from liaison_net.core.envelope import Envelope, Kind
from liaison_net.store.database import WriteTxn
from liaison_net.store.effect_store import Issued
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, seal_from
from tests.test_batch_store import BE_NODE, _item
from tests.test_effects import ALICE, BOB, _enrol, _open

COVERED = 64  # envelopes one carrier covers
PADDING = 2_000  # other inbox rows: a node whose officers have received for a while
PER_CALL = 10  # instructions between two calls of the progress handler


async def _counting(store: NodeStore) -> list[int]:
    """From now on, the writer connection's VM instructions (in units of ``PER_CALL``)."""
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0  # go on

    async def op(txn: WriteTxn) -> None:
        txn.conn.set_progress_handler(tick, PER_CALL)

    await store.db.write(op)
    count[0] = 0
    return count


async def _pad_inbox(store: NodeStore, rows: int) -> None:
    """``rows`` inbox rows of envelopes received earlier, the carrier's officer's among
    them (only the inbox is read by the statements counted here)."""

    async def op(txn: WriteTxn) -> None:
        await txn.executemany(
            "INSERT INTO inbox (officer, envelope_id, relayed) VALUES (?, ?, ?)",
            [(ALICE.id if i % 2 else "nl/pjansen", os.urandom(16), NOW)
             for i in range(rows)])

    await store.db.write(op)


async def _sent(store: NodeStore) -> list[Envelope]:
    """``COVERED`` envelopes Alice sent, accepted here with their "accepted" effects."""
    envs = [seal_from(ALICE, [BOB], f"alert {i}".encode()) for i in range(COVERED)]
    await store.accept_many([_item(e) for e in envs], now=NOW)
    return envs


async def _steps_to_issue_accepted_batch(path: Path, padding: int) -> int:
    store = await _open(path)
    try:
        await _enrol(store, ALICE)
        await _pad_inbox(store, padding)
        envs = await _sent(store)
        due = await store.effects.due(NOW, COVERED)
        assert len(due) == COVERED
        carrier = seal_from(ALICE, [ALICE], b"a stand-in for the sealed batch",
                            kind=Kind.EVIDENCE, ref=envs[0].id)
        item = Issued(due[0], carrier, NOW, "evidence.issued", [ALICE.id], [], detail(),
                      also=tuple(due[1:]), covers=tuple(e.id for e in envs))
        count = await _counting(store)
        assert await store.complete_effects([item]) == [True]
        steps = count[0]
        for env in (envs[0], envs[-1]):  # indexed for every covered id
            assert await store.evidence_for(ALICE.id, env.id, limit=10) == [carrier.to_bytes()]
        return steps
    finally:
        await store.close()


async def _steps_to_receive_relayed_batch(path: Path, padding: int) -> int:
    store = await _open(path)
    try:
        await _enrol(store, ALICE)
        await _pad_inbox(store, padding)
        envs = await _sent(store)
        carrier = seal_from(BE_NODE, [ALICE], b"the relayed batch", kind=Kind.EVIDENCE,
                            ref=envs[0].id)
        count = await _counting(store)
        outcome = await store.accept(
            carrier, now=NOW, actor="be", event="envelope.delivered_to_inbox",
            local_recipients=[ALICE.id], remote_nodes=[], audit_detail=detail(),
            received=True, covers=[e.id for e in envs])
        steps = count[0]
        assert not outcome.duplicate
        for env in (envs[0], envs[-1]):
            assert await store.evidence_for(ALICE.id, env.id, limit=10) == [carrier.to_bytes()]
        return steps
    finally:
        await store.close()


async def test_an_accepted_batch_is_indexed_without_reading_the_whole_inbox(
        tmp_path: Path) -> None:
    small = await _steps_to_issue_accepted_batch(tmp_path / "small.db", 0)
    large = await _steps_to_issue_accepted_batch(tmp_path / "large.db", PADDING)
    # Measured: the same (273 / 274) with the lookup by (officer, envelope); 114x larger
    # with a scan of the inbox per covered id (64 ids x 2,000 rows).
    assert large < 1.5 * small, (small, large)


async def test_a_peers_relayed_batch_is_indexed_without_reading_the_whole_inbox(
        tmp_path: Path) -> None:
    small = await _steps_to_receive_relayed_batch(tmp_path / "small.db", 0)
    large = await _steps_to_receive_relayed_batch(tmp_path / "large.db", PADDING)
    # Measured: 196 / 197 with the lookup; 3.6x with the inbox scanned by the join.
    assert large < 1.5 * small, (small, large)
