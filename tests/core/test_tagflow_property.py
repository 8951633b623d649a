"""Property: no sequence of forwards and re-tags by non-owners ever ends with a weaker tag
than the owner's, as judged by ``tagflow.check`` at the receiving layer.

The owner (NL) sends one envelope under a random tag. Then non-owners (officers of BE, LU
and DE-NW) take turns: each picks any envelope accepted so far and either forwards it
(carrying its original, or none, or the wrong one, or one it forged and signed itself) or
re-tags it as a new envelope of its own, each time under any tag hypothesis draws: tighter,
looser, the owner's name or its own. Whatever ``check`` accepts (at the destination and in
the client) and names NL as owner must be at least as strict as the owner's tag; and a
tag that names another owner never carries NL's envelope as its original.
"""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from liaison_net.core.envelope import Envelope
from liaison_net.core.limits import DAY_MS, HOUR_MS
from liaison_net.core.ownership import (
    Handling,
    Owner,
    OwnershipTag,
    PermittedAction,
    Tlp,
    at_least_as_strict,
)
from liaison_net.core.retention import make_skeleton
from liaison_net.core.tagflow import Layer, check
from liaison_net.errors import LiaisonError
from tests.core.factories import Officer, seal_from
from tests.core.strategies import NODES, tags, tightened

OWNER = Officer("nl/jdevries")
OTHERS = [Officer("be/mpeeters"), Officer("lu/cschmit"), Officer("de-nw/kmueller")]
KEYS = {o.signing.key_id: o.signer for o in [OWNER, *OTHERS]}
CARDS = {o.id: o.signing.public for o in [OWNER, *OTHERS]}
MODES = ["forward", "forward", "forward", "forward-no-original", "forward-wrong-original",
         "forward-forged", "retag"]


def _accepted(env: Envelope) -> bool:
    """As the recipient's node and then the recipient's client judge it."""
    here = env.header.recipients[0].node
    try:
        for layer in (Layer.DESTINATION, Layer.CLIENT):
            check(env.header, layer=layer, here=here, now=env.header.created,
                  lookup=KEYS.get, officer_key=CARDS.get)
    except LiaisonError:
        return False
    return True


@st.composite
def relaxed(draw: st.DrawFn, tag: OwnershipTag) -> OwnershipTag:
    """``tag`` loosened along one dimension: the laundering a non-owner would want."""
    how = draw(st.sampled_from(["handling", "tlp", "share_with", "actions", "retention",
                                "owner-unit"]))
    w = dict(tag.__dict__)
    if how == "handling":
        w["handling"], w["conditions"] = Handling.H0, ""
    elif how == "tlp":
        w["tlp"], w["community"] = Tlp.CLEAR, ""
    elif how == "share_with":
        w["share_with"] = frozenset(NODES)
    elif how == "actions":
        w["permitted_actions"] = frozenset(PermittedAction)
    elif how == "retention":
        w["retain_until"] = tag.retain_until + DAY_MS
    else:
        w["owner"] = Owner(tag.owner.node, tag.owner.unit + "-x")
    return OwnershipTag(**w).validate()


@st.composite
def new_tag(draw: st.DrawFn, previous: OwnershipTag) -> OwnershipTag:
    """The same, tighter, one step looser, or anything at all, sometimes keeping the owner's
    name."""
    tag = draw(st.one_of(st.just(previous), tightened(previous), relaxed(previous), tags()))
    if draw(st.booleans()):
        tag = OwnershipTag(**{**tag.__dict__, "owner": previous.owner,
                              "share_with": tag.share_with | {previous.owner.node}})
    return tag


@st.composite
def owners_tag(draw: st.DrawFn) -> OwnershipTag:
    """NL's tag; often one that allows forwarding, so that chains grow long."""
    drawn = draw(tags())
    w = {**drawn.__dict__, "owner": Owner("nl", drawn.owner.unit),
         "share_with": drawn.share_with | {"nl"}}
    if draw(st.booleans()):
        w.update(handling=draw(st.sampled_from([Handling.H0, Handling.H1])), conditions="",
                 tlp=draw(st.sampled_from([Tlp.CLEAR, Tlp.AMBER])), community="",
                 share_with=frozenset(NODES),
                 permitted_actions=frozenset({PermittedAction.FORWARD}))
    return OwnershipTag(**w).validate()


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_no_sequence_of_non_owner_forwards_and_retags_weakens_the_owners_tag(
        data: st.DataObject) -> None:
    root_tag = data.draw(owners_tag(), label="owner's tag")
    root = seal_from(OWNER, [OTHERS[0]], tag=root_tag)
    pool = [root]
    steps = data.draw(st.integers(1, 6), label="steps")
    for _ in range(steps):
        actor = data.draw(st.sampled_from(OTHERS), label="actor")
        source = data.draw(st.sampled_from(pool), label="source")
        mode = data.draw(st.sampled_from(MODES), label="mode")
        tag = data.draw(new_tag(source.header.tag), label="tag")
        to = data.draw(st.sampled_from([o for o in [OWNER, *OTHERS] if o is not actor]))
        try:
            env = _attempt(actor, source, mode, tag, to, pool)
        except LiaisonError:
            continue  # the attacker could not even build it (e.g. retention before expiry)
        if _accepted(env):
            event(f"accepted: {mode}")
            pool.append(env)

    for env in pool:
        if env.header.tag.owner.node == "nl":
            assert at_least_as_strict(env.header.tag, root_tag), (
                f"{env.header.sender} ended with a weaker tag than the owner's")
        if env.header.ref is None:  # not a forward: the signer's own information
            assert env.header.tag.owner.node == env.header.sender.split("/")[0]


def _attempt(actor: Officer, source: Envelope, mode: str, tag: OwnershipTag, to: Officer,
             pool: list[Envelope]) -> Envelope:
    created = source.header.created + 1
    common = dict(now=created, expires=min(created + 8 * HOUR_MS, tag.retain_until),
                  tag=tag)
    if mode == "retag":
        return seal_from(actor, [to], b"re-tagged", **common)
    if mode == "forward-no-original":
        return seal_from(actor, [to], b"fwd", ref=source.id, **common)
    if mode == "forward-wrong-original":
        others = [e for e in pool if e is not source]
        other = others[-1] if others else seal_from(OWNER, [to], b"another", now=created)
        return seal_from(actor, [to], b"fwd", ref=source.id,
                         original=make_skeleton(other.to_bytes()), **common)
    if mode == "forward-forged":
        fake = seal_from(actor, [to], b"my own original", now=source.header.created,
                         expires=min(source.header.created + 8 * HOUR_MS, tag.retain_until),
                         tag=tag)
        return seal_from(actor, [to], b"fwd", ref=fake.id,
                         original=make_skeleton(fake.to_bytes()), **common)
    return seal_from(actor, [to], b"fwd", ref=source.id,
                     original=make_skeleton(source.to_bytes()), **common)
