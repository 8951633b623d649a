"""Node key changes: believed only with the threshold of other national nodes' co-signatures,
each counted once, the old key's signature for a rotation, and the next serial."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core import codec, crypto, key_change, rotation
from liaison_net.core.key_change import KeyChange, Kind
from liaison_net.errors import (
    BadSignature,
    CosignThreshold,
    Forbidden,
    Malformed,
    SerialGap,
    SerialReplayed,
    UnknownKey,
)

NODES = ("be", "nl", "lu", "de-nw")
KEYS = {n: crypto.signing_key_from_seed(bytes([i + 1]) * 32) for i, n in enumerate(NODES)}
NEW = crypto.signing_key_from_seed(b"\x77" * 32)
OUTSIDER = crypto.signing_key_from_seed(b"\x66" * 32)


def others(subject: str = "nl") -> dict[str, bytes]:
    """What a verifier holds: every national node's key but the subject's."""
    return {n: k.public for n, k in KEYS.items() if n != subject}


#: Every national node's key, the subject's too: the subject must still not count.
EVERY = {n: k.public for n, k in KEYS.items()}


def change(kind: Kind = Kind.ROTATE, serial: int = 1, node: str = "nl") -> KeyChange:
    old = KEYS[node].key_id if kind is not Kind.REVOKE else b"\x01" * 16
    return KeyChange(kind, node, old, None if kind is Kind.REVOKE else NEW.public, serial,
                     1_700_000_000_000, "scheduled rotation")


def proposed(kind: Kind = Kind.ROTATE, serial: int = 1) -> bytes:
    signer = None if kind is Kind.REPLACE else KEYS["nl"]
    return key_change.propose(change(kind, serial), signer)


def cosigned(raw: bytes, *signers: str) -> bytes:
    for s in signers:
        raw = key_change.cosign(raw, s, KEYS[s])
    return raw


def verify(raw: bytes, *, last: int | None = 0, threshold: int = 2,
           cosigners: dict[str, bytes] | None = None) -> key_change.Verified:
    return key_change.verify(raw, subject_key=KEYS["nl"].public,
                             cosigner_keys=others() if cosigners is None else cosigners,
                             threshold=threshold, last_serial=last, expected_node="nl")


@pytest.mark.parametrize("kind", list(Kind))
def test_two_of_the_other_three_make_a_change_believed(kind: Kind) -> None:
    verified = verify(cosigned(proposed(kind), "be", "lu"))
    assert verified.counted == ("be", "lu")
    assert verified.change.kind is kind and verified.change.serial == 1


@pytest.mark.parametrize("signers", [(), ("be",), ("be", "be"), ("be", "nl"),
                                     ("nl", "nl")])
def test_too_few_distinct_other_nodes_is_refused(signers: tuple[str, ...]) -> None:
    raw = proposed()
    body = key_change.split(raw)[1]
    # Built by hand: ``cosign`` itself refuses the subject and replaces repeats.
    sigs = [[s, crypto.sign(KEYS[s], key_change.COSIGN_DOMAIN + body)] for s in signers]
    forged = codec.pack(["nl", body, key_change.split(raw)[2], sigs])
    with pytest.raises(CosignThreshold):
        verify(forged, cosigners=EVERY)


def test_a_non_member_an_unknown_or_a_revoked_co_signer_is_not_counted() -> None:
    raw = cosigned(proposed(), "be")
    body = key_change.split(raw)[1]
    fr = ["fr", crypto.sign(OUTSIDER, key_change.COSIGN_DOMAIN + body)]
    forged = codec.pack(["nl", body, key_change.split(raw)[2],
                         [*[[n, s] for n, s in key_change.split(raw)[3]], fr]])
    with pytest.raises(CosignThreshold):
        verify(forged)  # fr is no national node: 1 of 2
    # lu's key is not among the verifier's (unknown, or revoked and so left out).
    without_lu = {n: k for n, k in others().items() if n != "lu"}
    with pytest.raises(CosignThreshold):
        verify(cosigned(proposed(), "be", "lu"), cosigners=without_lu)


def test_a_co_signature_under_the_wrong_domain_or_key_counts_for_nothing() -> None:
    raw = proposed()
    body = key_change.split(raw)[1]
    wrong_domain = ["lu", crypto.sign(KEYS["lu"], key_change.DOMAIN + body)]
    wrong_key = ["de-nw", crypto.sign(KEYS["be"], key_change.COSIGN_DOMAIN + body)]
    be = ["be", crypto.sign(KEYS["be"], key_change.COSIGN_DOMAIN + body)]
    forged = codec.pack(["nl", body, key_change.split(raw)[2], [be, wrong_domain, wrong_key]])
    with pytest.raises(CosignThreshold):
        verify(forged)


def test_the_subject_cannot_co_sign_itself() -> None:
    with pytest.raises(Forbidden):
        key_change.cosign(proposed(), "nl", KEYS["nl"])


def test_serials_are_strictly_sequential() -> None:
    raw = cosigned(proposed(serial=3), "be", "lu")
    assert verify(raw, last=2).change.serial == 3
    with pytest.raises(SerialReplayed):
        verify(raw, last=3)
    with pytest.raises(SerialReplayed):
        verify(raw, last=7)
    with pytest.raises(SerialGap):
        verify(raw, last=1)


def test_a_rotation_needs_the_old_keys_signature() -> None:
    raw = cosigned(proposed(), "be", "lu")
    node, body, _, sigs = key_change.split(raw)
    unsigned = codec.pack([node, body, None, [[n, s] for n, s in sigs]])
    with pytest.raises(Malformed, match="must be signed"):
        verify(unsigned)
    by_new = codec.pack([node, body, crypto.sign(NEW, key_change.DOMAIN + body),
                         [[n, s] for n, s in sigs]])
    with pytest.raises(BadSignature):
        verify(by_new)
    with pytest.raises(BadSignature):  # the verifier holds another current key
        key_change.verify(raw, subject_key=KEYS["be"].public, cosigner_keys=others(),
                          threshold=2, last_serial=0)
    # Signed by the current key, but naming another key as the one it replaces.
    other = codec.pack(dict(change().to_wire(), old_key_id=b"\x02" * 16))
    cosigs = [[s, crypto.sign(KEYS[s], key_change.COSIGN_DOMAIN + other)] for s in ("be", "lu")]
    with pytest.raises(Forbidden, match="not the current key"):
        verify(codec.pack(["nl", other, crypto.sign(KEYS["nl"], key_change.DOMAIN + other),
                           cosigs]))


def test_a_replacement_carries_no_signature_of_the_lost_key() -> None:
    with pytest.raises(Malformed):
        key_change.propose(change(Kind.REPLACE), KEYS["nl"])
    raw = cosigned(proposed(Kind.REPLACE), "be", "de-nw")
    assert verify(raw).change.kind is Kind.REPLACE
    with pytest.raises(Forbidden, match="not the current key"):  # replaces a key not held
        key_change.verify(raw, subject_key=KEYS["lu"].public, cosigner_keys=others(),
                          threshold=2, last_serial=0)
    with pytest.raises(UnknownKey):
        key_change.verify(cosigned(proposed(), "be", "lu"), subject_key=None,
                          cosigner_keys=others(), threshold=2, last_serial=0)


def test_a_body_naming_another_node_than_its_frame_is_refused() -> None:
    raw = cosigned(key_change.propose(change(node="lu"), KEYS["lu"]), "be", "nl")
    _, body, sig, sigs = key_change.split(raw)
    relabelled = codec.pack(["nl", body, sig, [[n, s] for n, s in sigs]])
    with pytest.raises((Malformed, CosignThreshold, BadSignature)):
        verify(relabelled)
    with pytest.raises(Forbidden):
        verify(raw)  # presented as nl's


def test_a_revocation_is_read_by_clients_from_the_nodes_signature() -> None:
    raw = cosigned(proposed(Kind.REVOKE), "be", "lu")
    revocation = rotation.verify_revocation(raw, {"nl": KEYS["nl"].public})
    assert revocation.subject is rotation.Subject.NODE and revocation.principal == "nl"
    assert revocation.key_id == b"\x01" * 16
    with pytest.raises(Malformed):
        rotation.verify_revocation(cosigned(proposed(), "be", "lu"),
                                   {"nl": KEYS["nl"].public})


def test_weak_new_keys_and_bounds_are_refused() -> None:
    with pytest.raises(Malformed):
        key_change.propose(KeyChange(Kind.ROTATE, "nl", KEYS["nl"].key_id, b"\x00" * 32, 1,
                                     0, "x"), KEYS["nl"])
    with pytest.raises(Malformed):
        key_change.propose(KeyChange(Kind.ROTATE, "nl", KEYS["nl"].key_id, NEW.public, 0,
                                     0, "x"), KEYS["nl"])
    with pytest.raises(Malformed):
        key_change.propose(KeyChange(Kind.ROTATE, "nl", KEYS["nl"].key_id, NEW.public, 1,
                                     0, " "), KEYS["nl"])
    body = key_change.split(proposed())[1]
    many = [["be", b"\x00" * 64]] * (key_change.MAX_COSIGNATURES + 1)
    with pytest.raises(Malformed):
        verify(codec.pack(["nl", body, None, many]))


@settings(max_examples=200)
@given(signers=st.lists(st.sampled_from([*NODES, "fr"]), max_size=8),
       forged=st.sets(st.integers(0, 7)), threshold=st.integers(1, 3))
def test_only_distinct_valid_other_member_signatures_count(
        signers: list[str], forged: set[int], threshold: int) -> None:
    """Any mix of missing, repeated, forged, subject and non-member co-signatures: the
    change is believed exactly when the distinct other national nodes with a valid
    signature reach the threshold."""
    raw = proposed()
    node, body, sig, _ = key_change.split(raw)
    sigs = []
    valid: set[str] = set()
    for i, s in enumerate(signers):
        key = KEYS.get(s, OUTSIDER)
        message = key_change.COSIGN_DOMAIN + body
        signature = crypto.sign(key, message)
        if i in forged:
            signature = bytes([signature[0] ^ 1]) + signature[1:]
        elif s in others():
            valid.add(s)
        sigs.append([s, signature])
    statement = codec.pack([node, body, sig, sigs])
    if len(valid) >= threshold:
        assert set(verify(statement, threshold=threshold, cosigners=EVERY).counted) == valid
    else:
        with pytest.raises(CosignThreshold):
            verify(statement, threshold=threshold, cosigners=EVERY)


@settings(max_examples=200)
@given(index=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_any_flipped_bit_is_refused_or_changes_nothing(index: int, bit: int) -> None:
    raw = bytearray(cosigned(proposed(), "be", "lu"))
    raw[index % len(raw)] ^= 1 << bit
    try:
        verified = verify(bytes(raw))
    except (Malformed, BadSignature, CosignThreshold, Forbidden, UnknownKey):
        return
    assert verified.change == change()  # a flip in a spare co-signature byte, say
