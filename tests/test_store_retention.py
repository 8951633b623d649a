"""The retention purge on a real SQLite file: skeleton kept, content gone, hops ended,
one audit entry per envelope, idempotent, in bounded batches."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from liaison_net.core.audit import AuditEntry, detail
from liaison_net.core.envelope import Envelope
from liaison_net.core.limits import HOUR_MS
from liaison_net.core.retention import decode_skeleton
from liaison_net.errors import Purged
from liaison_net.store.database import WriteTxn
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, make_tag, seal_from

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")
CAROL = Officer("nl/kbakker")
RETAIN = NOW + 2 * HOUR_MS


def _sealed(offset: int = 0, retain_until: int = RETAIN) -> Envelope:
    return seal_from(ALICE, [BOB, CAROL], plaintext=b"the alert text itself",
                     now=NOW + offset, expires=NOW + offset + HOUR_MS,
                     tag=make_tag(retain_until=retain_until))


async def _accept(store: NodeStore, env: Envelope) -> None:
    """At the origin: a local inbox entry (carol) and a queued hop to be (bob)."""
    outcome = await store.accept(env, now=NOW, actor=ALICE.id, event="envelope.accepted",
                                 local_recipients=[CAROL.id], remote_nodes=["be"],
                                 audit_detail=detail())
    assert not outcome.duplicate


def _events(entries: list[AuditEntry], event: str) -> list[AuditEntry]:
    return [e for e in entries if e.event == event]


async def test_purge_keeps_the_skeleton_and_audits(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    store = NodeStore(path, "nl")
    await store.open()
    try:
        env = _sealed()
        kept = _sealed(offset=1, retain_until=RETAIN + HOUR_MS)
        await _accept(store, env)
        await _accept(store, kept)

        assert await store.retention.purge_due(RETAIN - 1) == 0
        assert await store.envelope_bytes(env.id) == env.to_bytes()

        assert await store.retention.purge_due(RETAIN) == 1

        with sqlite3.connect(path) as db:
            raw, purged = db.execute("SELECT raw, purged FROM envelopes WHERE id = ?",
                                     (env.id,)).fetchone()
        assert purged == RETAIN
        assert env.body.ciphertext not in raw and env.body_bytes not in raw
        skeleton = decode_skeleton(raw)
        assert skeleton.header_bytes == env.header_bytes
        assert skeleton.signature == env.signature
        assert skeleton.header().tag.retain_until == RETAIN

        # The queued hop is never offered to the sender again; the expiry sweep (which
        # waits out batches in flight) ends it and names its sender for the notice.
        assert await store.hop_states(env.id) == {"be": ("queued", None)}
        assert [eid for eid, _ in await store.next_batch("be", 10, now=NOW)] == [kept.id]
        assert (env.id, "be", ALICE.id) in await store.expire_due(RETAIN)
        assert (await store.hop_states(env.id))["be"][0] == "expired"

        with pytest.raises(Purged, match="retain_until") as err:
            await store.envelope_bytes(env.id)
        assert err.value.http_status == 410 and err.value.code == "purged"
        with pytest.raises(Purged):
            await store.retention.check_not_purged(env.id)
        await store.retention.check_not_purged(kept.id)  # not purged: no error
        assert await store.envelope_bytes(kept.id) == kept.to_bytes()

        # The inbox still lists it, marked purged, with the tag from its skeleton.
        items = {i.envelope_id: i for i in await store.inbox(CAROL.id, after=0, limit=10)}
        assert items[env.id].purged == RETAIN and items[env.id].retain_until == RETAIN
        assert items[env.id].tag is not None
        assert items[env.id].tag["owner"] == {"node": "nl", "unit": "cid-limburg"}
        assert items[kept.id].purged is None and items[kept.id].tag is None

        entries = await store.audit_entries()
        purges = _events(entries, "envelope.purged")
        assert len(purges) == 1
        assert purges[0].envelope_id == env.id
        fields = json.loads(purges[0].detail)
        assert fields["body_sha256"] == hashlib.sha256(env.body_bytes).hexdigest()
        assert fields["retain_until"] == RETAIN
        assert [(e.envelope_id, json.loads(e.detail))
                for e in _events(entries, "envelope.expired")
                if e.envelope_id == env.id] == [(env.id, {"peer": "be"})]

        # Idempotent: a second pass finds nothing and audits nothing.
        count = len(entries)
        assert await store.retention.purge_due(RETAIN + 10) == 0
        assert len(await store.audit_entries()) == count
        assert await store.verify_audit() == (count, None)

        # A copy arriving again is a duplicate, not a conflict with the skeleton.
        again = await store.accept(env, now=RETAIN, actor="be",
                                   event="envelope.delivered_to_inbox",
                                   local_recipients=[CAROL.id], remote_nodes=[],
                                   audit_detail=detail())
        assert again.duplicate
    finally:
        await store.close()


async def test_purge_runs_in_bounded_batches(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    try:
        for i in range(7):
            await _accept(store, _sealed(offset=i))
        counts = [await store.retention.purge_due(RETAIN, 3) for _ in range(4)]
        assert counts == [3, 3, 1, 0]
        entries = await store.audit_entries()
        assert len(_events(entries, "envelope.purged")) == 7
        assert await store.verify_audit() == (len(entries), None)
    finally:
        await store.close()


async def test_the_outbox_never_offers_an_envelope_past_retention(tmp_path: Path) -> None:
    """Even a queued hop the sweep has not reached yet (here: a hop whose own expiry was
    pushed out by hand) is not sent once its envelope's retain_until has passed."""
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    try:
        env = _sealed()
        await _accept(store, env)

        async def stretch(txn: WriteTxn) -> None:
            await txn.execute("UPDATE hops SET expires = ?", (RETAIN + 10 * HOUR_MS,))

        await store.db.write(stretch)
        assert [eid for eid, _ in await store.next_batch("be", 10, now=RETAIN - 1)] == [env.id]
        assert await store.next_batch("be", 10, now=RETAIN) == []
    finally:
        await store.close()


async def test_evidence_about_a_purged_envelope_is_not_served(tmp_path: Path) -> None:
    from liaison_net.core.envelope import Kind

    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    try:
        env = _sealed()
        await _accept(store, env)
        evidence = seal_from(BOB, [ALICE], kind=Kind.EVIDENCE, ref=env.id, now=NOW + 5,
                             expires=NOW + 5 + HOUR_MS, tag=make_tag(retain_until=RETAIN))
        await store.accept(evidence, now=NOW, actor="be", event="envelope.delivered_to_inbox",
                           local_recipients=[ALICE.id], remote_nodes=[], audit_detail=detail())
        assert len(await store.evidence_for(ALICE.id, env.id, limit=10)) == 1
        assert await store.retention.purge_due(RETAIN) == 2
        assert await store.evidence_for(ALICE.id, env.id, limit=10) == []
    finally:
        await store.close()


def test_retention_sweep_interval_is_configured_and_bounded() -> None:
    from liaison_net.config import StoreConfig
    from liaison_net.config.store import _store_config
    from liaison_net.errors import ConfigError

    assert _store_config({}) == StoreConfig(max_db_mb=None, retention_sweep_s=60.0)
    assert _store_config({"retention_sweep_s": 0.5}).retention_sweep_s == 0.5
    for bad in (0, 0.05, 3601, "60", True):
        with pytest.raises(ConfigError, match="retention_sweep_s"):
            _store_config({"retention_sweep_s": bad})
