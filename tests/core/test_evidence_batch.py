"""Batch evidence: one signature over a Merkle root covers many "accepted" statements; the
sender verifies each covered id alone, and any tampering is refused (an id not covered, a
changed root or leaf list, a wrong signer). The RFC 9162 tree itself too."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core import codec, crypto, evidence_batch, merkle
from liaison_net.core.effects import EVIDENCE, destination_evidence, unpack_args
from liaison_net.core.evidence import (
    Statement,
    Step,
    check_about,
    decode_body,
    make,
    sign_statement,
)
from liaison_net.core.evidence_batch import (
    BATCH_DOMAIN,
    MAX_BATCH_IDS,
    MAX_BATCH_LEAF_BYTES,
    MAX_MADE,
    Leaf,
    claimed,
    cut,
    evidence_about,
    fits,
    leaf_bytes,
    made_leaf,
    proof_for,
    sign_batch,
    verify_batch,
    verify_evidence,
)
from liaison_net.core.ids import new_envelope_id as _new_id
from liaison_net.core.sealing import SignerKey
from liaison_net.errors import BadSignature, Forbidden, LiaisonError, LimitExceeded, Malformed
from tests.core.factories import NOW, Officer, seal_from

NL = crypto.generate_signing_key()
BE = crypto.generate_signing_key()
SENDER = "nl/jdevries"
RECIPIENTS = ("be/mpeeters", "lu/cschmit")
LATER = NOW + 60_000


def new_envelope_id(now: int) -> bytes:
    return _new_id(now, crypto.random_bytes(10))


def lookup(key_id: bytes) -> SignerKey | None:
    return {NL.key_id: SignerKey("nl/node", NL.public),
            BE.key_id: SignerKey("be/node", BE.public)}.get(key_id)


def statements(n: int, by: str = "nl/node") -> list[Statement]:
    return [Statement(Step.ACCEPTED, new_envelope_id(NOW - 1000 + i), RECIPIENTS, by, NOW + i)
            for i in range(n)]


def believe(proof: bytes, envelope_id: bytes) -> Statement:
    """What the sender's client does with one id: verify the proof, then check the maker."""
    statement = verify_evidence(proof, lookup).statement
    check_about(statement, envelope_id=envelope_id, sender=SENDER, recipients=RECIPIENTS,
                now=LATER)
    return statement


def _path_hashes(leaves: list[bytes]) -> list[bytes]:
    return [merkle.leaf_hash(x) for x in leaves]


# --- the tree ----------------------------------------------------------------------------


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40, unique=True))
def test_every_leaf_has_an_inclusion_proof_to_the_root(data: list[bytes]) -> None:
    leaves = _path_hashes(data)
    root = merkle.root(leaves)
    for i, leaf in enumerate(leaves):
        proof = merkle.inclusion_proof(i, leaves)
        assert len(proof) <= max(1, len(leaves) - 1).bit_length()
        assert merkle.verify_inclusion(leaf, i, len(leaves), proof, root)
        assert not merkle.verify_inclusion(leaf, i, len(leaves), proof, b"\x00" * 32)
        if len(leaves) > 1:
            other = (i + 1) % len(leaves)
            assert not merkle.verify_inclusion(leaf, other, len(leaves), proof, root)
            assert not merkle.verify_inclusion(leaves[other], i, len(leaves), proof, root)
            assert not merkle.verify_inclusion(leaf, i, len(leaves), proof[:-1], root)
            bent = [hashlib.sha256(p).digest() for p in proof]
            assert not merkle.verify_inclusion(leaf, i, len(leaves), bent, root)


def test_the_tree_is_rfc_9162s() -> None:
    """Three leaves: MTH = H(1 || H(1 || h0 || h1) || h2), with h = H(0 || data)."""
    h = [hashlib.sha256(b"\x00" + d).digest() for d in (b"a", b"b", b"c")]
    left = hashlib.sha256(b"\x01" + h[0] + h[1]).digest()
    assert merkle.root(h) == hashlib.sha256(b"\x01" + left + h[2]).digest()
    assert merkle.inclusion_proof(2, h) == [left]


