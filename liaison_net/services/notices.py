"""Envelopes a node writes itself: signed by the node (as ``<node>/node``), sealed for
officers, local or on peers, and sent like any other envelope (stored, then relayed).

Non-delivery notices, disclosure receipts, signal acknowledgements, escalations and match
notices (kind ``notice``) and the node's delivery evidence (kind ``evidence``) all go this
way, so they are end-to-end encrypted, verifiable under the node's certified key, and
subject to the same ownership policy at the receiving node. Each is owed by a decision and
recorded with it (``core/effects``); the effects drain asks the ``Notifier`` to ``seal`` it
and stores it in the same write that retires the effect, so it is issued exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from liaison_net.clock import Clock
from liaison_net.core import crypto, sealing
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
#: How many recipients' encryption keys a notifier remembers as checked (32 bytes each).
MAX_CHECKED_KEYS = 4096


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
        # Encryption keys that passed ``check_encryption_public`` here: the check is a pure
        # function of the key's bytes (canonical, not of low order), so a key that passed
        # once passes forever and is not checked again when it enters ``seal``; ``wrap_key``
        # still checks it where it is used, so each notice pays one scalar multiplication
        # per recipient, not two. A weak key never enters: it is checked (and its recipient
        # skipped, audited) every time. Bounded: emptied when full.
        self._checked_keys: set[bytes] = set()

    async def seal(self, envelope_kind: Kind, *, label: str, recipients: list[str],
                   plaintext: bytes, ref: bytes | None, precedence: Precedence,
                   retention_ms: int = NOTICE_RETENTION_MS) -> Sealed | None:
        """Seal ``plaintext`` as an envelope of ``envelope_kind`` signed by this node, for
        every recipient with a card here (nothing stored); None if no recipient has a
        usable card. ``label`` names it in the tag's purpose and the audit. The caller
        stores it in the write that retires what owed it (``services/effects``), then
        calls ``issued``."""
        keyed = []
        for officer in dict.fromkeys(recipients):
            keys = await self.store.officer_keys(officer)
            if keys is None:
                log.warning(f"{envelope_kind.value}.no_card", kind=label, recipient=officer)
                continue
            if keys[1] not in self._checked_keys:
                try:
                    # A card stored before keys were checked at entry may hold a weak key:
                    # that recipient is skipped (logged, audited), the others still get it.
                    crypto.check_encryption_public(keys[1], f"encryption key of {officer}")
                except WeakKey as exc:
                    await self._weak_recipient(envelope_kind, label, officer, exc)
                    continue
                if len(self._checked_keys) >= MAX_CHECKED_KEYS:
                    self._checked_keys.clear()
                self._checked_keys.add(keys[1])
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
        # Evidence is issued per envelope under load: its audit entry is the record, the
        # line is for debugging (notices are rare and worth an operator's eye).
        emit = log.debug if sealed.envelope.header.kind is Kind.EVIDENCE else log.info
        emit(sealed.event, kind=sealed.label, ref=id_to_text(ref) if ref else None,
             recipients=len(sealed.envelope.header.recipients))

    async def _weak_recipient(self, envelope_kind: Kind, label: str, officer: str,
                              exc: WeakKey) -> None:
        log.warning(f"{envelope_kind.value}.weak_key", kind=label, recipient=officer,
                    code=exc.code)
        await self.store.audit(now=self.clock.now_ms(), event=f"{envelope_kind.value}.refused",
                               actor=self.node_id,
                               audit_detail=detail(kind=label, recipient=officer,
                                                   code=exc.code, reason=exc.detail[:200]))
