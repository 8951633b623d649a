"""The owner's tag holds at every hop: the one check every party runs on an envelope alone.

The origin node, a relaying node, the destination node and the reading client each call
``check`` on a verified envelope, with the keys they already trust (a node's directory and
key history, a client's CA-verified directory) and no database. It answers the same for the
same envelope everywhere, so a certified peer that launders a tag is refused by the next
honest party, and a compromised node that plants one in an inbox is refused by the client.

Theory of operation (docs/ownership.md §6 is the same table in words):

1. **Who may say this** (``signers.require_may_sign``): the signer's kind of key (officer,
   desk, node) may sign this envelope kind. A notice from an officer key stops here.
2. **The owner is the signer's node** (non-forwards): an envelope is created under a tag
   only by the owner's service, so ``tag.owner.node`` is the node of ``sender``; anything
   else is someone putting words in the owner's mouth (``policy.owner_not_signer``).
3. **A forward carries its original** (a ``message`` whose ``ref`` names what it passes
   on): ``original`` holds the original's signed skeleton (header, body SHA-256, signer key
   id, signature), which verifies under the original signer's key without the body. It
   must name the envelope in ``ref`` (``policy.original_mismatch``; missing:
   ``policy.original_missing``), and the forward's tag must be the original's or tighter
   (``ownership.at_least_as_strict``: same owner, nothing relaxed;
   ``policy.relax_by_non_owner``). The original is checked the same way in turn (2 or 3),
   down to the owner's own envelope, at most ``MAX_FORWARD_DEPTH`` deep. Relaxing is the
   owner's alone, and the owner does it by a new envelope of its own (rule 2), never by a
   forward.
4. **What this layer decides** under the tag, with ``policy.decide`` (``LAYER_ACTIONS``):
   SEND and RELAY at the origin, RELAY at a relay, DELIVER at the destination and in the
   client; for a forward, FORWARD to each recipient's node this layer serves, with the
   owner's consent where it covers the recipient.
5. **A consent** is bound to one original, one forwarder and one recipient (officer or
   country), and must not have expired when the forward was made (at the origin: now). It
   is single use: ``Flow.consent_digest`` is what a node records, in the transaction that
   accepts the forward, so a second forward under the same consent is refused there
   (``policy.consent_used``).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
from collections.abc import Callable, Collection
from dataclasses import dataclass

from liaison_net.core import codec, crypto, restriction
from liaison_net.core.consent import Consent, claimed_owner, verify_consent
from liaison_net.core.envelope import Header, Kind, decode_header, signed_digest_message
from liaison_net.core.ids import node_of
from liaison_net.core.limits import CEILING_LIMITS, DEFAULT_LIMITS, Limits
from liaison_net.core.ownership import at_least_as_strict
from liaison_net.core.policy import Action, decide_for
from liaison_net.core.retention import decode_skeleton
from liaison_net.core.sealing import KeyLookup
from liaison_net.core.signers import MAY_SIGN, Signer, require_may_sign, signer_of
from liaison_net.errors import (
    BadTimestamp,
    Forbidden,
    LiaisonError,
    LimitExceeded,
    Malformed,
    PolicyRefused,
    UnknownKey,
)

#: How many forwards deep an original may nest (each nests the one before, in the header).
MAX_FORWARD_DEPTH = 4


class Layer(enum.Enum):
    ORIGIN = "origin"  # the sender's home node, on submission
    RELAY = "relay"  # a node passing the envelope on towards other nodes
    DESTINATION = "destination"  # the recipients' node, before their inbox
    CLIENT = "client"  # the reading officer's machine, before showing it


class _Actor(enum.Enum):
    SENDER = "sender"  # the node of the envelope's sender
    HERE = "here"  # the party that checks


class _Targets(enum.Enum):
    RECIPIENTS = "recipients"  # every recipient's node
    REMOTE = "remote"  # every recipient's node other than here
    HERE = "here"  # this party's own node


#: What each layer decides under the tag for an envelope that is not a forward:
#: (action, whose node acts, which nodes it targets). A forward is decided as FORWARD by
#: the sender's node to ``FORWARD_TARGETS[layer]`` instead.
LAYER_ACTIONS: dict[Layer, tuple[tuple[Action, _Actor, _Targets], ...]] = {
    Layer.ORIGIN: ((Action.SEND, _Actor.SENDER, _Targets.RECIPIENTS),
                   (Action.RELAY, _Actor.HERE, _Targets.REMOTE)),
    Layer.RELAY: ((Action.RELAY, _Actor.HERE, _Targets.REMOTE),),
    Layer.DESTINATION: ((Action.DELIVER, _Actor.HERE, _Targets.HERE),),
    Layer.CLIENT: ((Action.DELIVER, _Actor.HERE, _Targets.HERE),),
}
FORWARD_TARGETS: dict[Layer, _Targets] = {
    Layer.ORIGIN: _Targets.RECIPIENTS,
    Layer.RELAY: _Targets.REMOTE,
    Layer.DESTINATION: _Targets.HERE,
    Layer.CLIENT: _Targets.HERE,
}

# The tables above again, keyed by the members' values, for ``check``, which every party
# runs per envelope: ``Enum.__hash__`` is Python-level in 3.11, a member's ``_value_`` is a
# plain attribute whose str hashes in C. Built from the tables at import, never by hand.
_LAYER_ACTIONS = {layer.value: plan for layer, plan in LAYER_ACTIONS.items()}
_FORWARD_TARGETS = {layer.value: which for layer, which in FORWARD_TARGETS.items()}
_ORIGIN = Layer.ORIGIN.value
_MESSAGE = Kind.MESSAGE.value
_UPDATE_KINDS = frozenset(kind.value for kind in restriction.UPDATE_KINDS)
_MAY_SIGN = {kind.value: frozenset(s.value for s in signers)
             for kind, signers in MAY_SIGN.items()}
_SENDER, _RECIPIENTS, _REMOTE = _Actor.SENDER, _Targets.RECIPIENTS, _Targets.REMOTE

#: An officer id -> its Ed25519 public key (for the consent's signer), or None.
OfficerKey = Callable[[str], bytes | None]


@dataclass(frozen=True)
class Flow:
    """What ``check`` relied on: the verified originals (nearest first) and the consent."""

    originals: tuple[Header, ...]
    consent: Consent | None
    consent_digest: bytes | None  # what a node records as used, with the accept


def is_forward(header: Header) -> bool:
    """A message that names an original in ``ref`` passes that original on."""
    return header.kind is Kind.MESSAGE and header.ref is not None


@dataclass(frozen=True)
class Disclosure:
    """Whom the node delivering a forward owes a disclosure receipt, and about what."""

    owner: str  # the officer told
    original: bytes  # the envelope the receipt is about (its ``ref``)
    consent_for: str | None  # the consent's target, for a consented forward


def disclosure_owed(header: Header, flow: Flow) -> Disclosure | None:
    """A forward discloses the owner's information to new recipients, with the owner's
    consent or because the tag allows it: either way the owner is told, since a later
    restriction or recall reaches a forward only through these receipts (docs/ownership.md
    §9). With a consent: the officer who granted it, about what it named. Without: the
    sender of the owner's own envelope (the root of the chain of originals), about that
    envelope, unless that officer is the forwarder."""
    if not is_forward(header):
        return None
    if flow.consent is not None:
        return Disclosure(flow.consent.owner, flow.consent.original, flow.consent.target)
    if not flow.originals:
        return None
    root = flow.originals[-1]
    if root.sender == header.sender or signer_of(root.sender) is Signer.NODE:
        return None
    return Disclosure(root.sender, root.id, None)


def check(header: Header, *, layer: Layer, here: str, now: int, lookup: KeyLookup,
          officer_key: OfficerKey, limits: Limits = DEFAULT_LIMITS) -> Flow:
    """Decide, for the party at node ``here``, whether the verified ``header`` keeps its
    owner's tag (module docstring, steps 1-5). Raises a typed refusal naming the rule."""
    kind = header.kind._value_
    if signer_of(header.sender)._value_ not in _MAY_SIGN[kind]:
        require_may_sign(header.sender, header.kind)  # raises, naming who may sign
    originals = provenance(header, lookup, limits)
    consent, digest = None, None
    if kind in _UPDATE_KINDS:
        # The owner's update reaches every node that holds the information, including one
        # a tighter tag now excludes: no SEND under the new tag, the update's own rule.
        if header.original is None:
            raise PolicyRefused(f"update {header.id_text} does not carry its original",
                                code="policy.original_missing")
        original = verify_original(header.original, lookup, limits)
        restriction.check_update(header, original)
        return Flow((original,), None, None)
    nodes = header.recipient_nodes
    if kind == _MESSAGE and header.ref is not None:  # a forward (``is_forward``)
        if header.consent is not None:
            consent = _consent(header, officer_key,
                               now=now if layer._value_ == _ORIGIN else None)
            digest = hashlib.sha256(header.consent).digest()
        actor = node_of(header.sender)
        targets = _targets(nodes, _FORWARD_TARGETS[layer._value_], here)
        for recipient in header.recipients:
            if recipient.node not in targets:
                continue
            covered = consent is not None and consent.covers(recipient.officer)
            _require(header, Action.FORWARD, now, actor, recipient.node, covered,
                     recipient.officer)
    else:
        for action, who, which in _LAYER_ACTIONS[layer._value_]:
            actor = node_of(header.sender) if who is _SENDER else here
            for node in sorted(_targets(nodes, which, here)):
                _require(header, action, now, actor, node, False, node)
    return Flow(originals, consent, digest)


