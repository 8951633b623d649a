"""Envelopes a node writes itself: signed by the node (as ``<node>/node``), sealed for
officers, local or on peers, and sent like any other envelope (stored, then relayed).

Non-delivery notices, signal acknowledgements, escalations and match notices (kind
``notice``, ``send``) and the node's delivery evidence (kind ``evidence``, ``issue``, see
``evidence``) all go this way, so they are end-to-end encrypted, verifiable under the
node's certified key, and subject to the same ownership policy at the receiving node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from liaison_net.clock import Clock
from liaison_net.core import codec, crypto, sealing
from liaison_net.core.audit import detail
from liaison_net.core.envelope import Envelope, Kind, Precedence
from liaison_net.core.ids import id_to_text, node_of, node_principal
from liaison_net.core.limits import DAY_MS
from liaison_net.core.ownership import (
    Evaluation,
    Handling,
    InformationAccuracy,
    Owner,
    OwnershipTag,
    SourceReliability,
    Tlp,
)
from liaison_net.errors import WeakKey
from liaison_net.store.node_store import NodeStore

log = structlog.get_logger("liaison.notices")

NOTICE_TTL_MS = 30 * DAY_MS
NOTICE_RETENTION_MS = 90 * DAY_MS


@dataclass(frozen=True)
class Sealed:
    """A node envelope ready to store: what ``NodeStore.accept`` needs to write it."""

    envelope: Envelope
    now: int
    label: str
    event: str  # the audit event: ``notice.issued``, ``evidence.issued``
    local: list[str]  # recipients with an inbox on this node
    remote: list[str]  # nodes it is relayed to
    audit_detail: str


class Notifier:
    def __init__(self, *, node_id: str, store: NodeStore,
                 signing_key: Callable[[], crypto.SigningKeyPair],
                 wake: Callable[[str], None], clock: Clock) -> None:
        self.node_id = node_id
        self.clock = clock
        self.store = store
        self.signing_key = signing_key
        self.wake = wake

    async def send(self, *, kind: str, recipients: list[str], content: dict[str, Any],
                   ref: bytes | None, precedence: Precedence = Precedence.PRIORITY) -> bool:
        """Seal ``content`` for every recipient with a card here; False if none has one."""
        return await self.issue(Kind.NOTICE, label=kind, recipients=recipients,
                                plaintext=codec.pack({"v": 1, "type": kind, **content}),
                                ref=ref, precedence=precedence)

    async def issue(self, envelope_kind: Kind, *, label: str, recipients: list[str],
                    plaintext: bytes, ref: bytes | None, precedence: Precedence,
                    retention_ms: int = NOTICE_RETENTION_MS) -> bool:
        """Seal ``plaintext`` as an envelope of ``envelope_kind`` signed by this node, for
        every recipient with a card here, store it and wake the peers it goes to; False if
        no recipient has a card. ``label`` names it in the tag's purpose and the audit.
        (What a decision owes goes through the effects drain instead, ``services/effects``:
        ``seal`` there, and the store call that also deletes the effect.)"""
        sealed = await self.seal(envelope_kind, label=label, recipients=recipients,
                                 plaintext=plaintext, ref=ref, precedence=precedence,
                                 retention_ms=retention_ms)
        if sealed is None:
            return False
        await self.store.accept(
            sealed.envelope, now=sealed.now, actor=self.node_id, event=sealed.event,
            local_recipients=sealed.local, remote_nodes=sealed.remote,
            audit_detail=sealed.audit_detail)
        self.issued(sealed)
        return True

    async def seal(self, envelope_kind: Kind, *, label: str, recipients: list[str],
                   plaintext: bytes, ref: bytes | None, precedence: Precedence,
                   retention_ms: int = NOTICE_RETENTION_MS) -> Sealed | None:
        """The envelope ``issue`` would store (nothing stored): card lookup and sealing;
        None if no recipient has a usable card here."""
        keyed = []
        for officer in dict.fromkeys(recipients):
            keys = await self.store.officer_keys(officer)
            if keys is None:
                log.warning(f"{envelope_kind.value}.no_card", kind=label, recipient=officer)
                continue
            try:
                # A card stored before keys were checked at entry may hold a weak key:
                # that recipient is skipped (logged, audited), the others still get it.
                crypto.check_encryption_public(keys[1], f"encryption key of {officer}")
            except WeakKey as exc:
                await self._weak_recipient(envelope_kind, label, officer, exc)
                continue
            keyed.append(sealing.RecipientKey(officer, keys[1]))
        if not keyed:
            return None
        now = self.clock.now_ms()
        nodes = {node_of(r.officer) for r in keyed}
        tag = OwnershipTag(
            owner=Owner(self.node_id, "node"), handling=Handling.H0, tlp=Tlp.AMBER,
            evaluation=Evaluation(SourceReliability.A, InformationAccuracy.KNOWN_TRUE),
            share_with=frozenset(nodes | {self.node_id}), permitted_actions=frozenset(),
            purpose=f"{label} {envelope_kind.value}", retain_until=now + retention_ms)
        notice = sealing.seal(
            sender=node_principal(self.node_id), sender_key=self.signing_key(),
            recipients=keyed, tag=tag, plaintext=plaintext,
            now=now, expires=now + NOTICE_TTL_MS, kind=envelope_kind, precedence=precedence,
            ref=ref)
        return Sealed(
            envelope=notice, now=now, label=label, event=f"{envelope_kind.value}.issued",
            local=[r.officer for r in keyed if node_of(r.officer) == self.node_id],
            remote=sorted(nodes - {self.node_id}),
            audit_detail=detail(kind=label, ref=id_to_text(ref) if ref else None,
                                to=sorted(r.officer for r in keyed)))

    def issued(self, sealed: Sealed) -> None:
        """After the commit that stored ``sealed``: wake the peers it goes to, log it."""
        for node in sealed.remote:
            self.wake(node)
        ref = sealed.envelope.header.ref
        log.info(sealed.event, kind=sealed.label, ref=id_to_text(ref) if ref else None,
                 recipients=len(sealed.envelope.header.recipients))

    async def _weak_recipient(self, envelope_kind: Kind, label: str, officer: str,
                              exc: WeakKey) -> None:
        log.warning(f"{envelope_kind.value}.weak_key", kind=label, recipient=officer,
                    code=exc.code)
        await self.store.audit(now=self.clock.now_ms(), event=f"{envelope_kind.value}.refused",
                               actor=self.node_id,
                               audit_detail=detail(kind=label, recipient=officer,
                                                   code=exc.code, reason=exc.detail[:200]))
