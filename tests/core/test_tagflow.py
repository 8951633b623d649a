"""tagflow.check: the owner's tag, checked on the envelope alone, the same at every layer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from liaison_net.core import codec, crypto
from liaison_net.core.consent import Consent, sign_consent
from liaison_net.core.envelope import Envelope, Kind, signed_digest_message
from liaison_net.core.evidence import Step, maker
from liaison_net.core.ids import node_principal
from liaison_net.core.limits import DAY_MS, HOUR_MS
from liaison_net.core.ownership import Handling, Owner, PermittedAction, Tlp
from liaison_net.core.policy import Action
from liaison_net.core.retention import make_skeleton
from liaison_net.core.sealing import SignerKey
from liaison_net.core.signers import (
    EVIDENCE_STEPS,
    MAY_SIGN,
    Signer,
    check_notice_claims,
    signer_of,
)
from liaison_net.core.tagflow import (
    FORWARD_TARGETS,
    LAYER_ACTIONS,
    MAX_FORWARD_DEPTH,
    Disclosure,
    Layer,
    check,
    claimed_keys,
    disclosure_owed,
    verify_original,
)
from liaison_net.errors import (
    BadSignature,
    BadTimestamp,
    Forbidden,
    LimitExceeded,
    Malformed,
    PolicyRefused,
    SignerNotAllowed,
)
from tests.core.factories import NOW, Officer, make_tag, seal_from

JAN = Officer("nl/jdevries")  # the owner's officer
MARIE = Officer("be/mpeeters")
CLAUDE = Officer("lu/cschmit")
KLAUS = Officer("de-nw/kmueller")
NL_NODE = Officer(node_principal("nl"))
LU_NODE = Officer(node_principal("lu"))
EVERYONE = (JAN, MARIE, CLAUDE, KLAUS, NL_NODE, LU_NODE)
KEYS = {o.signing.key_id: o.signer for o in EVERYONE}
CARDS = {o.id: o.signing.public for o in EVERYONE}
BENELUX_H2 = make_tag(handling=Handling.H2)
RELAXED = make_tag(tlp=Tlp.CLEAR, share_with=frozenset({"nl", "be", "lu", "de-nw"}))


def run(env: Envelope, layer: Layer = Layer.DESTINATION, here: str | None = None,
        now: int = NOW, lookup: dict[bytes, SignerKey] | None = None):  # type: ignore[no-untyped-def]
    here = here or env.header.recipients[0].officer.split("/")[0]
    return check(env.header, layer=layer, here=here, now=now,
                 lookup=(lookup if lookup is not None else KEYS).get, officer_key=CARDS.get)


def forward(by: Officer, original: Envelope, to: Officer, *, carry: bytes | None = None,
            **kw: object) -> Envelope:
    args: dict[str, object] = dict(tag=original.header.tag, ref=original.id,
                                   original=make_skeleton(original.to_bytes()))
    if carry is not None:
        args["original"] = carry
    args.update(kw)
    return seal_from(by, [to], b"fwd", **args)


def alert(tag=BENELUX_H2) -> Envelope:  # type: ignore[no-untyped-def]
    return seal_from(JAN, [CLAUDE], b"H2: Benelux only", tag=tag)


# --- the owner is the signer's node -----------------------------------------------------------


@pytest.mark.parametrize("layer", list(Layer))
def test_the_owners_own_envelope_passes_every_layer(layer: Layer) -> None:
    env = alert(make_tag())
    here = "nl" if layer is Layer.ORIGIN else "lu"
    flow = run(env, layer, here)
    assert flow.originals == () and flow.consent is None


@pytest.mark.parametrize("layer", list(Layer))
def test_an_envelope_under_another_nodes_tag_is_refused_at_every_layer(layer: Layer) -> None:
    """An LU officer signs under a tag owned by BE (the laundering of issue 14)."""
    env = seal_from(CLAUDE, [JAN], tag=make_tag(owner=Owner("be", "fgp-liege"),
                                                 tlp=Tlp.CLEAR))
    with pytest.raises(PolicyRefused) as refused:
        run(env, layer, "lu" if layer is Layer.ORIGIN else "nl")
    assert refused.value.code == "policy.owner_not_signer"


# --- a forward carries its original -----------------------------------------------------------


def test_a_forward_under_the_originals_tag_passes_and_names_its_original() -> None:
    original = alert(make_tag())
    fwd = forward(CLAUDE, original, MARIE)
    for layer, here in ((Layer.ORIGIN, "lu"), (Layer.DESTINATION, "be"), (Layer.CLIENT, "be")):
        assert [h.id for h in run(fwd, layer, here).originals] == [original.id]


def test_a_forward_that_relaxes_the_tag_is_refused_even_with_the_owner_named() -> None:
    """LU forwards NL's Benelux-only H2 alert as H0, CLEAR, shared with DE-NW."""
    fwd = forward(CLAUDE, alert(), MARIE, tag=RELAXED)
    for layer in Layer:
        with pytest.raises(PolicyRefused) as refused:
            run(fwd, layer, "lu" if layer is Layer.ORIGIN else "be")
        assert refused.value.code == "policy.relax_by_non_owner"


