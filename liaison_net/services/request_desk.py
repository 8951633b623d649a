"""Requests with legal deadlines (Directive (EU) 2023/977), as a node follows them.

A request's urgency fixes its due time (8 hours, 3 days, 7 days after creation). The
requester's node and each addressee's node track it; a reply that names it closes it on
both sides. When an incoming request is still open ``escalate_before`` its due time, the
addressee's node escalates once: a signed notice to its duty desk (``<node>/desk``) and to
the requester. How early is the node's choice (``[requests] escalate_before_s``); a test
makes it larger than the legal period to see an escalation in seconds, not hours.
"""

from __future__ import annotations

import asyncio

import structlog

from liaison_net.clock import Clock
from liaison_net.config import RequestConfig
from liaison_net.core.envelope import Envelope, Kind, Precedence
from liaison_net.core.ids import id_to_text
from liaison_net.core.signals import desk_of
from liaison_net.errors import Unavailable
from liaison_net.services.notices import Notifier
from liaison_net.store.node_store import NodeStore

log = structlog.get_logger("liaison.requests")

NOTICE_REQUEST_ESCALATION = "request-escalation"


class RequestDesk:
    def __init__(self, *, node_id: str, store: NodeStore, notifier: Notifier,
                 config: RequestConfig, clock: Clock) -> None:
        self.node_id = node_id
        self.clock = clock
        self.store = store
        self.notifier = notifier
        self.config = config

    async def submitted(self, envelope: Envelope) -> None:
        """An officer of this node sent it (requester, or replier)."""
        h = envelope.header
        if h.kind is Kind.REQUEST:
            await self.store.requests.track(envelope, officers=[h.sender], role="outgoing",
                                            now=self.clock.now_ms())
        elif h.kind is Kind.REPLY:
            await self.store.requests.answered(envelope, now=self.clock.now_ms())

    async def received(self, envelope: Envelope, local: list[str]) -> None:
        """It arrived for officers of this node (addressees, or the requester)."""
        h = envelope.header
        if h.kind is Kind.REQUEST:
            await self.store.requests.track(envelope, officers=local, role="incoming",
                                            now=self.clock.now_ms())
        elif h.kind is Kind.REPLY:
            await self.store.requests.answered(envelope, now=self.clock.now_ms())

    async def escalate_due(self) -> int:
        now = self.clock.now_ms()
        due = await self.store.requests.due_soon(
            now + int(self.config.escalate_before_s * 1000))
        for request in due:
            if not await self.store.requests.mark_escalated(request.envelope_id,
                                                            request.officer, now=now):
                continue
            await self.notifier.send(
                kind=NOTICE_REQUEST_ESCALATION, ref=request.envelope_id,
                precedence=Precedence.FLASH,
                recipients=[desk_of(self.node_id), request.sender],
                content={"request": request.envelope_id, "addressee": request.officer,
                         "due": request.due, "urgency": request.urgency,
                         "node": self.node_id})
            log.info("request.escalated", envelope_id=id_to_text(request.envelope_id),
                     addressee=request.officer)
        return len(due)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.config.check_s)
            try:
                await self.escalate_due()
            except Unavailable as exc:
                log.warning("request.escalation_check_failed", reason=exc.detail[:200])
