"""The store's contract, run on both backends (SQLite file, real PostgreSQL): accept and
dedupe, inboxes, hops acked/refused/expired, the effects drain, the audit chain, keys,
retention, group commit. Whatever one backend does, the other must do too."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

import psycopg
import pytest

from liaison_net.clock import ManualClock
from liaison_net.core import checkpoint as cp
from liaison_net.core import crypto, merkle
from liaison_net.core.almanac import Almanac
from liaison_net.core.audit import detail
from liaison_net.core.effects import notice
from liaison_net.core.envelope import Envelope, Kind, Precedence
from liaison_net.core.identity import EnrolmentRequest, issue_card, verify_card
from liaison_net.core.kept_leaves import KeptLeaves, keep
from liaison_net.core.limits import HOUR_MS
from liaison_net.core.rotation import Revocation, Subject, sign_revocation
from liaison_net.drills.pg_cluster import Cluster
from liaison_net.errors import Conflict, LiaisonError, Purged, Revoked
from liaison_net.store.database import WriteTxn
from liaison_net.store.dialect import ddl, split_script
from liaison_net.store.effect_store import Issued, add_effects
from liaison_net.store.envelope_store import Acceptance
from liaison_net.store.node_store import NodeStore
from liaison_net.store.schema import MIGRATIONS, SCHEMA_VERSION
from tests.core.factories import NOW, Officer, make_tag, seal_from
from tests.store_backends import StoreFactory, pg_backend
from tests.test_effects import _accept_at_origin, _drain, _enrol
from tests.test_store_key_grace import NODE, _card
from tests.waits import PATIENCE_S

ALICE = Officer("nl/jdevries")
LOCAL = Officer("nl/pbakker")
BOB = Officer("be/mpeeters")
NODE_KEY = crypto.signing_key_from_seed(b"\x11" * 32)


async def _accept(store: NodeStore, env: object, *, local: list[str] | None = None,
                  remote: list[str] | None = None) -> bool:
    outcome = await store.accept(env, now=NOW, actor=ALICE.id,  # type: ignore[arg-type]
                                 event="envelope.accepted", local_recipients=local or [],
                                 remote_nodes=["be"] if remote is None else remote,
                                 audit_detail=detail())
    return outcome.duplicate


async def test_accept_dedupes_and_refuses_other_bytes(make_store: StoreFactory) -> None:
    store = await make_store("nl")
    env = seal_from(ALICE, [BOB])
    assert not await _accept(store, env)
    assert await _accept(store, env)  # the same bytes again: a duplicate, nothing more
    status = await store.status()
    assert (status.envelopes, status.queued, status.audit_entries) == (1, {"be": 1}, 1)
    assert await store.envelope_bytes(env.id) == env.to_bytes()


async def test_accept_many_refuses_one_alone(make_store: StoreFactory) -> None:
    """A batch: one item refused (its consent already used) rolls back alone, in its own
    savepoint, and the others commit."""
    store = await make_store("nl")
    envs = [seal_from(ALICE, [BOB], now=NOW + i) for i in range(3)]
    items = [Acceptance(envelope=e, actor=ALICE.id, event="envelope.accepted",
                        local_recipients=[], remote_nodes=["be"], audit_detail=detail())
             for e in envs]
    items[1] = Acceptance(envelope=envs[1], actor=ALICE.id, event="envelope.accepted",
                          local_recipients=[], remote_nodes=["be"], audit_detail=detail(),
                          consent_digest=b"d" * 32)
    first = await store.accept_many(items, now=NOW)
    assert all(not isinstance(o, Exception) and not o.duplicate for o in first)
    # Again, with a new envelope that reuses the consent: it alone is refused.
    again = seal_from(ALICE, [BOB], now=NOW + 10)
    reuse = Acceptance(envelope=again, actor=ALICE.id, event="envelope.accepted",
                       local_recipients=[], remote_nodes=["be"], audit_detail=detail(),
                       consent_digest=b"d" * 32)
    fresh = seal_from(ALICE, [BOB], now=NOW + 11)
    ok = Acceptance(envelope=fresh, actor=ALICE.id, event="envelope.accepted",
                    local_recipients=[], remote_nodes=["be"], audit_detail=detail())
    outcomes = await store.accept_many([reuse, ok], now=NOW)
    assert isinstance(outcomes[0], LiaisonError)
    assert not isinstance(outcomes[1], Exception) and not outcomes[1].duplicate
    assert (await store.status()).envelopes == 4
    assert await store.verify_audit() == (4, None)


async def test_accept_many_dedupes_within_the_batch_and_against_the_store(
        make_store: StoreFactory) -> None:
    """A peer's transaction (plain received items, written table by table): an id stored
    already is a duplicate, the same id twice in the batch is stored once, an id taken by
    other bytes is refused; nothing is written for any of those three."""
    store = await make_store("be")
    envs = [seal_from(ALICE, [BOB], now=NOW + i) for i in range(3)]
    assert not await _accept(store, envs[0], local=[BOB.id], remote=[])
    other = dataclasses.replace(envs[1], signature=bytes(64))  # envs[1]'s id, other bytes

    def received(env: Envelope) -> Acceptance:
        return Acceptance(envelope=env, actor="nl", event="envelope.delivered_to_inbox",
                          local_recipients=[BOB.id], remote_nodes=[], audit_detail=detail(),
                          received=True, effects=[notice("test", recipients=[ALICE.id],
                                                         ref=env.id, content={})])

    outcomes = await store.accept_many(
        [received(e) for e in (envs[1], envs[0], other, envs[1], envs[2])], now=NOW)
    assert [o.duplicate if not isinstance(o, LiaisonError) else type(o)
            for o in outcomes] == [False, True, Conflict, True, False]
    assert (await store.status()).envelopes == 3
    assert await store.effects.pending() == 2
    assert len(await store.inbox(BOB.id, after=0, limit=10)) == 3
    assert await store.verify_audit() == (3, None)
    assert await store.envelope_bytes(envs[1].id) == envs[1].to_bytes()


async def test_the_outbox_serves_precedence_then_acks_refuses_expires(
        make_store: StoreFactory) -> None:
    store = await make_store("nl")
    routine = [seal_from(ALICE, [BOB], now=NOW + i, expires=NOW + HOUR_MS) for i in range(3)]
    flash = seal_from(ALICE, [BOB], now=NOW + 10, precedence=Precedence.FLASH,
                      expires=NOW + 2 * HOUR_MS)
    for env in (*routine, flash):
        await _accept(store, env)
    batch = [eid for eid, _ in await store.next_batch("be", 2, now=NOW)]
    assert batch == [flash.id, routine[0].id]
    await store.finish_hops("be", now=NOW, delivered=[flash.id],
                            refused=[(routine[0].id, "policy.share_with")],
                            details={routine[0].id: "not shared with be"})
    assert (await store.hop_states(flash.id))["be"][0] == "delivered"
    assert (await store.hop_states(routine[0].id))["be"][0] == "refused"
    expired = await store.expire_due(NOW + HOUR_MS)
    assert sorted(e for e, *_ in expired) == sorted(e.id for e in routine[1:])
    assert await store.expire_due(NOW + HOUR_MS) == []
    assert await store.queue_depth() == {}
    # A refusal and two expiries each owe their sender a notice, written with them.
    assert sorted(e.kind for e in await store.effects.due(NOW + HOUR_MS, 10)) == [
        "notice"] * 3
    await store.set_peer_backoff("be", 3, NOW + 5, "refused")
    assert await store.peer_backoff("be") == (3, NOW + 5)
    await store.set_directory_cursor("be", 42)
    assert await store.directory_cursor("be") == 42


async def test_inbox_delivery_and_acknowledgement(make_store: StoreFactory) -> None:
    store = await make_store("be")
    envs = [seal_from(ALICE, [BOB], now=NOW + i) for i in range(3)]
    for env in envs:
        outcome = await store.accept(env, now=NOW, actor="nl", event="envelope.delivered",
                                     local_recipients=[BOB.id], remote_nodes=[],
                                     audit_detail=detail(), received=True)
        assert not outcome.duplicate
    await store.accept(envs[0], now=NOW, actor="nl", event="envelope.delivered",
                       local_recipients=[BOB.id], remote_nodes=[], audit_detail=detail())
    items = await store.inbox(BOB.id, after=0, limit=10)
    assert [i.envelope_id for i in items] == [e.id for e in envs]  # once each, in order
    assert [i.envelope_id for i in await store.inbox(BOB.id, after=items[0].seq,
                                                     limit=10)] == [e.id for e in envs[1:]]
    assert await store.may_read(BOB.id, envs[0].id)
    assert not await store.may_read("be/nobody", envs[0].id)
    assert await store.ack(BOB.id, envs[0].id, now=NOW + 5)
    assert not await store.ack(BOB.id, envs[0].id, now=NOW + 6)
    assert (await store.status()).inbox_unacked == 2
    assert await store.local_deliveries(envs[0].id) == [(BOB.id, NOW, NOW + 5)]


async def test_the_effects_drain_issues_each_once(make_store: StoreFactory) -> None:
    store = await make_store("nl")
    env = seal_from(ALICE, [BOB, LOCAL])
    assert not await _accept_at_origin(store, env, [LOCAL.id])
    assert await store.effects.pending() == 2
    await _enrol(store, ALICE)
    drain = _drain(store, ManualClock(NOW + 1000))
    assert await drain.drain_once() == 2
    assert await drain.drain_once() == 0
    assert await store.effects.pending() == 0
    entries = await store.audit_entries()
    assert [e.event for e in entries].count("evidence.issued") == 2
    assert await store.verify_audit() == (len(entries), None)


async def test_the_audit_chain_appends_and_verifies_across_reopen(
        make_store: StoreFactory) -> None:
    store = await make_store("nl")
    await asyncio.gather(*(store.audit(now=NOW + i, event="test.event", actor="nl",
                                       audit_detail=detail(i=i)) for i in range(20)))
    await store.close()
    again = await make_store("nl")  # a restart: the head is read back from the table
    await again.audit(now=NOW + 50, event="test.event", actor="nl", audit_detail=detail())
    assert await again.verify_audit() == (21, None)
    seqs = [e.seq for e in await again.audit_entries()]
    assert seqs == list(range(1, 22))


async def test_own_checkpoints_keep_a_digest_of_their_leaves(make_store: StoreFactory) -> None:
    """What an own checkpoint keeps of its leaves (``core/kept_leaves.py``, schema 20)
    reads back byte for byte, and hashes to each signed root."""
    store = await make_store("nl")
    leaves = [merkle.leaf_hash(b"%d" % i) for i in range(150)]
    log, since = merkle.MerkleLog(leaves), 0
    for size in (70, 150):
        signed = cp.sign_checkpoint(cp.Checkpoint("nl", size, log.root(size), NOW), NODE_KEY)
        await store.checkpoints.put_own(signed, keep(log, since, size), now=NOW)
        since = size
    rows = list(reversed(await store.checkpoints.of("nl")))
    assert [(r.size, r.leaves, r.kept) for r in rows] == [
        (70, None, keep(log, 0, 70)), (150, None, keep(log, 70, 150))]
    kept = KeptLeaves()
    for row in rows:
        assert kept.add(row.size, row.leaves, row.kept) and kept.root() == row.root


async def test_cards_keys_and_revocations(make_store: StoreFactory) -> None:
    store = await make_store("nl")
    old, new = crypto.generate_signing_key(), crypto.generate_signing_key()
    for key, version in ((old, 1), (new, 2)):
        card, raw = _card(key, version)
        assert await store.put_card(card, raw, now=NOW, source="nl", grace_ms=HOUR_MS)
    assert await store.card_version("nl/jdevries") == 2
    assert await store.keys.superseded_keys("nl/jdevries") == [(old.public, NOW + HOUR_MS)]
    assert await store.keys.signer(old.key_id, now=NOW + 1) is not None
    revocation = Revocation(Subject.OFFICER, "nl/jdevries", old.key_id, "lost", serial=NOW,
                            effective=NOW, authority="nl")
    assert await store.keys.add_revocation(revocation, sign_revocation(revocation, NODE),
                                           now=NOW, forward_to=["be"], source="nl")
    with pytest.raises(Revoked):
        await store.keys.signer(old.key_id, now=NOW)
    assert len(await store.keys.pending_revocations("be")) == 1
    # Another officer's card cannot take jdevries' current key.
    raw = issue_card(EnrolmentRequest("nl/thief", "T", "r", new.public,
                                      crypto.generate_encryption_key().public, Almanac()),
                     node_id="nl", node_key=NODE, version=1, now=NOW, valid_for_ms=HOUR_MS)
    thief = verify_card(raw, node_public=NODE.public, node_id="nl", now=None)
    with pytest.raises(Conflict):
        await store.put_card(thief, raw, now=NOW, source="be")
    assert await store.officer_keys("nl/jdevries") is not None


async def test_retention_purges_content_keeps_the_skeleton(make_store: StoreFactory) -> None:
    store = await make_store("nl")
    retain = NOW + 2 * HOUR_MS
    env = seal_from(ALICE, [BOB, LOCAL], now=NOW, expires=NOW + HOUR_MS,
                    tag=make_tag(retain_until=retain))
    await _accept(store, env, local=[LOCAL.id])
    assert await store.retention.purge_due(retain - 1) == 0
    assert await store.retention.purge_due(retain) == 1
    assert await store.retention.purge_due(retain) == 0
    with pytest.raises(Purged):
        await store.envelope_bytes(env.id)
    assert await _accept(store, env, local=[LOCAL.id])  # a late copy: duplicate, not new
    assert await store.verify_audit() == (2, None)


async def test_concurrent_writes_share_commits(make_store: StoreFactory) -> None:
    store = await make_store("nl")
    envs = [seal_from(ALICE, [BOB], now=NOW + i) for i in range(60)]
    before = store.db.commits
    await asyncio.gather(*(_accept(store, e) for e in envs))
    assert store.db.commits - before < 60  # grouped: fewer commits than writes
    assert (await store.status()).envelopes == 60
    assert await store.verify_audit() == (60, None)


def _sqlite_columns(path: Path) -> dict[str, list[str]]:
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in tables}


def _pg_columns(dsn: str, password: str) -> dict[str, list[str]]:
    with psycopg.connect(dsn, password=password) as db:
        rows = db.execute("SELECT table_name, column_name FROM information_schema.columns "
                          "WHERE table_schema = 'public' "
                          "ORDER BY table_name, ordinal_position").fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


async def test_both_backends_migrate_to_the_same_tables_and_columns(
        tmp_path: Path, pg_cluster: Cluster) -> None:
    lite = NodeStore(tmp_path / "n.sqlite3", "nl")
    backend = pg_backend(pg_cluster)
    pg = NodeStore(None, "nl", backend=backend)
    for store in (lite, pg):
        await store.open()
        await store.close()
    lite_cols = _sqlite_columns(tmp_path / "n.sqlite3")
    pg_cols = _pg_columns(backend.dsn, pg_cluster.password())
    assert lite_cols == pg_cols
    assert len(lite_cols) > 15
    with psycopg.connect(backend.dsn, password=pg_cluster.password()) as db:
        row = db.execute("SELECT version FROM schema_version").fetchone()
    assert row is not None and row[0] == SCHEMA_VERSION


async def test_two_writers_on_one_database_keep_one_audit_chain(
        make_store: StoreFactory) -> None:
    """Two handles on one database (two processes, or two workers of one node) opened at
    once and appending at once: the schema is migrated once and the audit chain stays one
    chain, because each writer group holds the database's write lock (SQLite's BEGIN
    IMMEDIATE, PostgreSQL's advisory lock) and reads the chain head under it."""
    first, second = await asyncio.gather(make_store("nl"), make_store("nl"))

    async def append(store: NodeStore, who: str) -> None:
        for i in range(15):
            await asyncio.gather(*(store.audit(now=NOW + i, event="test.event", actor=who,
                                               audit_detail=detail(i=i, j=j))
                                   for j in range(4)))

    await asyncio.gather(append(first, "one"), append(second, "two"))
    assert await first.verify_audit() == (120, None)
    seqs = [e.seq for e in await second.audit_entries()]
    assert seqs == list(range(1, 121))


