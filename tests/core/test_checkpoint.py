"""Audit checkpoints: signed and cosigned under their own domains, judged by the witness
(trust on first sight, then only proven growth), and the first entry a rewrite changed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison_net.core import checkpoint as cp
from liaison_net.core import codec, crypto, merkle
from liaison_net.core.kept_leaves import MARK_BYTES, KeptLeaves, keep
from liaison_net.errors import BadSignature, Malformed

NODE = crypto.signing_key_from_seed(b"\x01" * 32)
WITNESS = crypto.signing_key_from_seed(b"\x02" * 32)


def _leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [merkle.leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


def _cp(leaves: list[bytes], at: int = 1000) -> cp.Checkpoint:
    return cp.Checkpoint("nl", len(leaves), merkle.root(leaves), at)


def test_signed_checkpoint_verifies_and_a_changed_byte_does_not() -> None:
    signed = cp.sign_checkpoint(_cp(_leaves(5)), NODE)
    assert cp.verify_checkpoint(signed.raw, NODE.public, node="nl").checkpoint == signed.checkpoint
    assert cp.claimed_node(signed.raw) == "nl"
    with pytest.raises(BadSignature):
        cp.verify_checkpoint(signed.raw, WITNESS.public, node="nl")
    with pytest.raises(Malformed):
        cp.verify_checkpoint(signed.raw, NODE.public, node="be")
    body, sig = codec.unpack(signed.raw, what="t", max_bytes=1000)
    forged = codec.pack([body.replace(b"nl", b"be"), sig])
    with pytest.raises(BadSignature):
        cp.verify_checkpoint(forged, NODE.public, node="be")
    # A signature of the same body under another domain (a cosignature) is no checkpoint.
    other = codec.pack([body, crypto.sign(NODE, cp.COSIGN_DOMAIN + body)])
    with pytest.raises(BadSignature):
        cp.verify_checkpoint(other, NODE.public, node="nl")
    assert cp.claimed_node(b"\xc1garbage") is None


def test_cosignature_binds_witness_checkpoint_and_time() -> None:
    signed = cp.sign_checkpoint(_cp(_leaves(5)), NODE)
    cosig = cp.cosign(signed, witness="be", key=WITNESS, at=7)
    assert cp.verify_cosignature(cosig.to_wire(), signed, WITNESS.public, witness="be") == cosig
    with pytest.raises(Malformed):
        cp.verify_cosignature(cosig.to_wire(), signed, WITNESS.public, witness="lu")
    other = cp.sign_checkpoint(_cp(_leaves(6)), NODE)
    with pytest.raises(BadSignature):
        cp.verify_cosignature(cosig.to_wire(), other, WITNESS.public, witness="be")
    later = codec.pack(["be", 8, cosig.signature])
    with pytest.raises(BadSignature):
        cp.verify_cosignature(later, signed, WITNESS.public, witness="be")


@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_judge_witnesses_proven_growth(pair: tuple[int, int]) -> None:
    m, n = pair
    leaves = _leaves(n)
    old, new = _cp(leaves[:m]), _cp(leaves)
    proofs = {m: merkle.consistency_proof(m, leaves)} if m < n else {}
    same = old if m == n else None
    assert cp.judge(new, latest=old, same_size=same, proofs=proofs).verdict is cp.Verdict.WITNESSED
    if m < n:
        asked = cp.judge(new, latest=old, same_size=None, proofs={})
        assert (asked.verdict, asked.need_from) == (cp.Verdict.NEED_PROOF, (m,))
        # A history that changed an entry the old checkpoint covered: no proof will do.
        forked = [*leaves[:m - 1], merkle.leaf_hash(b"edited"), *leaves[m:]]
        assert cp.judge(_cp(forked), latest=old, same_size=None,
                        proofs={m: merkle.consistency_proof(m, forked)}
                        ).verdict is cp.Verdict.INCONSISTENT
        assert cp.judge(old, latest=new, same_size=None,
                        proofs={}).verdict is cp.Verdict.ROLLBACK


def test_judge_first_sight_and_split_view() -> None:
    a = _cp(_leaves(5))
    b = _cp(_leaves(5, b"other"))
    assert cp.judge(a, latest=None, same_size=None, proofs={}).verdict is cp.Verdict.WITNESSED
    assert cp.judge(b, latest=a, same_size=a, proofs={}).verdict is cp.Verdict.SPLIT_VIEW
    assert cp.judge(b, latest=a, same_size=None, proofs={}).verdict is cp.Verdict.SPLIT_VIEW
    assert cp.Verdict.SPLIT_VIEW.alarm and not cp.Verdict.NEED_PROOF.alarm


def test_a_heard_checkpoint_must_be_proven_too() -> None:
    """A node shows this witness one log and another witness a longer, different one: the
    other's checkpoint, heard of here, must be a prefix of the next one offered."""
    ours = _leaves(10)
    theirs = [*ours[:6], *_leaves(6, b"fork")]  # 12 entries, parting at entry 7
    latest, heard = _cp(ours[:8]), _cp(theirs)
    grown = _leaves(15)[:14]  # the log we were shown, grown honestly: ours[:10] + 4
    grown[:10] = ours
    asked = cp.judge(_cp(grown), latest=latest, same_size=None, heard=[heard],
                     proofs={8: merkle.consistency_proof(8, grown)})
    assert (asked.verdict, asked.need_from) == (cp.Verdict.NEED_PROOF, (12,))
    judged = cp.judge(_cp(grown), latest=latest, same_size=None, heard=[heard], proofs={
        8: merkle.consistency_proof(8, grown), 12: merkle.consistency_proof(12, grown)})
    assert judged.verdict is cp.Verdict.INCONSISTENT
    # Offered below what was heard: a rollback; at its size with another root: split view.
    assert cp.judge(_cp(ours), latest=latest, same_size=None, heard=[heard],
                    proofs={}).verdict is cp.Verdict.ROLLBACK
    assert cp.judge(_cp(_leaves(12)), latest=latest, same_size=None, heard=[heard],
                    proofs={}).verdict is cp.Verdict.SPLIT_VIEW
    # An honest node's heard checkpoint is a prefix: proven, and reported as such.
    honest = cp.judge(_cp(grown), latest=latest, same_size=None, heard=[_cp(grown[:12])],
                      proofs={8: merkle.consistency_proof(8, grown),
                              12: merkle.consistency_proof(12, grown)})
    assert honest.verdict is cp.Verdict.WITNESSED and honest.proven == (_cp(grown[:12]),)