def provenance(header: Header, lookup: KeyLookup,
               limits: Limits = DEFAULT_LIMITS) -> tuple[Header, ...]:
    """Steps 2 and 3, on the envelope alone: the chain of verified originals back to the
    owner's own envelope, each tag at least as strict as the one before it."""
    chain: list[Header] = []
    current = header
    while is_forward(current):
        if current.original is None:
            raise PolicyRefused(f"forward {current.id_text} does not carry its original",
                                code="policy.original_missing")
        if len(chain) >= MAX_FORWARD_DEPTH:
            raise LimitExceeded(f"forwards nest more than {MAX_FORWARD_DEPTH} deep")
        original = verify_original(current.original, lookup, limits)
        if original.id != current.ref:
            raise PolicyRefused(f"forward {current.id_text} carries {original.id_text}, "
                                "not the envelope it names in ref",
                                code="policy.original_mismatch")
        if not at_least_as_strict(current.tag, original.tag):
            raise PolicyRefused(f"forward {current.id_text} relaxes the tag of "
                                f"{original.id_text}: only the owner "
                                f"{original.tag.owner} may relax it",
                                code="policy.relax_by_non_owner")
        require_may_sign(original.sender, original.kind)
        chain.append(original)
        current = original
    if current.tag.owner.node != node_of(current.sender):
        raise PolicyRefused(f"{current.sender} signed {current.id_text} under a tag owned by "
                            f"{current.tag.owner}: only the owner's service creates under it",
                            code="policy.owner_not_signer")
    return tuple(chain)


