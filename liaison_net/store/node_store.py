"""What a node keeps, in domain terms: envelopes, hops, inboxes, peers, directory, audit.

Callers get core objects and plain tuples back, never cursors. Every method that changes
state runs as one group-committed write (see ``database``), together with its audit
entry, so a decision and its record are durable together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liaison_net.core.audit import AuditEntry, detail, first_broken
from liaison_net.core.delivery import HopState
from liaison_net.core.envelope import Envelope
from liaison_net.core.identity import OfficerCard, decode_stored_card
from liaison_net.errors import Conflict, NotFound
from liaison_net.store.database import Database, WriteTxn
from liaison_net.store.key_store import KeyStore
from liaison_net.store.request_store import RequestStore
from liaison_net.store.retention_store import RetentionStore, purged_error, skeleton_tag
from liaison_net.store.signal_store import SignalStore


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


@dataclass(frozen=True)
class AcceptOutcome:
    envelope_id: bytes
    duplicate: bool


class NodeStore:
    def __init__(self, path: Path, node_id: str, *, group_commit_max: int = 512,
                 max_db_mb: float | None = None) -> None:
        self.node_id = node_id
        self.db = Database(path, group_commit_max=group_commit_max, max_db_mb=max_db_mb)
        self.keys = KeyStore(self.db)
        self.signals = SignalStore(self.db, node_id)
        self.requests = RequestStore(self.db, node_id)
        self.retention = RetentionStore(self.db, node_id)
        # Called with the officers whose inbox got rows, after the commit (live delivery).
        self.on_inbox: Callable[[list[str]], None] | None = None

    async def open(self, *, writer: bool = True) -> None:
        await self.db.open(writer=writer)

    async def close(self) -> None:
        await self.db.close()

    # --- envelopes ------------------------------------------------------------------------

    async def accept(self, envelope: Envelope, *, now: int, actor: str, event: str,
                     local_recipients: list[str], remote_nodes: list[str],
                     audit_detail: str, signal_deadline: int | None = None,
                     received: bool = False) -> AcceptOutcome:
        """Store a verified envelope once: inbox entries for local recipients, one queued
        hop per remote node; a signal is also indexed (with its desk's acknowledgement
        deadline when this node's desk is addressed). ``received``: from a peer, not from an
        officer of this node. A second copy changes nothing."""
        h = envelope.header

        async def op(txn: WriteTxn) -> AcceptOutcome:
            cur = await txn.execute(
                "INSERT OR IGNORE INTO envelopes (id, raw, sender, kind, precedence, created, "
                "expires, retain_until, received, ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (h.id, envelope.to_bytes(), h.sender, h.kind.value, int(h.precedence),
                 h.created, h.expires, h.tag.retain_until, now, h.ref),
            )
            if cur.rowcount == 0:
                stored = await (await txn.execute("SELECT raw, purged FROM envelopes "
                                                  "WHERE id = ?", (h.id,))).fetchone()
                if stored is not None and stored[1] is not None:
                    return AcceptOutcome(h.id, duplicate=True)  # purged: only a skeleton left
                if stored is not None and bytes(stored[0]) != envelope.to_bytes():
                    raise Conflict(f"envelope id {h.id_text} is already taken by other bytes")
                return AcceptOutcome(h.id, duplicate=True)
            if local_recipients:
                await txn.executemany(
                    "INSERT OR IGNORE INTO inbox (officer, envelope_id, relayed) VALUES (?, ?, ?)",
                    [(officer, h.id, now) for officer in local_recipients],
                )
            if remote_nodes:
                await txn.executemany(
                    "INSERT INTO hops (node, envelope_id, state, precedence, expires, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(node, h.id, HopState.QUEUED.value, int(h.precedence), h.expires, now)
                     for node in remote_nodes],
                )
            if h.signal is not None:
                await txn.execute(
                    "INSERT INTO signals (envelope_id, role, origin, sender, severity, received, "
                    "deadline) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (h.id, "destination" if received else "origin",
                     h.sender.split("/")[0], h.sender, int(h.signal.severity), now,
                     signal_deadline))
                await txn.executemany(
                    "INSERT OR IGNORE INTO pseudonyms (value, key_id, envelope_id, origin) "
                    "VALUES (?, ?, ?, ?)",
                    [(p.value, p.key_id, h.id, h.sender.split("/")[0])
                     for p in h.signal.pseudonyms])
            await txn.audit(now, event, actor, audit_detail, h.id)
            return AcceptOutcome(h.id, duplicate=False)

        outcome = await self.db.write(op)
        if not outcome.duplicate and local_recipients and self.on_inbox is not None:
            self.on_inbox(local_recipients)
        return outcome

    async def audit(self, *, now: int, event: str, actor: str, audit_detail: str,
                    envelope_id: bytes | None = None) -> None:
        async def op(txn: WriteTxn) -> None:
            await txn.audit(now, event, actor, audit_detail, envelope_id)

        await self.db.write(op)

    async def envelope_bytes(self, envelope_id: bytes) -> bytes:
        """The envelope as received; ``Purged`` once retention has removed its content."""
        row = await self.db.fetchone(
            "SELECT raw, purged, retain_until FROM envelopes WHERE id = ?", (envelope_id,))
        if row is None:
            raise NotFound("no such envelope")
        if row[1] is not None:
            raise purged_error(envelope_id, bytes(row[0]), row[1], row[2])
        return bytes(row[0])

    # --- outbox (hops) --------------------------------------------------------------------

    async def next_batch(self, node: str, limit: int, *, now: int) -> list[tuple[bytes, bytes]]:
        """Queued, unexpired envelopes for ``node``, flash first, then oldest first. Never
        one past its ``retain_until`` or purged (retain_until >= expires already implies
        it; checked again so a queued envelope past retention is never relayed)."""
        rows = await self.db.fetchall(
            "SELECT h.envelope_id, e.raw FROM hops h JOIN envelopes e ON e.id = h.envelope_id "
            "WHERE h.node = ? AND h.state = ? AND h.expires > ? AND e.purged IS NULL "
            "AND e.retain_until > ? ORDER BY h.precedence DESC, h.envelope_id LIMIT ?",
            (node, HopState.QUEUED.value, now, now, limit),
        )
        return [(bytes(r[0]), bytes(r[1])) for r in rows]

    async def queue_depth(self) -> dict[str, int]:
        rows = await self.db.fetchall(
            "SELECT node, COUNT(*) FROM hops WHERE state = ? GROUP BY node",
            (HopState.QUEUED.value,))
        return {r[0]: r[1] for r in rows}

    async def finish_hops(self, node: str, *, now: int, delivered: list[bytes],
                          refused: list[tuple[bytes, str]]) -> list[tuple[bytes, str, str]]:
        """Record a transaction's outcome: delivered and refused hops, and their audit.
        Returns (envelope id, code, sender) of each hop refused just now (not before), for
        the sender's non-delivery notice."""

        async def op(txn: WriteTxn) -> list[tuple[bytes, str, str]]:
            newly_refused: list[tuple[bytes, str, str]] = []
            for eid in delivered:
                cur = await txn.execute(
                    "UPDATE hops SET state = ?, updated = ? WHERE node = ? AND envelope_id = ? "
                    "AND state = ?",
                    (HopState.DELIVERED.value, now, node, eid, HopState.QUEUED.value))
                if cur.rowcount:
                    await txn.audit(now, "envelope.relayed", self.node_id,
                                    detail(peer=node), eid)
            for eid, code in refused:
                cur = await txn.execute(
                    "UPDATE hops SET state = ?, updated = ?, reason = ? WHERE node = ? AND "
                    "envelope_id = ? AND state = ?",
                    (HopState.REFUSED.value, now, code, node, eid, HopState.QUEUED.value))
                if cur.rowcount:
                    await txn.audit(now, "envelope.refused_by_peer", self.node_id,
                                    detail(peer=node, code=code), eid)
                    row = await (await txn.execute("SELECT sender FROM envelopes WHERE id = ?",
                                                   (eid,))).fetchone()
                    if row is not None:
                        newly_refused.append((eid, code, str(row[0])))
            return newly_refused

        return await self.db.write(op)

    async def expire_due(self, now: int, limit: int = 500) -> list[tuple[bytes, str, str]]:
        """Mark queued hops past expiry EXPIRED; return (envelope id, node, sender) each."""

        async def op(txn: WriteTxn) -> list[tuple[bytes, str, str]]:
            cur = await txn.execute(
                "SELECT h.envelope_id, h.node, e.sender FROM hops h JOIN envelopes e "
                "ON e.id = h.envelope_id WHERE h.state = ? AND h.expires <= ? LIMIT ?",
                (HopState.QUEUED.value, now, limit))
            rows = [(bytes(r[0]), r[1], r[2]) for r in await cur.fetchall()]
            for eid, node, _sender in rows:
                await txn.execute(
                    "UPDATE hops SET state = ?, updated = ?, reason = 'expired' "
                    "WHERE node = ? AND envelope_id = ?",
                    (HopState.EXPIRED.value, now, node, eid))
                await txn.audit(now, "envelope.expired", self.node_id, detail(peer=node), eid)
            return rows

        return await self.db.write(op)

    async def hop_states(self, envelope_id: bytes) -> dict[str, tuple[str, str | None]]:
        rows = await self.db.fetchall(
            "SELECT node, state, reason FROM hops WHERE envelope_id = ?", (envelope_id,))
        return {r[0]: (r[1], r[2]) for r in rows}

    # --- peers ----------------------------------------------------------------------------

    async def peer_backoff(self, node: str) -> tuple[int, int]:
        row = await self.db.fetchone(
            "SELECT attempts, next_attempt FROM peers WHERE node = ?", (node,))
        return (row[0], row[1]) if row else (0, 0)

    async def set_peer_backoff(self, node: str, attempts: int, next_attempt: int,
                               error: str | None) -> None:
        async def op(txn: WriteTxn) -> None:
            await txn.execute(
                "INSERT INTO peers (node, attempts, next_attempt, last_error) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(node) DO UPDATE SET attempts = excluded.attempts, "
                "next_attempt = excluded.next_attempt, last_error = excluded.last_error",
                (node, attempts, next_attempt, error))

        await self.db.write(op)

    async def directory_cursor(self, node: str) -> int:
        row = await self.db.fetchone("SELECT directory_cursor FROM peers WHERE node = ?", (node,))
        return int(row[0]) if row else 0

    async def set_directory_cursor(self, node: str, cursor: int) -> None:
        async def op(txn: WriteTxn) -> None:
            await txn.execute(
                "INSERT INTO peers (node, directory_cursor) VALUES (?, ?) ON CONFLICT(node) "
                "DO UPDATE SET directory_cursor = excluded.directory_cursor", (node, cursor))

        await self.db.write(op)

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
        """The evidence envelopes in ``officer``'s inbox that report on ``envelope_id``."""
        rows = await self.db.fetchall(
            "SELECT e.raw FROM envelopes e JOIN inbox i ON i.envelope_id = e.id "
            "WHERE e.ref = ? AND e.kind = 'evidence' AND i.officer = ? AND e.purged IS NULL "
            "ORDER BY i.seq LIMIT ?",
            (envelope_id, officer, limit))
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

    # --- directory ------------------------------------------------------------------------

    async def put_card(self, card: OfficerCard, raw: bytes, *, now: int, source: str,
                       grace_ms: int = 0) -> bool:
        """Keep the newest card version per officer; True if this one was new.

        When a newer card carries a new signing key (a rotation), the old key is kept in
        ``key_history`` for ``grace_ms`` so envelopes it signed that are still in flight
        are accepted, then refused."""

        async def op(txn: WriteTxn) -> bool:
            row = await (await txn.execute(
                "SELECT version, signing_key_id, signing_public, card FROM directory "
                "WHERE officer = ?", (card.officer,))).fetchone()
            if row is not None and row[0] >= card.version:
                return False
            owner = await (await txn.execute(
                "SELECT officer FROM directory WHERE signing_key_id = ? AND officer != ?",
                (card.signing_key_id, card.officer))).fetchone()
            if owner is not None:
                raise Conflict(f"card for {card.officer} carries the signing key of "
                               f"{owner[0]}; refused")
            if row is not None and bytes(row[1]) != card.signing_key_id:
                # The old card goes along: readers verify envelopes signed in the grace
                # period against it.
                await txn.execute(
                    "INSERT OR REPLACE INTO key_history (signing_key_id, principal, "
                    "signing_public, grace_until, card) VALUES (?, ?, ?, ?, ?)",
                    (bytes(row[1]), card.officer, bytes(row[2]), now + grace_ms,
                     bytes(row[3])))
                await txn.audit(now, "key.superseded", source,
                                detail(principal=card.officer, key_id=bytes(row[1]).hex(),
                                       grace_until=now + grace_ms))
            seq_row = await (await txn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM directory")).fetchone()
            assert seq_row is not None  # an aggregate always yields one row
            await txn.execute(
                "INSERT OR REPLACE INTO directory (officer, node, version, signing_key_id, "
                "signing_public, encryption_public, name, role, valid_until, card, seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (card.officer, card.node, card.version, card.signing_key_id,
                 card.signing_public, card.encryption_public, card.name, card.role,
                 card.valid_until, raw, seq_row[0]))
            await txn.audit(now, "directory.card", source,
                            detail(officer=card.officer, version=card.version))
            return True

        return await self.db.write(op)

    async def cards_since(self, seq: int, *, node: str | None = None,
                          limit: int = 500) -> list[tuple[int, bytes]]:
        if node is None:
            rows = await self.db.fetchall(
                "SELECT seq, card FROM directory WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit))
        else:
            rows = await self.db.fetchall(
                "SELECT seq, card FROM directory WHERE seq > ? AND node = ? ORDER BY seq "
                "LIMIT ?", (seq, node, limit))
        return [(r[0], bytes(r[1])) for r in rows]

    async def previous_cards(self, *, now: int) -> list[tuple[bytes, bytes]]:
        """(key id, card) of superseded officer keys still in their grace period."""
        rows = await self.db.fetchall(
            "SELECT signing_key_id, card FROM key_history WHERE card IS NOT NULL "
            "AND grace_until > ?", (now,))
        return [(bytes(r[0]), bytes(r[1])) for r in rows]

    async def replace_previous_card(self, key_id: bytes, card: bytes) -> None:
        async def op(txn: WriteTxn) -> None:
            await txn.execute("UPDATE key_history SET card = ? WHERE signing_key_id = ?",
                              (card, key_id))

        await self.db.write(op)

    async def card_version(self, officer: str) -> int:
        row = await self.db.fetchone("SELECT version FROM directory WHERE officer = ?",
                                     (officer,))
        return int(row[0]) if row else 0

    async def directory(self) -> list[tuple[str, str, str, int, bytes]]:
        rows = await self.db.fetchall(
            "SELECT officer, name, role, version, card FROM directory ORDER BY officer")
        return [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    async def officer_card(self, officer: str) -> OfficerCard | None:
        """The current card of an officer (already verified when it was stored), whole:
        a renewal carries its almanac entry forward."""
        row = await self.db.fetchone("SELECT card FROM directory WHERE officer = ?", (officer,))
        return decode_stored_card(bytes(row[0])) if row is not None else None

    async def officer_keys(self, officer: str) -> tuple[bytes, bytes] | None:
        """(signing public, encryption public) of an officer in the directory."""
        row = await self.db.fetchone(
            "SELECT signing_public, encryption_public FROM directory WHERE officer = ?",
            (officer,))
        return (bytes(row[0]), bytes(row[1])) if row else None

    async def put_node_key(self, node: str, cert_pem: bytes, public: bytes) -> None:
        async def op(txn: WriteTxn) -> None:
            await txn.execute(
                "INSERT OR REPLACE INTO node_keys (node, signing_cert, signing_public) "
                "VALUES (?, ?, ?)", (node, cert_pem, public))

        await self.db.write(op)

    async def node_certs(self) -> dict[str, bytes]:
        rows = await self.db.fetchall("SELECT node, signing_cert FROM node_keys")
        return {r[0]: bytes(r[1]) for r in rows}

    async def node_keys(self) -> dict[str, bytes]:
        rows = await self.db.fetchall("SELECT node, signing_public FROM node_keys")
        return {r[0]: bytes(r[1]) for r in rows}

    async def node_key(self, node: str) -> bytes | None:
        row = await self.db.fetchone("SELECT signing_public FROM node_keys WHERE node = ?",
                                     (node,))
        return bytes(row[0]) if row else None

    # --- audit ----------------------------------------------------------------------------

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
