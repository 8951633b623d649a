"""What a node remembers about early-warning signals: deadlines, acknowledgements,
escalations, the pseudonym index for hit/no-hit matching, and OPRF evaluation counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from liaison_net.core.audit import detail
from liaison_net.core.effects import Effect
from liaison_net.core.ids import id_to_text
from liaison_net.store.database import Database, WriteTxn
from liaison_net.store.effect_store import add_effects


@dataclass(frozen=True)
class Match:
    earlier: bytes
    earlier_sender: str
    later: bytes
    later_sender: str


@dataclass(frozen=True)
class DueSignal:
    envelope_id: bytes
    sender: str
    severity: int
    deadline: int


class SignalStore:
    def __init__(self, db: Database, node_id: str) -> None:
        self.db = db
        self.node_id = node_id

    async def acknowledge(self, envelope_id: bytes, officer: str, *, now: int,
                          notice: Callable[[str], Effect] | None = None) -> str | None:
        """Record a desk's acknowledgement; the signal's sender if this was the first. The
        first one owes the sender ``notice(sender)``, recorded as an effect in this write."""

        async def op(txn: WriteTxn) -> str | None:
            cur = await txn.execute(
                "UPDATE signals SET acked = ?, acked_by = ? WHERE envelope_id = ? "
                "AND role = 'destination' AND acked IS NULL", (now, officer, envelope_id))
            if cur.rowcount == 0:
                return None
            row = await (await txn.execute("SELECT sender FROM signals WHERE envelope_id = ?",
                                           (envelope_id,))).fetchone()
            await txn.audit(now, "signal.acknowledged", officer, detail(), envelope_id)
            if row is not None and notice is not None:
                await add_effects(txn, [notice(str(row[0]))], now)
            return str(row[0]) if row else None

        return await self.db.write(op)

    async def due(self, now: int, limit: int = 100) -> list[DueSignal]:
        rows = await self.db.fetchall(
            "SELECT envelope_id, sender, severity, deadline FROM signals WHERE role = "
            "'destination' AND acked IS NULL AND escalated IS NULL AND deadline <= ? "
            "ORDER BY deadline LIMIT ?", (now, limit))
        return [DueSignal(bytes(r[0]), r[1], r[2], r[3]) for r in rows]

    async def mark_escalated(self, envelope_id: bytes, *, now: int,
                             notice: Effect | None = None) -> bool:
        """Escalate once; the escalation ``notice`` is recorded in the same write."""

        async def op(txn: WriteTxn) -> bool:
            cur = await txn.execute(
                "UPDATE signals SET escalated = ? WHERE envelope_id = ? AND escalated IS NULL",
                (now, envelope_id))
            if cur.rowcount:
                await txn.audit(now, "signal.escalated", self.node_id, detail(), envelope_id)
                if notice is not None:
                    await add_effects(txn, [notice], now)
            return bool(cur.rowcount)

        return await self.db.write(op)

    async def state(self, envelope_id: bytes) -> dict[str, object] | None:
        row = await self.db.fetchone(
            "SELECT role, severity, deadline, acked, acked_by, escalated FROM signals "
            "WHERE envelope_id = ?", (envelope_id,))
        if row is None:
            return None
        return {"role": row[0], "severity": row[1], "deadline": row[2], "acked": row[3],
                "acked_by": row[4], "escalated": row[5]}

    async def raised_by(self, officer: str, *, limit: int) -> list[tuple[bytes, int, int]]:
        rows = await self.db.fetchall(
            "SELECT envelope_id, severity, received FROM signals WHERE role = 'origin' "
            "AND sender = ? ORDER BY received DESC LIMIT ?", (officer, limit))
        return [(bytes(r[0]), r[1], r[2]) for r in rows]

    async def evaluations_since(self, officer: str, since: int) -> int:
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM pseudonym_evaluations WHERE officer = ? AND at >= ?",
            (officer, since))
        return int(row[0])

    async def record_evaluation(self, officer: str, justification: str, key_id: bytes, *,
                                now: int, window_start: int, limit: int) -> bool:
        """Count and audit one OPRF evaluation; False (nothing recorded) if over the limit."""

        async def op(txn: WriteTxn) -> bool:
            row = await (await txn.execute(
                "SELECT COUNT(*) FROM pseudonym_evaluations WHERE officer = ? AND at >= ?",
                (officer, window_start))).fetchone()
            if row is not None and row[0] >= limit:
                return False
            await txn.execute("DELETE FROM pseudonym_evaluations WHERE at < ?", (window_start,))
            await txn.execute("INSERT INTO pseudonym_evaluations (officer, at) VALUES (?, ?)",
                              (officer, now))
            await txn.audit(now, "pseudonym.evaluated", officer,
                            detail(justification=justification[:500], key_id=key_id.hex()))
            return True

        return await self.db.write(op)


async def matches_in(txn: WriteTxn, envelope_id: bytes, *, node_id: str,
                     now: int) -> list[Match]:
    """Signals this node raised earlier whose pseudonym equals one of ``envelope_id``'s,
    from another country, not notified before: recorded as notified in the accepting
    transaction, so each pair is announced once, by this node only (the earlier signal's
    origin), and its match notice is owed from the same commit."""
    cur = await txn.execute(
        "SELECT DISTINCT mine.envelope_id, s_mine.sender, s_new.sender "
        "FROM pseudonyms new JOIN pseudonyms mine ON mine.value = new.value "
        "JOIN signals s_mine ON s_mine.envelope_id = mine.envelope_id "
        "JOIN signals s_new ON s_new.envelope_id = new.envelope_id "
        "WHERE new.envelope_id = ? AND s_mine.role = 'origin' AND mine.origin = ? "
        "AND new.origin != ? AND mine.envelope_id != new.envelope_id "
        "AND NOT EXISTS (SELECT 1 FROM signal_matches m WHERE m.earlier = "
        "mine.envelope_id AND m.later = new.envelope_id)",
        (envelope_id, node_id, node_id))
    matches = [Match(bytes(r[0]), r[1], envelope_id, r[2]) for r in await cur.fetchall()]
    for m in matches:
        await txn.execute("INSERT INTO signal_matches (earlier, later, notified) "
                          "VALUES (?, ?, ?)", (m.earlier, m.later, now))
        await txn.audit(now, "signal.matched", node_id,
                        detail(earlier=id_to_text(m.earlier), later=id_to_text(m.later)),
                        m.later)
    return matches
