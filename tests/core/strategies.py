"""Hypothesis strategies for valid tags and envelopes."""

from __future__ import annotations

from hypothesis import strategies as st

from liaison_net.core.limits import DAY_MS
from liaison_net.core.ownership import (
    Evaluation,
    Handling,
    InformationAccuracy,
    Owner,
    OwnershipTag,
    PermittedAction,
    SourceReliability,
    Tlp,
)
from tests.core.factories import NOW

NODES = ["be", "nl", "lu", "de-nw"]
text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF,
                           exclude_categories=("Cs", "Cc", "Cf")),
    min_size=1, max_size=40,
).filter(lambda s: s.strip() != "")


@st.composite
def tags(draw: st.DrawFn) -> OwnershipTag:
    owner_node = draw(st.sampled_from(NODES))
    share = frozenset(draw(st.sets(st.sampled_from(NODES)))) | {owner_node}
    handling = draw(st.sampled_from(list(Handling)))
    tlp = draw(st.sampled_from(list(Tlp)))
    return OwnershipTag(
        owner=Owner(owner_node, draw(text)),
        handling=handling,
        tlp=tlp,
        evaluation=Evaluation(draw(st.sampled_from(list(SourceReliability))),
                              draw(st.sampled_from(list(InformationAccuracy)))),
        share_with=share,
        permitted_actions=frozenset(draw(st.sets(st.sampled_from(list(PermittedAction))))),
        purpose=draw(text),
        retain_until=NOW + draw(st.integers(4 * DAY_MS, 365 * DAY_MS)),
        conditions=draw(text) if handling is Handling.H3 else "",
        community=draw(text) if tlp is Tlp.GREEN else "",
    ).validate()


@st.composite
def tightened(draw: st.DrawFn, tag: OwnershipTag) -> OwnershipTag:
    """A tag at least as strict as ``tag``, changed along random dimensions."""
    handling = draw(st.sampled_from([h for h in Handling if h.rank >= tag.handling.rank]))
    tlp = draw(st.sampled_from([t for t in Tlp if t.rank >= tag.tlp.rank]))
    keep = draw(st.sets(st.sampled_from(sorted(tag.share_with))))
    share = frozenset(keep) | {tag.owner.node}
    actions = frozenset(draw(st.sets(st.sampled_from(sorted(tag.permitted_actions,
                                                             key=lambda a: a.value))))
                        ) if tag.permitted_actions else frozenset()
    if handling is Handling.H3:
        conditions = tag.conditions if tag.handling is Handling.H3 else draw(text)
    else:
        conditions = ""
    community = ""
    if tlp is Tlp.GREEN:
        community = tag.community if tag.tlp is Tlp.GREEN else draw(text)
    return OwnershipTag(
        owner=tag.owner, handling=handling, tlp=tlp, evaluation=tag.evaluation,
        share_with=share, permitted_actions=actions, purpose=tag.purpose,
        retain_until=draw(st.integers(NOW + 1, tag.retain_until)),
        conditions=conditions, community=community,
    ).validate()
