"""Administrative operations waiting for a second administrator (``[admin] four_eyes``,
``core/admin_ops``): the signed proposal, kept until approved, refused or expired. Each
step is audited in the write that records it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liaison_net.core.audit import detail
from liaison_net.errors import Conflict, Expired, NotFound
from liaison_net.store.database import Database, WriteTxn

PENDING = "pending"
DONE = "done"
FAILED = "failed"


@dataclass(frozen=True)
class PendingOp:
    op: str
    kind: str
    raw: bytes  # the signed proposal
    proposer: str
    proposed: int
    expires: int
    state: str
    decided_by: str | None
    decided: int | None
    outcome: str | None


_COLUMNS = "op, kind, args, proposer, proposed, expires, state, decided_by, decided, outcome"


def _row(r: Any) -> PendingOp:
    return PendingOp(str(r[0]), str(r[1]), bytes(r[2]), str(r[3]), int(r[4]), int(r[5]),
                     str(r[6]), r[7], r[8], r[9])


class AdminOpStore:
    def __init__(self, db: Database, node_id: str) -> None:
        self.db = db
        self.node_id = node_id

    async def propose(self, op: str, *, kind: str, raw: bytes, proposer: str, now: int,
                      expires: int) -> bool:
        """Record a proposal once; False if the same one was recorded before."""

        async def write(txn: WriteTxn) -> bool:
            cur = await txn.execute(
                f"INSERT OR IGNORE INTO admin_ops ({_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)",
                (op, kind, raw, proposer, now, expires, PENDING))
            if cur.rowcount:
                await txn.audit(now, "admin.op_proposed", f"admin:{proposer}",
                                detail(op=op, kind=kind), None)
            return bool(cur.rowcount)

        return await self.db.write(write)

    async def get(self, op: str) -> PendingOp | None:
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM admin_ops WHERE op = ?", (op,))
        return _row(row) if row is not None else None

    async def listing(self, *, pending_only: bool = True, limit: int = 200) -> list[PendingOp]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM admin_ops "
            + ("WHERE state = 'pending' " if pending_only else "")
            + "ORDER BY proposed DESC LIMIT ?", (limit,))
        return [_row(r) for r in rows]

    async def check_pending(self, op: str, now: int) -> PendingOp:
        found = await self.get(op)
        if found is None:
            raise NotFound(f"no pending operation {op} on node {self.node_id}")
        if found.state != PENDING:
            raise Conflict(f"operation {op} is already {found.state} "
                           f"(by {found.decided_by})")
        if found.expires <= now:
            raise Expired(f"operation {op} expired unapproved; propose it again")
        return found

    async def decide(self, op: str, *, by: str, state: str, outcome: str, now: int) -> None:
        """The second administrator's decision, once: pending -> done or failed."""

        async def write(txn: WriteTxn) -> None:
            cur = await txn.execute(
                "UPDATE admin_ops SET state = ?, decided_by = ?, decided = ?, outcome = ? "
                "WHERE op = ? AND state = 'pending'", (state, by, now, outcome[:500], op))
            if cur.rowcount == 0:
                raise Conflict(f"operation {op} was decided meanwhile")
            await txn.audit(now, f"admin.op_{'approved' if state == DONE else 'failed'}",
                            f"admin:{by}", detail(op=op, outcome=outcome[:200]), None)

        await self.db.write(write)

    async def refused(self, op: str, *, by: str, code: str, now: int) -> None:
        """An approval that was refused (same admin, bad signature): audited, no change."""

        async def write(txn: WriteTxn) -> None:
            await txn.audit(now, "admin.op_approval_refused", f"admin:{by}",
                            detail(op=op, code=code), None)

        await self.db.write(write)