# --- batch statements --------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.data())
def test_a_batch_proves_each_covered_id_and_no_other(n: int, data: st.DataObject) -> None:
    covered = statements(n)
    content = sign_batch(covered, NL, at=LATER)
    assert [s.envelope for s in verify_batch(content, lookup)] == [s.envelope for s in covered]
    for s in covered:
        assert believe(evidence_about(content, s.envelope), s.envelope) == s
    stranger = new_envelope_id(NOW)
    with pytest.raises(Forbidden, match="does not cover"):
        proof_for(content, stranger)
    # A proof of one covered id shown for another is refused by the maker check.
    i, j = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n - 1))
    if i != j:
        with pytest.raises(Forbidden):
            believe(proof_for(content, covered[i].envelope), covered[j].envelope)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 20), st.data())
def test_any_tampering_with_a_proof_is_refused(n: int, data: st.DataObject) -> None:
    covered = statements(n)
    content = sign_batch(covered, NL, at=LATER)
    i = data.draw(st.integers(0, n - 1))
    proof = codec.unpack(proof_for(content, covered[i].envelope), what="p", max_bytes=1 << 20)
    what = data.draw(st.sampled_from(["leaf", "index", "path", "root", "size", "signer"]))
    if what == "leaf":  # another envelope's id, or another recipient, in the leaf
        s = covered[i]
        forged = Statement(s.step, new_envelope_id(NOW), s.recipients, s.by, s.at) \
            if data.draw(st.booleans()) else \
            Statement(s.step, s.envelope, ("de-nw/kmueller",), s.by, s.at)
        proof["leaf"] = codec.pack(forged.to_wire())
    elif what == "index":
        proof["index"] = (proof["index"] + data.draw(st.integers(1, n))) % (n + 1)
    elif what == "path":
        k = data.draw(st.integers(0, len(proof["path"]) - 1))
        proof["path"][k] = hashlib.sha256(proof["path"][k]).digest()
    else:  # the signed batch itself: a changed root or size, or signed by the wrong node
        key_id, body, signature = codec.unpack(proof["batch"], what="b", max_bytes=4096)
        fields = codec.unpack(body, what="b", max_bytes=4096)
        key = NL
        if what == "root":
            fields["root"] = hashlib.sha256(fields["root"]).digest()
        elif what == "size":
            fields["size"] += 1
        else:
            key = BE  # a real node key, but not the maker's
        body = codec.pack(fields)
        if what == "signer":
            signature, key_id = crypto.sign(key, BATCH_DOMAIN + body), key.key_id
        proof["batch"] = codec.pack([key_id, body, signature])
    with pytest.raises(LiaisonError):
        believe(codec.pack(proof), covered[i].envelope)


def test_a_changed_leaf_list_or_root_in_the_carrier_is_refused() -> None:
    covered = statements(5)
    content = codec.unpack(sign_batch(covered, NL, at=LATER), what="c", max_bytes=1 << 20)
    for leaves in (content["leaves"][:-1], [*content["leaves"][:-1],
                                            codec.pack(statements(1)[0].to_wire())],
                   list(reversed(content["leaves"]))):
        with pytest.raises(Forbidden):
            verify_batch(codec.pack({**content, "leaves": leaves}), lookup)


def test_a_batch_signature_is_not_a_single_statements_and_the_reverse() -> None:
    s = statements(1)[0]
    single = sign_statement(s, NL)
    assert believe(evidence_about(single, s.envelope), s.envelope) == s  # old ones verify
    _key_id, body, _signature = codec.unpack(single, what="s", max_bytes=4096)
    proof = {"v": 1, "batch": single, "leaf": body, "index": 0, "path": []}
    with pytest.raises((BadSignature, Malformed)):
        verify_evidence(codec.pack(proof), lookup)
    assert claimed(proof_for(sign_batch([s, *statements(1)], NL, at=LATER), s.envelope)) == s


