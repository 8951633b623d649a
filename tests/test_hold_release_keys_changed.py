"""A four-eyes release decided before a key change never outruns it: the approver's (or
the held envelope's sender's) revocation committed between ``HoldDesk.decide``'s checks
and its write releases nothing (the checks are made again and refuse), as intake's
accepting write does (tests/test_keys_changed_while_deciding.py). Real SQLite files; the
interleaving is driven by yielding to the loop, not by sleeps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from liaison_net.clock import ManualClock
from liaison_net.config import FourEyesConfig
from liaison_net.core import approval as four_eyes
from liaison_net.core.envelope import read_frame
from liaison_net.core.limits import DEFAULT_LIMITS
from liaison_net.core.rotation import Revocation, Subject, sign_revocation
from liaison_net.core.sealing import verify_frame
from liaison_net.errors import KeysChanged, LiaisonError
from liaison_net.services.holds import HoldDesk
from liaison_net.store.hold_store import APPROVED, HELD, REJECTED, HoldPlan
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, seal_from
from tests.test_receive_many import ALICE, BOB, NL, _card

UNIT = "cid-limburg"  # the default test tag's owner unit
APPROVER = Officer("nl/approver")


async def _held(store: NodeStore) -> bytes:
    """An envelope of ALICE's to BOB (another node), held for UNIT's approval."""
    await _card(store, ALICE, "nl", NL)
    await _card(store, APPROVER, "nl", NL)
    envelope = seal_from(ALICE, [BOB], b"held")
    await store.accept(envelope, now=NOW, actor=ALICE.id, event="envelope.submitted",
                       local_recipients=[], remote_nodes=["be"], audit_detail="{}",
                       hold=HoldPlan(UNIT, NOW + 3_600_000))
    return envelope.to_bytes()


def _statement(raw: bytes,
               decision: four_eyes.Decision = four_eyes.Decision.APPROVE) -> bytes:
    envelope = verify_frame(read_frame(raw, DEFAULT_LIMITS), ALICE.signer, now=None,
                            limits=DEFAULT_LIMITS)
    reason = "not needed" if decision is four_eyes.Decision.REJECT else ""
    return four_eyes.sign(four_eyes.make(envelope, approver=APPROVER.id, decision=decision,
                                         at=NOW + 1, reason=reason), APPROVER.signing)


def _desk(store: NodeStore) -> HoldDesk:
    return HoldDesk(node_id="nl", store=store, clock=ManualClock(NOW + 1000),
                    config=FourEyesConfig(enabled=True,
                                          approvers={UNIT: frozenset({APPROVER.id})}),
                    wake=lambda _node: None, limits=DEFAULT_LIMITS)


async def _revoke(store: NodeStore, officer: Officer) -> None:
    rev = Revocation(Subject.OFFICER, officer.id, officer.signing.key_id, "stolen", NOW,
                     NOW, "nl")
    await store.keys.add_revocation(rev, sign_revocation(rev, NL), now=NOW, forward_to=[],
                                    source="nl")


async def test_a_release_decided_before_a_key_change_releases_nothing(
        tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "nl.db", "nl")
    await store.open()
    try:
        raw = await _held(store)
        envelope_id = (await store.holds.waiting(units=[UNIT], sender=ALICE.id))[0].envelope_id
        stamp = store.keys_stamp()
        await _revoke(store, APPROVER)
        with pytest.raises(KeysChanged):
            await store.holds.approve(envelope_id, approver=APPROVER.id,
                                      statement=_statement(raw), now=NOW + 1000, effects=[],
                                      keys_as_of=stamp)
        hold = await store.holds.get(envelope_id)
        assert hold is not None and hold.state == HELD
    finally:
        await store.close()


@pytest.mark.parametrize("decision", list(four_eyes.Decision))
@pytest.mark.parametrize("who", ["approver", "sender"])
@pytest.mark.parametrize("turns", [0, 1, 2, 3, 4, 5, 6, 8, 10])
async def test_a_decision_never_outruns_a_revocation_committed_before_it(
        tmp_path: Path, turns: int, who: str, decision: four_eyes.Decision) -> None:
    """The approver's (or sender's) revocation is written while the approval (or
    rejection) is checked (after ``turns`` turns of the loop): if the decision had not
    committed when the revocation did, nothing is done and the refusal names the
    revocation."""
    store = NodeStore(tmp_path / "nl.db", "nl")
    await store.open()
    try:
        raw = await _held(store)
        envelope_id = (await store.holds.waiting(units=[UNIT], sender=ALICE.id))[0].envelope_id
        statement = _statement(raw, decision)
        desk = _desk(store)
        task = asyncio.create_task(desk.decide(APPROVER.id, envelope_id, statement))
        for _ in range(turns):
            await asyncio.sleep(0)
        await _revoke(store, APPROVER if who == "approver" else ALICE)
        outran = task.done()
        try:
            await task
            refused: LiaisonError | None = None
        except LiaisonError as exc:
            refused = exc
        hold = await store.holds.get(envelope_id)
        assert hold is not None
        if outran:  # decided before the revocation: ordered before it, rightly taken
            assert refused is None
            assert hold.state == (APPROVED if decision is four_eyes.Decision.APPROVE
                                  else REJECTED)
        else:
            assert refused is not None and refused.code == "revoked"
            assert hold.state == HELD
    finally:
        await store.close()