def _kept(original: list[bytes], sizes: list[int]) -> KeptLeaves:
    """What a node keeps with own checkpoints at ``sizes`` of the log ``original``."""
    log, kept, since = merkle.MerkleLog(original), KeptLeaves(), 0
    for size in sizes:
        assert kept.add_kept(size, keep(log, since, size))
        since = size
    return kept


def test_first_difference_names_the_entry() -> None:
    original = _leaves(250)
    sizes = [40, 100, 230]
    signed = _cp(original[:230])
    kept = _kept(original, sizes)
    assert cp.first_difference(original, signed, original=kept) is None
    cut = original[:25]
    diff = cp.first_difference(cut, signed, original=kept)
    assert diff is not None and (diff.first_index, diff.exact, diff.truncated) == (25, True, True)
    assert diff.kept_range == (0, 64)
    # 230 = 3 blocks of 64, then subtrees of 32, 4 and 2.
    for at, kept_range in {12: (0, 64), 70: (64, 128), 199: (192, 224), 224: (224, 228),
                           229: (228, 230)}.items():
        edited = [*original[:at], *_leaves(250 - at, b"recomputed")]
        diff = cp.first_difference(edited, signed, original=kept)
        assert diff is not None and (diff.first_index, diff.exact) == (at, True), at
        assert diff.kept_range == kept_range
    # Without the kept leaves (or with forged ones), only the range is known.
    edited = [*original[:12], *_leaves(238, b"recomputed")]
    diff = cp.first_difference(edited, signed, known_good=10,
                               original=_kept(_leaves(250, b"forged"), sizes))
    assert diff is not None and (diff.first_index, diff.exact, diff.kept_range) == (
        10, False, None)
    diff = cp.first_difference(edited, signed, known_good=10, original=None)
    assert diff is not None and (diff.first_index, diff.exact) == (10, False)



def test_a_rewritten_mark_never_names_an_entry_a_witnessed_root_shows_unchanged() -> None:
    """Entry 100 rewritten (block [64, 128)); a checkpoint of 96 witnessed, which the log
    still matches; the operator also rewrote the mark kept of entry 70. The name may move
    only among the entries no signed root vouches for: 96 to 127."""
    original = _leaves(200)
    log = merkle.MerkleLog(original)
    first, second = bytearray(keep(log, 0, 96)), keep(log, 96, 200)
    first[8 + 70 * MARK_BYTES] ^= 0xFF
    kept = KeptLeaves()
    assert kept.add_kept(96, bytes(first)) and kept.add_kept(200, second)
    signed = _cp(original)
    assert kept.root() == signed.root  # the marks are under no root
    edited = [*original[:100], *_leaves(100, b"rewritten")]
    diff = cp.first_difference(edited, signed, known_good=96, original=kept)
    assert diff is not None and (diff.first_index, diff.exact, diff.kept_range) == (
        100, True, (96, 128))
    assert diff.named_by_mark
    # Rows before schema 20 kept the full leaves: the name is under the root.
    full = KeptLeaves()
    assert full.add_full(96, log.leaves(0, 96)) and full.add_full(200, log.leaves(96, 200))
    diff = cp.first_difference(edited, signed, known_good=96, original=full)
    assert diff is not None and (diff.first_index, diff.exact, diff.named_by_mark) == (
        100, True, False)
    # Every mark from 96 on rewritten to match: no name, the range from the known prefix.
    for i in range(96, 128):
        off = 8 + (i - 96) * MARK_BYTES
        second = second[:off] + edited[i][:MARK_BYTES] + second[
            off + MARK_BYTES:]
    kept = KeptLeaves()
    assert kept.add_kept(96, bytes(first)) and kept.add_kept(200, second)
    diff = cp.first_difference(edited, signed, known_good=96, original=kept)
    assert diff is not None and (diff.first_index, diff.exact, diff.kept_range) == (
        96, False, (96, 128))

def test_witnessed_by_counts_cosignatures_under_any_given_key_of_their_witness() -> None:
    signed = cp.sign_checkpoint(_cp(_leaves(5)), NODE)
    old_be = cp.cosign(signed, witness="be", key=WITNESS, at=1).to_wire()
    new_key = crypto.signing_key_from_seed(b"\x03" * 32)
    lu = cp.cosign(signed, witness="lu", key=new_key, at=1).to_wire()
    own = cp.cosign(signed, witness="nl", key=NODE, at=1).to_wire()
    keys = {"be": [new_key.public, WITNESS.public], "lu": [WITNESS.public], "nl": [NODE.public]}
    got, witnesses = cp.witnessed_by(signed.raw, {"be": old_be, "lu": lu, "nl": own}, keys)
    # BE under its replaced key counts; LU's under a key not its own does not; nor the
    # node's own signature on its checkpoint.
    assert got.checkpoint == signed.checkpoint and witnesses == ["be"]
