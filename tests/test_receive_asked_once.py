"""A federation transaction asks the store once for what its envelopes share (their sender's
key, their recipient's keys: ``services/asked.py``), and only what was found is kept: an
unknown recipient is still refused at each of its envelopes, a revoked key still raises."""

from __future__ import annotations

from pathlib import Path

from liaison_net.core import art25
from liaison_net.core.audit import detail
from liaison_net.core.limits import DEFAULT_LIMITS
from liaison_net.core.ownership import Tlp
from liaison_net.core.rotation import Revocation, Subject, sign_revocation
from liaison_net.errors import LiaisonError, NotFound, Revoked
from liaison_net.metrics import NodeMetrics
from liaison_net.services.asked import Asked
from liaison_net.services.intake import Intake, Keys
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, make_tag, seal_from
from tests.test_receive_many import ALICE, BE, BOB, LU, NL, PIET, _card


def _intake(store: NodeStore) -> Intake:
    return Intake(node_id="be", peers={"nl", "lu"}, store=store,
                  keys=Keys(own=BE, nodes={"be": BE.public, "nl": NL.public, "lu": LU.public}),
                  limits=DEFAULT_LIMITS, metrics=NodeMetrics())


async def test_a_transaction_asks_for_its_shared_keys_once(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "be.db", "be")
    await store.open()
    try:
        for officer, node, key in ((ALICE, "nl", NL), (BOB, "be", BE), (PIET, "lu", LU)):
            await _card(store, officer, node, key)
        intake, cache = _intake(store), store.db.key_cache
        # A first transaction fills the key cache (its concurrent misses share one read
        # each: ``key_cache``); the next one is the catch-up's usual transaction.
        await intake.receive_many("nl", [seal_from(ALICE, [BOB], b"first").to_bytes()],
                                  NOW + 1000)
        raws = [seal_from(ALICE, [BOB], f"alert {i}".encode()).to_bytes() for i in range(20)]
        before = cache.hits + cache.misses
        results = await intake.receive_many("nl", raws, NOW + 1000)
        assert all(not isinstance(r, LiaisonError) and not r.duplicate for r in results)
        # Alice's key and Bob's keys: two lookups for twenty envelopes, not forty.
        assert cache.hits + cache.misses - before == 2
    finally:
        await store.close()


async def test_what_was_not_found_is_asked_again_and_refused_each_time(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "be.db", "be")
    await store.open()
    try:
        for officer, node, key in ((ALICE, "nl", NL), (BOB, "be", BE)):
            await _card(store, officer, node, key)
        stranger = Officer("be/unknown")  # no card here
        raws = [seal_from(ALICE, [stranger], f"to nobody {i}".encode()).to_bytes()
                for i in range(3)]
        raws.append(seal_from(ALICE, [BOB], b"to Bob").to_bytes())
        results = await _intake(store).receive_many("nl", raws, NOW + 1000)
        assert [type(r) for r in results[:3]] == [NotFound] * 3
        assert not isinstance(results[3], LiaisonError) and not results[3].duplicate
    finally:
        await store.close()


async def test_a_delivery_detail_is_made_as_alone(tmp_path: Path) -> None:
    """The detail made once per transaction is the one each envelope would have had."""
    store = NodeStore(tmp_path / "be.db", "be")
    await store.open()
    try:
        asked = Asked(store, NOW + 1000)
        carol = Officer("be/carol")
        cases = [(seal_from(ALICE, [BOB], b"a"), ["be/mpeeters"]),
                 (seal_from(ALICE, [BOB, carol], b"b"), ["be/mpeeters", "be/carol"]),
                 (seal_from(ALICE, [BOB], b"c", tag=make_tag(purpose="Other purpose",
                                                            tlp=Tlp.GREEN,
                                                            community="benelux")),
                  ["be/mpeeters"])]
        for peer in ("nl", "lu"):
            for envelope, local in cases * 2:  # each twice: the second from the memo
                assert asked.delivery_detail(peer, envelope.header, local) == detail(
                    layer="destination", peer=peer, recipients=len(local),
                    **art25.reception(envelope.header, local, forward=False))
    finally:
        await store.close()


def _revocation_of(officer: Officer) -> tuple[Revocation, bytes]:
    revocation = Revocation(Subject.OFFICER, officer.id, officer.signing.key_id, "stolen",
                            serial=NOW, effective=NOW, authority="nl")
    return revocation, sign_revocation(revocation, NL)


async def test_a_revoked_sender_is_refused_as_revoked_at_each_envelope(tmp_path: Path) -> None:
    """A refusal is never kept: every envelope of a revoked key raises ``Revoked`` (not an
    unknown signer's refusal after the first), and so does the next transaction."""
    store = NodeStore(tmp_path / "be.db", "be")
    await store.open()
    try:
        for officer, node, key in ((ALICE, "nl", NL), (BOB, "be", BE)):
            await _card(store, officer, node, key)
        revocation, raw = _revocation_of(ALICE)
        assert await store.keys.add_revocation(revocation, raw, now=NOW, forward_to=[],
                                               source="nl")
        intake = _intake(store)
        for _ in range(2):
            raws = [seal_from(ALICE, [BOB], f"late {i}".encode()).to_bytes() for i in range(5)]
            results = await intake.receive_many("nl", raws, NOW + 1000)
            assert [type(r) for r in results] == [Revoked] * 5
    finally:
        await store.close()


async def test_what_one_transaction_found_is_asked_again_by_the_next(tmp_path: Path) -> None:
    """The lookups live for one transaction: a revocation committed after one is honoured
    by the next (a memo kept on the intake would still accept the stolen key)."""
    store = NodeStore(tmp_path / "be.db", "be")
    await store.open()
    try:
        for officer, node, key in ((ALICE, "nl", NL), (BOB, "be", BE)):
            await _card(store, officer, node, key)
        intake = _intake(store)
        first = await intake.receive_many(
            "nl", [seal_from(ALICE, [BOB], f"before {i}".encode()).to_bytes()
                   for i in range(3)], NOW + 1000)
        assert not any(isinstance(r, LiaisonError) for r in first)
        revocation, raw = _revocation_of(ALICE)
        assert await store.keys.add_revocation(revocation, raw, now=NOW + 1000,
                                               forward_to=[], source="nl")
        after = await intake.receive_many(
            "nl", [seal_from(ALICE, [BOB], f"after {i}".encode()).to_bytes()
                   for i in range(3)], NOW + 1000)
        assert [type(r) for r in after] == [Revoked] * 3
    finally:
        await store.close()
