"""Turn any opened envelope into something an officer can read: messages as written,
signals and node notices (acknowledgements, escalations, matches, non-delivery) as a
subject line and labelled text, delivery evidence as what it claims (`liaison status`
verifies it).

Nothing is shown that the reading client has not checked itself, as if its own node were
hostile: ``check_received`` runs the one tag check (``core/tagflow.py``: who may sign it,
the owner, a forward's original and tag, the policy) with the CA-verified directory, and
a notice's ``node`` / ``by`` are believed only when that node's key signed it
(``believed_notice``). A failure raises a typed refusal; callers show it instead."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from liaison_net.client.directory import Directory
from liaison_net.core import codec, tagflow
from liaison_net.core import content as content_mod
from liaison_net.core.content import Attachment, Content
from liaison_net.core.envelope import Envelope, Kind
from liaison_net.core.evidence import claimed_statement
from liaison_net.core.evidence_batch import claimed_batch, is_batch
from liaison_net.core.ids import id_to_text
from liaison_net.core.signals import SignalPayload
from liaison_net.core.signers import check_notice_claims
from liaison_net.errors import Malformed

MAX_NOTICE_BYTES = 64 * 1024


def notice_fields(plaintext: bytes) -> dict[str, Any]:
    """A node notice's content, ids as text; only plain scalars and lists of them."""
    value = codec.unpack(plaintext, what="notice", max_bytes=MAX_NOTICE_BYTES)
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise Malformed("notice content must be a map with a type")

    def plain(v: Any) -> Any:
        if isinstance(v, bytes):
            return id_to_text(v) if len(v) == 16 else v.hex()
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, str | int | bool) or v is None:
            return v
        raise Malformed("notice content holds an unexpected value")

    return {str(k): plain(v) for k, v in value.items()}


def officer_key(directory: Directory) -> tagflow.OfficerKey:
    """An officer's signing key from the verified directory (a consent's signer)."""
    def key(officer: str) -> bytes | None:
        card = directory.cards.get(officer)
        return card.signing_public if card is not None else None

    return key


def check_received(envelope: Envelope, directory: Directory, *, own_node: str,
                   now: int) -> tagflow.Flow:
    """The receiving client's decision: the same tag check every node makes, with the keys
    the network CA vouches for, for this officer's node (DELIVER, or FORWARD here)."""
    return tagflow.check(envelope.header, layer=tagflow.Layer.CLIENT, here=own_node, now=now,
                         lookup=directory.lookup(), officer_key=officer_key(directory))


def believed_notice(envelope: Envelope, plaintext: bytes, *, reader_node: str
                    ) -> dict[str, Any]:
    """A notice's fields, only if a node key signed it and it speaks only for that node
    (``signers.NOTICE_CLAIMS``), as read by an officer of ``reader_node``."""
    fields = notice_fields(plaintext)
    check_notice_claims(envelope.header.sender, fields, reader_node=reader_node)
    return fields


def readable(envelope: Envelope, plaintext: bytes, *, reader_node: str) -> Content:
    kind = envelope.header.kind
    if kind is Kind.NOTICE:
        fields = believed_notice(envelope, plaintext, reader_node=reader_node)
        lines = [f"{k}: {v}" for k, v in sorted(fields.items()) if k not in ("v", "type")]
        return Content(subject=f"Notice: {fields['type']}", text="\n".join(lines) or "-")
    if kind is Kind.EVIDENCE and is_batch(plaintext):
        covered = claimed_batch(plaintext)
        return Content(
            subject=f"Evidence: {covered[0].step.value} by {covered[0].by} for "
                    f"{len(covered)} envelopes"[:200],
            text="\n".join(id_to_text(c.envelope) for c in covered) + (
                "\nA claim until verified: `liaison status ID` checks its signature, maker "
                "and that the signed batch covers ID."))
    if kind is Kind.EVIDENCE:
        claim = claimed_statement(plaintext)
        return Content(
            subject=f"Evidence: {claim.step.value} by {claim.by}"[:200],
            text=(f"envelope: {id_to_text(claim.envelope)}\n"
                  f"recipients: {', '.join(claim.recipients)}\n"
                  f"at: {datetime.fromtimestamp(claim.at / 1000, UTC):%Y-%m-%d %H:%M:%S}Z\n"
                  f"A claim until verified: `liaison status {id_to_text(claim.envelope)}` "
                  "checks its signature and maker."))
    if kind is Kind.SIGNAL:
        s = SignalPayload.decode(plaintext)
        subject = (f"Signal: {s.category.value} (severity {s.severity.label}, "
                   f"confidence {s.confidence.value}, region {s.region})")
        return Content(subject=subject[:200], text=s.text,
                       attachments=tuple(Attachment(a.name, a.media_type, a.data)
                                         for a in s.attachments))
    return content_mod.decode(plaintext)
