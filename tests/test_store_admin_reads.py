"""What `liaison admin` reads, it reads through the store, opened read-only: the counts of
`status`, the keys and revocations of `keys list` and `revocations`; and such a store
never writes, so the running node stays the one writer."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from liaison_net.core import crypto
from liaison_net.core.audit import detail
from liaison_net.core.rotation import Revocation, Subject, sign_revocation
from liaison_net.errors import NotFound, Unavailable
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, seal_from

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")


async def _fill(path: Path) -> bytes:
    """A node database with one envelope queued for be and one revocation pending at be."""
    store = NodeStore(path, "nl")
    await store.open()
    try:
        env = seal_from(ALICE, [BOB], now=NOW, expires=NOW + 3_600_000)
        await store.accept(env, now=NOW, actor=ALICE.id, event="envelope.accepted",
                           local_recipients=[], remote_nodes=["be"], audit_detail=detail())
        node_key = crypto.signing_key_from_seed(bytes(32))
        revocation = Revocation(Subject.OFFICER, ALICE.id, b"\x01" * 16, "stolen", serial=NOW,
                                effective=NOW, authority="nl")
        assert await store.keys.add_revocation(revocation, sign_revocation(revocation, node_key),
                                               now=NOW, forward_to=["be", "lu"], source="nl")
        await store.keys.revocations_acknowledged("lu", [revocation.key_id])
        return env.id
    finally:
        await store.close()


def _audit_rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM audit").fetchone()[0])


async def test_admin_reads_come_from_store_methods(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    await _fill(path)
    store = NodeStore(path, "nl")
    await store.open_read_only()
    try:
        status = await store.status()
        assert (status.node, status.envelopes, status.queued) == ("nl", 1, {"be": 1})
        assert status.audit_entries == 2
        [revoked] = await store.keys.revocations()
        assert (revoked.principal, revoked.key_id, revoked.pending_peers) == (
            ALICE.id, b"\x01" * 16, ("be",))
        assert await store.keys.known_keys() == []  # no cards, no peer keys yet
    finally:
        await store.close()


async def test_a_read_only_store_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    await _fill(path)
    before = _audit_rows(path)
    store = NodeStore(path, "nl")
    await store.open_read_only()
    try:
        with pytest.raises(Unavailable):
            await store.audit(now=NOW, event="key.revoked", actor="nl", audit_detail=detail())
    finally:
        await store.close()
    assert _audit_rows(path) == before


async def test_a_read_only_store_does_not_create_a_database(tmp_path: Path) -> None:
    path = tmp_path / "nothing-here.sqlite3"
    store = NodeStore(path, "nl")
    with pytest.raises(NotFound):
        await store.open_read_only()
    assert not path.exists()
