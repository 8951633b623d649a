"""Restriction updates: the owner tightens or withdraws information after it was sent.

The Benelux police treaty leaves the provider of information in charge of it after the
exchange: the provider may restrict its use later, or withdraw it, and the recipients must
comply. DESIGN.md says how a tag changes: "a new envelope signed by the owner, never an
edit". So an update is an envelope of its own, of kind ``restrict`` or ``recall``:

    ref       the owner's original envelope (never a forward of it)
    original  the original's signed skeleton (core/retention.py), as a forward carries it:
              every party verifies it under the original signer's key, without the body
    tag       for ``restrict``: the new tag, strictly tighter than the original's
              (``is_tighter``); for ``recall``: the original's tag or a tighter one
    sender    the issuer: the officer who sent the original under the owner's tag
    content   (encrypted for the recipients) the owner's words: the reason

The kind sits in the signed header under the envelope's own signature domain, so an
update's signature can never be replayed as anything else, and every party verifies the
exact bytes received before decoding them (``sealing.verify_frame``), with the header's
size limits. ``check_update`` is the whole rule, run by the issuing client, the origin
node, every destination node and every reading client (through ``tagflow.check``).

Who is the owner: the tag names a node and a unit (``owner``), but an officer card names no
unit, so the one voice of the unit that every party can verify is the officer who created
the original under that tag (rule 2 of ``tagflow``: an officer of the owner's node). The
issuer must be that officer; anyone else, a colleague of another unit or a recipient, is
refused with ``policy.update_not_owner``.

A node applies an update to every envelope it holds that carries the information: the
original and the forwards of it (their ``ref`` chain leads to it). It keeps the update's
tag beside them; later forwards must pass under it too (``forward_refusal``). A recall
purges their content (the signed skeleton stays, as at retention) and the node owes the
owner a signed erasure receipt; a restriction, a signed receipt that it applied it.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass

from liaison_net.core.envelope import Header, Kind
from liaison_net.core.ids import id_to_text
from liaison_net.core.ownership import Handling, OwnershipTag, at_least_as_strict
from liaison_net.core.policy import Action, Request, decide
from liaison_net.errors import Malformed, PolicyRefused

UPDATE_KINDS = frozenset({Kind.RESTRICT, Kind.RECALL})

#: Notice types a node signs for the issuer once it applied an update (services/notices).
NOTICE_APPLIED = "restriction-applied"
NOTICE_ERASURE = "erasure"


class UpdateAction(enum.Enum):
    RESTRICT = "restrict"
    RECALL = "recall"


@dataclass(frozen=True)
class Update:
    """A verified update, as a node applies it."""

    id: bytes  # the update envelope
    action: UpdateAction
    original: bytes  # the owner's envelope it is about
    issuer: str
    tag: OwnershipTag  # the tag from now on (a recall: the original's)
    issued: int  # ms, the update's ``created``

    @property
    def receipt_type(self) -> str:
        return NOTICE_ERASURE if self.action is UpdateAction.RECALL else NOTICE_APPLIED


def is_update(header: Header) -> bool:
    return header.kind in UPDATE_KINDS


def is_tighter(old: OwnershipTag, new: OwnershipTag) -> bool:
    """True when ``new`` differs from ``old`` and allows nothing ``old`` refuses.

    As ``ownership.at_least_as_strict`` (owner, evaluation and purpose kept; handling and
    TLP not lower; share_with and permitted_actions subsets; retention not later), except
    that the owner may *add* conditions under H3: the old conditions stay, word for word,
    at the start of the new ones (no machine reads them, so adding words cannot allow
    anything; removing some could)."""
    if new == old:
        return False
    if at_least_as_strict(new, old):
        return True
    if not (old.handling is Handling.H3 and new.handling is Handling.H3
            and new.conditions.startswith(old.conditions)):
        return False
    # Only the conditions were extended: the rest must be a tightening on its own.
    return at_least_as_strict(_with_conditions(new, old.conditions), old)


def _with_conditions(tag: OwnershipTag, conditions: str) -> OwnershipTag:
    return OwnershipTag(owner=tag.owner, handling=tag.handling, tlp=tag.tlp,
                        evaluation=tag.evaluation, share_with=tag.share_with,
                        permitted_actions=tag.permitted_actions, purpose=tag.purpose,
                        retain_until=tag.retain_until, conditions=conditions,
                        community=tag.community)


def check_update(header: Header, original: Header) -> Update:
    """The rule for an update envelope whose ``original`` skeleton has verified as
    ``original`` (module docstring). Raises ``PolicyRefused`` naming the rule."""
    if not is_update(header):
        raise Malformed(f"{header.id_text} is a {header.kind.value}, not an update")
    if header.ref != original.id:
        raise PolicyRefused(f"update {header.id_text} carries {original.id_text}, not the "
                            "envelope it names in ref", code="policy.original_mismatch")
    if original.kind in UPDATE_KINDS or original.original is not None:
        raise PolicyRefused(f"an update names the owner's own envelope, not "
                            f"{original.kind.value} {original.id_text}",
                            code="policy.update_target")
    if header.sender != original.sender:
        raise PolicyRefused(f"only {original.sender}, who sent {original.id_text} for its "
                            f"owner {original.tag.owner}, may restrict or recall it; not "
                            f"{header.sender}", code="policy.update_not_owner")
    if header.created <= original.created:
        raise PolicyRefused("an update is made after the envelope it updates",
                            code="policy.update_target")
    if header.kind is Kind.RESTRICT:
        if not is_tighter(original.tag, header.tag):
            raise PolicyRefused(f"the update of {original.id_text} would relax its tag or "
                                "leave it unchanged: an update may only tighten",
                                code="policy.update_relaxes")
        action = UpdateAction.RESTRICT
    else:
        if not at_least_as_strict(header.tag, original.tag):
            raise PolicyRefused(f"the recall of {original.id_text} carries a looser tag",
                                code="policy.update_relaxes")
        action = UpdateAction.RECALL
    return Update(header.id, action, original.id, header.sender, header.tag, header.created)


def check_after(update: Update, current: Collection[Update]) -> None:
    """An update arriving after others (``current``, applied here already) must tighten
    each of them too: two updates never combine into a relaxation, whatever their order.
    A recall after anything, and anything after a recall, is fine (nothing is left)."""
    for earlier in current:
        if earlier.id == update.id or UpdateAction.RECALL in (earlier.action, update.action):
            continue
        if not (is_tighter(earlier.tag, update.tag) or update.tag == earlier.tag):
            raise PolicyRefused(f"update {id_to_text(update.id)} would relax the restriction "
                                f"{id_to_text(earlier.id)} already applied here",
                                code="policy.update_relaxes")


def forward_refusal(updates: Collection[Update], *, now: int, actor: str,
                    recipients: Collection[tuple[str, bool]]) -> PolicyRefused | None:
    """Why a forward of restricted information is refused now, or None.

    ``recipients``: (node, consented) per recipient, ``consented`` when the forward's
    consent covers that recipient and was issued after the latest update (an owner who
    consents after restricting has decided again; a consent from before has not)."""
    for update in updates:
        if update.action is UpdateAction.RECALL:
            return PolicyRefused(f"{id_to_text(update.original)} was recalled by its owner "
                                 f"({update.issuer})", code="policy.recalled")
        for node, consented in recipients:
            decision = decide(update.tag, Request(Action.FORWARD, now, actor, node, consented))
            if not decision.allowed:
                return PolicyRefused(
                    f"forward to {node} refused under the restriction {update.issuer} placed "
                    f"on {id_to_text(update.original)}: {decision.reason}", code=decision.code)
    return None

