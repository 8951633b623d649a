"""The owner's side of restriction updates (core/restriction.py), for the CLI and the desk.

An update must reach every node that holds the information: the original's recipients,
and whoever received a forward of it. The owner learns of the forwards from the signed
disclosure receipts in their inbox (a forward made with the owner's consent returns one
from the node that delivered it), so ``addressees`` reads them. Once applied, each node
answers a signed receipt (``restriction-applied``, or ``erasure`` for a recall);
``receipts`` collects those for `liaison status ID`: who applied it, and when. A reader
sees the updates in their own inbox that apply to what they read (``standing``), checked
here, so a node can withhold an update but never forge one.

Every notice read here is verified under the CA-vouched directory and believed only for
what its signing node may say (``reading.believed_notice``), as `liaison read` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from liaison_net.client import reading
from liaison_net.client.directory import Directory
from liaison_net.client.keystore import Keystore
from liaison_net.client.session import NodeSession
from liaison_net.core import content as content_mod
from liaison_net.core import sealing
from liaison_net.core.content import Content
from liaison_net.core.envelope import Envelope, Kind, Precedence
from liaison_net.core.ids import id_to_text
from liaison_net.core.limits import DAY_MS
from liaison_net.core.ownership import OwnershipTag
from liaison_net.core.restriction import (
    NOTICE_APPLIED,
    NOTICE_ERASURE,
    UpdateAction,
    check_update,
)
from liaison_net.core.retention import make_skeleton
from liaison_net.core.sealing import RecipientKey
from liaison_net.core.signers import Signer, signer_of
from liaison_net.core.tagflow import Flow
from liaison_net.errors import LiaisonError

NOTICE_DISCLOSURE = "disclosure"  # node.py ``_disclosure_receipt``


@dataclass(frozen=True)
class Receipt:
    """A node's signed word that it applied an update to what it holds."""

    node: str
    action: str  # restrict | recall
    update: str
    envelopes: tuple[str, ...]  # what it applied it to there (the original, forwards)
    applied: int  # ms
    notice: str  # the receipt's own envelope id

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "action": self.action, "update": self.update,
                "envelopes": list(self.envelopes), "applied": self.applied,
                "receipt": self.notice}


async def _notices_about(node: NodeSession, ks: Keystore, directory: Directory,
                         original: bytes, types: frozenset[str],
                         warnings: list[str]) -> list[tuple[Envelope, dict[str, Any]]]:
    """The node notices in this officer's inbox about ``original`` of the given types,
    verified and believed; what fails is a warning, never a result."""
    out: list[tuple[Envelope, dict[str, Any]]] = []
    for entry in await node.inbox_all():
        if entry.kind != Kind.NOTICE.value or entry.purged is not None:
            continue
        if signer_of(entry.sender) is not Signer.NODE:
            continue
        try:
            envelope = sealing.verify(await node.fetch(entry.id), directory.lookup(), now=None)
            if envelope.header.ref != original:
                continue
            plaintext = sealing.open_envelope(envelope, ks.officer, ks.encryption_keys)
            fields = reading.believed_notice(envelope, plaintext, reader_node=ks.node)
        except LiaisonError as exc:
            warnings.append(f"notice {entry.id} not believed: {exc.code}: {exc.detail}")
            continue
        if fields.get("type") in types and fields.get("original") == id_to_text(original):
            out.append((envelope, fields))
    return out


async def addressees(node: NodeSession, ks: Keystore, directory: Directory,
                     original: Envelope, warnings: list[str]) -> list[str]:
    """Who an update of ``original`` goes to: its recipients, then the recipients of every
    forward of it that a disclosure receipt told the owner about (sorted, no repeats, not
    the issuer)."""
    found = {r.officer for r in original.header.recipients}
    for _, fields in await _notices_about(node, ks, directory, original.id,
                                          frozenset({NOTICE_DISCLOSURE}), warnings):
        recipients = fields.get("recipients")
        if isinstance(recipients, list):
            found.update(str(r) for r in recipients if isinstance(r, str))
    found.discard(ks.officer)
    return sorted(found)


