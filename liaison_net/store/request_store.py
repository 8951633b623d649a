"""Requests under Directive (EU) 2023/977 as a node tracks them: one row per request and
officer concerned (the requester at the origin, each addressee at a destination), with
the legal due time, the answer, and whether it escalated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liaison_net.core.audit import detail
from liaison_net.core.effects import Effect
from liaison_net.core.envelope import Envelope, Kind
from liaison_net.core.ids import id_to_text
from liaison_net.store.database import Database, WriteTxn
from liaison_net.store.effect_store import add_effects


@dataclass(frozen=True)
class TrackedRequest:
    envelope_id: bytes
    officer: str
    role: str  # outgoing (the requester) or incoming (an addressee)
    sender: str
    urgency: str
    due: int
    answered: int | None
    reply_id: bytes | None
    escalated: int | None


class RequestStore:
    def __init__(self, db: Database, node_id: str) -> None:
        self.db = db
        self.node_id = node_id

    async def track(self, envelope: Envelope, *, officers: list[str], role: str,
                    now: int) -> None:
        async def op(txn: WriteTxn) -> None:
            await track_in(txn, envelope, officers=officers, role=role)

        await self.db.write(op)

    async def answered(self, reply: Envelope, *, now: int) -> int:
        """A reply names its request: mark it answered (for the replier, or for the
        requester receiving the reply); the number of rows it closed."""

        async def op(txn: WriteTxn) -> int:
            return await answered_in(txn, reply, now=now)

        return await self.db.write(op)

    async def due_soon(self, until: int, limit: int = 100) -> list[TrackedRequest]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM requests WHERE role = 'incoming' AND answered IS NULL "
            "AND escalated IS NULL AND due <= ? ORDER BY due LIMIT ?", (until, limit))
        return [_row(r) for r in rows]

    async def mark_escalated(self, envelope_id: bytes, officer: str, *, now: int,
                             notice: Effect | None = None) -> bool:
        """Escalate once; the escalation ``notice`` is recorded in the same write."""

        async def op(txn: WriteTxn) -> bool:
            cur = await txn.execute(
                "UPDATE requests SET escalated = ? WHERE envelope_id = ? AND officer = ? "
                "AND escalated IS NULL", (now, envelope_id, officer))
            if cur.rowcount:
                await txn.audit(now, "request.escalated", self.node_id,
                                detail(officer=officer), envelope_id)
                if notice is not None:
                    await add_effects(txn, [notice], now)
            return bool(cur.rowcount)

        return await self.db.write(op)

    async def for_officer(self, officer: str, *, open_only: bool,
                          limit: int) -> list[TrackedRequest]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM requests WHERE officer = ? "
            + ("AND answered IS NULL " if open_only else "") + "ORDER BY due LIMIT ?",
            (officer, limit))
        return [_row(r) for r in rows]


_COLUMNS = "envelope_id, officer, role, sender, urgency, due, answered, reply_id, escalated"


def _row(r: Any) -> TrackedRequest:
    return TrackedRequest(bytes(r[0]), r[1], r[2], r[3], r[4], r[5], r[6],
                          bytes(r[7]) if r[7] is not None else None, r[8])


async def track_in(txn: WriteTxn, envelope: Envelope, *, officers: list[str],
                   role: str) -> None:
    """A request's due time for each officer concerned, in the accepting transaction (a
    non-request, or a request without urgency, writes nothing)."""
    h = envelope.header
    if h.kind is not Kind.REQUEST or h.urgency is None or h.due is None:
        return
    await txn.executemany(
        "INSERT OR IGNORE INTO requests (envelope_id, officer, role, sender, urgency, "
        "due) VALUES (?, ?, ?, ?, ?, ?)",
        [(h.id, o, role, h.sender, h.urgency.value, h.due) for o in officers])


async def answered_in(txn: WriteTxn, reply: Envelope, *, now: int) -> int:
    """Close the request a reply names, in the accepting transaction: the replier's own row
    (an addressee), or the requester's (the reply's recipient) when the reply arrives at
    the requester's node. The number of rows closed (0 for anything but a reply)."""
    h = reply.header
    if h.kind is not Kind.REPLY:
        return 0
    closed = 0
    for officer, role in [(h.sender, "incoming"),
                          *((r.officer, "outgoing") for r in h.recipients)]:
        cur = await txn.execute(
            "UPDATE requests SET answered = ?, reply_id = ? WHERE envelope_id = ? "
            "AND officer = ? AND role = ? AND answered IS NULL",
            (now, h.id, h.ref, officer, role))
        closed += cur.rowcount
    if closed:
        await txn.audit(now, "request.answered", h.sender,
                        detail(request=id_to_text(h.ref) if h.ref else None), h.id)
    return closed
