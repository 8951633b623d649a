"""The officer API's four-eyes routes (issue 19; ``services/holds.py`` decides).

    GET  /api/v1/approvals                what waits that you sent or may decide (JSON)
    GET  /api/v1/approvals/{id}           a held envelope's bytes, for who may decide it
    POST /api/v1/approvals/{id}           your signed decision (approve or reject)
    GET  /api/v1/envelopes/{id}/approval  the approval that released an envelope you may
                                          read, as it travelled (the client verifies it)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

from liaison_net.core.approval import MAX_APPROVAL_BYTES
from liaison_net.core.ids import id_from_text, id_to_text
from liaison_net.errors import NotFound
from liaison_net.http_common import ENVELOPE, MSGPACK, msgpack_response, read_body
from liaison_net.services.holds import HoldDesk
from liaison_net.store.hold_store import Hold
from liaison_net.store.node_store import NodeStore


def _iso(ms: int | None) -> str | None:
    return (datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")
            if ms is not None else None)


def hold_json(hold: Hold) -> dict[str, object]:
    """A hold as the officer API shows it (also in an envelope's status)."""
    return {"id": id_to_text(hold.envelope_id), "sender": hold.sender, "unit": hold.unit,
            "state": hold.state, "held": _iso(hold.held), "until": _iso(hold.until),
            "decided": _iso(hold.decided), "by": hold.decided_by, "reason": hold.reason,
            "recipients_local": hold.local, "nodes": hold.remote}


class ApprovalRoutes:
    def __init__(self, *, holds: HoldDesk, store: NodeStore,
                 officer: Callable[[web.Request], str]) -> None:
        self.holds = holds
        self.store = store
        self._officer = officer

    def add(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v1/approvals", self.listing)
        router.add_get("/api/v1/approvals/{id}", self.held_envelope)
        router.add_post("/api/v1/approvals/{id}", self.decide)
        router.add_get("/api/v1/envelopes/{id}/approval", self.approval)

    async def listing(self, request: web.Request) -> web.Response:
        officer = self._officer(request)
        return web.json_response({"items": [
            {**hold_json(hold), "role": role}
            for hold, role in await self.holds.waiting(officer)]})

    async def held_envelope(self, request: web.Request) -> web.Response:
        officer = self._officer(request)
        raw = await self.holds.envelope_for(officer, id_from_text(request.match_info["id"]))
        return web.Response(body=raw, content_type=ENVELOPE)

    async def decide(self, request: web.Request) -> web.Response:
        officer = self._officer(request)
        eid = id_from_text(request.match_info["id"])
        statement = await read_body(request, MSGPACK, MAX_APPROVAL_BYTES)
        return web.json_response(hold_json(await self.holds.decide(officer, eid, statement)))

    async def approval(self, request: web.Request) -> web.Response:
        officer = self._officer(request)
        eid = id_from_text(request.match_info["id"])
        if not await self.store.may_read(officer, eid):
            raise NotFound("no such envelope for you")
        return msgpack_response({"approval": await self.store.holds.approval(eid)})