async def receipts(node: NodeSession, ks: Keystore, directory: Directory, original: bytes,
                   warnings: list[str]) -> list[Receipt]:
    """The signed receipts of the nodes that applied an update of ``original``, oldest
    first."""
    out = []
    for envelope, f in await _notices_about(node, ks, directory, original,
                                            frozenset({NOTICE_APPLIED, NOTICE_ERASURE}),
                                            warnings):
        envelopes = f.get("envelopes")
        applied = f.get("applied")
        out.append(Receipt(
            node=str(f.get("node")), action=str(f.get("action")), update=str(f.get("update")),
            envelopes=tuple(str(e) for e in envelopes) if isinstance(envelopes, list) else (),
            applied=applied if isinstance(applied, int) else envelope.header.created,
            notice=envelope.header.id_text))
    return sorted(out, key=lambda r: (r.applied, r.node))


@dataclass(frozen=True)
class Standing:
    """An owner's update that applies to an envelope a reader holds: what they see."""

    update: str
    action: str  # restrict | recall
    by: str
    issued: int  # ms
    tag: OwnershipTag  # from now on

    def line(self) -> str:
        when = datetime.fromtimestamp(self.issued / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        if self.action == UpdateAction.RECALL.value:
            return f"recalled on {when}Z by {self.by} (update {self.update})"
        t = self.tag
        return (f"restricted on {when}Z by {self.by} (update {self.update}): now "
                f"{t.handling.value}, TLP:{t.tlp.value}, share_with "
                f"{','.join(sorted(t.share_with))}, permitted "
                f"{','.join(sorted(a.value for a in t.permitted_actions)) or 'none'}")

    def to_json(self) -> dict[str, Any]:
        return {"update": self.update, "action": self.action, "by": self.by,
                "issued": self.issued, "tag": self.tag.to_wire()}


async def standing(node: NodeSession, ks: Keystore, directory: Directory, envelope: Envelope,
                   flow: Flow, warnings: list[str]) -> list[Standing]:
    """The owner's updates in this reader's inbox that apply to ``envelope`` (about it, or
    about the original a forward passes on: ``flow.originals``), each verified and checked
    here as a node checks it; oldest first."""
    about = {envelope.id, *(o.id for o in flow.originals)}
    out = []
    for entry in await node.inbox_all():
        if entry.kind not in (Kind.RESTRICT.value, Kind.RECALL.value):
            continue
        try:
            update = sealing.verify(await node.fetch(entry.id), directory.lookup(), now=None)
            if update.header.ref not in about:
                continue
            checked = reading.check_received(update, directory, own_node=ks.node,
                                             now=update.header.created)
            applied = check_update(update.header, checked.originals[0])
        except LiaisonError as exc:
            warnings.append(f"update {entry.id} not believed: {exc.code}: {exc.detail}")
            continue
        out.append(Standing(update.header.id_text, applied.action.value, applied.issuer,
                            applied.issued, applied.tag))
    return sorted(out, key=lambda s: s.issued)


#: How long an update travels before it expires undelivered (then the owner is told, as for
#: any envelope); never past the tag's retention.
UPDATE_TTL_MS = 7 * DAY_MS


def seal_update(ks: Keystore, original: Envelope, kind: Kind, tag: OwnershipTag, *,
                recipients: list[RecipientKey], content: Content, now: int) -> Envelope:
    """The owner's update of ``original`` (``restrict`` with the new tag, ``recall`` with
    the original's), carrying its signed skeleton, sealed for ``recipients``."""
    return sealing.seal(
        sender=ks.officer, sender_key=ks.signing, recipients=recipients, tag=tag,
        plaintext=content_mod.encode(content), now=now,
        expires=min(now + UPDATE_TTL_MS, tag.retain_until), kind=kind,
        precedence=Precedence.IMMEDIATE, ref=original.id,
        original=make_skeleton(original.to_bytes()))
