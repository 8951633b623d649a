"""The four-eyes approval statement (core/approval.py): what it binds, who may sign it, and
that nothing but exactly its signer's bytes for exactly one envelope releases anything."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison_net.core import approval as four_eyes
from liaison_net.core import codec, crypto
from liaison_net.core.consent import CONSENT_DOMAIN
from liaison_net.core.envelope import Envelope, Kind
from liaison_net.core.ownership import Handling, Owner, Tlp
from liaison_net.core.signals import Severity, SignalAnnex
from liaison_net.errors import BadSignature, LiaisonError, Malformed, PolicyRefused, UnknownKey
from tests.core.factories import NOW, Officer, make_tag, seal_from

SENDER = Officer("nl/jdevries")
APPROVER = Officer("nl/akramer")
OTHER = Officer("be/mpeeters")
REDTAG = make_tag(tlp=Tlp.RED)
KEYS = {o.id: o.signing.public for o in (SENDER, APPROVER, OTHER)}


def held(**kw: object) -> tuple[Envelope, bytes]:
    envelope = seal_from(SENDER, [OTHER], tag=REDTAG, **kw)
    return envelope, envelope.to_bytes()


def signed(target: Envelope, by: Officer = APPROVER, **changes: object) -> bytes:
    statement = four_eyes.make(target, approver=by.id, decision=four_eyes.Decision.APPROVE,
                               at=NOW + 1000)
    return four_eyes.sign(dataclasses.replace(statement, **changes), by.signing)


def test_an_approval_by_a_colleague_releases_exactly_its_envelope() -> None:
    envelope, raw = held()
    approval = four_eyes.verify(signed(envelope), KEYS.get)
    assert (approval.approver, approval.sender, approval.unit) == (
        APPROVER.id, SENDER.id, "cid-limburg")
    four_eyes.check_release(approval, envelope, raw)


def test_the_sender_cannot_approve_their_own_envelope() -> None:
    envelope, raw = held()
    approval = four_eyes.verify(signed(envelope, by=SENDER), KEYS.get)
    with pytest.raises(PolicyRefused) as err:
        four_eyes.check_release(approval, envelope, raw)
    assert err.value.code == "policy.four_eyes_self"


def test_an_approval_for_another_envelope_or_other_bytes_releases_nothing() -> None:
    envelope, raw = held()
    other, other_raw = held()
    for stmt, target, target_raw in (
            (signed(other), envelope, raw),  # another id and digest
            (signed(envelope, envelope=other.id), envelope, raw),
            (signed(envelope, digest=four_eyes.envelope_digest(other_raw)), envelope, raw)):
        approval = four_eyes.verify(stmt, KEYS.get)
        with pytest.raises(PolicyRefused) as err:
            four_eyes.check_release(approval, target, target_raw)
        assert err.value.code == "policy.four_eyes_mismatch"


@pytest.mark.parametrize(("changes", "code"), [
    ({"unit": "other-unit"}, "policy.four_eyes_unit"),
    ({"decision": four_eyes.Decision.REJECT, "reason": "no"}, "policy.four_eyes_rejected"),
    ({"sender": "nl/someone"}, "policy.four_eyes_self"),
    ({"at": NOW - 60_000}, "policy.four_eyes_mismatch"),
])
def test_each_rule_of_the_release_names_itself(changes: dict[str, object], code: str) -> None:
    envelope, raw = held()
    approval = four_eyes.verify(signed(envelope, **changes), KEYS.get)
    with pytest.raises(PolicyRefused) as err:
        four_eyes.check_release(approval, envelope, raw)
    assert err.value.code == code


def test_an_officer_of_another_node_cannot_approve() -> None:
    envelope, raw = held()
    approval = four_eyes.verify(signed(envelope, by=OTHER), KEYS.get)
    with pytest.raises(PolicyRefused) as err:
        four_eyes.check_release(approval, envelope, raw)
    assert err.value.code == "policy.four_eyes_foreign"


def test_the_signature_is_verified_under_the_named_approver_before_decoding() -> None:
    envelope, _ = held()
    stmt = signed(envelope)
    name, body, sig = codec.unpack(stmt, what="t", max_bytes=4096)
    # Signed by the approver, but claiming to come from the sender: the sender's key fails.
    with pytest.raises(BadSignature):
        four_eyes.verify(codec.pack([SENDER.id, body, sig]), KEYS.get)
    with pytest.raises(UnknownKey):
        four_eyes.verify(stmt, lambda _o: None)
    # The same body signed in another domain (a consent's) is not an approval.
    consent_sig = crypto.sign(APPROVER.signing, CONSENT_DOMAIN + body)
    with pytest.raises(BadSignature):
        four_eyes.verify(codec.pack([name, body, consent_sig]), KEYS.get)


def test_a_rejection_must_say_why_and_sizes_are_bounded() -> None:
    envelope, _ = held()
    with pytest.raises(Malformed):
        signed(envelope, decision=four_eyes.Decision.REJECT, reason=" ")
    with pytest.raises(Malformed):
        signed(envelope, reason="x" * (four_eyes.MAX_REASON_CHARS + 1))
    with pytest.raises(LiaisonError):
        four_eyes.verify(b"\x93" + b"\xc5" + b"\xff" * 8000, KEYS.get)


@given(st.data())
def test_any_flipped_byte_is_refused_with_a_typed_error(data: st.DataObject) -> None:
    envelope, raw = held()
    stmt = bytearray(signed(envelope))
    i = data.draw(st.integers(0, len(stmt) - 1))
    stmt[i] ^= data.draw(st.integers(1, 255))
    try:
        approval = four_eyes.verify(bytes(stmt), KEYS.get)
    except LiaisonError:
        return
    # Only a flip that leaves the signed body intact may still verify (e.g. the name's
    # encoding); then it must still release exactly this envelope, by the same approver.
    assert approval.approver == APPROVER.id
    four_eyes.check_release(approval, envelope, raw)


@given(approver=st.sampled_from([SENDER, APPROVER, OTHER]),
       tlp=st.sampled_from(list(Tlp)), handling=st.sampled_from(list(Handling)))
def test_release_holds_iff_a_second_officer_of_the_same_node_approved(
        approver: Officer, tlp: Tlp, handling: Handling) -> None:
    tag = dataclasses.replace(REDTAG, tlp=tlp, handling=handling,
                              conditions="see file" if handling is Handling.H3 else "",
                              community="benelux" if tlp is Tlp.GREEN else "")
    envelope = seal_from(SENDER, [OTHER], tag=tag.validate())
    approval = four_eyes.verify(signed(envelope, by=approver), KEYS.get)
    ok = approver is APPROVER
    try:
        four_eyes.check_release(approval, envelope, envelope.to_bytes())
        assert ok
    except PolicyRefused:
        assert not ok


def test_the_default_policy_holds_red_h3_and_the_highest_severity_only() -> None:
    policy = four_eyes.FourEyesPolicy()
    assert policy.covers(held()[0].header)
    amber = seal_from(SENDER, [OTHER]).header
    assert not policy.covers(amber)
    h3 = seal_from(SENDER, [OTHER], tag=make_tag(handling=Handling.H3,
                                                 conditions="no onward use")).header
    assert policy.covers(h3)
    for severity, covered in ((Severity.CRITICAL, True), (Severity.HIGH, False)):
        signal = dataclasses.replace(amber, kind=Kind.SIGNAL,
                                     signal=SignalAnnex(severity=severity))
        assert policy.covers(signal) is covered
    foreign = dataclasses.replace(
        held()[0].header, tag=dataclasses.replace(REDTAG, owner=Owner("be", "x")))
    assert not policy.covers(foreign)  # a forward of another node's information
    notice = dataclasses.replace(held()[0].header, kind=Kind.NOTICE)
    assert not policy.covers(notice)
