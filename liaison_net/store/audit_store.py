"""The audit chain as the store's callers see it: append one entry, read and verify all.

One part of the ``NodeStore`` facade (``node_store``). The chain itself (hashes, head) is
kept by ``database.WriteTxn.audit``, inside the write that records the decision.
"""

from __future__ import annotations

from liaison_net.core.audit import AuditEntry, first_broken
from liaison_net.store.database import Database, WriteTxn


class AuditStore:
    # Shared with the other parts of the facade (``node_store.NodeStore``).
    db: Database
    node_id: str

    # --- audit ----------------------------------------------------------------------------

    async def audit(self, *, now: int, event: str, actor: str, audit_detail: str,
                    envelope_id: bytes | None = None) -> None:
        async def op(txn: WriteTxn) -> None:
            await txn.audit(now, event, actor, audit_detail, envelope_id)

        await self.db.write(op)

    async def audit_entries(self) -> list[AuditEntry]:
        rows = await self.db.fetchall(
            "SELECT seq, at, event, envelope_id, actor, detail, prev, hash FROM audit "
            "ORDER BY seq")
        return [AuditEntry(r[0], r[1], r[2], bytes(r[3]) if r[3] is not None else None, r[4],
                           r[5], bytes(r[6]), bytes(r[7])) for r in rows]

    async def verify_audit(self) -> tuple[int, int | None]:
        """(entries checked, first broken seq or None)."""
        entries = await self.audit_entries()
        return len(entries), first_broken(entries)
