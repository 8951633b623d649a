"""Four-eyes administration statements (core/admin_ops.py): signed by each administrator's
own key, the approval names the proposal by the hash of its signed bytes, and the same
person twice, by name or by key, is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison_net.core import admin_ops, codec, crypto
from liaison_net.errors import BadSignature, LiaisonError, Malformed, PolicyRefused, UnknownKey
from tests.core.factories import NOW

ALICE, BOB = crypto.generate_signing_key(), crypto.generate_signing_key()
ADMINS = {"alice": ALICE.public, "bob": BOB.public}
OP = admin_ops.AdminOp("revoke", "nl", b'{"subject": "officer"}', "alice", NOW)


def approval(by: str, key: crypto.SigningKeyPair, op: str) -> admin_ops.OpApproval:
    return admin_ops.verify_approval(
        admin_ops.sign_approval(admin_ops.OpApproval(op, by, NOW + 1), key), ADMINS)


def test_a_second_administrator_approves_exactly_the_signed_proposal() -> None:
    raw = admin_ops.sign_op(OP, ALICE)
    assert admin_ops.verify_op(raw, ADMINS) == OP
    oid = admin_ops.op_id(raw)
    ok = approval("bob", BOB, oid)
    admin_ops.check_second(OP, ok, ADMINS)
    assert ok.op == oid != admin_ops.op_id(admin_ops.sign_op(OP, BOB))


def test_the_same_administrator_or_key_twice_is_refused() -> None:
    oid = admin_ops.op_id(admin_ops.sign_op(OP, ALICE))
    with pytest.raises(PolicyRefused) as err:
        admin_ops.check_second(OP, approval("alice", ALICE, oid), ADMINS)
    assert err.value.code == "policy.four_eyes_same_admin"
    # One key listed under two names is still one person.
    twice = {**ADMINS, "alias": ALICE.public}
    alias = admin_ops.verify_approval(admin_ops.sign_approval(
        admin_ops.OpApproval(oid, "alias", NOW), ALICE), twice)
    with pytest.raises(PolicyRefused):
        admin_ops.check_second(OP, alias, twice)


def test_only_listed_administrators_under_their_own_key_and_domain() -> None:
    raw = admin_ops.sign_op(OP, ALICE)
    with pytest.raises(UnknownKey):
        admin_ops.verify_op(raw, {"bob": BOB.public})
    name, body, _sig = codec.unpack(raw, what="t", max_bytes=1 << 14)
    with pytest.raises(BadSignature):  # bob's key under alice's name
        admin_ops.verify_op(codec.pack([name, body, crypto.sign(BOB, admin_ops.PROPOSAL_DOMAIN
                                                                + body)]), ADMINS)
    with pytest.raises(BadSignature):  # an approval's domain is not a proposal's
        admin_ops.verify_op(codec.pack([name, body, crypto.sign(
            ALICE, admin_ops.APPROVAL_DOMAIN + body)]), ADMINS)
    with pytest.raises(Malformed):
        admin_ops.sign_op(admin_ops.AdminOp("format-disk", "nl", b"", "alice", NOW), ALICE)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_with_a_typed_error(raw: bytes) -> None:
    for verify in (admin_ops.verify_op, admin_ops.verify_approval):
        with pytest.raises(LiaisonError):
            verify(raw, ADMINS)
