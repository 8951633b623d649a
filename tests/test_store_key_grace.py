"""Superseded officer keys on a real SQLite file: kept for their grace period, listed for a
login, and refused once revoked or once their officer's current key is revoked."""

from __future__ import annotations

from pathlib import Path

import pytest

from liaison_net.core import crypto
from liaison_net.core.almanac import Almanac
from liaison_net.core.identity import EnrolmentRequest, OfficerCard, issue_card, verify_card
from liaison_net.core.limits import HOUR_MS
from liaison_net.core.rotation import Revocation, Subject, sign_revocation
from liaison_net.errors import Revoked
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW

NODE = crypto.generate_signing_key()
JAN = "nl/jdevries"
GRACE = HOUR_MS


def _card(key: crypto.SigningKeyPair, version: int) -> tuple[OfficerCard, bytes]:
    raw = issue_card(EnrolmentRequest(JAN, "Jan", "liaison officer", key.public,
                                      crypto.generate_encryption_key().public, Almanac()),
                     node_id="nl", node_key=NODE, version=version, now=NOW,
                     valid_for_ms=24 * HOUR_MS)
    return verify_card(raw, node_public=NODE.public, node_id="nl", now=None), raw


async def _revoke(store: NodeStore, key_id: bytes, reason: str) -> None:
    revocation = Revocation(Subject.OFFICER, JAN, key_id, reason, serial=NOW, effective=NOW,
                            authority="nl")
    assert await store.keys.add_revocation(revocation, sign_revocation(revocation, NODE),
                                           now=NOW, forward_to=[], source="nl")


@pytest.fixture
async def rotated(tmp_path: Path) -> tuple[NodeStore, crypto.SigningKeyPair,
                                           crypto.SigningKeyPair]:
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    old, new = crypto.generate_signing_key(), crypto.generate_signing_key()
    for key, version in ((old, 1), (new, 2)):
        card, raw = _card(key, version)
        assert await store.put_card(card, raw, now=NOW, source="nl", grace_ms=GRACE)
    yield store, old, new  # type: ignore[misc]
    await store.close()


async def test_a_superseded_key_signs_in_its_grace_and_not_after(
        rotated: tuple[NodeStore, crypto.SigningKeyPair, crypto.SigningKeyPair]) -> None:
    store, old, _ = rotated
    assert await store.keys.superseded_keys(JAN) == [(old.public, NOW + GRACE)]
    assert await store.keys.signer(old.key_id, now=NOW + GRACE - 1) is not None
    assert await store.keys.signer(old.key_id, now=NOW + GRACE) is None


async def test_a_revoked_superseded_key_is_refused(
        rotated: tuple[NodeStore, crypto.SigningKeyPair, crypto.SigningKeyPair]) -> None:
    store, old, new = rotated
    await _revoke(store, old.key_id, "backup lost")
    with pytest.raises(Revoked, match="backup lost"):
        await store.keys.signer(old.key_id, now=NOW)
    assert await store.keys.signer(new.key_id, now=NOW) is not None
    assert await store.keys.officer_revocation(JAN, now=NOW) is None


async def test_a_revoked_officers_older_key_is_refused_in_its_grace(
        rotated: tuple[NodeStore, crypto.SigningKeyPair, crypto.SigningKeyPair]) -> None:
    """A stolen laptop's older keystore copy must not outlive the officer's revocation."""
    store, old, new = rotated
    await _revoke(store, new.key_id, "laptop stolen")
    assert await store.keys.officer_revocation(JAN, now=NOW) == "laptop stolen"
    assert await store.keys.officer_revocation(JAN, now=NOW - 1) is None  # not yet effective
    with pytest.raises(Revoked, match="whose current key was revoked: laptop stolen"):
        await store.keys.signer(old.key_id, now=NOW)


async def test_an_officers_revocation_ends_the_grace_of_older_keys_for_good(
        rotated: tuple[NodeStore, crypto.SigningKeyPair, crypto.SigningKeyPair]) -> None:
    """Re-enrolled after the theft, the officer's older copies stay refused."""
    store, old, new = rotated
    await _revoke(store, new.key_id, "laptop stolen")
    assert await store.keys.superseded_keys(JAN) == [(old.public, NOW)]
    card, raw = _card(crypto.generate_signing_key(), 3)
    assert await store.put_card(card, raw, now=NOW + 1, source="nl", grace_ms=GRACE)
    assert await store.keys.officer_revocation(JAN, now=NOW + 1) is None  # the new card
    assert await store.keys.signer(old.key_id, now=NOW + 1) is None
    with pytest.raises(Revoked):
        await store.keys.signer(new.key_id, now=NOW + 1)
