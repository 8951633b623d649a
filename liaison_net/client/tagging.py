"""The ownership tag on the sending side, for any front end (CLI or desk): what each choice
means, the tag from an officer's choices, and the sending client's policy check.

The check is ``core.policy.require`` for SEND to each recipient's node, the very rule the
origin node and every relay apply (``core.tagflow``), so what a front end refuses here is
exactly what the network would refuse, said before anything is sealed.
"""

from __future__ import annotations

from typing import Any

from liaison_net.core.ids import node_of
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
from liaison_net.core.policy import Action, Request, decide, require
from liaison_net.errors import PolicyRefused

HANDLING_MEANING = {
    Handling.H0: "only for preventing and combating crime under the applicable law",
    Handling.H1: "not to be disclosed in judicial proceedings without the provider's "
                 "permission",
    Handling.H2: "not to be disseminated without the provider's permission",
    Handling.H3: "other restrictions: see the conditions",
}
TLP_MEANING = {
    Tlp.CLEAR: "disclosure is not limited",
    Tlp.GREEN: "within the named community only",
    Tlp.AMBER: "the recipients' organisations, on a need-to-know basis",
    Tlp.AMBER_STRICT: "the recipients' own organisation only",
    Tlp.RED: "the named recipients only",
}
SOURCE_MEANING = {
    SourceReliability.A: "no doubt about the source's authenticity, trustworthiness and "
                         "competence",
    SourceReliability.B: "the source has in most instances proved reliable",
    SourceReliability.C: "the source has in most instances proved unreliable",
    SourceReliability.X: "the source's reliability cannot be assessed",
}
ACCURACY_MEANING = {
    InformationAccuracy.KNOWN_TRUE: "known to be true without reservation",
    InformationAccuracy.KNOWN_TO_SOURCE: "known personally to the source, not to the official "
                                         "passing it on",
    InformationAccuracy.NOT_KNOWN_CORROBORATED: "not known personally to the source, "
                                                "corroborated",
    InformationAccuracy.NOT_KNOWN: "not known personally to the source, cannot be "
                                   "corroborated",
}
PERMIT_MEANING = {
    PermittedAction.FORWARD: "recipients may pass it on (within the TLP and the nodes "
                             "allowed) without asking you",
    PermittedAction.EVIDENCE: "recipients may use it as evidence in judicial proceedings",
}


def choices() -> dict[str, list[dict[str, Any]]]:
    """Every choice of the tag picker with what it means, in order of strictness."""
    return {
        "handling": [{"value": h.value, "meaning": HANDLING_MEANING[h]} for h in Handling],
        "tlp": [{"value": t.value, "meaning": TLP_MEANING[t]} for t in Tlp],
        "source": [{"value": s.value, "meaning": SOURCE_MEANING[s]}
                   for s in SourceReliability],
        "accuracy": [{"value": int(a), "meaning": ACCURACY_MEANING[a]}
                     for a in InformationAccuracy],
        "permit": [{"value": p.value, "meaning": PERMIT_MEANING[p]} for p in PermittedAction],
    }


def tag_badges(tag: OwnershipTag) -> dict[str, Any]:
    """The tag as a reader sees it: each code with its meaning."""
    return {
        "owner": str(tag.owner),
        "handling": tag.handling.value,
        "handling_meaning": HANDLING_MEANING[tag.handling],
        "conditions": tag.conditions,
        "tlp": tag.tlp.value,
        "tlp_meaning": TLP_MEANING[tag.tlp],
        "community": tag.community,
        "evaluation": str(tag.evaluation),
        "evaluation_meaning": (f"{SOURCE_MEANING[tag.evaluation.source]}; "
                               f"{ACCURACY_MEANING[tag.evaluation.accuracy]}"),
        "share_with": sorted(tag.share_with),
        "permitted_actions": sorted(a.value for a in tag.permitted_actions),
        "purpose": tag.purpose,
        "retain_until": tag.retain_until,
    }


def allowed_actions(tag: OwnershipTag, *, own_node: str, now: int) -> list[dict[str, Any]]:
    """What a reader on ``own_node`` may do with it: forward to each node, use as evidence
    (each with the policy's rule and reason), as `liaison read` shows."""
    allows = []
    for node in sorted(tag.share_with | {own_node}):
        d = decide(tag, Request(Action.FORWARD, now, actor_node=own_node, target_node=node))
        allows.append({"action": "forward", "target": node, "allowed": d.allowed,
                       "rule": d.code, "reason": d.reason})
    d = decide(tag, Request(Action.EVIDENCE, now, actor_node=own_node, target_node=own_node))
    allows.append({"action": "evidence", "target": own_node, "allowed": d.allowed,
                   "rule": d.code, "reason": d.reason})
    return allows


def build_tag(*, own: str, unit: str, handling: str, tlp: str, source: str, accuracy: int,
              share_with: frozenset[str], permit: tuple[str, ...], purpose: str,
              retain_until: int, conditions: str, community: str) -> OwnershipTag:
    """The ownership tag from the officer's choices, checked on its own."""
    return OwnershipTag(
        owner=Owner(own, unit), handling=Handling(handling), tlp=Tlp(tlp.upper()),
        evaluation=Evaluation(SourceReliability(source), InformationAccuracy(accuracy)),
        share_with=share_with, permitted_actions=frozenset(PermittedAction(a) for a in permit),
        purpose=purpose, retain_until=retain_until, conditions=conditions, community=community,
    ).validate()


def check_send(tag: OwnershipTag, recipients: list[str], *, own: str, now: int) -> None:
    """The sending client's policy check: refuse here, with the reason, before sealing."""
    for recipient in recipients:
        try:
            require(tag, Request(Action.SEND, now, actor_node=own,
                                 target_node=node_of(recipient)))
        except PolicyRefused as exc:
            raise PolicyRefused(f"not sending to {recipient}: {exc.detail}",
                                code=exc.code) from None
