"""A revocation the node already holds, pushed again (by a peer, any number of times),
changes nothing, so it must not move the key cache's stamp: each move sends every envelope
being decided on the node back to be decided again (``KeysChanged``), and a peer could
keep the node's whole intake answering ``keys_changed`` for free (review16g). Real SQLite
files."""

from __future__ import annotations

from pathlib import Path

from liaison_net.core.rotation import Revocation, Subject, sign_revocation
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW
from tests.test_receive_many import ALICE, NL, _card


async def test_a_known_revocation_again_moves_no_stamp(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "be.db", "be")
    await store.open()
    try:
        await _card(store, ALICE, "nl", NL)
        rev = Revocation(Subject.OFFICER, ALICE.id, ALICE.signing.key_id, "stolen", NOW,
                         NOW, "nl")
        raw = sign_revocation(rev, NL)
        before = store.keys_stamp()
        assert await store.keys.add_revocation(rev, raw, now=NOW, forward_to=[], source="nl")
        first = store.keys_stamp()
        assert first is not None and first != before  # a new revocation moves it
        for _ in range(3):
            assert not await store.keys.add_revocation(rev, raw, now=NOW, forward_to=[],
                                                       source="nl")
        assert store.keys_stamp() == first
    finally:
        await store.close()