def test_a_batch_is_bounded_and_of_one_maker_and_step() -> None:
    assert fits(statements(MAX_BATCH_IDS)) and not fits(statements(MAX_BATCH_IDS + 1))
    with pytest.raises(LimitExceeded):
        sign_batch(statements(MAX_BATCH_IDS + 1), NL, at=LATER)
    with pytest.raises(Malformed, match="one step by one maker"):
        sign_batch([*statements(1), *statements(1, by="be/node")], NL, at=LATER)
    twice = statements(1)
    with pytest.raises(Malformed, match="each envelope once"):
        sign_batch(twice * 2, NL, at=LATER)
    # A batch signed by be/node claiming nl/node's statements: refused on the maker.
    with pytest.raises(Forbidden, match="signed by be/node"):
        verify_batch(sign_batch(statements(2), BE, at=LATER), lookup)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 1024), min_size=1, max_size=700))
def test_cut_covers_all_in_order_each_run_fits_and_none_could_take_the_next(
        widths: list[int]) -> None:
    """The drain's grouping: every statement once, in order, each run within a batch's
    count and byte bounds, and no run ended early (greedy, so as few batches as can be)."""
    made = [Statement(Step.ACCEPTED, new_envelope_id(NOW - 1000 + i),
                      tuple(f"be/o{i}x{j:04d}" for j in range(w)), "nl/node", NOW)
            for i, w in enumerate(widths)]
    runs = cut(made)
    assert [i for a, b in runs for i in range(a, b)] == list(range(len(made)))
    for a, b in runs:
        assert fits(made[a:b])
    for a, b in runs[:-1]:
        assert len(made[a:b + 1]) > MAX_BATCH_IDS or \
            sum(len(leaf_bytes(s)) for s in made[a:b + 1]) > MAX_BATCH_LEAF_BYTES


def test_cut_at_the_count_bound() -> None:
    assert cut(statements(2 * MAX_BATCH_IDS + 44)) == [
        (0, MAX_BATCH_IDS), (MAX_BATCH_IDS, 2 * MAX_BATCH_IDS),
        (2 * MAX_BATCH_IDS, 2 * MAX_BATCH_IDS + 44)]


def test_cut_at_the_byte_bound() -> None:
    wide = [Statement(Step.ACCEPTED, new_envelope_id(NOW - 1000 + i),
                      tuple(f"be/officer{j:04d}" for j in range(1024)), "nl/node", NOW)
            for i in range(100)]
    runs = cut(wide)
    assert len(runs) > 2 and all(fits(wide[a:b]) for a, b in runs)
    assert [i for a, b in runs for i in range(a, b)] == list(range(100))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40))
def test_a_batch_of_stored_leaves_is_the_batch_of_its_statements(n: int) -> None:
    """The drain signs the statement bytes its effects hold (``Leaf.read``), packing none
    again: the carrier is byte for byte the one made from the statements, so it verifies
    for every id as before."""
    made = statements(n)
    leaves = [Leaf.read(leaf_bytes(s)) for s in made]
    assert [x.statement for x in leaves] == made
    assert cut(leaves) == cut(made)
    content = sign_batch(leaves, NL, at=LATER)
    assert content == sign_batch(made, NL, at=LATER)  # Ed25519 is deterministic
    assert verify_batch(content, lookup) == made
    for s in made:
        assert believe(evidence_about(content, s.envelope), s.envelope) == s


