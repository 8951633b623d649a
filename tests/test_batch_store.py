"""A batch on a real SQLite file: ``accept_many`` stores every admitted envelope in one write
(a refused one changes nothing, stops none, and leaves the audit chain whole), and the
effects drain issues their "accepted" evidence as ONE batch envelope for the sender, found
for each covered id and verifiable for each."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from liaison_net.clock import ManualClock
from liaison_net.core.audit import detail
from liaison_net.core.effects import Effect, origin_evidence
from liaison_net.core.envelope import Envelope, Kind
from liaison_net.core.evidence import Step, check_about
from liaison_net.core.evidence_batch import (
    evidence_about,
    is_batch,
    verify_batch,
    verify_evidence,
)
from liaison_net.core.sealing import SignerKey, open_envelope, verify
from liaison_net.errors import Conflict, PolicyRefused
from liaison_net.store.database import WriteTxn
from liaison_net.store.effect_store import Issued
from liaison_net.store.envelope_store import Acceptance, AcceptOutcome
from tests.core.factories import NOW, Officer, seal_from
from tests.test_effects import ALICE, BOB, LOCAL, NODE_KEY, _count, _drain, _enrol, _open

BE_NODE = Officer("be/node")


def _item(env: Envelope, consent: bytes | None = None) -> Acceptance:
    return Acceptance(env, actor=ALICE.id, event="envelope.accepted", local_recipients=[],
                      remote_nodes=["be"], audit_detail=detail(layer="origin"),
                      effects=origin_evidence(env.header, local=[], at=NOW),
                      consent_digest=consent)


async def test_a_batch_is_one_write_a_refused_one_changes_nothing_and_evidence_is_one_envelope(
        tmp_path: Path) -> None:
    path = tmp_path / "nl.db"
    store = await _open(path)
    try:
        await _enrol(store, ALICE)
        first = [seal_from(ALICE, [BOB], f"alert {i}".encode()) for i in range(4)]
        assert not (await store.accept(
            first[0], now=NOW, actor=ALICE.id, event="envelope.accepted",
            local_recipients=[], remote_nodes=["be"], audit_detail=detail(),
            consent_digest=b"c" * 32)).duplicate
        # Refused after its envelope row was written: the consent is first[0]'s already.
        second_use = seal_from(ALICE, [BOB], b"a second forward on the same consent")
        taken = dataclasses.replace(first[1], signature=bytes(64))  # id, other bytes
        commits = store.db.commits
        outcomes = await store.accept_many(
            [_item(first[1]), _item(first[0]), _item(taken), _item(first[2]),
             _item(second_use, consent=b"c" * 32), _item(first[3])], now=NOW)
        assert store.db.commits == commits + 1
        assert [o.duplicate if isinstance(o, AcceptOutcome) else type(o) for o in outcomes] \
            == [False, True, Conflict, False, PolicyRefused, False]
        assert _count(path, "SELECT COUNT(*) FROM envelopes") == 4
        assert _count(path, "SELECT COUNT(*) FROM hops") == 4
        assert _count(
            path, "SELECT COUNT(*) FROM audit_named WHERE event = 'envelope.accepted'") == 4
        assert _count(path, "SELECT COUNT(*) FROM effects") == 3  # the duplicate owes none
        assert (await store.verify_audit())[1] is None  # the rolled-back item left no gap

        clock = ManualClock(NOW + 1000)
        assert await _drain(store, clock).drain_once() == 3
        assert _count(path, "SELECT COUNT(*) FROM effects") == 0
        assert _count(path, "SELECT COUNT(*) FROM envelopes WHERE kind = 'evidence'") == 1
        node = {NODE_KEY.key_id: SignerKey("nl/node", NODE_KEY.public)}
        for env in (first[1], first[2], first[3]):
            (raw,) = await store.evidence_for(ALICE.id, env.id, limit=10)
            content = open_envelope(verify(raw, node.get, now=None), ALICE.id,
                                    [ALICE.encryption])
            assert is_batch(content)
            statement = verify_evidence(evidence_about(content, env.id), node.get).statement
            check_about(statement, envelope_id=env.id, sender=ALICE.id,
                        recipients=[BOB.id], now=NOW + 2000)
        assert await store.evidence_for(ALICE.id, first[0].id, limit=10) == []
    finally:
        await store.close()


async def test_a_sender_with_one_envelope_pending_gets_a_single_statement(
        tmp_path: Path) -> None:
    path = tmp_path / "nl.db"
    store = await _open(path)
    try:
        await _enrol(store, ALICE)
        env = seal_from(ALICE, [BOB])
        await store.accept_many([_item(env)], now=NOW)
        assert await _drain(store, ManualClock(NOW + 1000)).drain_once() == 1
        (raw,) = await store.evidence_for(ALICE.id, env.id, limit=10)
        node = {NODE_KEY.key_id: SignerKey("nl/node", NODE_KEY.public)}
        content = open_envelope(verify(raw, node.get, now=None), ALICE.id, [ALICE.encryption])
        assert not is_batch(content)
        assert _count(path, "SELECT COUNT(*) FROM evidence_covers") == 0
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT ref FROM envelopes WHERE kind = 'evidence'").fetchone()[0] \
                == env.id
    finally:
        await store.close()


async def test_a_batch_whose_effect_was_completed_already_stores_nothing(tmp_path: Path) -> None:
    """All or none: a batch envelope naming an effect already gone (completed by an earlier
    write) is not stored, and its other effects stay, to be batched again."""
    path = tmp_path / "nl.db"
    store = await _open(path)
    try:
        await _enrol(store, ALICE)
        envs = [seal_from(ALICE, [BOB], f"alert {i}".encode()) for i in range(3)]
        await store.accept_many([_item(e) for e in envs], now=NOW)
        due = await store.effects.due(NOW, 10)
        assert len(due) == 3
        await store.effects.discharged(due[0], now=NOW, event="effect.no_recipient",
                                       reason="gone before the batch's write")
        carrier = seal_from(ALICE, [ALICE], b"a stand-in for the sealed batch")
        item = Issued(due[0], carrier, NOW, "evidence.issued", [ALICE.id], [], detail(),
                      also=tuple(due[1:]), covers=tuple(e.id for e in envs))
        assert await store.complete_effects([item]) == [False]
        assert _count(path, "SELECT COUNT(*) FROM effects") == 2
        assert _count(path, "SELECT COUNT(*) FROM evidence_covers") == 0
        assert await store.evidence_for(ALICE.id, envs[1].id, limit=10) == []
        # The next pass batches the two left.
        assert await _drain(store, ManualClock(NOW + 1000)).drain_once() == 2
        assert _count(path, "SELECT COUNT(*) FROM evidence_covers") == 2
    finally:
        await store.close()


async def test_a_peers_relayed_batch_is_indexed_only_for_what_its_recipient_sent_here(
        tmp_path: Path) -> None:
    """``covers`` from a peer is a hint: indexed only for an evidence envelope made by that
    peer's own node, and only for envelopes stored here that its one recipient sent."""
    path = tmp_path / "nl.db"
    store = await _open(path)
    try:
        await _enrol(store, ALICE)
        mine = [seal_from(ALICE, [BOB], f"alert {i}".encode()) for i in range(2)]
        others = seal_from(LOCAL, [BOB], b"Piet's")
        for env in (*mine, others):
            await store.accept(env, now=NOW, actor=env.header.sender,
                               event="envelope.accepted", local_recipients=[],
                               remote_nodes=["be"], audit_detail=detail())
        claimed = [mine[0].id, mine[1].id, others.id, b"\x07" * 16]

        async def receive(maker: Officer, actor: str, kind: Kind, text: bytes) -> Envelope:
            carrier = seal_from(maker, [ALICE], text, kind=kind, ref=mine[0].id)
            await store.accept(carrier, now=NOW, actor=actor, event="envelope.delivered",
                               local_recipients=[ALICE.id], remote_nodes=[],
                               audit_detail=detail(), received=True, covers=claimed)
            return carrier

        await receive(BE_NODE, "lu", Kind.EVIDENCE, b"relayed by another node's name")
        await receive(BOB, "be", Kind.EVIDENCE, b"an officer's evidence")
        await receive(BE_NODE, "be", Kind.MESSAGE, b"not evidence")
        assert _count(path, "SELECT COUNT(*) FROM evidence_covers") == 0
        carrier = await receive(BE_NODE, "be", Kind.EVIDENCE, b"the relayed batch")
        with sqlite3.connect(path) as db:
            assert sorted(bytes(r[0]) for r in db.execute(
                "SELECT c.envelope_id FROM evidence_covers c JOIN inbox i "
                "ON i.seq = c.inbox_seq WHERE i.envelope_id = ?", (carrier.id,))) \
                == sorted(e.id for e in mine)
        assert await store.evidence_for(ALICE.id, mine[1].id, limit=10) == [carrier.to_bytes()]
        # Received, not to be sent on: nothing to read by carrier.
        assert await store.covers_of([carrier.id, mine[0].id]) == {}
        assert _count(path, "SELECT COUNT(*) FROM outgoing_covers") == 0
    finally:
        await store.close()


