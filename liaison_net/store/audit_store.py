"""The audit chain as the store's callers see it: append one entry, read and verify all.

One part of the ``NodeStore`` facade (``node_store``). The chain itself (hashes, head) is
kept by ``database.WriteTxn.audit``, inside the write that records the decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from liaison_net.core.audit import GENESIS, AuditEntry, detail_text, event_name, first_broken
from liaison_net.store.database import Database, WriteTxn

#: What ``linked`` reads, in this order, ``ORDER BY seq``.
ENTRY_COLUMNS = "seq, at, event, envelope_id, actor, detail, hash"


def linked(rows: Iterable[Sequence[Any]]) -> list[AuditEntry]:
    """Entries from rows of ``ENTRY_COLUMNS`` in seq order, each one's ``prev`` being the
    hash of the row before it (GENESIS for the first). The table does not store ``prev``
    (migration 11): the hash covers it, so ``first_broken`` still finds a row deleted,
    edited or moved, at the first row whose hash no longer matches. The event and the
    detail are read back from their codes (migration 19): the hash covers what they stand
    for, so a code changed to another still breaks the chain."""
    entries: list[AuditEntry] = []
    prev = GENESIS
    for r in rows:
        entry = AuditEntry(r[0], r[1], event_name(r[2]), bytes(r[3]) if r[3] is not None else None,
                           r[4], detail_text(r[5]), prev, bytes(r[6]))
        entries.append(entry)
        prev = entry.hash
    return entries


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
        return linked(await self.db.fetchall(f"SELECT {ENTRY_COLUMNS} FROM audit ORDER BY seq"))

    async def verify_audit(self) -> tuple[int, int | None]:
        """(entries checked, first broken seq or None)."""
        entries = await self.audit_entries()
        return len(entries), first_broken(entries)
