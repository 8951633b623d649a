"""One rule for who may co-sign, at the peers and in `liaison admin keys apply`: a node
whose key this node holds as revoked co-signs nothing (services/key_changes.py)."""

from __future__ import annotations

from pathlib import Path

from liaison_net.core import crypto
from liaison_net.core.rotation import Revocation, Subject, sign_revocation
from liaison_net.services.key_changes import unrevoked_cosigners
from liaison_net.store.node_store import NodeStore

BE, LU, DE = (crypto.generate_signing_key() for _ in range(3))


async def test_revoked_cosigners_are_left_out(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "nl.sqlite3", "nl")
    await store.open()
    try:
        keys = {"be": BE.public, "lu": LU.public, "de-nw": DE.public}
        assert await unrevoked_cosigners(store.keys, keys, now=0) == keys
        revocation = Revocation(Subject.NODE, "lu", LU.key_id, "stolen", 1, 0, "lu")
        await store.keys.add_revocation(revocation, sign_revocation(revocation, LU), now=0,
                                        forward_to=[], source="lu")
        assert await unrevoked_cosigners(store.keys, keys, now=0) == {
            "be": BE.public, "de-nw": DE.public}
    finally:
        await store.close()
