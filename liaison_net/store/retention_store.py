"""Retention as a node stores it: at a tag's ``retain_until`` the content goes and the
signed tag skeleton (``core.retention``) stays, with an ``envelope.purged`` audit entry
binding the body's hash. What is left answers ``Purged`` (410) wherever content is asked
for."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from liaison_net.core.audit import detail
from liaison_net.core.ids import id_to_text
from liaison_net.core.limits import DEFAULT_LIMITS, Limits
from liaison_net.core.retention import decode_skeleton, skeleton_of
from liaison_net.errors import LiaisonError, Purged
from liaison_net.store.database import Database, WriteTxn


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def skeleton_tag(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any] | None:
    """The ownership tag kept in a purged envelope's skeleton (its wire form), if readable."""
    try:
        return decode_skeleton(raw, limits).header(limits).tag.to_wire()
    except LiaisonError:
        return None


def purged_error(envelope_id: bytes, raw: bytes, purged: int, retain_until: int) -> Purged:
    tag = skeleton_tag(raw)
    kept = ""
    if tag is not None:
        kept = (f" (owner {tag['owner']['node']}/{tag['owner']['unit']}, {tag['handling']}, "
                f"TLP:{tag['tlp']})")
    if purged < retain_until:  # only a recall purges before retention (restriction_store)
        return Purged(f"envelope {id_to_text(envelope_id)} was recalled by its owner and "
                      f"purged at {_iso(purged)}; only the signed tag skeleton{kept} is kept")
    return Purged(f"envelope {id_to_text(envelope_id)} was purged at {_iso(purged)}: its tag's "
                  f"retain_until {_iso(retain_until)} has passed; only the signed tag "
                  f"skeleton{kept} is kept")


async def purge_in(txn: WriteTxn, envelope_id: bytes, raw: bytes, *, now: int, actor: str,
                   event: str, limits: Limits = DEFAULT_LIMITS, **why: object) -> None:
    """Purge one envelope's content in ``txn``: the stored frame becomes its signed tag
    skeleton, ``purged`` is set, and one ``event`` audit entry records the body's SHA-256
    (and ``why``). Retention calls it at ``retain_until``, a recall (restriction_store) at
    once."""
    try:
        skeleton = skeleton_of(raw, limits)
        kept, digest, length = (skeleton.to_bytes(), skeleton.body_sha256.hex(),
                                skeleton.body_length)
    except LiaisonError:
        # Not a frame we can split (never expected: it was verified on accept).
        # The content goes all the same; the audit binds the whole frame's hash.
        kept, digest, length = b"", hashlib.sha256(raw).hexdigest(), len(raw)
    await txn.execute("UPDATE envelopes SET raw = ?, purged = ? WHERE id = ?",
                      (kept, now, envelope_id))
    await txn.audit(now, event, actor,
                    detail(body_sha256=digest, body_length=length, **why,
                           skeleton=bool(kept)), envelope_id)


class RetentionStore:
    def __init__(self, db: Database, node_id: str) -> None:
        self.db = db
        self.node_id = node_id

    async def check_not_purged(self, envelope_id: bytes) -> None:
        """Raise ``Purged`` if this node holds ``envelope_id`` only as a skeleton."""
        row = await self.db.fetchone(
            "SELECT raw, purged, retain_until FROM envelopes WHERE id = ? "
            "AND purged IS NOT NULL", (envelope_id,))
        if row is not None:
            raise purged_error(envelope_id, bytes(row[0]), row[1], row[2])

    async def purge_due(self, now: int, limit: int = 500, *,
                        limits: Limits = DEFAULT_LIMITS) -> int:
        """Purge up to ``limit`` envelopes whose tag's ``retain_until`` is at or before
        ``now``, in one transaction: the stored frame becomes its signed tag skeleton
        (``core.retention``), ``purged`` is set, and one ``envelope.purged`` audit entry per
        envelope records the body's SHA-256. Returns how many; call again while it returns
        a full batch. Idempotent: a purged envelope is never selected again.

        Queued hops are left to the expiry sweep (retain_until >= expires, so they are past
        their expiry too): it waits until no batch can still be in flight before it ends a
        hop and notifies the sender, and ``next_batch`` never offers purged content."""

        async def op(txn: WriteTxn) -> int:
            cur = await txn.execute(
                "SELECT id, raw, retain_until FROM envelopes WHERE purged IS NULL "
                "AND retain_until <= ? ORDER BY retain_until LIMIT ?", (now, limit))
            rows = [(bytes(r[0]), bytes(r[1]), int(r[2])) for r in await cur.fetchall()]
            for eid, raw, retain_until in rows:
                await purge_in(txn, eid, raw, now=now, actor=self.node_id,
                               event="envelope.purged", limits=limits,
                               retain_until=retain_until)
            return len(rows)

        return await self.db.write(op)
