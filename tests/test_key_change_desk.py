"""A peer's key changes on a real SQLite file (services/key_changes.py): first contact sets
the serial baseline, each later change is applied in order in one transaction or the whole
push is refused, audited and kept for `keys pending`."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from liaison_net.clock import Clock
from liaison_net.core import codec, crypto, key_change
from liaison_net.core.key_change import KeyChange, Kind
from liaison_net.core.rotation import Revocation, Subject, sign_revocation
from liaison_net.errors import CosignThreshold, Revoked, SerialGap, SerialReplayed
from liaison_net.services.intake import Keys
from liaison_net.services.key_changes import KeyChangeDesk
from liaison_net.store.node_store import NodeStore

BE, LU, DE = (crypto.generate_signing_key() for _ in range(3))
NL = [crypto.generate_signing_key() for _ in range(4)]  # nl's keys, one per rotation
CERT = b"-----BEGIN CERTIFICATE----- (the CA's, checked before the desk) -----"


def change(serial: int, old: int, new: int | None, kind: Kind = Kind.ROTATE) -> bytes:
    """nl's change ``serial`` from key ``old`` to ``new``, co-signed by be and lu."""
    signer = None if kind is Kind.REPLACE else NL[old if kind is Kind.ROTATE else new or 0]
    raw = key_change.propose(KeyChange(
        kind, "nl", NL[old].key_id, None if new is None or kind is Kind.REVOKE
        else NL[new].public, serial, 1_000, "test"), signer)
    return key_change.cosign(key_change.cosign(raw, "be", BE), "lu", LU)


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[tuple[KeyChangeDesk, NodeStore]]:
    store = NodeStore(tmp_path / "be.sqlite3", "be")
    await store.open()
    keys = Keys(own=BE, nodes={"be": BE.public, "lu": LU.public, "de-nw": DE.public})
    yield KeyChangeDesk(node_id="be", peers=frozenset({"nl", "lu", "de-nw"}), store=store,
                        keys=keys, threshold=2, grace_ms=60_000, clock=Clock(0)), store
    await store.close()


def audit_events(store: NodeStore) -> list[str]:
    with contextlib.closing(sqlite3.connect(store.db.path)) as db:
        return [r[0] for r in db.execute("SELECT event FROM audit_named ORDER BY seq")]


async def test_first_contact_then_changes_in_order(
        desk: tuple[KeyChangeDesk, NodeStore]) -> None:
    d, store = desk
    s1 = change(1, 0, 1)
    await d.receive("nl", [s1], CERT, NL[1].public)  # first contact: nl already rotated once
    assert d.keys.nodes["nl"] == NL[1].public
    assert await store.keys.key_change_serial("nl") == 1
    s2, s3 = change(2, 1, 2), change(3, 0, 2, Kind.REVOKE)  # then revokes key 0, signed by 2
    await d.receive("nl", [s1, s2, s3], CERT, NL[2].public)
    assert d.keys.nodes["nl"] == NL[2].public and await store.node_key("nl") == NL[2].public
    assert await store.keys.key_change_serial("nl") == 3
    assert await store.keys.signer(NL[1].key_id, now=None) is not None  # in its grace
    with pytest.raises(Revoked):
        await store.keys.signer(NL[0].key_id, now=None)
    assert {"key.rotated", "key.revoked"} <= set(audit_events(store))
    await d.receive("nl", [s1, s2, s3], CERT, NL[2].public)  # pushed again: nothing new


async def test_a_bad_change_refuses_the_whole_push_and_changes_nothing(
        desk: tuple[KeyChangeDesk, NodeStore]) -> None:
    d, store = desk
    await d.receive("nl", [], CERT, NL[0].public)
    s1 = change(1, 0, 1)
    node, body, sig, cosigs = key_change.split(change(2, 1, 2))
    lone = codec.pack([node, body, sig, [[n, s] for n, s in cosigs[:1]]])
    with pytest.raises(CosignThreshold):
        await d.receive("nl", [s1, lone], CERT, NL[2].public)
    # s1 was good, but nothing of the push was applied.
    assert await store.keys.key_change_serial("nl") == 0
    assert d.keys.nodes["nl"] == NL[0].public and await store.node_key("nl") == NL[0].public
    [(who, raw, code, _, _)] = await store.keys.refused_key_changes()
    assert (who, code) == ("nl", "cosign_threshold") and raw == s1  # the first not held
    # The same refused push again (a sender's retry, or a flood): no second row.
    with pytest.raises(CosignThreshold):
        await d.receive("nl", [s1, lone], CERT, NL[2].public)
    assert audit_events(store).count("key.change_refused") == 1
    with pytest.raises(SerialGap):
        await d.receive("nl", [change(2, 0, 2)], CERT, NL[2].public)
    with pytest.raises(CosignThreshold):  # only the CA's word for the new key
        await d.receive("nl", [], CERT, NL[1].public)
    await d.receive("nl", [s1], CERT, NL[1].public)
    with pytest.raises(SerialReplayed):  # back to the key s1 replaced
        await d.receive("nl", [], CERT, NL[0].public)
    assert await store.keys.refused_key_changes() == []  # cleared by the accepted change


async def test_a_co_signer_whose_key_is_revoked_is_not_counted(
        desk: tuple[KeyChangeDesk, NodeStore]) -> None:
    d, store = desk
    await d.receive("nl", [], CERT, NL[0].public)
    revocation = Revocation(Subject.NODE, "lu", LU.key_id, "stolen", 1, 0, "lu")
    await store.keys.add_revocation(revocation, sign_revocation(revocation, LU), now=0,
                                    forward_to=[], source="lu")
    with pytest.raises(CosignThreshold, match=r"by 1 .*\(be\)"):
        await d.receive("nl", [change(1, 0, 1)], CERT, NL[1].public)
    await d.receive("nl", [key_change.cosign(change(1, 0, 1), "de-nw", DE)], CERT,
                    NL[1].public)
