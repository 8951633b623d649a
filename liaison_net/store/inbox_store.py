"""Officers' inboxes: listing, counts, who may read what, acknowledgement.

One part of the ``NodeStore`` facade (``node_store``). Inbox rows are written by
``EnvelopeStore.accept`` together with their envelope; here they are read and acked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liaison_net.core.audit import detail
from liaison_net.errors import NotFound
from liaison_net.store.database import Database, WriteTxn
from liaison_net.store.retention_store import skeleton_tag


@dataclass(frozen=True)
class InboxItem:
    seq: int
    envelope_id: bytes
    sender: str
    kind: str
    precedence: int
    created: int
    relayed: int
    acked: int | None
    retain_until: int | None = None
    purged: int | None = None  # when the content was purged (retention), else None
    tag: dict[str, Any] | None = None  # a purged entry's tag, from its skeleton


class InboxStore:
    # Shared with the other parts of the facade (``node_store.NodeStore``).
    db: Database
    node_id: str

    # --- inbox ----------------------------------------------------------------------------

    async def inbox(self, officer: str, *, after: int, limit: int) -> list[InboxItem]:
        rows = await self.db.fetchall(
            "SELECT i.seq, i.envelope_id, e.sender, e.kind, e.precedence, e.created, i.relayed, "
            "i.acked, e.retain_until, e.purged, CASE WHEN e.purged IS NULL THEN NULL "
            "ELSE e.raw END FROM inbox i JOIN envelopes e ON e.id = i.envelope_id "
            "WHERE i.officer = ? AND i.seq > ? ORDER BY i.seq LIMIT ?",
            (officer, after, limit))
        return [InboxItem(r[0], bytes(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                          skeleton_tag(bytes(r[10])) if r[10] is not None else None)
                for r in rows]

    async def inbox_head(self) -> int:
        """The highest inbox seq committed so far (0 for none)."""
        row = await self.db.fetchone("SELECT COALESCE(MAX(seq), 0) FROM inbox")
        return int(row[0])

    async def inbox_officers_after(self, after: int, *,
                                   limit: int) -> tuple[int, list[str]]:
        """Entries committed after seq ``after``, by any process on this database: (the
        last seq read, the officers they are for). At most ``limit`` rows per call; call
        again from the returned seq until it stops moving.

        This relies on seqs becoming visible in order (a reader that sees seq N sees every
        seq below it). On SQLite it holds: rows get their seq under the one write lock and
        commit under it. On PostgreSQL a sequence does not promise it (a transaction that
        took seq 7 may commit after one that took seq 8), so there the inbox-writing
        transaction takes ``pg_advisory_xact_lock`` on the inbox stream before it takes
        seqs, which makes seq order commit order again."""
        rows = await self.db.fetchall(
            "SELECT seq, officer FROM inbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit))
        if not rows:
            return after, []
        return int(rows[-1][0]), sorted({str(r[1]) for r in rows})

    async def inbox_count(self, officer: str) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM inbox WHERE officer = ?", (officer,))
        return int(row[0])

    async def local_deliveries(self, envelope_id: bytes) -> list[tuple[str, int, int | None]]:
        rows = await self.db.fetchall(
            "SELECT officer, relayed, acked FROM inbox WHERE envelope_id = ? ORDER BY officer",
            (envelope_id,))
        return [(r[0], r[1], r[2]) for r in rows]

    async def evidence_for(self, officer: str, envelope_id: bytes, *,
                           limit: int) -> list[bytes]:
        """The evidence envelopes in ``officer``'s inbox that report on ``envelope_id``:
        those naming it (``ref``) and the batches covering it (``evidence_covers``, which
        names each by its inbox row)."""
        rows = await self.db.fetchall(
            "SELECT e.raw FROM inbox i JOIN envelopes e ON e.id = i.envelope_id "
            "WHERE i.seq IN (SELECT seq FROM inbox WHERE officer = ? AND envelope_id IN "
            "(SELECT id FROM envelopes WHERE ref = ? AND kind = 'evidence') "
            "UNION SELECT inbox_seq FROM evidence_covers WHERE envelope_id = ?) "
            "AND e.kind = 'evidence' AND i.officer = ? AND e.purged IS NULL "
            "ORDER BY i.seq LIMIT ?",
            (officer, envelope_id, envelope_id, officer, limit))
        return [bytes(r[0]) for r in rows]

    async def may_read(self, officer: str, envelope_id: bytes) -> bool:
        row = await self.db.fetchone(
            "SELECT 1 FROM inbox WHERE officer = ? AND envelope_id = ? UNION ALL "
            "SELECT 1 FROM envelopes WHERE id = ? AND sender = ?",
            (officer, envelope_id, envelope_id, officer))
        return row is not None

    async def ack(self, officer: str, envelope_id: bytes, *, now: int) -> bool:
        async def op(txn: WriteTxn) -> bool:
            cur = await txn.execute(
                "UPDATE inbox SET acked = ? WHERE officer = ? AND envelope_id = ? "
                "AND acked IS NULL", (now, officer, envelope_id))
            if cur.rowcount == 0:
                exists = await (await txn.execute(
                    "SELECT 1 FROM inbox WHERE officer = ? AND envelope_id = ?",
                    (officer, envelope_id))).fetchone()
                if exists is None:
                    raise NotFound("no such envelope in your inbox")
                return False
            await txn.audit(now, "envelope.acknowledged", officer, detail(), envelope_id)
            return True

        return await self.db.write(op)