def verify_original(raw: bytes, lookup: KeyLookup, limits: Limits = DEFAULT_LIMITS) -> Header:
    """A forward's original: its signed skeleton, verified under the key the lookup vouches
    for (the signature covers the body's SHA-256), then decoded strictly."""
    skeleton = decode_skeleton(raw, limits)
    signer = lookup(skeleton.signer_key_id)
    if signer is None:
        raise UnknownKey(f"the original's signing key {skeleton.signer_key_id.hex()} is unknown")
    crypto.verify(signer.public_key,
                  signed_digest_message(skeleton.header_bytes, skeleton.body_sha256),
                  skeleton.signature)
    original = decode_header(skeleton.header_bytes, limits)
    if original.sender_key != skeleton.signer_key_id:
        raise Malformed("the original's sender_key differs from the key that signed it")
    if original.sender != signer.principal:
        raise Forbidden(f"the original's key does not belong to {original.sender}")
    return original


def claimed_keys(header: Header, limits: Limits = DEFAULT_LIMITS) -> list[bytes]:
    """The signer key ids a forward's originals claim, read before verifying, only so an
    asynchronous caller can look them up first (``check`` verifies everything)."""
    ids: list[bytes] = []
    raw = header.original
    while raw is not None and len(ids) < MAX_FORWARD_DEPTH:
        try:
            skeleton = decode_skeleton(raw, limits)
            ids.append(skeleton.signer_key_id)
            nested = codec.unpack(skeleton.header_bytes, what="header",
                                  max_bytes=limits.max_header_bytes)
        except LiaisonError:
            break  # ``check`` refuses it with its own reason
        value = nested.get("original") if isinstance(nested, dict) else None
        raw = value if isinstance(value, bytes) else None
    return ids


