"""Audit checkpoints as the store keeps them: this node's own, with the cosignatures its
peers returned, and the peers' checkpoints this node witnessed (``core/checkpoint.py``).

Rows hold the signed wire form; readers verify it again before they believe a field of it
(an operator with write access to this file is the threat these rows answer), so the
``size``, ``root`` and ``at`` columns are only for finding rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from liaison_net.core.audit import detail
from liaison_net.core.checkpoint import SignedCheckpoint
from liaison_net.store.database import Database, WriteTxn


@dataclass(frozen=True)
class StoredCheckpoint:
    node: str
    size: int
    root: bytes  # as the row says: only this node's own witness rows may be believed as is
    at: int
    signed: bytes  # wire form: verify before use
    leaves: bytes | None  # own, before schema 20: the leaf hashes added since the last one
    kept: bytes | None  # own, schema 20 on: what ``core.kept_leaves.keep`` keeps of them
    cosignatures: dict[str, bytes]  # witness -> cosignature wire form: verify before use


@dataclass(frozen=True)
class Alarm:
    node: str
    verdict: str
    size: int
    at: int


class CheckpointStore:
    def __init__(self, db: Database, node_id: str) -> None:
        self.db = db
        self.node_id = node_id

    async def put_own(self, signed: SignedCheckpoint, kept: bytes, *, now: int) -> None:
        """This node's checkpoint, with what it keeps of the leaves it added (``kept``)."""
        c = signed.checkpoint

        async def op(txn: WriteTxn) -> None:
            await txn.execute(
                "INSERT OR IGNORE INTO checkpoints (node, size, root, at, signed, kept, "
                "received) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (c.node, c.size, c.root, c.at, signed.raw, kept, now))

        await self.db.write(op)

    async def put_witnessed(self, signed: SignedCheckpoint, *, witness: str,
                            cosignature: bytes, now: int) -> None:
        """A checkpoint this node witnessed (or, with ``witness`` a peer, a cosignature of
        one of this node's own checkpoints)."""
        c = signed.checkpoint

        async def op(txn: WriteTxn) -> None:
            await txn.execute(
                "INSERT OR IGNORE INTO checkpoints (node, size, root, at, signed, leaves, "
                "received) VALUES (?, ?, ?, ?, ?, NULL, ?)",
                (c.node, c.size, c.root, c.at, signed.raw, now))
            await txn.execute(
                "INSERT OR REPLACE INTO cosignatures (node, size, witness, cosignature, at) "
                "VALUES (?, ?, ?, ?, ?)", (c.node, c.size, witness, cosignature, now))

        await self.db.write(op)

    async def put_cosignature(self, node: str, size: int, witness: str, cosignature: bytes,
                              *, now: int) -> None:
        async def op(txn: WriteTxn) -> None:
            await txn.execute(
                "INSERT OR REPLACE INTO cosignatures (node, size, witness, cosignature, at) "
                "VALUES (?, ?, ?, ?, ?)", (node, size, witness, cosignature, now))

        await self.db.write(op)

    async def alarm(self, *, node: str, verdict: str, size: int, now: int,
                    why: str) -> None:
        """A witness's alarm and its audit entry, in one commit; once per node, verdict and
        size (a peer repeating the same evidence must not fill the disk)."""
        async def op(txn: WriteTxn) -> None:
            cur = await txn.execute(
                "SELECT 1 FROM checkpoint_alarms WHERE node = ? AND verdict = ? AND size = ?",
                (node, verdict, size))
            if await cur.fetchone() is not None:
                return
            await txn.execute(
                "INSERT INTO checkpoint_alarms (node, verdict, size, at) VALUES (?, ?, ?, ?)",
                (node, verdict, size, now))
            await txn.audit(now, "audit.checkpoint_alarm", node,
                            detail(verdict=verdict, size=size, reason=why[:200]))

        await self.db.write(op)

    async def alarms(self, limit: int = 20) -> list[Alarm]:
        rows = await self.db.fetchall(
            "SELECT node, verdict, size, at FROM checkpoint_alarms ORDER BY id DESC LIMIT ?",
            (limit,))
        return [Alarm(*r) for r in rows]

    async def of(self, node: str, *, size: int | None = None,
                 limit: int | None = None) -> list[StoredCheckpoint]:
        """Checkpoints of ``node``, newest (largest) first, with their cosignatures."""
        sql = ("SELECT node, size, root, at, signed, leaves, kept FROM checkpoints "
               "WHERE node = ?")
        params: tuple[object, ...] = (node,)
        if size is not None:
            sql += " AND size = ?"
            params += (size,)
        sql += " ORDER BY size DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        rows = await self.db.fetchall(sql, params)
        out = []
        for n, s, root, at, signed, leaves, kept in rows:
            cosigs = await self.db.fetchall(
                "SELECT witness, cosignature FROM cosignatures WHERE node = ? AND size = ?",
                (n, s))
            out.append(StoredCheckpoint(n, s, _blob(root) or b"", at, _blob(signed) or b"",
                                        _blob(leaves), _blob(kept),
                                        {w: _blob(c) or b"" for w, c in cosigs}))
        return out

    async def put_heard(self, signed: SignedCheckpoint, *, now: int, limit: int) -> bool:
        """A checkpoint of a peer that another witness saw (no cosignature of ours yet),
        unless ``limit`` of that node's are already waiting to be proven."""
        c = signed.checkpoint

        async def op(txn: WriteTxn) -> bool:
            cur = await txn.execute(
                "SELECT COUNT(*) FROM checkpoints c WHERE node = ? AND NOT EXISTS (SELECT 1 "
                "FROM cosignatures s WHERE s.node = c.node AND s.size = c.size AND "
                "s.witness = ?)", (c.node, self.node_id))
            row = await cur.fetchone()
            if row is not None and row[0] >= limit:
                return False
            await txn.execute(
                "INSERT OR IGNORE INTO checkpoints (node, size, root, at, signed, leaves, "
                "received) VALUES (?, ?, ?, ?, ?, NULL, ?)",
                (c.node, c.size, c.root, c.at, signed.raw, now))
            return True

        return await self.db.write(op)

    async def witnessed_by_us(self, node: str, *, heard: bool = False,
                              limit: int | None = 1) -> list[StoredCheckpoint]:
        """``node``'s checkpoints this node cosigned (newest first), or with ``heard`` those
        it holds without its cosignature: heard of from other witnesses, not yet proven."""
        rows = await self.db.fetchall(
            "SELECT size FROM checkpoints c WHERE node = ? AND "
            + ("NOT " if heard else "") + "EXISTS (SELECT 1 FROM cosignatures s WHERE "
            "s.node = c.node AND s.size = c.size AND s.witness = ?) ORDER BY size DESC"
            + (" LIMIT ?" if limit is not None else ""),
            (node, self.node_id, *((limit,) if limit is not None else ())))
        out = []
        for (size,) in rows:
            out.extend(await self.of(node, size=size))
        return out

    async def latest(self, node: str) -> StoredCheckpoint | None:
        rows = await self.of(node, limit=1)
        return rows[0] if rows else None

    async def cosigned_by(self, node: str, witness: str) -> int:
        """The largest size of ``node``'s checkpoints that ``witness`` cosigned (0: none)."""
        row = await self.db.fetchone(
            "SELECT MAX(size) FROM cosignatures WHERE node = ? AND witness = ?",
            (node, witness))
        return int(row[0]) if row and row[0] is not None else 0

    async def witness_certificates(self) -> list[tuple[str, bytes]]:
        """(node, signing certificate PEM) of every peer key held: current ones, then
        those a rotation replaced. Unverified: the reader checks each against the CA."""
        rows = await self.db.fetchall("SELECT node, signing_cert FROM node_keys")
        rows += await self.db.fetchall(
            "SELECT substr(principal, 1, length(principal) - 5), cert FROM key_history "
            "WHERE cert IS NOT NULL AND principal LIKE '%/node'")
        return [(str(node), bytes(pem)) for node, pem in rows]


def _blob(value: object) -> bytes | None:
    """A BLOB cell as bytes; None for any other value. SQLite keeps whatever type was
    written to a cell: a text, a number (``bytes(10**12)`` would try to allocate a
    terabyte) left by someone who rewrote the file reads as no blob, never as a crash."""
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else None
