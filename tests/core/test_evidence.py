"""Delivery evidence statements: each maker signs its own step, the sender believes nothing
else. Round trips, tampering, wrong signers, wrong makers, wrong envelope, bad times."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core import codec, crypto
from liaison_net.core.envelope import Header, Kind
from liaison_net.core.evidence import (
    Statement,
    Step,
    check_about,
    claimed_statement,
    evidence_tag,
    make,
    maker,
    progress,
    sign_statement,
    verify_statement,
    wants_evidence,
)
from liaison_net.core.ids import id_to_text, new_envelope_id
from liaison_net.core.policy import Action, Request, decide
from liaison_net.core.sealing import SignerKey
from liaison_net.errors import (
    BadSignature,
    BadTimestamp,
    Forbidden,
    LiaisonError,
    LimitExceeded,
    Malformed,
    Revoked,
    UnknownKey,
)
from tests.core.factories import NOW, Officer, seal_from

JAN, MARIE, CLAUDE = Officer("nl/jdevries"), Officer("be/mpeeters"), Officer("lu/cschmit")
NODE_KEYS = {n: crypto.generate_signing_key() for n in ("nl", "be", "lu")}
LATER = NOW + 60_000


def lookup(key_id: bytes) -> SignerKey | None:
    """The sender's verified directory: three officers and three nodes."""
    signers = {o.signing.key_id: o.signer for o in (JAN, MARIE, CLAUDE)}
    signers.update({k.key_id: SignerKey(f"{n}/node", k.public) for n, k in NODE_KEYS.items()})
    return signers.get(key_id)


def original() -> Header:
    return seal_from(JAN, [MARIE, CLAUDE]).header


def signer_of(step: Step, recipient: str) -> crypto.SigningKeyPair:
    """The key of the one party that may attest ``step`` for ``recipient`` of Jan's alert."""
    who = maker(step, sender=JAN.id, recipient=recipient)
    if who.endswith("/node"):
        return NODE_KEYS[who.split("/")[0]]
    return next(o for o in (MARIE, CLAUDE) if o.id == who).signing


def attested(step: Step, h: Header, recipient: str | None = None) -> bytes:
    s = make(step, h, at=LATER, recipient=None if step is Step.ACCEPTED else recipient)
    return sign_statement(s, signer_of(step, recipient or MARIE.id))


def believe(raw: bytes, h: Header, now: int = LATER) -> Statement:
    """What the sender's client does: verify the signature, then check the maker."""
    statement = verify_statement(raw, lookup).statement
    check_about(statement, envelope_id=h.id, sender=h.sender,
                recipients=[r.officer for r in h.recipients], now=now)
    return statement


# --- the happy path --------------------------------------------------------------------------


@pytest.mark.parametrize("step", list(Step))
def test_each_step_signed_by_its_maker_round_trips_and_is_believed(step: Step) -> None:
    h = original()
    statement = believe(attested(step, h, CLAUDE.id), h)
    assert statement.step is step and statement.envelope == h.id and statement.at == LATER
    if step is Step.ACCEPTED:
        assert statement.recipients == (MARIE.id, CLAUDE.id) and statement.by == "nl/node"
    else:
        assert statement.recipients == (CLAUDE.id,)
        assert statement.by == {"relayed": "lu/node"}.get(step.value, CLAUDE.id)


def test_makers_are_origin_node_destination_node_and_the_recipient() -> None:
    assert maker(Step.ACCEPTED, sender=JAN.id, recipient=MARIE.id) == "nl/node"
    assert maker(Step.RELAYED, sender=JAN.id, recipient=MARIE.id) == "be/node"
    assert maker(Step.DELIVERED, sender=JAN.id, recipient=MARIE.id) == MARIE.id
    assert maker(Step.OPENED, sender=JAN.id, recipient=MARIE.id) == MARIE.id


def test_verification_keeps_the_signer_and_the_exact_bytes() -> None:
    raw = attested(Step.OPENED, original(), MARIE.id)
    result = verify_statement(raw, lookup)
    assert result.raw == raw and result.signer.principal == MARIE.id
    assert result.key_id == MARIE.signing.key_id
    assert claimed_statement(raw) == result.statement


@settings(max_examples=50, deadline=None)
@given(step=st.sampled_from(list(Step)), at=st.integers(1, (1 << 48) - 1),
       who=st.sampled_from([MARIE.id, CLAUDE.id]))
def test_any_statement_round_trips(step: Step, at: int, who: str) -> None:
    h = original()
    s = make(step, h, at=at, recipient=None if step is Step.ACCEPTED else who)
    raw = sign_statement(s, signer_of(step, who))
    assert verify_statement(raw, lookup).statement == s


