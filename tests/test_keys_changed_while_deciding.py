"""A card, key or revocation written between an envelope's decision and its write: the
write notices (the key cache's stamp moved), stores nothing, and the envelopes are decided
again, so a revocation committed before a transaction's commit is never outrun by it
(review16f found 200 of 200 accepted after their sender's revocation had committed).
Real SQLite files; the interleaving is driven by yielding to the loop, not by sleeps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from liaison_net.core import crypto
from liaison_net.core.limits import DEFAULT_LIMITS
from liaison_net.core.rotation import Revocation, Subject, sign_revocation
from liaison_net.errors import KeysChanged, LiaisonError, NotFound
from liaison_net.metrics import NodeMetrics
from liaison_net.services.intake import Intake, Keys
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, issued_card, seal_from
from tests.open_store import open_store
from tests.test_receive_many import ALICE, BE, BOB, LU, NL, PIET, _card


def _intake(store: NodeStore) -> Intake:
    return Intake(node_id="be", peers={"nl", "lu"}, store=store,
                  keys=Keys(own=BE, nodes={"be": BE.public, "nl": NL.public, "lu": LU.public}),
                  limits=DEFAULT_LIMITS, metrics=NodeMetrics())


async def _revoke_alice(store: NodeStore) -> None:
    rev = Revocation(Subject.OFFICER, ALICE.id, ALICE.signing.key_id, "stolen", NOW, NOW,
                     "nl")
    assert await store.keys.add_revocation(rev, sign_revocation(rev, NL), now=NOW,
                                           forward_to=[], source="nl")


async def test_an_accept_decided_before_a_key_change_stores_nothing(tmp_path: Path) -> None:
    async with open_store(tmp_path / "be.db", "be") as store:
        await _card(store, ALICE, "nl", NL)
        await _card(store, BOB, "be", BE)
        envelope = seal_from(ALICE, [BOB], b"decided before the revocation")
        stamp = store.keys_stamp()
        await _revoke_alice(store)
        assert store.keys_stamp() != stamp
        with pytest.raises(KeysChanged):
            await store.accept(envelope, now=NOW + 1000, actor="nl", event="envelope.received",
                               local_recipients=[BOB.id], remote_nodes=[], audit_detail="{}",
                               received=True, keys_as_of=stamp)
        with pytest.raises(NotFound):
            await store.envelope_bytes(envelope.header.id)
        # Taken again after the change, the stamp holds.
        await store.accept(envelope, now=NOW + 1000, actor="nl", event="envelope.received",
                           local_recipients=[BOB.id], remote_nodes=[], audit_detail="{}",
                           received=True, keys_as_of=store.keys_stamp())
        assert await store.envelope_bytes(envelope.header.id) == envelope.to_bytes()


@pytest.mark.parametrize("turns", [0, 1, 2, 3, 5, 10])
async def test_a_transaction_never_outruns_a_revocation_committed_before_it(
        tmp_path: Path, turns: int) -> None:
    """The revocation is written while the transaction is being decided (after ``turns``
    turns of the loop): if the transaction had not committed when the revocation did,
    none of its envelopes is accepted."""
    async with open_store(tmp_path / "be.db", "be") as store:
        await _card(store, ALICE, "nl", NL)
        await _card(store, BOB, "be", BE)
        intake = _intake(store)
        await intake.receive_many("nl", [seal_from(ALICE, [BOB], b"warm").to_bytes()],
                                  NOW + 1000)  # the key cache warm, as on a busy node
        raws = [seal_from(ALICE, [BOB], f"m{i}".encode()).to_bytes() for i in range(200)]
        task = asyncio.create_task(intake.receive_many("nl", raws, NOW + 1000))
        for _ in range(turns):
            await asyncio.sleep(0)
        await _revoke_alice(store)
        outran = task.done()
        results = await task
        accepted = sum(not isinstance(r, LiaisonError) for r in results)
        if outran:  # committed before the revocation: ordered before it, rightly taken
            assert accepted == 200
        else:
            assert accepted == 0
            assert {r.code for r in results if isinstance(r, LiaisonError)} == {"revoked"}


async def test_another_officers_key_writes_send_no_decision_back(tmp_path: Path) -> None:
    """The check is per sender: a peer churning its own officers' cards (a new key each
    time, the old one superseded at once) does not send back the decisions about anyone
    else's envelopes (review16g: ~90 card writes/s had every transaction on the node
    answered keys_changed). The churned officer's own envelopes are sent back."""
    async with open_store(tmp_path / "be.db", "be") as store:
        await _card(store, ALICE, "nl", NL)
        await _card(store, BOB, "be", BE)
        await _card(store, PIET, "lu", LU)
        alices = seal_from(ALICE, [BOB], b"decided while PIET's card churns")
        piets = seal_from(PIET, [BOB], b"decided before PIET's new card")
        stamp = store.keys_stamp()
        for version in (2, 3, 4):  # PIET's node pushes new cards, each with a new key
            await _card_version(store, PIET, "lu", LU, version)
        assert store.keys_stamp() != stamp  # keys were written meanwhile
        await store.accept(alices, now=NOW + 1000, actor="nl", event="envelope.received",
                           local_recipients=[BOB.id], remote_nodes=[], audit_detail="{}",
                           received=True, keys_as_of=stamp)
        assert await store.envelope_bytes(alices.header.id) == alices.to_bytes()
        with pytest.raises(KeysChanged):
            await store.accept(piets, now=NOW + 1000, actor="lu",
                               event="envelope.received", local_recipients=[BOB.id],
                               remote_nodes=[], audit_detail="{}", received=True,
                               keys_as_of=stamp)


async def _card_version(store: NodeStore, officer: Officer, node: str,
                        key: crypto.SigningKeyPair, version: int) -> None:
    fresh = Officer(officer.id)  # the same officer, a new key pair
    card, raw = issued_card(fresh, node, key, version=version)
    assert await store.put_card(card, raw, now=NOW, source=node)
