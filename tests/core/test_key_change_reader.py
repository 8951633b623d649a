"""What an officer's client believes of a node's key: only a co-signed chain from the key it
holds, with ``reader_threshold`` co-signatures of the other national nodes (protocol §19)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core import crypto, key_change
from liaison_net.core.key_change import KeyChange, Kind
from liaison_net.errors import BadSignature, CosignThreshold, Malformed, SerialGap

NODES = ("be", "nl", "lu", "de-nw")
KEYS = {n: crypto.signing_key_from_seed(bytes([i + 1]) * 32) for i, n in enumerate(NODES)}
NEW = crypto.signing_key_from_seed(b"\x77" * 32)
NEWER = crypto.signing_key_from_seed(b"\x78" * 32)
HELD = {n: k.public for n, k in KEYS.items() if n != "nl"}  # the client's keys of the others


def statement(old: crypto.SigningKeyPair, new: crypto.SigningKeyPair, serial: int,
              *cosigners: str, kind: Kind = Kind.ROTATE) -> bytes:
    raw = key_change.propose(KeyChange(kind, "nl", old.key_id, new.public, serial,
                                       1_700_000_000_000, "scheduled rotation"),
                             None if kind is Kind.REPLACE else old)
    for s in cosigners:
        raw = key_change.cosign(raw, s, KEYS[s])
    return raw


def follow(chain: list[bytes], held: bytes | None = None) -> tuple[bytes, int]:
    others = HELD
    end, applied = key_change.follow("nl", chain, held or KEYS["nl"].public, others,
                                     key_change.reader_threshold(len(others)))
    return end, len(applied)


def test_the_reader_threshold_is_the_network_default_capped_by_the_nodes_held() -> None:
    assert key_change.reader_threshold(3) == key_change.DEFAULT_THRESHOLD == 2
    assert key_change.reader_threshold(8) == 2
    assert key_change.reader_threshold(1) == 1  # a two-node network
    assert key_change.reader_threshold(0) == 1  # never zero: nobody vouching is no vouching


def test_a_rotation_with_two_cosignatures_moves_the_held_key() -> None:
    assert follow([statement(KEYS["nl"], NEW, 1, "be", "lu")]) == (NEW.public, 1)


def test_one_cosignature_is_not_enough() -> None:
    with pytest.raises(CosignThreshold):
        follow([statement(KEYS["nl"], NEW, 1, "be")])


def test_a_replacement_needs_the_threshold_too() -> None:
    assert follow([statement(KEYS["nl"], NEW, 1, "be", "de-nw", kind=Kind.REPLACE)]) == (
        NEW.public, 1)
    with pytest.raises(CosignThreshold):
        follow([statement(KEYS["nl"], NEW, 1, "lu", kind=Kind.REPLACE)])


def test_no_chain_keeps_the_held_key() -> None:
    assert follow([]) == (KEYS["nl"].public, 0)


def test_changes_before_the_held_key_are_history() -> None:
    chain = [statement(KEYS["nl"], NEW, 1, "be", "lu"), statement(NEW, NEWER, 2, "be", "lu")]
    assert follow(chain) == (NEWER.public, 2)
    assert follow(list(reversed(chain)), held=NEW.public) == (NEWER.public, 1)
    assert follow(chain, held=NEWER.public) == (NEWER.public, 0)


def test_a_gap_or_a_forged_link_believes_nothing() -> None:
    with pytest.raises(SerialGap):
        follow([statement(KEYS["nl"], NEW, 1, "be", "lu"), statement(NEW, NEWER, 3, "be", "lu")])
    good = statement(KEYS["nl"], NEW, 1, "be", "lu")
    node, body, _, cosignatures = key_change.split(good)
    forged = key_change.Statement(node, body, key_change.decode(good).change,
                                  crypto.sign(NEWER, b"x"), cosignatures).to_bytes()
    with pytest.raises(BadSignature):
        follow([forged])


def test_a_chain_longer_than_the_limit_is_refused() -> None:
    with pytest.raises(Malformed):
        follow([statement(KEYS["nl"], NEW, 1, "be", "lu")] * (key_change.MAX_CHAIN + 1))


def test_a_node_key_revocation_is_told_from_an_officer_revocation() -> None:
    revoke = key_change.propose(KeyChange(Kind.REVOKE, "nl", b"\x01" * 16, None, 1, 1, "lost"),
                                KEYS["nl"])
    assert key_change.is_key_change(revoke)
    assert not key_change.is_key_change(b"\x93\xa2nl\xc4\x01x\xc4\x01y")  # [nl, b"x", b"y"]
    assert not key_change.is_key_change(b"junk")


@settings(max_examples=60, deadline=None)
@given(signers=st.lists(st.sampled_from([*NODES, "xx"]), max_size=6),
       held_nodes=st.sets(st.sampled_from(["be", "lu", "de-nw"])))
def test_believed_exactly_when_enough_held_other_nodes_cosigned(
        signers: list[str], held_nodes: set[str]) -> None:
    """Whatever co-signs (the subject, a repeat, a node the client holds no key of, an
    outsider), the key moves exactly when distinct held other nodes reach the threshold."""
    raw = statement(KEYS["nl"], NEW, 1)
    for s in signers:
        key = KEYS.get(s, NEWER)
        raw = key_change.cosign(raw, s, key) if s != "nl" else raw
    held = {n: KEYS[n].public for n in held_nodes}
    counted = {s for s in signers if s in held_nodes}
    threshold = key_change.reader_threshold(len(held))
    try:
        end, _ = key_change.follow("nl", [raw], KEYS["nl"].public, held, threshold)
    except CosignThreshold:
        assert len(counted) < threshold
    else:
        assert len(counted) >= threshold and end == NEW.public