# --- tampering -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_tampered_byte_is_refused(data: st.DataObject) -> None:
    raw = bytearray(attested(Step.OPENED, original(), MARIE.id))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(LiaisonError):
        verify_statement(bytes(raw), lookup)


def test_a_changed_field_breaks_the_signature() -> None:
    key_id, body, signature = codec.unpack(attested(Step.DELIVERED, original(), MARIE.id),
                                           what="t", max_bytes=65536)
    fields = codec.unpack(body, what="t", max_bytes=65536)
    fields["step"] = "opened"
    with pytest.raises(BadSignature):
        verify_statement(codec.pack([key_id, codec.pack(fields), signature]), lookup)


def test_truncated_extra_and_garbage_wrappers_are_malformed() -> None:
    raw = attested(Step.DELIVERED, original(), MARIE.id)
    key_id, body, signature = codec.unpack(raw, what="t", max_bytes=65536)
    for bad in (raw[:-1], raw + b"\x00", codec.pack([key_id, body]),
                codec.pack([key_id, body, signature, b""]), codec.pack({"a": 1}), b""):
        with pytest.raises(Malformed):
            verify_statement(bad, lookup)


# --- wrong signers and wrong makers ----------------------------------------------------------


def test_a_statement_signed_by_someone_else_in_the_makers_name_is_refused() -> None:
    """Claude signs with his own key a statement that says Marie opened it."""
    s = make(Step.OPENED, original(), at=LATER, recipient=MARIE.id)
    with pytest.raises(Forbidden, match="signed by lu/cschmit"):
        verify_statement(sign_statement(s, CLAUDE.signing), lookup)


def test_naming_the_makers_key_without_holding_it_fails_the_signature() -> None:
    s = make(Step.OPENED, original(), at=LATER, recipient=MARIE.id)
    body = codec.pack(s.to_wire())
    forged = codec.pack([MARIE.signing.key_id, body,
                         crypto.sign(CLAUDE.signing, b"liaison-net/evidence/v1\x00" + body)])
    with pytest.raises(BadSignature):
        verify_statement(forged, lookup)


def test_an_officer_cannot_attest_opened_for_a_colleague() -> None:
    """Claude, honestly signing as himself, claims Marie opened it: the maker is wrong."""
    h = original()
    forged = Statement(Step.OPENED, h.id, (MARIE.id,), CLAUDE.id, LATER)
    with pytest.raises(Forbidden, match="only be/mpeeters can"):
        believe(sign_statement(forged, CLAUDE.signing), h)


def test_a_node_cannot_attest_relayed_into_another_nodes_inbox() -> None:
    h = original()
    forged = Statement(Step.RELAYED, h.id, (MARIE.id,), "lu/node", LATER)
    with pytest.raises(Forbidden, match="only be/node can"):
        believe(sign_statement(forged, NODE_KEYS["lu"]), h)


def test_only_the_origin_node_attests_accepted() -> None:
    h = original()
    forged = Statement(Step.ACCEPTED, h.id, (MARIE.id, CLAUDE.id), "be/node", LATER)
    with pytest.raises(Forbidden, match="only nl/node can"):
        believe(sign_statement(forged, NODE_KEYS["be"]), h)


def test_an_officer_cannot_attest_a_node_step() -> None:
    h = original()
    forged = Statement(Step.RELAYED, h.id, (MARIE.id,), MARIE.id, LATER)
    with pytest.raises(Forbidden):
        believe(sign_statement(forged, MARIE.signing), h)


def test_unknown_and_revoked_keys_are_refused() -> None:
    stranger = Officer("be/stranger")
    s = Statement(Step.OPENED, original().id, (stranger.id,), stranger.id, LATER)
    with pytest.raises(UnknownKey):
        verify_statement(sign_statement(s, stranger.signing), lookup)

    def revoked(key_id: bytes) -> SignerKey | None:
        raise Revoked("key revoked: laptop stolen")

    with pytest.raises(Revoked):
        verify_statement(attested(Step.OPENED, original(), MARIE.id), revoked)


# --- about the wrong thing, or at the wrong time ---------------------------------------------


def test_evidence_about_another_envelope_is_refused() -> None:
    other = seal_from(JAN, [MARIE, CLAUDE]).header
    with pytest.raises(Forbidden, match="is about"):
        believe(attested(Step.OPENED, other, MARIE.id), original())


