"""What a signer may say depends on who it is: the table of which envelope kinds, evidence
steps and notice fields an officer key, a duty desk and a node key may sign.

A signature proves who signed, not that they may say it. An enrolled officer holds a real
key; without this table it could sign a kind ``notice`` ("the NL desk acknowledged your
signal") and every verifier would believe it. So every party (origin node, destination
node, reading client) asks ``require_may_sign`` after verifying the signature, and a client
believes the ``node`` / ``by`` fields of a notice only through ``check_notice_claims``.

Who a signer is follows from its principal, which the key lookup vouches for: ``<node>/node``
is the node's certified key (enrolment refuses that handle to officers, ``identity.py``),
``<node>/desk`` and ``<node>/desk-backup`` are the duty desks, everyone else is an officer.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from liaison_net.core.envelope import Kind
from liaison_net.core.evidence import Step
from liaison_net.core.ids import NODE_HANDLE, node_of
from liaison_net.core.signals import BACKUP_DESK_HANDLE, DESK_HANDLE
from liaison_net.errors import SignerNotAllowed


class Signer(enum.Enum):
    OFFICER = "officer"  # an officer's own key
    DESK = "desk"  # a duty desk's key (a role address, kept by the duty officers)
    NODE = "node"  # a national node's CA-certified signing key


def signer_of(principal: str) -> Signer:
    handle = principal.split("/", 1)[1] if "/" in principal else ""
    if handle == NODE_HANDLE:
        return Signer.NODE
    if handle in (DESK_HANDLE, BACKUP_DESK_HANDLE):
        return Signer.DESK
    return Signer.OFFICER


_PEOPLE = frozenset({Signer.OFFICER, Signer.DESK})
_NODE = frozenset({Signer.NODE})

#: Envelope kind -> who may sign it. Officers and desks write messages, requests, replies
#: and signals; a node writes none of those (it holds no content of its own). Evidence is
#: signed by both: nodes attest accepted/relayed, recipients delivered/opened (table below).
#: Notices (signal acknowledgement, escalation, match, non-delivery, disclosure receipt,
#: request escalation) state what a node did or saw: a node's key only.
MAY_SIGN: Mapping[Kind, frozenset[Signer]] = {
    Kind.MESSAGE: _PEOPLE,
    Kind.REQUEST: _PEOPLE,
    Kind.REPLY: _PEOPLE,
    Kind.SIGNAL: _PEOPLE,
    Kind.EVIDENCE: _PEOPLE | _NODE,
    Kind.NOTICE: _NODE,
    Kind.RESTRICT: _PEOPLE,  # the owner's officer (core/restriction.py names which one)
    Kind.RECALL: _PEOPLE,
}

#: Evidence step -> who may attest it. ``evidence.maker`` names the exact maker of each
#: step and readers check it (``evidence.check_about``); a test keeps the two in step.
EVIDENCE_STEPS: Mapping[Step, frozenset[Signer]] = {
    Step.ACCEPTED: _NODE,
    Step.RELAYED: _NODE,
    Step.DELIVERED: _PEOPLE,
    Step.OPENED: _PEOPLE,
}

@dataclass(frozen=True)
class NoticeClaims:
    """What a notice of one type may claim, given the node whose key signed it."""

    own_node: tuple[str, ...] = ()  # fields that must name the signing node itself
    own_people: tuple[str, ...] = ()  # fields that must name an officer/desk of that node
    home_only: bool = False  # only the reader's own home node may say this


#: Notice type -> what its fields may claim (services/signal_desk.py, request_desk.py,
#: node.py). A signal acknowledgement is the acknowledging node's word about its own desk;
#: a non-delivery notice names the peer that failed, so only the reader's home node (which
#: sent the envelope on) may issue it. A type not listed gets the strictest default.
NOTICE_CLAIMS: Mapping[str, NoticeClaims] = {
    "signal-ack": NoticeClaims(own_node=("node",), own_people=("by",)),
    "signal-escalation": NoticeClaims(own_node=("node",)),
    "signal-match": NoticeClaims(),
    "request-escalation": NoticeClaims(own_node=("node",), own_people=("addressee",)),
    "disclosure": NoticeClaims(own_node=("node",)),
    "non-delivery": NoticeClaims(home_only=True),
    "restriction-applied": NoticeClaims(own_node=("node",)),  # core/restriction.py
    "erasure": NoticeClaims(own_node=("node",)),
}
DEFAULT_NOTICE_CLAIMS = NoticeClaims(own_node=("node",), own_people=("by",), home_only=True)


def may_sign(principal: str, kind: Kind) -> bool:
    return signer_of(principal) in MAY_SIGN[kind]


def require_may_sign(principal: str, kind: Kind) -> None:
    """Raise SignerNotAllowed (``signer_not_allowed``) if ``principal`` may not sign ``kind``."""
    if not may_sign(principal, kind):
        allowed = ", ".join(sorted(s.value for s in MAY_SIGN[kind]))
        raise SignerNotAllowed(f"{principal} ({signer_of(principal).value}) may not sign an "
                               f"envelope of kind {kind.value}; only: {allowed}")


def check_notice_claims(principal: str, fields: Mapping[str, object], *,
                        reader_node: str) -> None:
    """A notice is believed only if a node key signed it and what it says about nodes and
    people is that node's own word (``NOTICE_CLAIMS``), read by an officer of
    ``reader_node``."""
    require_may_sign(principal, Kind.NOTICE)
    signer_node = node_of(principal)
    claims = NOTICE_CLAIMS.get(str(fields.get("type")), DEFAULT_NOTICE_CLAIMS)
    if claims.home_only and signer_node != reader_node:
        raise SignerNotAllowed(f"a {fields.get('type')!r:.40} notice comes only from the "
                               f"reader's own node {reader_node}, not {principal}")
    for key in claims.own_node:
        if key in fields and fields[key] != signer_node:
            raise SignerNotAllowed(f"a notice signed by {principal} speaks for node "
                                   f"{fields[key]!r:.40}")
    for key in claims.own_people:
        value = fields.get(key)
        if key in fields and (not isinstance(value, str) or "/" not in value
                              or value.split("/", 1)[0] != signer_node):
            raise SignerNotAllowed(f"a notice signed by {principal} names {value!r:.40} "
                                   f"of another node as {key}")