async def test_relayed_statements_batch_naming_each_envelope_once(tmp_path: Path) -> None:
    """Two envelopes, each to two colleagues on the sender's own node: one "accepted" batch,
    one "relayed" batch (one recipient of each envelope) and the other recipient's
    "relayed" singly; every (envelope, step, recipient) verifies for the sender."""
    path = tmp_path / "nl.db"
    store = await _open(path)
    other = Officer("nl/kvisser")
    try:
        await _enrol(store, ALICE)
        envs = [seal_from(ALICE, [LOCAL, other], f"alert {i}".encode()) for i in range(2)]
        for env in envs:
            await store.accept(env, now=NOW, actor=ALICE.id, event="envelope.accepted",
                               local_recipients=[LOCAL.id, other.id], remote_nodes=[],
                               audit_detail=detail(),
                               effects=origin_evidence(env.header, local=[LOCAL.id, other.id],
                                                       at=NOW))
        assert await _drain(store, ManualClock(NOW + 1000)).drain_once() == 6
        assert _count(path, "SELECT COUNT(*) FROM envelopes WHERE kind = 'evidence'") == 4
        node = {NODE_KEY.key_id: SignerKey("nl/node", NODE_KEY.public)}
        for env in envs:
            seen = set()
            for raw in await store.evidence_for(ALICE.id, env.id, limit=10):
                content = open_envelope(verify(raw, node.get, now=None), ALICE.id,
                                        [ALICE.encryption])
                statement = verify_evidence(evidence_about(content, env.id), node.get).statement
                check_about(statement, envelope_id=env.id, sender=ALICE.id,
                            recipients=[LOCAL.id, other.id], now=NOW + 2000)
                seen.add((statement.step, statement.recipients))
            assert seen == {(Step.ACCEPTED, tuple(sorted([LOCAL.id, other.id]))),
                            (Step.RELAYED, (LOCAL.id,)), (Step.RELAYED, (other.id,))}
        # And no statement twice across everything in Alice's inbox.
        with sqlite3.connect(path) as db:
            raws = [bytes(r[0]) for r in db.execute(
                "SELECT e.raw FROM inbox i JOIN envelopes e ON e.id = i.envelope_id "
                "WHERE i.officer = ? AND e.kind = 'evidence'", (ALICE.id,))]
        statements = []
        for raw in raws:
            content = open_envelope(verify(raw, node.get, now=None), ALICE.id, [ALICE.encryption])
            statements += (verify_batch(content, node.get) if is_batch(content)
                           else [verify_evidence(content, node.get).statement])
        keys = [(st.step, st.envelope, st.recipients) for st in statements]
        assert len(keys) == len(set(keys)) == 6
    finally:
        await store.close()


