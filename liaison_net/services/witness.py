"""The node's part of delivery evidence (see ``core.evidence``): "accepted" at the origin,
"relayed" at the destination, each signed with the node's own key and sealed for the
sender as an envelope of kind ``evidence`` (``ref`` = the envelope), sent like any node
notice: into the sender's inbox here, or back through federation to the sender's node.

Intake calls ``Witness`` only after the envelope is durably stored, and only for a first
copy (a duplicate was attested the first time). Evidence is best effort on top of that
guarantee: a failure to issue it is logged and never undoes or fails the acceptance.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from liaison_net.core.envelope import Envelope, Kind, Precedence
from liaison_net.core.evidence import (
    EVIDENCE_RETENTION_MS,
    Statement,
    Step,
    make,
    sign_statement,
    wants_evidence,
)
from liaison_net.core.ids import node_principal
from liaison_net.errors import LiaisonError
from liaison_net.services.notices import Notifier

log = structlog.get_logger("liaison.evidence")


class Witness:
    def __init__(self, *, node_id: str, notifier: Notifier) -> None:
        self.node_id = node_id
        self.notifier = notifier

    async def accepted(self, envelope: Envelope, *, local: Sequence[str], now: int) -> None:
        """At the origin: "accepted" for every recipient, and "relayed" for those whose
        inbox is on this node (their envelope is already there)."""
        h = envelope.header
        if not wants_evidence(h):
            return
        await self._issue(envelope, make(Step.ACCEPTED, h, at=now))
        for officer in local:
            await self._issue(envelope, make(Step.RELAYED, h, recipient=officer, at=now))

    async def relayed(self, envelope: Envelope, *, local: Sequence[str], now: int) -> None:
        """At the destination: "relayed" for each recipient whose inbox now holds it."""
        if not wants_evidence(envelope.header):
            return
        for officer in local:
            await self._issue(envelope,
                              make(Step.RELAYED, envelope.header, recipient=officer, at=now))

    async def _issue(self, envelope: Envelope, statement: Statement) -> None:
        h = envelope.header
        if statement.by != node_principal(self.node_id):
            # make() names the maker from the envelope; it is us, or the envelope is not
            # one this node should attest (a bug upstream, not the sender's problem).
            log.error("evidence.not_ours", step=statement.step.value, by=statement.by,
                      envelope_id=h.id_text)
            return
        try:
            await self.notifier.issue(
                Kind.EVIDENCE, label=statement.step.value, recipients=[h.sender],
                plaintext=sign_statement(statement, self.notifier.signing_key()), ref=h.id,
                precedence=Precedence.ROUTINE, retention_ms=EVIDENCE_RETENTION_MS)
        except LiaisonError as exc:
            log.warning("evidence.not_issued", step=statement.step.value,
                        envelope_id=h.id_text, code=exc.code, reason=exc.detail[:200])