def principals_read(header: Header, *, recipients: bool,
                    limits: Limits = CEILING_LIMITS) -> set[str]:
    """Whose keys deciding ``header`` read: its sender, with ``recipients`` (at the origin,
    which refuses a revoked one; a destination asks only that its own are carded) its
    recipients, the signers its originals name (``verify_original`` holds each to its
    key's principal) and the owner whose consent it carries. A write that weakens any of
    them sends the decision back (``EnvelopeStore._keys_unchanged``), not only one that
    weakens the sender's (review16h). The originals are read under the widest limits a
    node may set (``CEILING_LIMITS``): the node's own, possibly above the defaults, already
    accepted them, and a stricter reading here would miss their signers."""
    principals = {header.sender}
    if recipients:
        principals.update(r.officer for r in header.recipients)
    raw = header.original
    depth = 0
    while raw is not None and depth < MAX_FORWARD_DEPTH:
        depth += 1
        try:
            nested = codec.unpack(decode_skeleton(raw, limits).header_bytes, what="header",
                                  max_bytes=limits.max_header_bytes)
        except LiaisonError:
            break  # ``check`` refused it
        if not isinstance(nested, dict):
            break
        sender = nested.get("sender")
        if isinstance(sender, str):
            principals.add(sender)
        value = nested.get("original")
        raw = value if isinstance(value, bytes) else None
    if header.consent is not None:
        with contextlib.suppress(LiaisonError):  # ``check`` refused it
            principals.add(claimed_owner(header.consent))
    return principals


def _consent(header: Header, officer_key: OfficerKey, *, now: int | None) -> Consent:
    assert header.consent is not None
    consent = verify_consent(header.consent, officer_key)
    if node_of(consent.owner) != header.tag.owner.node:
        raise Forbidden(f"{consent.owner} does not speak for the owner {header.tag.owner}")
    if consent.original != header.ref or consent.forwarder != header.sender:
        raise Forbidden("the consent is for another envelope or another forwarder")
    if header.created >= consent.expires or (now is not None and now >= consent.expires):
        raise BadTimestamp("the consent had expired when the forward was made")
    return consent


def _targets(nodes: frozenset[str], which: _Targets, here: str) -> Collection[str]:
    """The nodes ``which`` names, from the envelope's recipient nodes (computed once)."""
    if which is _RECIPIENTS:
        return nodes
    if which is _REMOTE:
        return nodes - {here}
    return (here,)


def _require(header: Header, action: Action, now: int, actor: str, node: str,
             consent: bool, target: str) -> None:
    decision = decide_for(header.tag, action, now=now, actor_node=actor, target_node=node,
                          consent=consent)
    if not decision.allowed:
        raise PolicyRefused(f"{action.value} of {header.id_text} to {target} "
                            f"refused: {decision.reason}", code=decision.code)
