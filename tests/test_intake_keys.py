"""``intake.Keys.node_signer``: the node keys a received envelope may be signed with, found
by key id; the ids are remembered by key (a hash per node key per envelope was 1.4 % of a
destination's event loop at catch-up), so a key rotated in ``nodes`` is never stale."""

from __future__ import annotations

from liaison_net.core import crypto
from liaison_net.core.ids import node_principal
from liaison_net.services.intake import Keys


def test_a_rotated_node_key_is_found_and_the_old_one_no_longer() -> None:
    own, nl, nl_next = (crypto.generate_signing_key() for _ in range(3))
    keys = Keys(own=own, nodes={"be": own.public, "nl": nl.public})
    for _ in range(3):
        found = keys.node_signer(nl.key_id)
        assert found is not None and found.principal == node_principal("nl")
        assert found.public_key == nl.public
    assert keys.node_signer(nl_next.key_id) is None
    keys.nodes["nl"] = nl_next.public  # what a key change or a directory update does
    found = keys.node_signer(nl_next.key_id)
    assert found is not None and found.public_key == nl_next.public
    assert keys.node_signer(nl.key_id) is None
    assert keys.node_signer(crypto.generate_signing_key().key_id) is None


def test_the_remembered_ids_stay_bounded_through_many_rotations() -> None:
    own = crypto.generate_signing_key()
    keys = Keys(own=own, nodes={"be": own.public})
    for _ in range(200):
        key = crypto.generate_signing_key()
        keys.nodes["nl"] = key.public
        assert keys.node_signer(key.key_id) is not None
        assert len(keys._ids) <= 4 * len(keys.nodes) + 16


def test_a_removed_node_key_is_forgotten_at_once_and_unknown_ids_add_nothing() -> None:
    """Review16c: a node taken out of ``nodes`` (revoked, left the federation) signs
    nothing from the next envelope on, though its id is remembered; a peer naming key ids
    by the thousand makes the memo no larger (it is keyed by the keys we hold)."""
    own, lu = crypto.generate_signing_key(), crypto.generate_signing_key()
    keys = Keys(own=own, nodes={"be": own.public, "lu": lu.public})
    assert keys.node_signer(lu.key_id) is not None
    del keys.nodes["lu"]
    assert keys.node_signer(lu.key_id) is None
    remembered = len(keys._ids)
    for n in range(2000):
        assert keys.node_signer(n.to_bytes(16, "big")) is None
    assert len(keys._ids) == remembered
