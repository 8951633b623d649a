"""What an ownership tag allows: every rule, as tables, and one pure function that decides.

The sending client, the origin node, every relaying node, the destination node and the
receiving client all call ``decide`` with the same tag and their own ``Request``; each
gets the same answer for the same facts, and records it. Read the tables against
DESIGN.md and docs/ownership.md: they are the whole policy.

Order of the checks (the first refusal names the reason):
1. retention: at or after ``retain_until`` nothing may be done but the purge;
2. ownership: only the owner's service creates an envelope under a tag (SEND);
3. reach: the target node must be allowed by TLP for this action (``TLP_REACH``) and be in
   ``share_with``, unless the owner consented to exactly this action;
4. handling: some actions need the owner's consent under some codes (``HANDLING_NEED``);
5. permission: FORWARD and EVIDENCE also need the owner's advance permission in
   ``permitted_actions`` (``NEEDS_PERMISSION``), or a consent.

Every table is monotone in strictness (a higher handling rank or TLP rank never asks for
less), which is what makes "a stricter tag never allows what a looser one refuses" hold; a
property test checks it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from liaison_net.core.ownership import (
    Handling,
    OwnershipTag,
    PermittedAction,
    Tlp,
    at_least_as_strict,
)
from liaison_net.errors import PolicyRefused


class Action(enum.Enum):
    SEND = "send"  # an officer creates an envelope under the tag, to recipients on target node
    RELAY = "relay"  # a node passes the envelope on to the target node
    DELIVER = "deliver"  # the target node puts it in a recipient's inbox / the client opens it
    FORWARD = "forward"  # an officer passes the content on to someone on the target node
    EVIDENCE = "evidence"  # use the content as evidence in judicial proceedings
    RETAIN = "retain"  # keep the content at time `now`


class Need(enum.Enum):
    ALLOW = "allow"
    CONSENT = "consent"  # allowed only with an owner-signed consent for this very action


class Reach(enum.IntEnum):
    """How far an action may take the information (higher is wider)."""

    NOBODY = 0  # no one beyond the addressed recipients
    OWN_ORGANISATION = 1  # the acting officer's own node (their national service)
    SHARE_WITH = 2  # any node listed in share_with


_A, _C = Need.ALLOW, Need.CONSENT

#: Handling code -> what the action needs. H0 restricts the purpose, which every action of
#: this network serves (preventing and combating crime); H1 guards judicial use; H2 guards
#: dissemination, and judicial use is a dissemination; H3's free-text conditions cannot be
#: checked by a machine, so anything beyond delivery asks the owner.
HANDLING_NEED: dict[Action, dict[Handling, Need]] = {
    Action.SEND: {Handling.H0: _A, Handling.H1: _A, Handling.H2: _A, Handling.H3: _A},
    Action.RELAY: {Handling.H0: _A, Handling.H1: _A, Handling.H2: _A, Handling.H3: _A},
    Action.DELIVER: {Handling.H0: _A, Handling.H1: _A, Handling.H2: _A, Handling.H3: _A},
    Action.FORWARD: {Handling.H0: _A, Handling.H1: _A, Handling.H2: _C, Handling.H3: _C},
    Action.EVIDENCE: {Handling.H0: _A, Handling.H1: _C, Handling.H2: _C, Handling.H3: _C},
    Action.RETAIN: {Handling.H0: _A, Handling.H1: _A, Handling.H2: _A, Handling.H3: _A},
}

_S, _O, _N = Reach.SHARE_WITH, Reach.OWN_ORGANISATION, Reach.NOBODY

#: TLP label -> how far the action may reach. Sending, relaying and delivering go to named
#: recipients, which every label allows (within share_with). Forwarding and judicial use
#: reach new people: AMBER+STRICT keeps them inside the forwarder's own organisation, RED
#: keeps them with the named recipients.
TLP_REACH: dict[Action, dict[Tlp, Reach]] = {
    Action.SEND: {Tlp.CLEAR: _S, Tlp.GREEN: _S, Tlp.AMBER: _S, Tlp.AMBER_STRICT: _S, Tlp.RED: _S},
    Action.RELAY: {Tlp.CLEAR: _S, Tlp.GREEN: _S, Tlp.AMBER: _S, Tlp.AMBER_STRICT: _S, Tlp.RED: _S},
    Action.DELIVER: {
        Tlp.CLEAR: _S, Tlp.GREEN: _S, Tlp.AMBER: _S, Tlp.AMBER_STRICT: _S, Tlp.RED: _S,
    },
    Action.FORWARD: {
        Tlp.CLEAR: _S, Tlp.GREEN: _S, Tlp.AMBER: _S, Tlp.AMBER_STRICT: _O, Tlp.RED: _N,
    },
    Action.EVIDENCE: {
        Tlp.CLEAR: _S, Tlp.GREEN: _S, Tlp.AMBER: _S, Tlp.AMBER_STRICT: _O, Tlp.RED: _N,
    },
    Action.RETAIN: {Tlp.CLEAR: _S, Tlp.GREEN: _S, Tlp.AMBER: _S, Tlp.AMBER_STRICT: _S, Tlp.RED: _S},
}

#: Actions that need the owner's permission in advance (permitted_actions) or a consent.
NEEDS_PERMISSION: dict[Action, PermittedAction | None] = {
    Action.SEND: None,
    Action.RELAY: None,
    Action.DELIVER: None,
    Action.FORWARD: PermittedAction.FORWARD,
    Action.EVIDENCE: PermittedAction.EVIDENCE,
    Action.RETAIN: None,
}

#: Stable reason codes (``policy.<rule>``) and what they tell the person refused.
REASONS: dict[str, str] = {
    "allowed": "the tag allows this action",
    "retention_expired": "the tag's retain_until has passed; the content must be purged",
    "not_owner": "only the tag's owner may create an envelope under this tag",
    "share_with": "the target node is not in the tag's share_with",
    "tlp_own_organisation": "TLP:AMBER+STRICT keeps this inside the acting organisation",
    "tlp_red": "TLP:RED keeps this with the named recipients only",
    "handling_consent": "the handling code requires the owner's consent for this action",
    "not_permitted": "the owner did not permit this action in permitted_actions",
    "relax_by_non_owner": "only the owner may relax a tag; anyone may tighten it",
    # Provenance rules, checked by core/tagflow.py at every layer before decide().
    "owner_not_signer": "only the owner's service creates an envelope under its tag",
    "original_missing": "a forward must carry its original's signed header",
    "original_mismatch": "a forward's original must be the envelope it names in ref",
    "consent_used": "a consent allows exactly one forward, and it was used already",
}


@dataclass(frozen=True)
class Request:
    """One action someone wants to take with an envelope under its tag.

    ``actor_node`` is the node of whoever acts (the sending or forwarding officer's node, the
    relaying node). ``target_node`` is where the information goes: the next node for RELAY,
    the recipient's node for SEND, DELIVER and FORWARD, the actor's own node for EVIDENCE and
    RETAIN. ``consent`` is True only once an owner-signed consent for exactly this action has
    been verified by the caller.
    """

    action: Action
    now: int
    actor_node: str
    target_node: str
    consent: bool = False


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str

    @property
    def code(self) -> str:
        return f"policy.{self.rule}"

    @property
    def reason(self) -> str:
        return REASONS[self.rule]


_ALLOWED = Decision(True, "allowed")
_REFUSED = {rule: Decision(False, rule) for rule in REASONS if rule != "allowed"}

# The tables above are the policy; what follows is them again, keyed by the members' values,
# for ``decide_for``, which every party runs per envelope and per target: ``Enum.__hash__``
# is Python-level in 3.11 (a dict lookup by member costs a frame), a member's ``_value_`` is
# a plain attribute and a str hashes in C. Built from the tables at import, so they cannot
# drift apart; tests/core/test_policy_fast.py decides every combination both ways.
_SEND = Action.SEND.value
#: Per action value: how far it reaches per TLP value, the handling values that need a
#: consent, the permission it needs (or None).
_ActionRules = tuple[dict[str, Reach], frozenset[str], PermittedAction | None]


def compile_tables() -> tuple[dict[str, _ActionRules], frozenset[str]]:
    """The tables above keyed by value, and the actions no TLP, handling code or permission
    restricts beyond share_with (SEND, RELAY, DELIVER, RETAIN today: only retention,
    ownership and share_with are left to ask). Built once at import; a test that plants a
    bug in a table compiles them again (tests/fuzz/test_fuzz_bounded.py)."""
    by_action = {
        action.value: ({tlp.value: reach for tlp, reach in TLP_REACH[action].items()},
                       frozenset(h.value for h, need in HANDLING_NEED[action].items()
                                 if need is Need.CONSENT),
                       NEEDS_PERMISSION[action])
        for action in Action
    }
    plain = frozenset(value for value, (reach, consent, permission) in by_action.items()
                      if not consent and permission is None
                      and all(r is Reach.SHARE_WITH for r in reach.values()))
    return by_action, plain


_BY_ACTION, _PLAIN = compile_tables()


def decide(tag: OwnershipTag, request: Request) -> Decision:
    """Allow or refuse ``request`` under ``tag``; pure, total, and the only place rules live."""
    return decide_for(tag, request.action, now=request.now, actor_node=request.actor_node,
                      target_node=request.target_node, consent=request.consent)


def decide_for(tag: OwnershipTag, action: Action, *, now: int, actor_node: str,
               target_node: str, consent: bool = False) -> Decision:
    """``decide`` without building a ``Request``: the per-envelope callers' form."""
    if now >= tag.retain_until:
        return _REFUSED["retention_expired"]
    value = action._value_
    if value == _SEND and actor_node != tag.owner.node:
        return _REFUSED["not_owner"]
    if consent:
        # The owner has signed off on exactly this action: its own decision overrides the
        # tag's restrictions (but never retention, checked above).
        return _ALLOWED
    if value in _PLAIN:
        return _ALLOWED if target_node in tag.share_with else _REFUSED["share_with"]
    reach_by_tlp, consent_handling, permission = _BY_ACTION[value]
    reach = reach_by_tlp[tag.tlp._value_]
    if reach is Reach.NOBODY:
        return _REFUSED["tlp_red"]
    if reach is Reach.OWN_ORGANISATION and target_node != actor_node:
        return _REFUSED["tlp_own_organisation"]
    if target_node not in tag.share_with:
        return _REFUSED["share_with"]
    if tag.handling._value_ in consent_handling:
        return _REFUSED["handling_consent"]
    if permission is not None and permission not in tag.permitted_actions:
        return _REFUSED["not_permitted"]
    return _ALLOWED


def require(tag: OwnershipTag, request: Request) -> Decision:
    """``decide``, raising PolicyRefused (code ``policy.<rule>``) on a refusal."""
    decision = decide(tag, request)
    if not decision.allowed:
        raise PolicyRefused(
            f"{request.action.value} to {request.target_node} refused: {decision.reason}",
            code=decision.code,
        )
    return decision


def check_retag(old: OwnershipTag, new: OwnershipTag, *, actor_is_owner: bool) -> Decision:
    """A new tag for existing information: anyone may tighten, only the owner may relax."""
    if actor_is_owner and new.owner == old.owner:
        return _ALLOWED
    if at_least_as_strict(new, old):
        return _ALLOWED
    return Decision(False, "relax_by_non_owner")
