"""Requests with legal deadlines (Directive (EU) 2023/977), as a node follows them.

A request's urgency fixes its due time (8 hours, 3 days, 7 days after creation). The
requester's node and each addressee's node track it, and a reply that names it closes it
on both sides, in the transaction that accepts the request or reply (``envelope_store``).
When an incoming request is still open ``escalate_before`` its due time, the addressee's
node escalates once: a signed notice to its duty desk (``<node>/desk``) and to the
requester, owed from the escalation's commit (``core/effects``). How early is the node's
choice (``[requests] escalate_before_s``); a test makes it larger than the legal period to
see an escalation in seconds, not hours.
"""

from __future__ import annotations

import asyncio

import structlog

from liaison_net.clock import Clock
from liaison_net.config import RequestConfig
from liaison_net.core.effects import notice
from liaison_net.core.envelope import Precedence
from liaison_net.core.ids import id_to_text
from liaison_net.core.signals import desk_of
from liaison_net.errors import Unavailable
from liaison_net.store.node_store import NodeStore

log = structlog.get_logger("liaison.requests")

NOTICE_REQUEST_ESCALATION = "request-escalation"


class RequestDesk:
    def __init__(self, *, node_id: str, store: NodeStore,
                 config: RequestConfig, clock: Clock) -> None:
        self.node_id = node_id
        self.clock = clock
        self.store = store
        self.config = config

    async def escalate_due(self) -> int:
        now = self.clock.now_ms()
        due = await self.store.requests.due_soon(
            now + int(self.config.escalate_before_s * 1000))
        for request in due:
            escalation = notice(
                NOTICE_REQUEST_ESCALATION, ref=request.envelope_id,
                precedence=Precedence.FLASH,
                recipients=[desk_of(self.node_id), request.sender],
                content={"request": request.envelope_id, "addressee": request.officer,
                         "due": request.due, "urgency": request.urgency,
                         "node": self.node_id})
            if not await self.store.requests.mark_escalated(request.envelope_id,
                                                            request.officer, now=now,
                                                            notice=escalation):
                continue
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