def test_a_forward_may_tighten() -> None:
    original = alert(make_tag())
    fwd = forward(CLAUDE, original, MARIE, tag=make_tag(tlp=Tlp.RED))
    with pytest.raises(PolicyRefused, match="TLP:RED"):  # ...and then RED stops it here
        run(fwd)
    fwd = forward(CLAUDE, original, MARIE, tag=make_tag(share_with=frozenset({"nl", "be"})))
    assert run(fwd).originals[0].id == original.id


def test_a_forward_without_its_original_is_refused() -> None:
    original = alert(make_tag())
    fwd = seal_from(CLAUDE, [MARIE], tag=original.header.tag, ref=original.id)
    with pytest.raises(PolicyRefused) as refused:
        run(fwd)
    assert refused.value.code == "policy.original_missing"


def test_a_forward_carrying_another_envelope_than_its_ref_is_refused() -> None:
    original, other = alert(make_tag()), alert(make_tag())
    fwd = forward(CLAUDE, original, MARIE, carry=make_skeleton(other.to_bytes()))
    with pytest.raises(PolicyRefused) as refused:
        run(fwd)
    assert refused.value.code == "policy.original_mismatch"


def test_a_forged_original_is_refused() -> None:
    """The forwarder cannot invent the original: re-signed by itself it is no longer the
    owner's (owner_not_signer); with the owner's name but its own key it is forbidden; a
    changed header under the owner's signature does not verify."""
    real = alert()
    own = seal_from(CLAUDE, [MARIE], tag=RELAXED)  # LU signs a "NL" original
    fwd = seal_from(CLAUDE, [MARIE], tag=RELAXED, ref=own.id,
                    original=make_skeleton(own.to_bytes()))
    with pytest.raises(PolicyRefused) as refused:
        run(fwd)
    assert refused.value.code == "policy.owner_not_signer"

    wire = real.header.to_wire()
    relaxed_header = codec.pack({**wire, "tag": RELAXED.to_wire()})
    skeleton = codec.unpack(make_skeleton(real.to_bytes()), what="s", max_bytes=1 << 16)
    tampered = codec.pack({**skeleton, "header": relaxed_header})
    with pytest.raises(BadSignature):
        run(forward(CLAUDE, real, MARIE, tag=RELAXED, carry=tampered))
    resigned = codec.pack({**skeleton, "header": relaxed_header,
                           "signer_key_id": CLAUDE.signing.key_id})
    with pytest.raises(BadSignature):  # the signature is still JAN's
        run(forward(CLAUDE, real, MARIE, tag=RELAXED, carry=resigned))
    forged = codec.pack({**skeleton, "header": relaxed_header,
                         "signer_key_id": CLAUDE.signing.key_id,
                         "signature": crypto.sign(CLAUDE.signing, signed_digest_message(
                             relaxed_header, skeleton["body_sha256"]))})
    with pytest.raises(Malformed, match="sender_key"):  # JAN's header, CLAUDE's signature
        run(forward(CLAUDE, real, MARIE, tag=RELAXED, carry=forged))


def test_an_original_verifies_without_its_body_and_only_under_its_signers_key() -> None:
    env = alert()
    assert verify_original(make_skeleton(env.to_bytes()), KEYS.get) == env.header
    with pytest.raises(Forbidden):
        verify_original(make_skeleton(env.to_bytes()),
                        {JAN.signing.key_id: SignerKey(CLAUDE.id, JAN.signing.public)}.get)


