"""The effects table: what decisions oblige the node to issue, until it is issued
(``core/effects.py`` explains the outbox; ``services/effects.py`` drains it).

``add_effects`` runs inside the deciding write; the drain reads ``due`` rows, and either
completes one (``EnvelopeStore.complete_effects``: the issued envelope stored and the row
deleted in one write, for a whole batch) or records a failure with its next attempt (``failed``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from liaison_net.core.audit import detail
from liaison_net.core.effects import Effect
from liaison_net.core.envelope import Envelope
from liaison_net.core.ids import id_to_text
from liaison_net.store.database import Database, WriteTxn


@dataclass(frozen=True)
class PendingEffect:
    id: int
    kind: str
    ref: bytes
    args: bytes
    created: int
    attempts: int


@dataclass(frozen=True)
class Issued:
    """What the drain sealed for ``effect``: the node envelope and how to store it (the
    same rows and audit entry ``NodeStore.accept`` writes)."""

    effect: PendingEffect
    envelope: Envelope
    now: int
    event: str
    local: list[str]
    remote: list[str]
    audit_detail: str
    #: Batch evidence: the other effects this one envelope discharges, and every envelope
    #: it covers (``evidence_covers`` when an inbox here holds it, so the sender's client
    #: finds it for each of them; ``outgoing_covers`` when it is sent to a peer).
    also: tuple[PendingEffect, ...] = ()
    covers: tuple[bytes, ...] = ()


async def add_effects(txn: WriteTxn, effects: Sequence[Effect], now: int) -> None:
    """Record ``effects`` in the deciding transaction (a few statements of many rows:
    ``many_rows``), their ids in the order given."""
    if not effects:
        return
    await txn.insert_rows(
        "INSERT INTO effects (kind, envelope_id, args, created, next_attempt) "
        "VALUES (?, ?, ?, ?, ?)",
        [(e.kind, e.ref, e.pack_args(), now, now) for e in effects])
    txn.effects_added = True


class EffectStore:
    def __init__(self, db: Database, node_id: str) -> None:
        self.db = db
        self.node_id = node_id

    async def due(self, now: int, limit: int) -> list[PendingEffect]:
        """Effects whose next attempt has come, oldest first."""
        rows = await self.db.fetchall(
            "SELECT id, kind, envelope_id, args, created, attempts FROM effects "
            "WHERE next_attempt <= ? ORDER BY id LIMIT ?", (now, limit))
        return [PendingEffect(r[0], r[1], bytes(r[2]), bytes(r[3]), r[4], r[5]) for r in rows]

    async def next_due(self) -> int | None:
        """When the earliest pending effect is due (ms), None if none is pending."""
        row = await self.db.fetchone("SELECT MIN(next_attempt) FROM effects")
        return None if row is None or row[0] is None else int(row[0])

    async def pending(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM effects")
        return int(row[0])

    async def failed(self, effect: PendingEffect, *, now: int, next_attempt: int,
                     code: str, reason: str) -> None:
        """An attempt failed: count it, keep the row for ``next_attempt``, audit it."""

        async def op(txn: WriteTxn) -> None:
            cur = await txn.execute(
                "UPDATE effects SET attempts = attempts + 1, next_attempt = ?, last_error = ? "
                "WHERE id = ?", (next_attempt, f"{code}: {reason}"[:300], effect.id))
            if cur.rowcount:
                await txn.audit(now, "effect.failed", self.node_id,
                                detail(effect=effect.id, kind=effect.kind, code=code,
                                       attempts=effect.attempts + 1,
                                       ref=id_to_text(effect.ref), reason=reason[:200]),
                                effect.ref)

        await self.db.write(op)

    async def discharged(self, effect: PendingEffect, *, now: int, event: str,
                         reason: str) -> bool:
        """The effect cannot produce anything (e.g. no recipient has a card here): delete
        it with an audit entry saying why; False if another drain completed it first."""

        async def op(txn: WriteTxn) -> bool:
            cur = await txn.execute("DELETE FROM effects WHERE id = ?", (effect.id,))
            if cur.rowcount:
                await txn.audit(now, event, self.node_id,
                                detail(effect=effect.id, kind=effect.kind,
                                       reason=reason[:200]), effect.ref)
            return bool(cur.rowcount)

        return await self.db.write(op)