async def test_evidence_covers_by_inbox_row_and_outgoing_by_carrier(
        make_store: StoreFactory) -> None:
    """Batch evidence (migration 18): a carrier in an inbox here is found for each envelope
    it covers (issued here, or a peer's batch with its ``covers`` hint); one sent to a
    peer gives its covers by carrier until it is delivered and forgotten."""
    store = await make_store("nl")
    mine = [seal_from(ALICE, [BOB], now=NOW + i) for i in range(2)]
    for env in mine:
        await _accept(store, env)
    ours, theirs = (seal_from(ALICE, [ALICE], text, now=NOW + 5, kind=Kind.EVIDENCE)
                    for text in (b"ours", b"for be"))

    async def owe(txn: object) -> None:
        await add_effects(txn, [notice("non-delivery", recipients=[BOB.id], ref=env.id,  # type: ignore[arg-type]
                                       content={}) for env in (ours, theirs)], NOW)

    await store.db.write(owe)
    due = await store.effects.due(NOW, 10)
    covers = tuple(e.id for e in mine)
    assert await store.complete_effects([
        Issued(due[0], ours, NOW, "evidence.issued", [ALICE.id], [], detail(), covers=covers),
        Issued(due[1], theirs, NOW, "evidence.issued", [], ["be"], detail(), covers=covers),
    ]) == [True, True]
    relayed = seal_from(Officer("be/node"), [ALICE], b"relayed", now=NOW + 6,
                        kind=Kind.EVIDENCE)
    await store.accept(relayed, now=NOW, actor="be", event="envelope.delivered",
                       local_recipients=[ALICE.id], remote_nodes=[], audit_detail=detail(),
                       received=True, covers=[*covers, b"\x07" * 16])
    for env in mine:
        assert await store.evidence_for(ALICE.id, env.id, limit=10) == [
            ours.to_bytes(), relayed.to_bytes()]
    assert await store.evidence_for(LOCAL.id, mine[0].id, limit=10) == []
    assert await store.covers_of([ours.id, theirs.id, relayed.id]) == {
        theirs.id: sorted(covers)}
    await store.finish_hops("be", now=NOW + 1, delivered=[theirs.id], refused=[])
    assert await store.covers_of([theirs.id]) == {}