def test_forwards_of_forwards_chain_back_to_the_owner_and_are_bounded() -> None:
    env = alert(make_tag())
    chain = [env]
    hops = [CLAUDE, MARIE, CLAUDE, MARIE, CLAUDE]
    for i, by in enumerate(hops):
        to = MARIE if by is CLAUDE else CLAUDE
        fwd = forward(by, chain[-1], to)
        assert claimed_keys(fwd.header) == [c.header.sender_key for c in reversed(chain)][
            :MAX_FORWARD_DEPTH]
        if i < MAX_FORWARD_DEPTH:
            assert len(run(fwd).originals) == i + 1
        else:
            with pytest.raises(LimitExceeded):
                run(fwd)
        chain.append(fwd)


def test_a_forward_of_a_forward_cannot_relax_the_middle_tightening() -> None:
    env = alert(make_tag())
    tight = forward(CLAUDE, env, MARIE, tag=make_tag(share_with=frozenset({"nl", "be", "lu"}),
                                                     permitted_actions=frozenset(
                                                         {PermittedAction.FORWARD})))
    loose = forward(MARIE, tight, CLAUDE, tag=env.header.tag)
    with pytest.raises(PolicyRefused) as refused:
        run(loose)
    assert refused.value.code == "policy.relax_by_non_owner"


# --- who is told of a forward -------------------------------------------------------------------


def test_every_forward_owes_the_owner_a_disclosure_receipt_about_the_owners_envelope() -> None:
    """With or without consent: the owner's later restriction or recall follows them."""
    original = alert(make_tag())
    assert disclosure_owed(original.header, run(original)) is None  # not a forward
    fwd = forward(CLAUDE, original, MARIE)
    assert disclosure_owed(fwd.header, run(fwd)) == Disclosure(JAN.id, original.id, None)
    again = forward(MARIE, fwd, CLAUDE)  # a forward of the forward: still the root's owner
    assert disclosure_owed(again.header, run(again)) == Disclosure(JAN.id, original.id, None)
    own = forward(JAN, original, MARIE)  # the owner passing on their own: nobody to tell
    assert disclosure_owed(own.header, run(own)) is None
    h2 = alert()
    consented = forward(CLAUDE, h2, MARIE, consent=consent(original=h2))
    assert disclosure_owed(consented.header, run(consented)) == Disclosure(
        JAN.id, h2.id, MARIE.id)


# --- consent ----------------------------------------------------------------------------------


def consent(target: str = MARIE.id, forwarder: Officer = CLAUDE, expires: int = NOW + DAY_MS,
            original: Envelope | None = None, owner: Officer = JAN) -> bytes:
    assert original is not None
    return sign_consent(Consent(original.id, forwarder.id, target, owner.id, NOW - HOUR_MS,
                                expires), owner.signing)


def test_an_h2_forward_needs_the_consent_and_it_is_bound_to_its_recipient() -> None:
    original = alert()
    with pytest.raises(PolicyRefused, match="consent"):
        run(forward(CLAUDE, original, MARIE))
    raw = consent(original=original)
    flow = run(forward(CLAUDE, original, MARIE, consent=raw))
    assert flow.consent is not None and flow.consent_digest is not None
    with pytest.raises(PolicyRefused, match="consent"):  # not for another recipient
        run(forward(CLAUDE, original, Officer("be/lgoossens"), consent=raw), here="be")
    with pytest.raises(Forbidden):  # not for another forwarder
        run(forward(KLAUS, original, MARIE, consent=raw))
    with pytest.raises(Forbidden):  # not from another node than the owner's
        run(forward(CLAUDE, original, MARIE, consent=consent(original=original,
                                                              owner=MARIE)))


def test_an_expired_consent_is_refused_by_the_forwards_own_time_and_at_the_origin_by_now(
        ) -> None:
    original = alert()
    raw = consent(original=original, expires=NOW + HOUR_MS)
    fwd = forward(CLAUDE, original, MARIE, consent=raw)
    assert run(fwd, Layer.CLIENT, "be", now=NOW + 2 * HOUR_MS).consent is not None
    with pytest.raises(BadTimestamp):
        run(fwd, Layer.ORIGIN, "lu", now=NOW + 2 * HOUR_MS)
    late = seal_from(CLAUDE, [MARIE], b"fwd", tag=original.header.tag, ref=original.id,
                     original=make_skeleton(original.to_bytes()), consent=raw,
                     now=NOW + 2 * HOUR_MS, expires=NOW + 3 * HOUR_MS)
    with pytest.raises(BadTimestamp):
        run(late, Layer.DESTINATION, "be", now=NOW + 2 * HOUR_MS)


# --- who may sign what ------------------------------------------------------------------------


