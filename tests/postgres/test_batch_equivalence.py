"""A peer's transaction written table by table (``accept_many``'s batch of plain items)
against the same items accepted one by one (``accept_many`` of each alone: its own write,
its own savepoint), on both backends: random transactions mixing plain items with every
kind that is not (consent, signal, request, batch evidence covers, ``then``, four-eyes
approval), the same id twice with the same or other bytes, ids stored already (same
bytes, other bytes, purged), and an item a constraint refuses mid-batch. Every item's
answer and every row written (the audit chain with its hashes, inbox, hops, effects,
signals, requests, consents, covers) must be the same."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from liaison_net.core.audit import detail
from liaison_net.core.effects import Effect, notice
from liaison_net.core.envelope import Envelope, Kind, Urgency
from liaison_net.core.ids import node_principal
from liaison_net.core.signals import Pseudonym, Severity, SignalAnnex
from liaison_net.drills.pg_cluster import Cluster
from liaison_net.errors import LiaisonError, PolicyRefused
from liaison_net.store.database import WriteTxn
from liaison_net.store.envelope_store import Acceptance, AcceptOutcome
from liaison_net.store.node_store import NodeStore
from liaison_net.store.postgres import PostgresBackend
from liaison_net.store.retention_store import purge_in
from tests.core.factories import NOW, Officer, seal_from
from tests.store_backends import pg_backend

ALICE = Officer("nl/jdevries")
LOCAL = Officer("nl/pbakker")
BOB = Officer("be/mpeeters")
BE_NODE = Officer(node_principal("be"))
SAME = (Pseudonym(b"k" * 16, b"p" * 32),)
#: Rows whose values come from a PostgreSQL sequence: a batch taken back (a constraint
#: refused a row) used some up there, SQLite's AUTOINCREMENT rolls back with it.
_SEQUENCED = {"inbox": 0, "effects": 0}


@dataclasses.dataclass
class Pool:
    """Envelopes sealed once, for both stores."""

    messages: list[Envelope]
    others: dict[bytes, Envelope]  # an id of ``messages``, other bytes
    ours: Envelope  # our own signal, stored first: a received one matches it
    signals: list[Envelope]
    requests: list[Envelope]
    evidence: list[Envelope]


def _pool() -> Pool:
    messages = [seal_from(BOB, [ALICE, LOCAL] if i % 3 else [ALICE], f"m{i}".encode(),
                          now=NOW + i) for i in range(60)]
    others = {m.id: dataclasses.replace(m, signature=bytes(64)) for m in messages[:8]}
    return Pool(
        messages=messages, others=others,
        ours=seal_from(ALICE, [BOB], kind=Kind.SIGNAL,
                       signal=SignalAnnex(Severity.HIGH, SAME)),
        signals=[seal_from(BOB, [ALICE], kind=Kind.SIGNAL, now=NOW + 100 + i,
                           signal=SignalAnnex(Severity.HIGH, SAME)) for i in range(2)],
        requests=[seal_from(BOB, [ALICE], kind=Kind.REQUEST, now=NOW + 200 + i,
                           urgency=Urgency.URGENT_DIRECT)
                  for i in range(2)],
        evidence=[seal_from(BE_NODE, [ALICE], kind=Kind.EVIDENCE, now=NOW + 300 + i)
                  for i in range(2)])


async def _then_ok(txn: WriteTxn, *, ref: bytes) -> Sequence[Effect]:
    await txn.execute("SELECT 1")
    return [notice("then", recipients=[BOB.id], ref=ref, content={})]


async def _then_refuses(txn: WriteTxn) -> Sequence[Effect]:
    raise PolicyRefused("an update relaxing another", code="policy.update_relaxes")


def _received(env: Envelope, **kw: Any) -> Acceptance:
    local = [r.officer for r in env.header.recipients if r.node == "nl"]
    values: dict[str, Any] = dict(
        actor="be", event="envelope.delivered_to_inbox", local_recipients=local,
        remote_nodes=[], audit_detail=detail(layer="destination", peer="be"), received=True,
        effects=[notice("relayed", recipients=[env.header.sender], ref=env.id,
                        content={"n": len(local)})])
    values.update(kw)
    return Acceptance(env, **values)


def _item(rng: random.Random, pool: Pool) -> Acceptance:
    """One item of a transaction, most often plain."""
    # Half the time one of a few ids, so that ids meet again within and across batches.
    env = rng.choice(pool.messages[:8] if rng.random() < 0.5 else pool.messages)
    pick = rng.random()
    if pick < 0.55:
        return _received(env)
    if pick < 0.65 and env.id in pool.others:
        return _received(pool.others[env.id])
    if pick < 0.68:
        return _received(env, consent_digest=rng.choice([b"c" * 32, b"d" * 32, b"e" * 32]))
    if pick < 0.73:
        return _received(rng.choice(pool.signals), signal_deadline=NOW + 1000)
    if pick < 0.78:
        return _received(rng.choice(pool.requests), track_request=True)
    if pick < 0.83:
        carrier = rng.choice(pool.evidence)
        return _received(carrier, covers=[m.id for m in pool.messages[:6]])
    if pick < 0.88:
        then = (_then_refuses if rng.random() < 0.4
                else lambda txn, ref=env.id: _then_ok(txn, ref=ref))
        return _received(env, then=then)
    if pick < 0.93:
        return _received(env, approval=("nl/approver", b"statement " + env.id))
    if pick < 0.96:  # its hops' key refuses the second row: the batch is taken back
        return _received(env, remote_nodes=["lu", "lu"])
    return _received(env, local_recipients=[], remote_nodes=["lu"])


async def _prepare(store: NodeStore, pool: Pool) -> None:
    """What both stores hold before the transaction: ours, two stored (one as other
    bytes), one purged."""
    await store.accept(pool.ours, now=NOW, actor=ALICE.id, event="envelope.accepted",
                       local_recipients=[], remote_nodes=["be"], audit_detail=detail())
    for env in (pool.messages[10], pool.messages[11], pool.others[pool.messages[3].id]):
        item = _received(env)
        await store.accept(env, now=NOW, actor=item.actor, event=item.event,
                           local_recipients=item.local_recipients, remote_nodes=[],
                           audit_detail=item.audit_detail, received=True)
    purged = pool.messages[11]

    async def op(txn: WriteTxn) -> None:
        await purge_in(txn, purged.id, purged.to_bytes(), now=NOW, actor="nl",
                       event="envelope.purged")

    await store.db.write(op)


def _answer(outcome: AcceptOutcome | LiaisonError) -> tuple[Any, ...]:
    if isinstance(outcome, LiaisonError):
        return (type(outcome).__name__, outcome.code, str(outcome))
    return ("ok", outcome.duplicate, outcome.matches, outcome.held)


async def _tables(store: NodeStore, postgres: bool) -> dict[str, list[tuple[Any, ...]]]:
    if postgres:
        names = [r[0] for r in await store.db.fetchall(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
    else:
        names = [r[0] for r in await store.db.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
    out: dict[str, list[tuple[Any, ...]]] = {}
    for name in sorted(set(names) - {"sqlite_sequence", "schema_version", "leases"}):
        rows = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                for row in await store.db.fetchall(f"SELECT * FROM {name}")]
        if postgres and name in _SEQUENCED:  # the order kept, gaps closed
            column = _SEQUENCED[name]
            ranks = {v: i for i, v in enumerate(sorted(r[column] for r in rows))}
            rows = [(*r[:column], ranks[r[column]], *r[column + 1:]) for r in rows]
        out[name] = sorted(rows, key=repr)
    return out


async def _open(cluster: Cluster | None, path: Path) -> NodeStore:
    if cluster is None:
        store = NodeStore(path, "nl")
    else:
        first = pg_backend(cluster)
        store = NodeStore(None, "nl", backend=PostgresBackend(
            first.dsn, password_file=first.password_file))
    await store.open()
    return store


@pytest.mark.parametrize("seed", range(12))
async def test_a_batch_answers_and_writes_what_one_by_one_does(
        cluster_for: Cluster | None, tmp_path: Path, seed: int) -> None:
    pool = _pool()
    rng = random.Random(seed)
    batched = await _open(cluster_for, tmp_path / "batched.sqlite3")
    alone = await _open(cluster_for, tmp_path / "alone.sqlite3")
    try:
        for store in (batched, alone):
            await _prepare(store, pool)
        for _ in range(4):  # transactions in turn, each on what the ones before stored
            items = [_item(rng, pool) for _ in range(rng.randint(2, 40))]
            got = await batched.accept_many(items, now=NOW + 5)
            want = [(await alone.accept_many([item], now=NOW + 5))[0] for item in items]
            assert [_answer(o) for o in got] == [_answer(o) for o in want]
        postgres = cluster_for is not None
        assert await _tables(batched, postgres) == await _tables(alone, postgres)
        assert (await batched.verify_audit())[1] is None
    finally:
        await batched.close()
        await alone.close()
