"""Which signing keys may sign what, and when: current cards, keys in their rotation grace
period, and revocations (which are re-sent to every peer until each acknowledges)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liaison_net.core import key_change
from liaison_net.core.audit import detail
from liaison_net.core.crypto import signing_key_id
from liaison_net.core.ids import node_principal
from liaison_net.core.rotation import Revocation, Subject
from liaison_net.core.sealing import SignerKey
from liaison_net.errors import Revoked
from liaison_net.store import key_epoch
from liaison_net.store.database import Database, WriteTxn

#: Superseded keys a login tries, newest first: rotations within one grace period are few.
MAX_SUPERSEDED_PER_PRINCIPAL = 8


@dataclass(frozen=True)
class KnownKey:
    """A signing key this node holds: a peer's node key, an officer's current key, or a
    superseded key (``grace_until`` set) kept for its grace period."""

    kind: str  # "peer-signing", "officer-signing" or "superseded"
    owner: str
    key_id: bytes
    grace_until: int | None = None
    valid_until: int | None = None


@dataclass(frozen=True)
class KnownRevocation:
    """A stored revocation, with the peers that have not acknowledged it yet."""

    key_id: bytes
    principal: str
    subject: str
    authority: str
    effective: int
    reason: str
    pending_peers: tuple[str, ...]


@dataclass(frozen=True)
class AppliedChange:
    """One verified key change of a peer, ready to be stored."""

    change: key_change.KeyChange
    raw: bytes
    body_hash: bytes
    old_public: bytes | None  # the key it replaces (rotate, replace)
    cosigners: tuple[str, ...]


@dataclass(frozen=True)
class SignerFacts:
    """What the database says about a signing key id (``KeyStore.signer`` decides)."""

    revoked: tuple[str, int, str] | None = None  # principal, effective, reason
    current: tuple[str, bytes, int] | None = None  # officer, public, valid_until
    previous: tuple[str, bytes, int] | None = None  # principal, public, grace_until
    officer_revoked: tuple[int, str] | None = None  # the previous key's officer: effective, reason

    @property
    def known(self) -> bool:
        return (self.revoked is not None or self.current is not None
                or self.previous is not None)


def _row(row: Any) -> tuple[str, int, str] | None:
    return (str(row[0]), int(row[1]), str(row[2])) if row is not None else None


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def signer(self, key_id: bytes, *, now: int | None) -> SignerKey | None:
        """The principal and public key for a signing key id, if it may sign at ``now``:
        a current card's key, or a superseded key still in its grace period. A revoked key
        raises Revoked (with its reason) instead of looking merely unknown.

        The stored facts come from ``key_cache`` (an unknown key is never cached); the
        decision is made here from them and ``now`` on every call."""
        facts = await self.db.key_cache.get(("signer", key_id),
                                            lambda: self._signer_facts(key_id),
                                            keep=lambda f: f.known)
        revoked = facts.revoked
        if revoked is not None and (now is None or now >= revoked[1]):
            raise Revoked(f"key {key_id.hex()} of {revoked[0]} was revoked: {revoked[2]}")
        if facts.current is not None:
            officer, public, valid_until = facts.current
            if now is not None and now >= valid_until:
                return None
            return SignerKey(officer, public)
        if facts.previous is None:
            return None
        principal, public, grace_until = facts.previous
        # A superseded key's grace ends with its officer: when the current key is revoked,
        # an older keystore copy must not keep signing (a stolen laptop's backup).
        officer_revoked = facts.officer_revoked
        if officer_revoked is not None and (now is None or now >= officer_revoked[0]):
            raise Revoked(f"key {key_id.hex()} belongs to {principal}, whose current key was "
                          f"revoked: {officer_revoked[1]}")
        if now is not None and now >= grace_until:
            return None
        return SignerKey(principal, public)

    async def _signer_facts(self, key_id: bytes) -> SignerFacts:
        revoked = await self.db.fetchone(
            "SELECT principal, effective, reason FROM revocations WHERE key_id = ?", (key_id,))
        row = await self.db.fetchone(
            "SELECT officer, signing_public, valid_until FROM directory WHERE signing_key_id = ?",
            (key_id,))
        if row is not None:
            return SignerFacts(_row(revoked), (row[0], bytes(row[1]), int(row[2])))
        row = await self.db.fetchone(
            "SELECT principal, signing_public, grace_until FROM key_history "
            "WHERE signing_key_id = ?", (key_id,))
        if row is None:
            return SignerFacts(_row(revoked))
        officer_revoked = await self._officer_revoked_row(row[0])
        return SignerFacts(_row(revoked), None, (row[0], bytes(row[1]), int(row[2])),
                           officer_revoked)

    async def _officer_revoked_row(self, officer: str) -> tuple[int, str] | None:
        row = await self.db.fetchone(
            "SELECT r.effective, r.reason FROM revocations r JOIN directory d "
            "ON d.signing_key_id = r.key_id WHERE d.officer = ?", (officer,))
        return (int(row[0]), str(row[1])) if row is not None else None

    async def officer_revocation(self, officer: str, *, now: int) -> str | None:
        """The reason an officer's current card key was revoked, once effective, else None:
        such an officer is shown as revoked and nothing is accepted for them."""
        row = await self.db.key_cache.get(("officer_revocation", officer),
                                          lambda: self._officer_revoked_row(officer))
        return row[1] if row is not None and now >= row[0] else None

    async def superseded_keys(self, principal: str, *,
                              limit: int = MAX_SUPERSEDED_PER_PRINCIPAL
                              ) -> list[tuple[bytes, int]]:
        """(signing public, grace end) of a principal's keys replaced by rotations, newest
        grace end first: an old keystore copy may still log in with one during its grace."""
        rows = await self.db.fetchall(
            "SELECT signing_public, grace_until FROM key_history WHERE principal = ? "
            "ORDER BY grace_until DESC LIMIT ?", (principal, limit))
        return [(bytes(r[0]), int(r[1])) for r in rows]

    async def key_owner(self, key_id: bytes) -> str | None:
        """Whose signing key this is, as far as this node knows: an officer's current card,
        or a superseded key (officer or ``<node>/node``) kept for its grace period."""
        row = await self.db.fetchone(
            "SELECT officer FROM directory WHERE signing_key_id = ? UNION ALL "
            "SELECT principal FROM key_history WHERE signing_key_id = ?", (key_id, key_id))
        return str(row[0]) if row else None

    async def supersede_node_key(self, node_principal: str, old_public: bytes, *, now: int,
                                 grace_ms: int, actor: str, cert: bytes | None = None) -> None:
        """Keep a node's replaced signing key, with its CA certificate when known, for the
        grace period."""
        async def op(txn: WriteTxn) -> None:
            key_id = signing_key_id(old_public)
            await txn.execute(
                "INSERT OR REPLACE INTO key_history (signing_key_id, principal, signing_public, "
                "grace_until, cert) VALUES (?, ?, ?, ?, ?)",
                (key_id, node_principal, old_public, now + grace_ms, cert))
            txn.weakened(node_principal)
            await key_epoch.bump(txn)
            await txn.audit(now, "key.superseded", actor,
                            detail(principal=node_principal, key_id=key_id.hex(),
                                   grace_until=now + grace_ms))

        await self.db.write(op)

    async def previous_node_certs(self, *, now: int, limit: int = 64) -> list[bytes]:
        """CA certificates of node signing keys replaced by a rotation, in their grace."""
        rows = await self.db.fetchall(
            "SELECT cert FROM key_history WHERE cert IS NOT NULL AND grace_until > ? "
            "ORDER BY grace_until DESC LIMIT ?", (now, limit))
        return [bytes(r[0]) for r in rows]

    # --- node key changes (co-signed, core/key_change.py) ----------------------------------

    async def key_change_serial(self, node: str) -> int:
        """The serial of the last key change accepted for ``node`` (0: none yet)."""
        row = await self.db.fetchone(
            "SELECT MAX(serial) FROM node_key_changes WHERE node = ?", (node,))
        return int(row[0]) if row is not None and row[0] is not None else 0

    async def revoked_among(self, key_ids: list[bytes], *, now: int) -> set[bytes]:
        """Which of these key ids are revoked (effective by ``now``)."""
        if not key_ids:
            return set()
        rows = await self.db.fetchall(
            f"SELECT key_id FROM revocations WHERE effective <= ? AND key_id IN "
            f"({', '.join('?' * len(key_ids))})", (now, *key_ids))
        return {bytes(r[0]) for r in rows}

    async def key_change_held(self, node: str, body_hash: bytes) -> bool:
        """Whether this change of ``node`` (by the hash of its signed body) is already held:
        a peer pushes its recent chain again, and what is held is not a replay."""
        row = await self.db.fetchone(
            "SELECT 1 FROM node_key_changes WHERE node = ? AND body_hash = ?", (node, body_hash))
        return row is not None

    async def key_introduced(self, node: str, key_id: bytes) -> int | None:
        """The serial of the accepted change of ``node`` that introduced ``key_id``, if any:
        a certificate presenting an older key than the current one is a replay."""
        rows = await self.db.fetchall(
            "SELECT serial, statement FROM node_key_changes WHERE node = ? AND kind != ?",
            (node, key_change.Kind.REVOKE.value))
        for serial, raw in rows:
            if key_change.decode(bytes(raw)).change.new_key_id == key_id:
                return int(serial)
        return None

    async def apply_key_changes(self, node: str, steps: list[AppliedChange], *, now: int,
                                grace_ms: int, cert: bytes, public: bytes,
                                old_cert: bytes | None) -> None:
        """Accept a peer's verified key changes, in order, in one transaction: each joins the
        chain; a rotation keeps the old key for the grace period (a replacement: none, the
        key is lost); a revocation is stored as every revocation is; the node's key becomes
        ``public`` with its CA certificate."""

        async def op(txn: WriteTxn) -> None:
            held_cert = old_cert
            await key_epoch.bump(txn)  # a node key changes: other workers drop their caches
            await txn.execute("DELETE FROM key_changes_refused WHERE node = ?", (node,))
            for step in steps:
                c = step.change
                await txn.execute(
                    "INSERT INTO node_key_changes (node, serial, kind, body_hash, statement, "
                    "received) VALUES (?, ?, ?, ?, ?, ?)",
                    (node, c.serial, c.kind.value, step.body_hash, step.raw, now))
                if c.kind is key_change.Kind.REVOKE:
                    await self._insert_revocation(txn, Revocation(
                        Subject.NODE, node, c.old_key_id, c.reason, c.serial, c.issued, node),
                        step.raw, now=now, forward_to=[], source=node)
                    continue
                assert step.old_public is not None and c.new_key_id is not None
                grace = grace_ms if c.kind is key_change.Kind.ROTATE else 0
                await txn.execute(
                    "INSERT OR REPLACE INTO key_history (signing_key_id, principal, "
                    "signing_public, grace_until, cert) VALUES (?, ?, ?, ?, ?)",
                    (signing_key_id(step.old_public), node_principal(node), step.old_public,
                     now + grace, held_cert))
                txn.weakened(node_principal(node))
                held_cert = None  # keys between two changes of one push had no certificate
                await txn.audit(now, "key.rotated" if c.kind is key_change.Kind.ROTATE
                                else "key.replaced", node,
                                detail(kind="node-signing", node=node, serial=c.serial,
                                       old=c.old_key_id.hex(), new=c.new_key_id.hex(),
                                       cosigners=",".join(step.cosigners),
                                       grace_until=now + grace, reason=c.reason[:200]))
            await txn.execute(
                "INSERT OR REPLACE INTO node_keys (node, signing_cert, signing_public) "
                "VALUES (?, ?, ?)", (node, cert, public))

        await self.db.write(op)

    async def baseline_key_change(self, node: str, raw: bytes, body_hash: bytes, serial: int,
                                  kind: str, *, now: int) -> None:
        """First contact with a peer: its CA-certified key is taken as before, and the
        change that introduced it sets where its serials continue from."""

        async def op(txn: WriteTxn) -> None:
            await txn.execute(
                "INSERT OR IGNORE INTO node_key_changes (node, serial, kind, body_hash, "
                "statement, received) VALUES (?, ?, ?, ?, ?, ?)",
                (node, serial, kind, body_hash, raw, now))

        await self.db.write(op)

    async def key_change_refused(self, node: str, raw: bytes | None, *, code: str,
                                 reason: str, now: int) -> None:
        """Audit a refused key change of ``node`` and keep the statement, if there was one
        (the latest one per node), for `liaison admin keys pending`."""

        async def op(txn: WriteTxn) -> None:
            if raw is not None:
                await txn.execute(
                    "INSERT OR REPLACE INTO key_changes_refused (node, statement, code, "
                    "reason, received) VALUES (?, ?, ?, ?, ?)",
                    (node, raw, code, reason[:200], now))
            await txn.audit(now, "key.change_refused", node,
                            detail(node=node, code=code, reason=reason[:200]))

        await self.db.write(op)

    async def refused_key_changes(self) -> list[tuple[str, bytes, str, str, int]]:
        """(node, statement, code, reason, received) of the latest change each peer
        presented that was refused, since its last accepted one."""
        rows = await self.db.fetchall(
            "SELECT node, statement, code, reason, received FROM key_changes_refused "
            "ORDER BY node")
        return [(str(r[0]), bytes(r[1]), str(r[2]), str(r[3]), int(r[4])) for r in rows]

    async def key_changes_of(self, node: str) -> list[tuple[int, str, bytes]]:
        rows = await self.db.fetchall(
            "SELECT serial, kind, statement FROM node_key_changes WHERE node = ? "
            "ORDER BY serial", (node,))
        return [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    # --- revocations ----------------------------------------------------------------------

    async def add_revocation(self, revocation: Revocation, raw: bytes, *, now: int,
                             forward_to: list[str], source: str) -> bool:
        """Record a verified revocation once, queue it for every peer; True if it was new."""

        async def op(txn: WriteTxn) -> bool:
            return await self._insert_revocation(txn, revocation, raw, now=now,
                                                 forward_to=forward_to, source=source)

        return await self.db.write(op)

    @staticmethod
    async def _insert_revocation(txn: WriteTxn, revocation: Revocation, raw: bytes, *,
                                 now: int, forward_to: list[str], source: str) -> bool:
        # Known already: nothing to write. Asked first with a SELECT because any other
        # statement on this table, even one that changes nothing, moves the key cache's
        # stamp (``database.changes_keys``), which sends every envelope being decided
        # back to be decided again: a revocation pushed again must cost the node nothing.
        known = await (await txn.execute("SELECT 1 FROM revocations WHERE key_id = ?",
                                         (revocation.key_id,))).fetchone()
        if known is not None:
            return False
        cur = await txn.execute(
            "INSERT OR IGNORE INTO revocations (key_id, principal, subject, effective, "
            "reason, authority, statement, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (revocation.key_id, revocation.principal, revocation.subject.value,
             revocation.effective, revocation.reason, revocation.authority, raw, now))
        if cur.rowcount == 0:
            return False
        # Whose decisions go back: the principal named (a node key's names the node, ``lu``,
        # while what it signed names ``lu/node``) and whoever holds the key here, should a
        # local administrator have named them apart (peers' are refused so, review16h).
        txn.weakened(node_principal(revocation.principal)
                     if revocation.subject is Subject.NODE else revocation.principal)
        for (owner,) in await (await txn.execute(
                "SELECT officer FROM directory WHERE signing_key_id = ? UNION "
                "SELECT principal FROM key_history WHERE signing_key_id = ?",
                (revocation.key_id, revocation.key_id))).fetchall():
            txn.weakened(str(owner))
        await key_epoch.bump(txn)  # other workers drop the keys they cached
        # Revoking an officer's current key ends the grace of their older keys: no
        # keystore copy of theirs outlives the revocation, even after a re-enrolment.
        await txn.execute(
            "UPDATE key_history SET grace_until = MIN(grace_until, ?) WHERE principal = ? "
            "AND EXISTS (SELECT 1 FROM directory WHERE officer = ? AND signing_key_id = ?)",
            (revocation.effective, revocation.principal, revocation.principal,
             revocation.key_id))
        await txn.executemany(
            "INSERT OR IGNORE INTO revocation_outbox (node, key_id) VALUES (?, ?)",
            [(node, revocation.key_id) for node in forward_to])
        await txn.audit(now, "key.revoked", source,
                        detail(principal=revocation.principal,
                               key_id=revocation.key_id.hex(),
                               effective=revocation.effective,
                               authority=revocation.authority,
                               reason=revocation.reason[:200]))
        return True

    async def pending_revocations(self, node: str, limit: int = 100) -> list[tuple[bytes, bytes]]:
        rows = await self.db.fetchall(
            "SELECT r.key_id, r.statement FROM revocation_outbox o JOIN revocations r "
            "ON r.key_id = o.key_id WHERE o.node = ? LIMIT ?", (node, limit))
        return [(bytes(r[0]), bytes(r[1])) for r in rows]

    async def revocations_acknowledged(self, node: str, key_ids: list[bytes]) -> None:
        async def op(txn: WriteTxn) -> None:
            await txn.executemany(
                "DELETE FROM revocation_outbox WHERE node = ? AND key_id = ?",
                [(node, k) for k in key_ids])

        await self.db.write(op)

    async def revocation_statements(self) -> list[bytes]:
        rows = await self.db.fetchall("SELECT statement FROM revocations ORDER BY received")
        return [bytes(r[0]) for r in rows]

    async def known_keys(self) -> list[KnownKey]:
        """Every signing key in the node's tables, for `liaison admin keys list`."""
        keys = [KnownKey("peer-signing", r[0], signing_key_id(bytes(r[1])))
                for r in await self.db.fetchall("SELECT node, signing_public FROM node_keys")]
        keys += [KnownKey("officer-signing", r[0], bytes(r[1]), valid_until=r[2])
                 for r in await self.db.fetchall(
                     "SELECT officer, signing_key_id, valid_until FROM directory "
                     "ORDER BY officer")]
        keys += [KnownKey("superseded", r[0], bytes(r[1]), grace_until=r[2])
                 for r in await self.db.fetchall(
                     "SELECT principal, signing_key_id, grace_until FROM key_history")]
        return keys

    async def revocations(self) -> list[KnownRevocation]:
        """Every revocation this node holds, oldest effective first, with its pending peers."""
        pending: dict[bytes, list[str]] = {}
        for node, key_id in await self.db.fetchall(
                "SELECT node, key_id FROM revocation_outbox ORDER BY node"):
            pending.setdefault(bytes(key_id), []).append(node)
        return [KnownRevocation(bytes(r[0]), r[1], r[2], r[3], r[4], r[5],
                                tuple(pending.get(bytes(r[0]), ())))
                for r in await self.db.fetchall(
                    "SELECT key_id, principal, subject, authority, effective, reason "
                    "FROM revocations ORDER BY effective")]