def test_a_leaf_is_read_only_from_canonical_bytes() -> None:
    """``Leaf.read`` keeps the bytes it was given as the leaf: it must refuse any other
    encoding of the same statement (else the root would cover bytes no one re-derives)."""
    s = statements(1)[0]
    raw = leaf_bytes(s)
    wire = s.to_wire()
    reordered = b"\x86" + b"".join(codec.pack(k) + codec.pack(wire[k])
                                    for k in reversed(sorted(wire)))
    with pytest.raises(Malformed):
        Leaf.read(reordered)
    with pytest.raises(Malformed):
        Leaf.read(raw + b"\x00")
    assert Leaf.read(raw).raw == raw



def test_a_statement_made_here_is_read_back_without_decoding() -> None:
    """The drain reads back the statements its own witness just made (``made_leaf``, in
    ``effects.evidence``): ``Leaf.read`` of exactly those bytes gives the statement made,
    decoded by no one (the very object: a decode builds an equal, new one), once; read
    again, or made elsewhere, they are decoded and checked as before."""
    header = seal_from(Officer("nl/jdevries"), [Officer("be/mpeeters"), Officer("be/jjanssens")],
                       b"x").header
    effects = destination_evidence(header, local=["be/mpeeters", "be/jjanssens"], at=LATER)
    made = [unpack_args(EVIDENCE, e.pack_args())["statement"] for e in effects]
    relayed = make(Step.RELAYED, header, recipient="be/mpeeters", at=LATER + 1)
    raw = made_leaf(relayed)
    assert Leaf.read(raw).statement is relayed  # not decoded
    again = Leaf.read(raw)  # taken out at the first read: decoded now
    assert again.statement == relayed and again.statement is not relayed
    for raw in made:
        leaf = Leaf.read(raw)
        assert leaf.raw == raw and leaf.statement == decode_body(raw)
        assert raw not in evidence_batch._MADE
    elsewhere = statements(1)[0]
    assert Leaf.read(leaf_bytes(elsewhere)).statement == elsewhere


def test_the_statements_made_here_are_remembered_within_a_bound() -> None:
    """A statement made for an effect that is never stored (a duplicate's) is never read
    back: the oldest are dropped, so the memory stays bounded, and a dropped one is decoded
    when read."""
    header = seal_from(Officer("nl/jdevries"), [Officer("be/mpeeters")], b"x").header
    made = [make(Step.RELAYED, header, recipient="be/mpeeters", at=LATER + i)
            for i in range(MAX_MADE + 10)]
    raws = [made_leaf(s) for s in made]
    assert len(evidence_batch._MADE) == MAX_MADE
    assert Leaf.read(raws[0]).statement == made[0]  # dropped: decoded
    assert Leaf.read(raws[0]).statement is not made[0]
    assert Leaf.read(raws[-1]).statement is made[-1]
    evidence_batch._MADE.clear()


_OFFICER = st.from_regex(r"\A(be|nl|lu|de-nw)/[a-z][a-z0-9-]{0,20}\Z")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(Step)), st.binary(min_size=16, max_size=16),
       st.lists(_OFFICER, min_size=1, max_size=40, unique=True), _OFFICER,
       st.integers(1, (1 << 48) - 1))
def test_a_leafs_bytes_are_the_canonical_packing_of_its_statement(
        step: Step, envelope: bytes, recipients: list[str], by: str, at: int) -> None:
    """``leaf_bytes`` writes the map in sorted key order itself (``codec.pack_built``):
    byte for byte what ``codec.pack`` gives, for every step, recipient count and time."""
    named = sorted(recipients) if step is Step.ACCEPTED else sorted(recipients)[:1]
    s = Statement(step, envelope, tuple(named), by, at)
    assert leaf_bytes(s) == codec.pack(s.to_wire())
    assert Leaf.read(leaf_bytes(s)).statement == s


def test_a_leaf_whose_time_is_not_an_int_is_refused_as_pack_refuses_it() -> None:
    """The ordered packing is taken only for an int time; a float is refused as before."""
    s = Statement(Step.ACCEPTED, bytes(16), ("be/a",), "nl/node", 1.5)  # type: ignore[arg-type]
    with pytest.raises(Malformed):
        leaf_bytes(s)