async def test_an_item_refused_after_its_audit_entry_leaves_the_chain_whole(
        tmp_path: Path) -> None:
    """An item whose ``then`` refuses (an update relaxing another: after the item's audit
    entry was appended) is rolled back with that entry: the next item's entry follows the
    last one kept, so the chain still verifies."""
    path = tmp_path / "nl.db"
    store = await _open(path)
    try:
        await _enrol(store, ALICE)
        envs = [seal_from(ALICE, [BOB], f"alert {i}".encode()) for i in range(3)]

        async def refuses(txn: WriteTxn) -> list[Effect]:
            await txn.execute("SELECT 1")
            raise PolicyRefused("this update would relax another", code="policy.relaxes")

        outcomes = await store.accept_many(
            [_item(envs[0]), dataclasses.replace(_item(envs[1]), then=refuses),
             _item(envs[2])], now=NOW)
        assert [type(o) for o in outcomes] == [AcceptOutcome, PolicyRefused, AcceptOutcome]
        assert _count(path, "SELECT COUNT(*) FROM envelopes") == 2
        assert _count(
            path, "SELECT COUNT(*) FROM audit_named WHERE event = 'envelope.accepted'") == 2
        assert (await store.verify_audit())[1] is None
        await store.audit(now=NOW, event="test.after", actor="nl", audit_detail=detail())
        assert (await store.verify_audit())[1] is None  # and the next write's entry too
    finally:
        await store.close()