async def test_an_envelopes_hops_by_node(make_store: StoreFactory) -> None:
    """``hop_states`` walks the nodes and looks each hop up (a recursive query both engines
    run; tests/test_hop_states_lookup.py checks SQLite's plan)."""
    store = await make_store("nl")
    wanted = bytes(range(16))

    async def op(txn: WriteTxn) -> None:
        rows = [(node, i.to_bytes(16, "big"), "delivered", 0, 0, NOW, None)
                for node in ("be", "de-nw", "lu") for i in range(20)]
        rows += [("be", wanted, "queued", 1, NOW + 1, NOW, None),
                 ("lu", wanted, "refused", 0, 0, NOW, "no such officer")]
        await txn.executemany("INSERT INTO hops (node, envelope_id, state, precedence, "
                              "expires, updated, reason) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    await store.db.write(op)
    assert await store.hop_states(wanted) == {"be": ("queued", None),
                                              "lu": ("refused", "no such officer")}
    assert await store.hop_states(bytes(16)) == {"be": ("delivered", None),
                                                 "de-nw": ("delivered", None),
                                                 "lu": ("delivered", None)}
    assert await store.hop_states(b"\xff" * 16) == {}


async def test_a_schema_19_database_on_postgresql_migrates_and_reads_old_and_new_rows(
        pg_cluster: Cluster) -> None:
    """Migration 20 on a real schema-19 PostgreSQL database (built from the migrations
    themselves): the own checkpoint kept in full before reads on with those written after,
    as one log."""
    backend = pg_backend(pg_cluster)
    leaves = [merkle.leaf_hash(b"%d" % i) for i in range(150)]
    log = merkle.MerkleLog(leaves)
    old = cp.sign_checkpoint(cp.Checkpoint("nl", 70, log.root(70), NOW), NODE_KEY)
    with psycopg.connect(backend.dsn, password=pg_cluster.password()) as db:
        db.execute("CREATE TABLE schema_version (version BIGINT)")
        for script in MIGRATIONS[:19]:
            for statement in split_script(script):
                db.execute(ddl(statement))  # type: ignore[arg-type]  # our own DDL
        db.execute("INSERT INTO schema_version VALUES (19)")
        db.execute("INSERT INTO checkpoints (node, size, root, at, signed, leaves, received) "
                   "VALUES ('nl', 70, %s, %s, %s, %s, %s)",
                   (old.checkpoint.root, NOW, old.raw, log.leaves(0, 70), NOW))
    store = NodeStore(None, "nl", backend=backend)
    await store.open()
    try:
        new = cp.sign_checkpoint(cp.Checkpoint("nl", 150, log.root(150), NOW), NODE_KEY)
        await store.checkpoints.put_own(new, keep(log, 70, 150), now=NOW)
        rows = [(r.size, r.leaves, r.kept) for r in await store.checkpoints.of("nl")]
    finally:
        await store.close()
    assert rows == [(150, None, keep(log, 70, 150)), (70, log.leaves(0, 70), None)]
    kept = KeptLeaves.up_to(rows, 150)
    assert kept.size == 150 and kept.root() == log.root(150)
    with psycopg.connect(backend.dsn, password=pg_cluster.password()) as db:
        row = db.execute("SELECT version FROM schema_version").fetchone()
    assert row is not None and row[0] == SCHEMA_VERSION >= 20


async def test_cosignatures_are_kept_and_replaced(make_store: StoreFactory) -> None:
    """A checkpoint witnessed here and a peer's cosignature of an own one, on both engines
    (the PostgreSQL dialect needs the cosignatures' conflict key for INSERT OR REPLACE)."""
    store = await make_store("nl")
    log = merkle.MerkleLog([merkle.leaf_hash(b"%d" % i) for i in range(10)])
    ours = cp.sign_checkpoint(cp.Checkpoint("nl", 10, log.root(10), NOW), NODE_KEY)
    await store.checkpoints.put_own(ours, keep(log, 0, 10), now=NOW)
    await store.checkpoints.put_cosignature("nl", 10, "be", b"first", now=NOW)
    await store.checkpoints.put_cosignature("nl", 10, "be", b"second", now=NOW + 1)
    theirs = cp.sign_checkpoint(cp.Checkpoint("be", 4, log.root(4), NOW), NODE_KEY)
    await store.checkpoints.put_witnessed(theirs, witness="nl", cosignature=b"mine", now=NOW)
    await store.checkpoints.put_witnessed(theirs, witness="nl", cosignature=b"again", now=NOW)
    [own] = await store.checkpoints.of("nl")
    assert own.cosignatures == {"be": b"second"}
    assert await store.checkpoints.cosigned_by("nl", "be") == 10
    [witnessed] = await store.checkpoints.of("be")
    assert witnessed.signed == theirs.raw and witnessed.cosignatures == {"nl": b"again"}


async def test_a_refused_key_change_is_kept_latest_first(make_store: StoreFactory) -> None:
    """The latest refused key change per peer, on both engines (the PostgreSQL dialect
    needs key_changes_refused's conflict key for INSERT OR REPLACE)."""
    store = await make_store("nl")
    await store.keys.key_change_refused("be", b"one", code="bad_signature", reason="x",
                                        now=NOW)
    await store.keys.key_change_refused("be", b"two", code="stale", reason="y", now=NOW + 1)
    assert await store.keys.refused_key_changes() == [("be", b"two", "stale", "y", NOW + 1)]


async def test_close_commits_the_riders_still_held_and_not_a_cancelled_callers(
        make_store: StoreFactory) -> None:
    """Review16c: at close, the riders still waiting for a plain write commit in one last
    group (on PostgreSQL too); a rider whose caller was cancelled does not."""
    def audits(event: str):  # type: ignore[no-untyped-def]
        async def op(txn: WriteTxn) -> str:
            await txn.audit(1, event, "nl", "{}")
            return event
        return op

    store = await make_store("nl")
    store.db.ride_s = PATIENCE_S
    gone = asyncio.create_task(store.db.write(audits("test.cancelled"), rides=True))
    kept = asyncio.create_task(store.db.write(audits("test.rider"), rides=True))
    async with asyncio.timeout(PATIENCE_S):
        while len(store.db._held) < 2:
            await asyncio.sleep(0.001)
    gone.cancel()
    await store.close()
    assert await kept == "test.rider"
    again = await make_store("nl")
    assert [e.event for e in await again.audit_entries()] == ["test.rider"]
