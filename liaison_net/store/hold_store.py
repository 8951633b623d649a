"""Four-eyes holds and approvals (issue 19): an envelope accepted at its origin but kept
from every inbox and outbox until a second officer approves it.

The hold row is written in the accepting transaction (``hold_in``, called by
``EnvelopeStore._accept_in``), so a held envelope is as durable as any accepted one. Its
release (``approve``) writes, in one transaction, the approval, the inbox rows and hops
the acceptance would have written, the audit entry and what is owed (evidence, the
sender's notice); a rejection or expiry writes the decision, its audit entry and the
sender's notice. A hold is decided once: the state moves only from ``held``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from liaison_net.core.audit import detail
from liaison_net.core.delivery import HopState
from liaison_net.core.effects import Effect, notice
from liaison_net.core.envelope import Header
from liaison_net.core.ids import id_to_text
from liaison_net.errors import Conflict, Expired, KeysChanged, NotFound
from liaison_net.store.database import Database, WriteTxn
from liaison_net.store.effect_store import add_effects

HELD = "held"
APPROVED = "approved"
REJECTED = "rejected"
EXPIRED = "expired"
MAX_LISTING = 500


@dataclass(frozen=True)
class HoldPlan:
    """What intake decided for a held envelope: whose unit approves, until when."""

    unit: str
    until: int


@dataclass(frozen=True)
class Hold:
    envelope_id: bytes
    sender: str
    unit: str
    local: list[str]
    remote: list[str]
    held: int
    until: int
    state: str
    decided: int | None
    decided_by: str | None
    reason: str | None


_COLUMNS = ("envelope_id, sender, unit, local, remote, held, until, state, decided, "
            "decided_by, reason")


def _hold(row: Any) -> Hold:
    eid, sender, unit, local, remote, held, until, state, decided, by, reason = row
    return Hold(bytes(eid), str(sender), str(unit), json.loads(str(local)),
                json.loads(str(remote)), int(held), int(until), str(state),
                decided if isinstance(decided, int) else None,
                str(by) if by is not None else None, str(reason) if reason is not None else None)


async def hold_in(txn: WriteTxn, header: Header, plan: HoldPlan, *, local: Sequence[str],
                  remote: Sequence[str], now: int) -> None:
    """Inside the accepting write: the envelope waits; its inbox rows and hops are kept
    here, to be written on release."""
    await txn.execute(
        f"INSERT INTO holds ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)",
        (header.id, header.sender, plan.unit, json.dumps(sorted(local)),
         json.dumps(sorted(remote)), now, plan.until, HELD))


async def approval_in(txn: WriteTxn, envelope_id: bytes, approver: str,
                      statement: bytes) -> None:
    await txn.execute("INSERT OR IGNORE INTO approvals (envelope_id, approver, statement) "
                      "VALUES (?, ?, ?)", (envelope_id, approver, statement))


class HoldStore:
    def __init__(self, db: Database, node_id: str) -> None:
        self.db = db
        self.node_id = node_id

    async def get(self, envelope_id: bytes) -> Hold | None:
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM holds WHERE envelope_id = ?",
                                     (envelope_id,))
        return _hold(row) if row is not None else None

    async def waiting(self, *, units: Sequence[str], sender: str,
                      limit: int = MAX_LISTING) -> list[Hold]:
        """Holds still waiting that ``sender`` sent or may decide (one of ``units``)."""
        marks = ", ".join("?" * len(units)) or "NULL"
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM holds WHERE state = 'held' AND "
            f"(sender = ? OR unit IN ({marks})) ORDER BY held, envelope_id LIMIT ?",
            (sender, *units, limit))
        return [_hold(r) for r in rows]

    async def approval(self, envelope_id: bytes) -> bytes | None:
        row = await self.db.fetchone("SELECT statement FROM approvals WHERE envelope_id = ?",
                                     (envelope_id,))
        return bytes(row[0]) if row is not None else None

    async def approvals_of(self, ids: Sequence[bytes]) -> dict[bytes, bytes]:
        """The approvals to carry beside a transaction of ``ids``."""
        out: dict[bytes, bytes] = {}
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            rows = await self.db.fetchall(
                "SELECT envelope_id, statement FROM approvals WHERE envelope_id IN "
                f"({', '.join('?' * len(part))})", tuple(part))
            out.update((bytes(a), bytes(b)) for a, b in rows)
        return out

    async def _decide(self, txn: WriteTxn, envelope_id: bytes, state: str, *, by: str,
                      reason: str | None, now: int) -> Hold:
        row = await (await txn.execute(f"SELECT {_COLUMNS} FROM holds WHERE envelope_id = ?",
                                       (envelope_id,))).fetchone()
        if row is None:
            raise NotFound(f"no envelope {id_to_text(envelope_id)} is held here")
        hold = _hold(row)
        if hold.state != HELD:
            raise Conflict(f"envelope {id_to_text(envelope_id)} was already {hold.state} "
                           f"by {hold.decided_by}")
        if state != EXPIRED and hold.until <= now:
            raise Expired(f"the hold of {id_to_text(envelope_id)} has expired")
        await txn.execute("UPDATE holds SET state = ?, decided = ?, decided_by = ?, "
                          "reason = ? WHERE envelope_id = ?",
                          (state, now, by, reason, envelope_id))
        return hold

    def _keys_unchanged(self, keys_as_of: int, principals: Collection[str]) -> None:
        """In the write: the keys of ``principals`` (the approver, the held envelope's
        sender) not revoked, superseded or re-carded since the decision's checks read them
        at generation ``keys_as_of`` (``EnvelopeStore._keys_unchanged``'s rule)."""
        if self.db.key_cache.weakened_since(keys_as_of, principals):
            raise KeysChanged("keys changed while the decision was checked; nothing done")

    async def approve(self, envelope_id: bytes, *, approver: str, statement: bytes,
                      now: int, effects: Sequence[Effect], keys_as_of: int) -> Hold:
        """Release: the approval stored, the inbox rows and hops written, audited, and
        ``effects`` (the relayed evidence, the sender's notice) owed, in one write.
        ``keys_as_of``: the key cache's generation when the approval and the held
        envelope's signer were checked: if the approver's or the sender's keys were
        revoked, superseded or re-carded since, nothing is released (``KeysChanged``), as
        ``EnvelopeStore.accept``."""

        async def op(txn: WriteTxn) -> Hold:
            hold = await self._decide(txn, envelope_id, APPROVED, by=approver, reason=None,
                                      now=now)
            # Raised here, the write's savepoint undoes the decision above: nothing done.
            self._keys_unchanged(keys_as_of, (approver, hold.sender))
            await approval_in(txn, envelope_id, approver, statement)
            await txn.executemany(
                "INSERT OR IGNORE INTO inbox (officer, envelope_id, relayed) VALUES (?, ?, ?)",
                [(o, envelope_id, now) for o in hold.local])
            await txn.executemany(
                "INSERT OR IGNORE INTO hops (node, envelope_id, state, precedence, expires, "
                "updated) SELECT ?, id, ?, precedence, expires, ? FROM envelopes WHERE id = ?",
                [(node, HopState.QUEUED.value, now, envelope_id) for node in hold.remote])
            await txn.audit(now, "envelope.approved", approver,
                            detail(sender=hold.sender, unit=hold.unit,
                                   to=hold.remote + (["local"] if hold.local else [])),
                            envelope_id)
            await add_effects(txn, [*effects, notice(
                "four-eyes-approved", recipients=[hold.sender], ref=envelope_id,
                content={"envelope": envelope_id, "by": approver, "node": self.node_id})], now)
            return hold

        return await self.db.write(op)

    async def reject(self, envelope_id: bytes, *, approver: str, reason: str,
                     now: int, keys_as_of: int) -> Hold:
        """End the hold: audited, the sender told. ``keys_as_of``: as ``approve``'s."""

        async def op(txn: WriteTxn) -> Hold:
            hold = await self._decide(txn, envelope_id, REJECTED, by=approver,
                                      reason=reason, now=now)
            self._keys_unchanged(keys_as_of, (approver, hold.sender))  # as approve's
            await txn.audit(now, "envelope.rejected", approver,
                            detail(sender=hold.sender, unit=hold.unit, reason=reason[:200]),
                            envelope_id)
            await add_effects(txn, [notice(
                "four-eyes-rejected", recipients=[hold.sender], ref=envelope_id,
                content={"envelope": envelope_id, "by": approver, "node": self.node_id,
                         "reason": reason[:500]})], now)
            return hold

        return await self.db.write(op)

    async def expire_due(self, now: int, limit: int = 500) -> int:
        """Holds past their time end ``expired``, each with the sender's notice."""

        async def op(txn: WriteTxn) -> int:
            rows = await (await txn.execute(
                "SELECT envelope_id FROM holds WHERE state = 'held' AND until <= ? "
                "ORDER BY until LIMIT ?", (now, limit))).fetchall()
            for (eid,) in rows:
                hold = await self._decide(txn, bytes(eid), EXPIRED, by=self.node_id,
                                          reason="no second officer approved it in time",
                                          now=now)
                await txn.audit(now, "envelope.hold_expired", self.node_id,
                                detail(sender=hold.sender, unit=hold.unit), hold.envelope_id)
                await add_effects(txn, [notice(
                    "four-eyes-expired", recipients=[hold.sender], ref=hold.envelope_id,
                    content={"envelope": hold.envelope_id, "node": self.node_id,
                             "held_since": hold.held,
                             "detail": "not approved in time: it was never sent; send it "
                                       "again and ask an approver of your unit"})], now)
            return len(rows)

        return await self.db.write(op)