async def test_a_peers_transaction_is_stored_in_one_write_as_received(tmp_path: Path) -> None:
    """Received items (``received``, ``covers``) go through ``accept_many`` as through
    ``accept``: inbox rows, no hops, the covers hint indexed, one commit for all."""
    path = tmp_path / "nl.db"
    store = await _open(path)
    try:
        await _enrol(store, ALICE)
        mine = seal_from(ALICE, [BOB], b"an alert")
        await store.accept(mine, now=NOW, actor=ALICE.id, event="envelope.accepted",
                           local_recipients=[], remote_nodes=["be"], audit_detail=detail())
        carrier = seal_from(BE_NODE, [ALICE], b"the relayed batch", kind=Kind.EVIDENCE,
                            ref=mine.id)
        message = seal_from(BOB, [ALICE], b"a reply from Belgium")
        commits = store.db.commits

        def received(env: Envelope, covers: tuple[bytes, ...] = ()) -> Acceptance:
            return Acceptance(env, actor="be", event="envelope.delivered_to_inbox",
                              local_recipients=[ALICE.id], remote_nodes=[],
                              audit_detail=detail(layer="destination"), received=True,
                              covers=covers)

        outcomes = await store.accept_many(
            [received(carrier, (mine.id,)), received(message), received(message)], now=NOW)
        assert store.db.commits == commits + 1
        assert [o.duplicate for o in outcomes if isinstance(o, AcceptOutcome)] \
            == [False, False, True]
        assert _count(path, "SELECT COUNT(*) FROM inbox WHERE officer = 'nl/jdevries'") == 2
        assert _count(path, "SELECT COUNT(*) FROM hops") == 1  # mine's, none received
        assert await store.evidence_for(ALICE.id, mine.id, limit=10) == [carrier.to_bytes()]
        assert (await store.verify_audit())[1] is None
    finally:
        await store.close()


async def test_a_row_refused_as_the_batch_is_written_sends_each_item_alone(
        tmp_path: Path) -> None:
    """The plain items' rows are written table by table (``EnvelopeStore._accept_rows``).
    A constraint refusing one of them there (on PostgreSQL: another worker stored the same
    id since the batch read which ids are stored) takes the whole batch back, and each item
    is then accepted alone in its own savepoint: that one is refused, nothing of it kept,
    the others stored in the same one commit, the audit chain whole. The refusal here is a
    real constraint: a trigger on the real file refusing one id."""
    path = tmp_path / "nl.db"
    store = await _open(path)
    try:
        envs = [seal_from(ALICE, [BOB], f"alert {i}".encode()) for i in range(5)]
        with sqlite3.connect(path) as db:
            db.execute("CREATE TRIGGER refuse_one BEFORE INSERT ON envelopes "
                       f"WHEN NEW.id = x'{envs[2].id.hex()}' "
                       "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
        commits = store.db.commits
        outcomes = await store.accept_many([_item(e) for e in envs], now=NOW)
        assert store.db.commits == commits + 1
        assert [o.duplicate if isinstance(o, AcceptOutcome) else type(o) for o in outcomes] \
            == [False, False, Conflict, False, False]
        assert _count(path, "SELECT COUNT(*) FROM envelopes") == 4
        assert _count(path, "SELECT COUNT(*) FROM hops") == 4
        assert _count(path, "SELECT COUNT(*) FROM effects") == 4
        assert _count(path, "SELECT COUNT(*) FROM effects WHERE envelope_id = "
                            f"x'{envs[2].id.hex()}'") == 0
        assert await store.verify_audit() == (4, None)
    finally:
        await store.close()
