"""What a node owes because of a decision, written down in the decision's own transaction.

Theory of operation (a transactional outbox)
--------------------------------------------
Accepting an envelope, a hop's refusal or expiry, a desk's acknowledgement, an escalation:
each obliges the node to write signed envelopes of its own (delivery evidence, notices,
receipts). Sealing one needs the node's key and the recipients' cards, so it is not done
inside the decision's transaction. Instead the decision writes an ``Effect`` row beside
itself (``store/effect_store.py``); a drain (``services/effects.py``) later seals the
envelope the effect describes and, in one transaction, stores it and deletes the row. A
crash before the decision's commit loses both; after it, the effect waits on disk; a crash
while draining leaves the row, which is sealed again (a new envelope id: the first one was
never stored). So every effect is issued exactly once.

Two kinds, both pure data:

    kind      about (``ref``)      args
    notice    the envelope named   label, recipients, content (a map), precedence
    evidence  the envelope         the unsigned statement (``core/evidence``), its sender

Evidence statements are made (and timed) at the decision and signed at the drain, with the
key the node holds then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from liaison_net.core import codec
from liaison_net.core.envelope import Header, Precedence
from liaison_net.core.evidence import Statement, Step, make, wants_evidence
from liaison_net.core.evidence_batch import made_leaf
from liaison_net.core.ids import node_of
from liaison_net.core.signals import NOTICE_MATCH
from liaison_net.errors import Malformed

NOTICE = "notice"
EVIDENCE = "evidence"
MAX_EFFECT_BYTES = 256 * 1024  # a notice's content or statement; far above any we write


@dataclass(frozen=True)
class Effect:
    kind: str  # NOTICE or EVIDENCE
    ref: bytes  # the envelope it is about (its ``ref`` once sealed)
    args: dict[str, Any]

    def pack_args(self) -> bytes:
        args = self.args
        if (self.kind == EVIDENCE and len(args) == 2 and type(args.get("sender")) is str
                and type(args.get("statement")) is bytes):
            # ``evidence``'s shape, one per envelope received: keys in sorted order.
            return codec.pack_built({"sender": args["sender"], "statement": args["statement"]})
        return codec.pack(args)


def notice(label: str, *, recipients: Sequence[str], ref: bytes, content: dict[str, Any],
           precedence: Precedence = Precedence.PRIORITY) -> Effect:
    """A node notice of type ``label`` to ``recipients`` (see ``services/notices``)."""
    return Effect(NOTICE, ref, {"label": label, "recipients": list(recipients),
                                "content": content, "precedence": int(precedence)})


def evidence(statement: Statement, *, sender: str) -> Effect:
    """Delivery evidence for ``sender`` (the statement is signed when it is sealed)."""
    return Effect(EVIDENCE, statement.envelope, {"statement": made_leaf(statement),
                                                 "sender": sender})


def origin_evidence(header: Header, *, local: Sequence[str], at: int) -> list[Effect]:
    """At the origin: "accepted" for every recipient, "relayed" for each one whose inbox is
    on this node (it is already there)."""
    if not wants_evidence(header):
        return []
    return ([evidence(make(Step.ACCEPTED, header, at=at), sender=header.sender)]
            + [evidence(make(Step.RELAYED, header, recipient=o, at=at), sender=header.sender)
               for o in local])


def destination_evidence(header: Header, *, local: Sequence[str], at: int) -> list[Effect]:
    """At a destination: "relayed" for each recipient whose inbox now holds it."""
    if not wants_evidence(header):
        return []
    return [evidence(make(Step.RELAYED, header, recipient=o, at=at), sender=header.sender)
            for o in local]


def non_delivery(envelope_id: bytes, *, peer: str, sender: str, reason: str = "expired",
                 why: str = "") -> Effect:
    """The sender's non-delivery notice: the envelope never reached ``peer`` (it expired
    here, or ``peer`` refused it for good: ``reason`` its code, ``why`` its words)."""
    content: dict[str, Any] = {"envelope": envelope_id, "node": peer, "reason": reason}
    if why:
        content["detail"] = why[:200]
    return notice("non-delivery", recipients=[sender], ref=envelope_id, content=content)


def match_notice(earlier: bytes, earlier_sender: str, later: bytes,
                 later_sender: str) -> Effect:
    """Two signals from two countries carry the same subject pseudonym: tell both owners,
    naming the two signals and the two countries, nothing else (``services/signal_desk``)."""
    return notice(NOTICE_MATCH, recipients=[earlier_sender, later_sender], ref=later,
                  precedence=Precedence.IMMEDIATE,
                  content={"signals": [earlier, later],
                           "countries": sorted({node_of(earlier_sender),
                                                node_of(later_sender)})})


class _EvidenceArgs(msgspec.Struct, forbid_unknown_fields=True):
    """``evidence``'s arguments, as the drain reads them back (``unpack_args``)."""

    sender: str
    statement: bytes


_EVIDENCE_ARGS = msgspec.msgpack.Decoder(_EvidenceArgs)


def unpack_args(kind: str, raw: bytes) -> dict[str, Any]:
    """An effect's stored arguments; ``Malformed`` for an unknown kind or a bad shape.

    An evidence effect's usual arguments (one per envelope a destination received) are
    decoded by shape and believed only if they pack back to exactly ``raw`` (canonical
    bytes have one decoding, the one ``codec.unpack`` gives): a fifth of ``codec.unpack``'s
    time (docs/performance.md, lane dest16). Anything else takes the general way."""
    if kind == EVIDENCE and type(raw) is bytes and len(raw) <= MAX_EFFECT_BYTES:
        try:
            usual = _EVIDENCE_ARGS.decode(raw)
        except msgspec.DecodeError:
            pass
        else:
            args = {"sender": usual.sender, "statement": usual.statement}
            if codec.pack_built(args) == raw:
                return args
    if kind not in (NOTICE, EVIDENCE):
        raise Malformed(f"unknown effect kind {kind!r:.30}")
    args = codec.unpack(raw, what="effect", max_bytes=MAX_EFFECT_BYTES)
    if not isinstance(args, dict):
        raise Malformed("effect arguments must be a map")
    return args