def test_the_signer_table() -> None:
    assert signer_of("nl/node") is Signer.NODE
    assert signer_of("nl/desk") is signer_of("nl/desk-backup") is Signer.DESK
    assert signer_of("nl/jdevries") is Signer.OFFICER
    assert MAY_SIGN[Kind.NOTICE] == {Signer.NODE}
    assert all(Signer.NODE not in MAY_SIGN[k]
               for k in (Kind.MESSAGE, Kind.REQUEST, Kind.REPLY, Kind.SIGNAL))
    assert set(MAY_SIGN) == set(Kind)
    for step in Step:  # the evidence table agrees with the exact maker of each step
        made_by = maker(step, sender=JAN.id, recipient=CLAUDE.id)
        assert signer_of(made_by) in EVIDENCE_STEPS[step]
        assert MAY_SIGN[Kind.EVIDENCE] >= EVIDENCE_STEPS[step]


@pytest.mark.parametrize("layer", list(Layer))
def test_a_notice_signed_by_an_officer_is_refused_at_every_layer(layer: Layer) -> None:
    env = seal_from(JAN, [CLAUDE], kind=Kind.NOTICE)
    with pytest.raises(SignerNotAllowed):
        run(env, layer, "nl" if layer is Layer.ORIGIN else "lu")


def test_a_node_may_sign_notices_and_evidence_but_no_message() -> None:
    tag = make_tag(owner=Owner("lu", "node"))
    for kind in (Kind.NOTICE, Kind.EVIDENCE):
        run(seal_from(LU_NODE, [JAN], kind=kind, tag=tag), here="nl")
    with pytest.raises(SignerNotAllowed):
        run(seal_from(LU_NODE, [JAN], tag=tag), here="nl")


def test_a_notice_is_believed_only_for_the_node_whose_key_signed_it() -> None:
    ack = {"type": "signal-ack", "node": "be", "by": "be/desk"}
    check_notice_claims("be/node", ack, reader_node="nl")
    with pytest.raises(SignerNotAllowed):  # an officer's (a desk's) key
        check_notice_claims("be/desk", ack, reader_node="nl")
    with pytest.raises(SignerNotAllowed):  # LU's node speaking for BE's desk
        check_notice_claims("lu/node", {**ack, "by": "lu/desk"}, reader_node="nl")
    with pytest.raises(SignerNotAllowed):
        check_notice_claims("lu/node", {**ack, "node": "lu"}, reader_node="nl")
    # A non-delivery notice names the peer that failed; only the reader's home node says it.
    failed = {"type": "non-delivery", "node": "be", "reason": "expired"}
    check_notice_claims("nl/node", failed, reader_node="nl")
    with pytest.raises(SignerNotAllowed):
        check_notice_claims("lu/node", failed, reader_node="nl")
    # A disclosure receipt names the forwarder of another node; its node is the signer's.
    receipt = {"type": "disclosure", "node": "lu", "forwarder": "be/mpeeters"}
    check_notice_claims("lu/node", receipt, reader_node="nl")
    with pytest.raises(SignerNotAllowed):
        check_notice_claims("lu/node", {**receipt, "node": "be"}, reader_node="nl")
    with pytest.raises(SignerNotAllowed):  # an unknown type: the strictest reading
        check_notice_claims("lu/node", {"type": "new"}, reader_node="nl")


# --- docs/ownership.md §6 says what the function does ----------------------------------------


def _render(layer: Layer, actor: str, targets: str) -> str:
    """One (actor -> targets) pair as ownership.md §6 words it."""
    here = "the officer's node" if layer is Layer.CLIENT else "this node"
    who = {"sender": "sender's node", "here": here}[actor]
    where = {"recipients": "each recipient's node", "remote": "each other recipient node",
             "here": here}[targets]
    return f"({who} → {where})"


def test_the_layer_table_in_ownership_md_is_the_functions_table() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "ownership.md").read_text()
    section = doc[doc.index("## 6."):doc.index("## 7.")]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"`[A-Z]+`", cells[0]):
            rows[cells[0].strip("`")] = cells
    assert set(rows) == {layer.name for layer in Layer}
    for layer in Layer:
        _, _, plain, fwd = rows[layer.name]
        assert plain == ", then ".join(
            f"`{action.value.upper()}` {_render(layer, actor.value, targets.value)}"
            for action, actor, targets in LAYER_ACTIONS[layer])
        assert fwd == f"`FORWARD` {_render(layer, 'sender', FORWARD_TARGETS[layer].value)}"
    assert Action.FORWARD not in {a for acts in LAYER_ACTIONS.values() for a, _, _ in acts}
