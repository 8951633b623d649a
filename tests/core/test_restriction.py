"""Restriction updates (core/restriction.py): the owner tightens or recalls, nobody else, and
never by relaxing; checked on the envelope alone, the same at every layer."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison_net.core.envelope import Envelope, Kind
from liaison_net.core.ids import node_principal
from liaison_net.core.limits import DAY_MS, HOUR_MS
from liaison_net.core.ownership import Handling, PermittedAction, Tlp, at_least_as_strict
from liaison_net.core.policy import Action, Request, decide
from liaison_net.core.restriction import (
    Update,
    UpdateAction,
    check_after,
    check_update,
    forward_refusal,
    is_tighter,
)
from liaison_net.core.retention import make_skeleton
from liaison_net.core.tagflow import Layer, check
from liaison_net.errors import Malformed, PolicyRefused, SignerNotAllowed
from tests.core.factories import NOW, Officer, make_tag, seal_from
from tests.core.strategies import NODES, tags, tightened

JAN = Officer("nl/jdevries")  # sent the original for nl's CID Limburg: the owner's voice
ANNA = Officer("nl/avisser")  # a colleague on the owner's node, who did not send it
MARIE = Officer("be/mpeeters")  # the recipient
CLAUDE = Officer("lu/cschmit")
NL_NODE = Officer(node_principal("nl"))
EVERYONE = (JAN, ANNA, MARIE, CLAUDE, NL_NODE)
KEYS = {o.signing.key_id: o.signer for o in EVERYONE}
ORIGINAL = seal_from(JAN, [MARIE])


def _update(kind: Kind, *, by: Officer = JAN, tag: object = None,
            original: Envelope = ORIGINAL, at: int = NOW + HOUR_MS) -> Envelope:
    return seal_from(by, [MARIE, CLAUDE], b"reason", kind=kind, now=at, expires=at + DAY_MS,
                     tag=tag if tag is not None else original.header.tag, ref=original.id,
                     original=make_skeleton(original.to_bytes()))


def _check(env: Envelope, layer: Layer = Layer.DESTINATION, here: str = "be") -> Update:
    flow = check(env.header, layer=layer, here=here, now=NOW + 2 * HOUR_MS, lookup=KEYS.get,
                 officer_key=lambda _o: None)
    return check_update(env.header, flow.originals[0])


def test_owner_restricts_with_a_tighter_tag_at_every_layer() -> None:
    """The original's sender narrows share_with and raises TLP: every layer accepts it,
    including one on a node the new tag leaves out (it must hear of it)."""
    tighter = make_tag(tlp=Tlp.RED, share_with=frozenset({"nl", "be"}))
    env = _update(Kind.RESTRICT, tag=tighter)
    for layer, here in ((Layer.ORIGIN, "nl"), (Layer.DESTINATION, "lu"), (Layer.CLIENT, "be")):
        update = _check(env, layer, here)
        assert update.action is UpdateAction.RESTRICT and update.tag == tighter
        assert update.original == ORIGINAL.id and update.issuer == JAN.id


def test_recall_keeps_the_tag_and_names_the_original() -> None:
    update = _check(_update(Kind.RECALL))
    assert update.action is UpdateAction.RECALL and update.receipt_type == "erasure"


@pytest.mark.parametrize("relaxed", [
    make_tag(tlp=Tlp.GREEN, community="Benelux"),  # a lower TLP
    make_tag(share_with=frozenset({"nl", "be", "lu", "de-nw"})),  # a wider share_with
    make_tag(retain_until=NOW + 200 * DAY_MS),  # later retention
    make_tag(),  # no change at all
])
def test_a_relaxing_or_empty_restriction_is_refused(relaxed: object) -> None:
    with pytest.raises(PolicyRefused) as err:
        _check(_update(Kind.RESTRICT, tag=relaxed))
    assert err.value.code == "policy.update_relaxes"


def test_a_recall_cannot_relax_either() -> None:
    with pytest.raises(PolicyRefused) as err:
        _check(_update(Kind.RECALL, tag=make_tag(tlp=Tlp.CLEAR)))
    assert err.value.code == "policy.update_relaxes"


def test_a_colleague_of_the_owner_node_who_did_not_send_it_is_refused() -> None:
    with pytest.raises(PolicyRefused) as err:
        _check(_update(Kind.RECALL, by=ANNA))
    assert err.value.code == "policy.update_not_owner"


def test_a_recipient_cannot_restrict_what_it_received() -> None:
    """The recipient's own update fails at the owner rule: its node is not the owner's."""
    env = _update(Kind.RESTRICT, by=MARIE, tag=make_tag(tlp=Tlp.RED))
    with pytest.raises(PolicyRefused) as err:
        _check(env)
    assert err.value.code == "policy.owner_not_signer"


def test_a_node_key_cannot_sign_an_update() -> None:
    with pytest.raises(SignerNotAllowed):
        _check(_update(Kind.RECALL, by=NL_NODE))


def test_an_update_must_carry_the_original_it_names() -> None:
    other = seal_from(JAN, [MARIE], b"another")
    env = seal_from(JAN, [MARIE], b"reason", kind=Kind.RECALL, now=NOW + HOUR_MS,
                    expires=NOW + DAY_MS, ref=ORIGINAL.id,
                    original=make_skeleton(other.to_bytes()))
    with pytest.raises(PolicyRefused) as err:
        _check(env)
    assert err.value.code == "policy.original_mismatch"
    with pytest.raises(Malformed):
        seal_from(JAN, [MARIE], kind=Kind.RECALL, ref=ORIGINAL.id)  # no original at all


def test_an_update_of_a_forward_is_refused() -> None:
    forward = seal_from(MARIE, [CLAUDE], b"fwd", ref=ORIGINAL.id,
                        original=make_skeleton(ORIGINAL.to_bytes()))
    env = _update(Kind.RECALL, by=MARIE, original=forward)
    with pytest.raises(PolicyRefused) as err:
        check_update(env.header, forward.header)
    assert err.value.code == "policy.update_target"


def test_later_updates_must_tighten_the_earlier_ones_whatever_the_order() -> None:
    narrow = _check(_update(Kind.RESTRICT, tag=make_tag(share_with=frozenset({"nl", "be"}))))
    red = _check(_update(Kind.RESTRICT, tag=make_tag(tlp=Tlp.RED), at=NOW + 90 * 60_000))
    with pytest.raises(PolicyRefused):
        check_after(red, [narrow])  # RED but share_with wide again: relaxes the first
    check_after(narrow, [narrow])  # the same one again: nothing to refuse
    recall = _check(_update(Kind.RECALL))
    check_after(recall, [narrow, red])


def test_a_forward_is_decided_under_the_restriction_and_refused_after_a_recall() -> None:
    narrow = _check(_update(Kind.RESTRICT, tag=make_tag(share_with=frozenset({"nl", "be"}))))
    refused = forward_refusal([narrow], now=NOW, actor="be", recipients=[("lu", False)])
    assert refused is not None and refused.code == "policy.share_with"
    assert forward_refusal([narrow], now=NOW, actor="be", recipients=[("be", False)]) is None
    assert forward_refusal([narrow], now=NOW, actor="be", recipients=[("lu", True)]) is None
    recalled = forward_refusal([_check(_update(Kind.RECALL))], now=NOW, actor="be",
                               recipients=[("be", True)])
    assert recalled is not None and recalled.code == "policy.recalled"


def test_conditions_may_be_added_under_h3_but_not_removed() -> None:
    h3 = make_tag(handling=Handling.H3, conditions="Do not contact the subject.")
    more = replace(h3, conditions="Do not contact the subject. Not for customs.")
    assert is_tighter(h3, more)
    assert not is_tighter(more, h3)
    assert not is_tighter(h3, replace(h3, conditions="Not for customs."))


# --- properties ------------------------------------------------------------------------------

REQUESTS = st.builds(
    Request, action=st.sampled_from(list(Action)), now=st.just(NOW),
    actor_node=st.sampled_from(NODES), target_node=st.sampled_from(NODES),
    consent=st.booleans())


@given(old=tags(), data=st.data(), request=REQUESTS)
def test_a_tighter_tag_never_allows_what_the_old_one_refuses(old, data, request) -> None:
    """Monotone: whatever is_tighter accepts allows no request the old tag refused."""
    new = data.draw(tightened(old))
    if is_tighter(old, new) and not decide(old, request).allowed:
        assert not decide(new, request).allowed


@given(old=tags(), new=tags(), request=REQUESTS)
def test_any_relaxing_change_is_refused(old, new, request) -> None:
    """Two unrelated tags: if the new one allows something the old refused, it is no
    tightening (and so an update carrying it is refused)."""
    if decide(new, request).allowed and not decide(old, request).allowed:
        assert not is_tighter(old, new)


@given(old=tags(), data=st.data())
def test_every_strict_tightening_is_accepted(old, data) -> None:
    new = data.draw(tightened(old))
    assert is_tighter(old, new) == (new != old)
    assert at_least_as_strict(new, old)


@given(old=tags(), extra=st.sampled_from([PermittedAction.FORWARD, PermittedAction.EVIDENCE]))
def test_granting_a_permission_is_a_relaxation(old, extra) -> None:
    new = replace(old, permitted_actions=old.permitted_actions | {extra})
    assert not is_tighter(old, new)
