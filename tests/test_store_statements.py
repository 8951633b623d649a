"""The SQL one accepted envelope costs the writer, counted on a real SQLite file (issue 16:
the origin's CPU per envelope; a peer's transaction at the destination). Counts, never
times: each statement is a trip through sqlite3 and the B-trees on the writer thread, for
every envelope an officer submits or a peer relays."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from liaison_net.core.audit import detail
from liaison_net.core.effects import destination_evidence, origin_evidence
from liaison_net.core.envelope import Envelope
from liaison_net.store.database import WriteTxn
from liaison_net.store.envelope_store import Acceptance
from liaison_net.store.many_rows import sizes
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, seal_from

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")
MANY = 40  # envelopes stored at once: group commits of many writes


async def _traced(store: NodeStore) -> Counter[str]:
    """Every statement the writer connection runs from now on, counted by its text."""
    seen: Counter[str] = Counter()

    async def op(txn: WriteTxn) -> None:
        txn.conn.set_trace_callback(lambda sql: seen.update([sql]))

    await store.db.write(op)
    seen.clear()
    return seen


def _envelopes(n: int) -> list[Envelope]:
    return [seal_from(ALICE, [BOB], now=NOW + i) for i in range(n)]


async def _accept(store: NodeStore, envelopes: Sequence[Envelope]) -> None:
    """As an officer's single submits: each its own write, all queued together."""
    await asyncio.gather(*(store.accept(
        env, now=NOW, actor=ALICE.id, event="envelope.accepted", local_recipients=[],
        remote_nodes=["be"], audit_detail=detail(layer="origin"),
        effects=origin_evidence(env.header, local=[], at=NOW), track_request=True)
        for env in envelopes))


def _matching(seen: Counter[str], *words: str) -> int:
    return sum(n for sql, n in seen.items() if all(w in sql for w in words))


async def test_every_write_of_a_group_uses_the_same_savepoint_name(tmp_path: Path) -> None:
    """A group's savepoints share one name: a name per write made up to 512 distinct
    statements, which crowded the writes' own out of the connection's statement cache
    (128), so a large group compiled its INSERTs again."""
    store = NodeStore(tmp_path / "nl.sqlite3", "nl")
    await store.open()
    try:
        seen = await _traced(store)
        await _accept(store, _envelopes(MANY))
        assert _matching(seen, "INSERT OR IGNORE INTO envelopes") == MANY
        assert store.db.commits < MANY  # grouped: the count below is about a group
        savepoints = {sql for sql in seen if "SAVEPOINT" in sql or "RELEASE" in sql}
        assert savepoints == {"SAVEPOINT w", "RELEASE w"}
    finally:
        await store.close()


async def test_one_accepted_envelope_runs_six_statements(tmp_path: Path) -> None:
    """Its savepoint and release, the envelope, its hop, its audit entry, its evidence
    effect; the group's BEGIN, audit head and COMMIT are shared by the group."""
    store = NodeStore(tmp_path / "nl.sqlite3", "nl")
    await store.open()
    try:
        seen = await _traced(store)
        await _accept(store, _envelopes(1))
        per_group = {"BEGIN IMMEDIATE", "COMMIT"}
        own = {sql: n for sql, n in seen.items()
               if sql not in per_group and not sql.startswith("SELECT seq, hash FROM audit")}
        assert sum(own.values()) == 6, own
    finally:
        await store.close()


async def test_a_delivered_transaction_looks_up_forgettable_envelopes_once(
        tmp_path: Path) -> None:
    """Officers' envelopes are never in ``forget_when_delivered`` (only evidence and
    notices issued here for officers elsewhere are): a delivered transaction asks once
    which of its envelopes are, not once per envelope. Per envelope remain its hop's move
    and its ``envelope.relayed`` audit entry."""
    store = NodeStore(tmp_path / "nl.sqlite3", "nl")
    await store.open()
    try:
        envelopes = _envelopes(MANY)
        await _accept(store, envelopes)
        seen = await _traced(store)
        await store.finish_hops("be", now=NOW, delivered=[e.id for e in envelopes],
                                refused=[])
        assert _matching(seen, "forget_when_delivered") == 1
        assert _matching(seen, "UPDATE hops") == MANY
        assert _matching(seen, "INSERT INTO audit") == MANY
        assert set(await store.hop_states(envelopes[0].id)) == {"be"}
    finally:
        await store.close()


def _received(env: Envelope) -> Acceptance:
    """As a peer's transaction brings it to Bob's node (``Intake._admit_received``)."""
    return Acceptance(env, actor="nl", event="envelope.delivered_to_inbox",
                      local_recipients=[BOB.id], remote_nodes=[],
                      audit_detail=detail(layer="destination", peer="nl", recipients=1),
                      received=True, track_request=True,
                      effects=destination_evidence(env.header, local=[BOB.id], at=NOW))


async def test_a_received_transaction_writes_each_table_in_a_few_statements(
        tmp_path: Path) -> None:
    """A peer's transaction of N envelopes at the destination: which of them are stored
    already is read once, then its envelopes, inbox rows, audit entries and "relayed"
    evidence effects are each written as rows of a few statements (``many_rows``:
    40 = 32 + 8), one savepoint for the batch. Before: six statements per envelope (a
    savepoint and its release, the four rows). A copy of an envelope of the same batch is
    a duplicate found without a statement."""
    store = NodeStore(tmp_path / "be.sqlite3", "be")
    await store.open()
    try:
        seen = await _traced(store)
        envelopes = _envelopes(MANY)
        # The first again at the end: known a duplicate from the batch itself, no row.
        outcomes = await store.accept_many([_received(e) for e in [*envelopes, envelopes[0]]],
                                           now=NOW)
        assert [getattr(o, "duplicate", o) for o in outcomes] == [False] * MANY + [True]
        per_table = len(sizes(MANY))
        for table in ("envelopes", "inbox", "audit", "effects"):
            assert _matching(seen, "INSERT", f"INTO {table} ") == per_table, table
        assert _matching(seen, "FROM envelopes WHERE id IN") == 1
        per_group = {"BEGIN IMMEDIATE", "COMMIT", "SAVEPOINT w", "RELEASE w"}
        own = {sql: n for sql, n in seen.items()
               if sql not in per_group and not sql.startswith("SELECT seq, hash FROM audit")}
        assert sum(own.values()) == 2 + 1 + 4 * per_table, own  # 11 for 40 envelopes
        assert (await store.status()).envelopes == MANY
        assert await store.effects.pending() == MANY
        assert (await store.verify_audit())[1] is None
    finally:
        await store.close()