def test_evidence_naming_someone_who_is_not_a_recipient_is_refused() -> None:
    h = seal_from(JAN, [MARIE]).header
    s = Statement(Step.OPENED, h.id, (CLAUDE.id,), CLAUDE.id, LATER)
    with pytest.raises(Forbidden, match="not a recipient"):
        believe(sign_statement(s, CLAUDE.signing), h)
    with pytest.raises(Malformed, match="not a recipient"):
        make(Step.OPENED, h, at=LATER, recipient=CLAUDE.id)


def test_evidence_dated_before_the_envelope_or_in_the_future_is_refused() -> None:
    h = original()
    early = sign_statement(Statement(Step.OPENED, h.id, (MARIE.id,), MARIE.id,
                                     NOW - 3_600_000), MARIE.signing)
    with pytest.raises(BadTimestamp, match="before"):
        believe(early, h)
    with pytest.raises(BadTimestamp, match="future"):
        believe(attested(Step.OPENED, h, MARIE.id), h, now=NOW - 3_600_000)


# --- shape -----------------------------------------------------------------------------------


def test_per_recipient_steps_name_exactly_one_recipient() -> None:
    h = original()
    with pytest.raises(Malformed, match="exactly one"):
        sign_statement(Statement(Step.OPENED, h.id, (MARIE.id, CLAUDE.id), MARIE.id, LATER),
                       MARIE.signing)
    with pytest.raises(Malformed, match="sorted"):
        sign_statement(Statement(Step.ACCEPTED, h.id, (CLAUDE.id, MARIE.id), "nl/node",
                                 LATER), NODE_KEYS["nl"])
    with pytest.raises(LimitExceeded):
        sign_statement(Statement(Step.ACCEPTED, h.id, (), "nl/node", LATER), NODE_KEYS["nl"])
    with pytest.raises(Malformed, match="every recipient"):
        make(Step.ACCEPTED, h, at=LATER, recipient=MARIE.id)


def test_a_body_with_an_extra_field_is_refused_even_if_signed() -> None:
    wire = make(Step.OPENED, original(), at=LATER, recipient=MARIE.id).to_wire()
    wire["note"] = "trust me"
    body = codec.pack(wire)
    raw = codec.pack([MARIE.signing.key_id, body,
                      crypto.sign(MARIE.signing, b"liaison-net/evidence/v1\x00" + body)])
    with pytest.raises(Malformed, match="unknown field"):
        verify_statement(raw, lookup)


def test_no_evidence_about_evidence_or_notices() -> None:
    assert wants_evidence(original())
    for kind in (Kind.EVIDENCE, Kind.NOTICE):
        assert not wants_evidence(seal_from(JAN, [MARIE], kind=kind, ref=original().id).header)


def test_the_evidence_tag_lets_the_recipient_send_it_back_to_the_sender() -> None:
    tag = evidence_tag(own_node="be", sender_node="nl", now=NOW)
    for action, actor, target in ((Action.SEND, "be", "nl"), (Action.RELAY, "be", "nl"),
                                  (Action.DELIVER, "be", "nl")):
        assert decide(tag, Request(action, NOW, actor, target)).allowed


# --- progress per recipient ------------------------------------------------------------------


def test_progress_takes_each_steps_earliest_time_and_the_hop_problems() -> None:
    h = original()
    statements = [make(Step.ACCEPTED, h, at=NOW + 1),
                  make(Step.RELAYED, h, at=NOW + 5, recipient=MARIE.id),
                  make(Step.DELIVERED, h, at=NOW + 9, recipient=MARIE.id),
                  make(Step.DELIVERED, h, at=NOW + 7, recipient=MARIE.id)]
    rows = {p.officer: p for p in progress([MARIE.id, CLAUDE.id], statements,
                                           {"be": ("delivered", None),
                                            "lu": ("refused", "policy.share_with")})}
    marie, claude = rows[MARIE.id], rows[CLAUDE.id]
    assert (marie.accepted, marie.relayed, marie.delivered, marie.opened) == \
        (NOW + 1, NOW + 5, NOW + 7, None)
    assert marie.state == "delivered" and marie.refused is None
    assert claude.accepted == NOW + 1 and claude.refused == "policy.share_with"
    assert claude.state == "refused"
    expired = progress([CLAUDE.id], [], {"lu": ("expired", "expired")})[0]
    assert expired.expired and expired.state == "expired"
    assert progress([CLAUDE.id], [], {})[0].state == "pending"


def test_ids_in_messages_are_the_readable_form() -> None:
    h = original()
    other = new_envelope_id(NOW, b"\x01" * 10)
    s = Statement(Step.OPENED, other, (MARIE.id,), MARIE.id, LATER)
    with pytest.raises(Forbidden, match=id_to_text(other)):
        check_about(s, envelope_id=h.id, sender=h.sender, recipients=[MARIE.id], now=LATER)
