"""The directory: officer cards (newest version per officer, superseded keys kept for
their grace period) and peers' node signing keys.

One part of the ``NodeStore`` facade (``node_store``).
"""

from __future__ import annotations

from collections.abc import Sequence

from liaison_net.core.audit import detail
from liaison_net.core.identity import OfficerCard, decode_stored_card
from liaison_net.errors import Conflict, LiaisonError
from liaison_net.store import key_epoch
from liaison_net.store.database import Database, WriteTxn


class DirectoryStore:
    # Shared with the other parts of the facade (``node_store.NodeStore``).
    db: Database
    node_id: str

    # --- directory ------------------------------------------------------------------------

    async def put_card(self, card: OfficerCard, raw: bytes, *, now: int, source: str,
                       grace_ms: int = 0) -> bool:
        """Keep the newest card version per officer; True if this one was new.

        When a newer card carries a new signing key (a rotation), the old key is kept in
        ``key_history`` for ``grace_ms`` so envelopes it signed that are still in flight
        are accepted, then refused."""

        async def op(txn: WriteTxn) -> bool:
            return await self._put_card_in(txn, card, raw, now=now, source=source,
                                           grace_ms=grace_ms)

        return await self.db.write(op)

    async def put_cards(self, cards: Sequence[tuple[OfficerCard, bytes]], *, now: int,
                        source: str, grace_ms: int = 0) -> list[bool | LiaisonError]:
        """``put_card`` of each, in ONE write: a peer's push of many cards moves the key
        cache's stamp once, not once per card (each move sends every envelope being
        decided on the node back to be decided again, ``KeysChanged``). One refused
        (``Conflict``) changes nothing of the others; True/False/the refusal, in order."""

        async def op(txn: WriteTxn) -> list[bool | LiaisonError]:
            out: list[bool | LiaisonError] = []
            for card, raw in cards:
                head = await txn.savepoint("card")
                try:
                    out.append(await self._put_card_in(txn, card, raw, now=now,
                                                       source=source, grace_ms=grace_ms))
                except Conflict as exc:
                    await txn.rollback_to("card", head)
                    out.append(exc)
                await txn.release("card")
            return out

        return await self.db.write(op)

    async def _put_card_in(self, txn: WriteTxn, card: OfficerCard, raw: bytes, *, now: int,
                           source: str, grace_ms: int) -> bool:
        """``put_card``'s write, in ``txn``."""
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
        txn.weakened(card.officer)  # an old key superseded, a shorter validity
        await key_epoch.bump(txn)
        await txn.audit(now, "directory.card", source,
                        detail(officer=card.officer, version=card.version))
        return True

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
            await key_epoch.bump(txn)

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
        """(signing public, encryption public) of an officer in the directory (cached:
        ``key_cache``; an unknown officer is not)."""
        return await self.db.key_cache.get(("officer_keys", officer),
                                           lambda: self._officer_keys(officer),
                                           keep=lambda keys: keys is not None)

    async def _officer_keys(self, officer: str) -> tuple[bytes, bytes] | None:
        row = await self.db.fetchone(
            "SELECT signing_public, encryption_public FROM directory WHERE officer = ?",
            (officer,))
        return (bytes(row[0]), bytes(row[1])) if row else None

    async def put_node_key(self, node: str, cert_pem: bytes, public: bytes) -> None:
        async def op(txn: WriteTxn) -> None:
            await txn.execute(
                "INSERT OR REPLACE INTO node_keys (node, signing_cert, signing_public) "
                "VALUES (?, ?, ?)", (node, cert_pem, public))
            await key_epoch.bump(txn)

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
