"""What a node does with early-warning signals beyond delivering them.

* As a destination: the desk (``<node>/desk``) must acknowledge within the deadline of the
  signal's severity. The first acknowledgement goes back to the sender as a signed notice
  (owed from the acknowledgement's commit, like every notice here: ``core/effects``);
  a signal still unacknowledged at its deadline escalates, once, with a notice to the
  sender and to the backup desk (``<node>/desk-backup``).
* As the origin of an earlier signal: when a later signal from another country carries the
  same subject pseudonym, this node (and only this one) tells both owners, in a match
  notice naming the two signals and the two countries, nothing else. Each owner then
  decides whether to share more, under the normal tag rules.
"""

from __future__ import annotations

import asyncio

import structlog

from liaison_net.clock import Clock
from liaison_net.core.effects import Effect, notice
from liaison_net.core.envelope import Envelope, Header, Precedence
from liaison_net.core.ids import id_to_text
from liaison_net.core.signals import (
    NOTICE_ACK,
    NOTICE_ESCALATION,
    SignalConfig,
    backup_desk_of,
    desk_of,
)
from liaison_net.errors import Unavailable
from liaison_net.metrics import NodeMetrics
from liaison_net.store.node_store import NodeStore

log = structlog.get_logger("liaison.signals")


class SignalDesk:
    def __init__(self, *, node_id: str, store: NodeStore,
                 config: SignalConfig, metrics: NodeMetrics, clock: Clock) -> None:
        self.node_id = node_id
        self.clock = clock
        self.store = store
        self.config = config
        self.metrics = metrics

    def deadline(self, header: Header, now: int) -> int | None:
        """When this node's desk must have acknowledged (None if the desk is not addressed)."""
        if header.signal is None or desk_of(self.node_id) not in {r.officer for r in
                                                                   header.recipients}:
            return None
        return now + self.config.ack_deadline_ms[header.signal.severity]

    def raised(self, envelope: Envelope) -> None:
        self.metrics.signals.labels(event="raised").inc()

    def received(self, envelope: Envelope, *, matches: int) -> None:
        """A signal arrived from a peer: count it. Its match notices (``matches`` of them)
        were recorded as effects in the transaction that stored it (``envelope_store``)."""
        self.metrics.signals.labels(event="delivered").inc()
        if matches:
            self.metrics.signals.labels(event="matched").inc(matches)
            log.info("signal.matched", later=id_to_text(envelope.id), notices=matches)

    async def acknowledged(self, officer: str, envelope_id: bytes) -> None:
        """An officer acknowledged an inbox entry: if it is this node's desk acknowledging a
        signal, the sender is owed a notice (once), recorded with the acknowledgement."""
        if officer not in (desk_of(self.node_id), backup_desk_of(self.node_id)):
            return
        now = self.clock.now_ms()

        def ack_notice(sender: str) -> Effect:
            return notice(NOTICE_ACK, recipients=[sender], ref=envelope_id,
                          content={"signal": envelope_id, "node": self.node_id,
                                   "by": officer, "at": now})

        sender = await self.store.signals.acknowledge(envelope_id, officer, now=now,
                                                      notice=ack_notice)
        if sender is not None:
            self.metrics.signals.labels(event="acknowledged").inc()

    async def escalate_due(self) -> int:
        due = await self.store.signals.due(self.clock.now_ms())
        for signal in due:
            escalation = notice(
                NOTICE_ESCALATION, ref=signal.envelope_id, precedence=Precedence.FLASH,
                recipients=[signal.sender, backup_desk_of(self.node_id)],
                content={"signal": signal.envelope_id, "node": self.node_id,
                         "deadline": signal.deadline})
            if not await self.store.signals.mark_escalated(signal.envelope_id,
                                                           now=self.clock.now_ms(),
                                                           notice=escalation):
                continue
            self.metrics.signals.labels(event="escalated").inc()
            log.info("signal.escalated", envelope_id=id_to_text(signal.envelope_id))
        return len(due)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.config.escalation_check_s)
            try:
                await self.escalate_due()
            except Unavailable as exc:  # storage trouble: try again next tick
                log.warning("signal.escalation_check_failed", reason=exc.detail[:200])
