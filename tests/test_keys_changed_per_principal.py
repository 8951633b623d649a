"""The per-principal key-change check under attack (review16h): a node key revoked while
an envelope its node signed is being decided, and a certified peer's flood of card writes
for its own officer, which must not make every other decision on the node look stale.
Real SQLite files, the store's own write paths (those the federation server calls)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from liaison_net.core import crypto, tagflow
from liaison_net.core.almanac import Almanac
from liaison_net.core.consent import Consent, sign_consent
from liaison_net.core.envelope import Envelope
from liaison_net.core.identity import EnrolmentRequest, issue_card, verify_card
from liaison_net.core.ids import node_principal
from liaison_net.core.limits import DAY_MS, DEFAULT_LIMITS, HOUR_MS, Limits
from liaison_net.core.retention import make_skeleton
from liaison_net.core.rotation import Revocation, Subject, sign_revocation
from liaison_net.errors import KeysChanged, LiaisonError, Malformed, Revoked
from liaison_net.federation.protocol import MAX_DIRECTORY_CARDS
from liaison_net.metrics import NodeMetrics
from liaison_net.services.intake import Intake, Keys
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, issued_card, make_tag, seal_from
from tests.open_store import open_store
from tests.test_keys_changed_while_deciding import _revoke_alice
from tests.test_receive_many import ALICE, BOB, LU, NL, PIET, _card

BE_KEY = crypto.generate_signing_key()
#: 4,500 card writes: past the 4,096 notes the record first kept, within a peer's default
#: burst (10,000 items).
PUSHES = 9


async def _accept(store: NodeStore, envelope: object, actor: str, stamp: int) -> None:
    await store.accept(envelope, now=NOW + 1000, actor=actor,  # type: ignore[arg-type]
                       event="envelope.received", local_recipients=[BOB.id], remote_nodes=[],
                       audit_detail="{}", received=True, keys_as_of=stamp)


async def test_a_node_key_revoked_while_its_notice_is_decided_sends_it_back(
        tmp_path: Path) -> None:
    """A node signs as ``<node>/node`` (``node_principal``), but a node key's revocation
    names the node (``lu``): noted under ``lu`` only, the notice signed by the revoked key
    and decided before the revocation committed was stored after it."""
    async with open_store(tmp_path / "be.db", "be") as store:
        await _card(store, BOB, "be", BE_KEY)
        old = crypto.generate_signing_key()  # LU's node key before a rotation, in grace
        await store.keys.supersede_node_key(node_principal("lu"), old.public, now=NOW,
                                            grace_ms=HOUR_MS, actor="lu")
        notice = seal_from(Officer(node_principal("lu"), signing=old), [BOB], b"notice")
        stamp = store.keys_stamp()
        signer = await store.keys.signer(old.key_id, now=NOW)  # the decision's lookup
        assert signer is not None and signer.principal == notice.header.sender
        revocation = Revocation(Subject.NODE, "lu", old.key_id, "compromised", 2, NOW, "lu")
        assert await store.keys.add_revocation(revocation, sign_revocation(revocation, old),
                                               now=NOW, forward_to=[], source="lu")
        with pytest.raises(Revoked):
            await store.keys.signer(old.key_id, now=NOW)
        with pytest.raises(KeysChanged):
            await _accept(store, notice, "lu", stamp)


async def test_a_peer_re_carding_its_own_officer_cannot_make_others_decisions_stale(
        tmp_path: Path) -> None:
    """Pushes of new versions of ONE officer's card, within the push limit (500 cards) and
    a peer's burst: each used to take one of the 4,096 notes, so nine pushes overflowed
    the record and every decision on the node was taken as stale (sent back; three in a
    row answered ``keys_changed``). Noted once per principal, they take one entry."""
    async with open_store(tmp_path / "be.db", "be") as store:
        await _card(store, ALICE, "nl", NL)
        await _card(store, BOB, "be", BE_KEY)
        await _card(store, PIET, "lu", LU)
        alices = seal_from(ALICE, [BOB], b"decided while PIET's card churns")
        stamp = store.keys_stamp()
        version = 1
        for _ in range(PUSHES):
            cards = []
            for _ in range(MAX_DIRECTORY_CARDS):
                version += 1
                cards.append(issued_card(PIET, "lu", LU, version=version))
            assert all(r is True for r in await store.put_cards(cards, now=NOW, source="lu"))
        await _accept(store, alices, "nl", stamp)  # ALICE's keys never changed
        assert await store.envelope_bytes(alices.header.id) == alices.to_bytes()


async def test_a_revocation_naming_another_principal_sends_back_the_keys_owner(
        tmp_path: Path) -> None:
    """Peers' revocations are refused unless the key is the named principal's
    (``_check_key_owner``), but a local administrator's names the principal and the key id
    apart (`liaison admin revoke officer lu/x --key-id ...`): the key's owner, whose
    envelopes it signed, is noted too, not only the principal the statement names."""
    async with open_store(tmp_path / "be.db", "be") as store:
        await _card(store, BOB, "be", BE_KEY)
        await _card(store, PIET, "lu", LU)
        piets = seal_from(PIET, [BOB], b"decided before the revocation")
        stamp = store.keys_stamp()
        revocation = Revocation(Subject.OFFICER, "lu/someone", PIET.signing.key_id, "typo",
                                2, NOW, "lu")
        assert await store.keys.add_revocation(revocation, sign_revocation(revocation, LU),
                                               now=NOW, forward_to=[], source="lu")
        with pytest.raises(Revoked):
            await store.keys.signer(PIET.signing.key_id, now=NOW)
        with pytest.raises(KeysChanged):
            await _accept(store, piets, "lu", stamp)


def _forward_of_alices(text: bytes) -> Envelope:
    """PIET (lu) forwards to BOB (be) an original ALICE (nl) signed: deciding it reads
    ALICE's key as well as PIET's (``tagflow.verify_original``)."""
    original = seal_from(ALICE, [PIET], b"original", tag=make_tag())
    return seal_from(PIET, [BOB], text, tag=original.header.tag, ref=original.id,
                     original=make_skeleton(original.to_bytes()))


async def test_a_forwards_original_signer_revoked_while_deciding_sends_it_back(
        tmp_path: Path) -> None:
    """The sender is not the only principal a decision reads: a forward's originals were
    verified under their signers' keys. Noted for ALICE, her revocation must send back a
    forward of her envelope decided before it, as the global stamp did."""
    async with open_store(tmp_path / "be.db", "be") as store:
        await _card(store, ALICE, "nl", NL)
        await _card(store, PIET, "lu", LU)
        await _card(store, BOB, "be", BE_KEY)
        fwd = _forward_of_alices(b"decided before ALICE's revocation")
        stamp = store.keys_stamp()
        assert await store.keys.signer(ALICE.signing.key_id, now=None) is not None
        await _revoke_alice(store)
        with pytest.raises(KeysChanged):
            await _accept(store, fwd, "lu", stamp)


@pytest.mark.parametrize("turns", [0, 1, 2, 3, 5, 10])
async def test_a_transaction_of_forwards_never_outruns_the_originals_revocation(
        tmp_path: Path, turns: int) -> None:
    """End to end through the intake: ALICE's revocation written while PIET's forwards of
    her envelope are being decided; unless the transaction committed first, none of them
    is accepted (all refused ``revoked`` when decided again)."""
    async with open_store(tmp_path / "be.db", "be") as store:
        await _card(store, ALICE, "nl", NL)
        await _card(store, PIET, "lu", LU)
        await _card(store, BOB, "be", BE_KEY)
        intake = Intake(node_id="be", peers={"nl", "lu"}, store=store,
                        keys=Keys(own=BE_KEY, nodes={"be": BE_KEY.public, "nl": NL.public,
                                                     "lu": LU.public}),
                        limits=DEFAULT_LIMITS, metrics=NodeMetrics())
        warm = await intake.receive_many("lu", [_forward_of_alices(b"warm").to_bytes()],
                                         NOW + 1000)
        assert not isinstance(warm[0], LiaisonError)  # a forward the node takes
        raws = [_forward_of_alices(f"f{i}".encode()).to_bytes() for i in range(50)]
        task = asyncio.create_task(intake.receive_many("lu", raws, NOW + 1000))
        for _ in range(turns):
            await asyncio.sleep(0)
        await _revoke_alice(store)
        outran = task.done()
        results = await task
        accepted = sum(not isinstance(r, LiaisonError) for r in results)
        if outran:
            assert accepted == 50
        else:
            assert accepted == 0
            assert {r.code for r in results if isinstance(r, LiaisonError)} == {"revoked"}


async def test_another_workers_key_change_sends_back_what_was_being_decided(
        tmp_path: Path) -> None:
    """Two workers on one database: B revokes ALICE's key; A learns of it only as a moved
    key epoch (``KeyEpochWatch`` then ``forget_cached_keys``), with no principal named. An
    accept A decided before must then be sent back, as the global stamp did, not stored
    after A knew the keys had changed."""
    a = NodeStore(tmp_path / "be.db", "be")
    await a.open()
    b = NodeStore(tmp_path / "be.db", "be")
    await b.open()
    try:
        await _card(a, ALICE, "nl", NL)
        await _card(a, BOB, "be", BE_KEY)
        alices = seal_from(ALICE, [BOB], b"decided by worker A")
        epoch = await a.key_epoch()
        stamp = a.keys_stamp()
        assert await a.keys.signer(ALICE.signing.key_id, now=NOW) is not None
        await _revoke_alice(b)
        assert await a.key_epoch() != epoch  # what A's watch reads
        a.forget_cached_keys()
        with pytest.raises(KeysChanged):
            await _accept(a, alices, "nl", stamp)
        with pytest.raises(Revoked):
            await a.keys.signer(ALICE.signing.key_id, now=NOW)
    finally:
        await b.close()
        await a.close()


async def test_an_approvers_revocation_sends_back_the_envelope_it_approved(
        tmp_path: Path) -> None:
    """A peer's envelope carrying a four-eyes approval (``HoldDesk.carried``): the decision
    read the approver's key too, so the approver's revocation sends it back."""
    async with open_store(tmp_path / "be.db", "be") as store:
        await _card(store, ALICE, "nl", NL)  # the approver
        await _card(store, PIET, "lu", LU)
        await _card(store, BOB, "be", BE_KEY)
        piets = seal_from(PIET, [BOB], b"approved by ALICE")
        stamp = store.keys_stamp()
        await _revoke_alice(store)
        with pytest.raises(KeysChanged):
            await store.accept(piets, now=NOW + 1000, actor="lu", event="envelope.received",
                               local_recipients=[BOB.id], remote_nodes=[],
                               audit_detail="{}", received=True,
                               approval=(ALICE.id, b"statement"), keys_as_of=stamp)


async def test_the_consenting_owners_revocation_sends_back_the_forward_it_allowed(
        tmp_path: Path) -> None:
    """A forward carrying the owner's consent: the decision read the owner's key (the
    consent's signature), so the owner's revocation sends it back."""
    owner = Officer("nl/hvisser")
    async with open_store(tmp_path / "be.db", "be") as store:
        for officer, node, key in ((ALICE, "nl", NL), (owner, "nl", NL), (PIET, "lu", LU),
                                   (BOB, "be", BE_KEY)):
            await _card(store, officer, node, key)
        original = seal_from(ALICE, [PIET], b"original", tag=make_tag())
        consent = sign_consent(Consent(original.id, PIET.id, BOB.id, owner.id,
                                       NOW - HOUR_MS, NOW + HOUR_MS), owner.signing)
        fwd = seal_from(PIET, [BOB], b"fwd", tag=original.header.tag, ref=original.id,
                        original=make_skeleton(original.to_bytes()), consent=consent)
        stamp = store.keys_stamp()
        rev = Revocation(Subject.OFFICER, owner.id, owner.signing.key_id, "left", NOW, NOW,
                         "nl")
        assert await store.keys.add_revocation(rev, sign_revocation(rev, NL), now=NOW,
                                               forward_to=[], source="nl")
        with pytest.raises(KeysChanged):
            await _accept(store, fwd, "lu", stamp)


async def test_a_recipients_revocation_sends_back_a_submit_decided_before_it(
        tmp_path: Path) -> None:
    """At the origin a decision reads the recipients' revocations too (a revoked recipient
    is refused, never sealed for): BOB revoked while ALICE's envelope to him was decided
    sends it back, as the global stamp did."""
    async with open_store(tmp_path / "nl.db", "nl") as store:
        await _card(store, ALICE, "nl", NL)
        await _card(store, BOB, "be", BE_KEY)
        alices = seal_from(ALICE, [BOB], b"decided before BOB's revocation")
        stamp = store.keys_stamp()
        assert await store.keys.officer_revocation(BOB.id, now=NOW) is None
        rev = Revocation(Subject.OFFICER, BOB.id, BOB.signing.key_id, "stolen", NOW, NOW,
                         "be")
        assert await store.keys.add_revocation(rev, sign_revocation(rev, BE_KEY), now=NOW,
                                               forward_to=[], source="be")
        assert await store.keys.officer_revocation(BOB.id, now=NOW) is not None
        with pytest.raises(KeysChanged):
            await store.accept(alices, now=NOW + 1000, actor=ALICE.id,
                               event="envelope.submitted", local_recipients=[],
                               remote_nodes=["be"], audit_detail="{}", keys_as_of=stamp)


def test_a_peer_cannot_card_an_officer_under_its_own_node_principal() -> None:
    """A certified peer signs its own cards: one for ``lu/node`` (which enrolment refuses)
    would make a card key speak as the node (its envelopes' sender is the node's principal,
    ``verify_frame``) and outlive a co-signed revocation of the node key."""
    impostor = Officer(node_principal("lu"))
    raw = issue_card(EnrolmentRequest(impostor.id, "N", "r", impostor.signing.public,
                                      impostor.encryption.public, Almanac()),
                     node_id="lu", node_key=LU, version=1, now=NOW, valid_for_ms=DAY_MS)
    with pytest.raises(Malformed):
        verify_card(raw, node_public=LU.public, node_id="lu", now=None)


async def test_a_peer_re_carding_a_co_recipient_sends_no_received_envelope_back(
        tmp_path: Path) -> None:
    """A destination reads of its recipients only that its own are carded, which no card
    or revocation undoes: LU re-carding PIET does not send back NL's envelope to BOB and
    PIET (only the origin, which refuses revoked recipients, checks them)."""
    async with open_store(tmp_path / "be.db", "be") as store:
        await _card(store, ALICE, "nl", NL)
        await _card(store, PIET, "lu", LU)
        await _card(store, BOB, "be", BE_KEY)
        alices = seal_from(ALICE, [BOB, PIET], b"to BOB and PIET")
        stamp = store.keys_stamp()
        fresh = Officer(PIET.id)
        raw = issue_card(EnrolmentRequest(PIET.id, "N", "r", fresh.signing.public,
                                          fresh.encryption.public, Almanac()),
                         node_id="lu", node_key=LU, version=2, now=NOW, valid_for_ms=DAY_MS)
        assert await store.put_card(verify_card(raw, node_public=LU.public, node_id="lu",
                                                now=None), raw, now=NOW, source="lu")
        await _accept(store, alices, "nl", stamp)
        assert await store.envelope_bytes(alices.header.id) == alices.to_bytes()


def test_an_originals_signer_is_read_under_a_nodes_raised_limits() -> None:
    """A node may raise ``max_header_bytes`` (up to 256 KiB) and then accepts a forward
    whose original's header passes 16 KiB; reading the originals again under the default
    limits refused it and left its signer out of the principals the decision read (a
    revocation of ALICE then did not send the forward back)."""
    wide = Limits(max_recipients=1024, max_header_bytes=256 * 1024)
    many = [Officer(f"lu/o{i}") for i in range(700)]  # a header of ~19 KB
    original = seal_from(ALICE, many, b"original", tag=make_tag(), limits=wide)
    forward = seal_from(PIET, [BOB], b"forward", tag=original.header.tag, ref=original.id,
                        original=make_skeleton(original.to_bytes(), wide), limits=wide)
    assert len(forward.header.original or b"") > DEFAULT_LIMITS.max_header_bytes
    assert ALICE.id in tagflow.principals_read(forward.header, recipients=False)
