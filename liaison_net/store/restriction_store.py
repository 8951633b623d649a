"""Restriction updates as a node keeps them (``core/restriction.py``).

An update is applied in the transaction that accepts its envelope (``apply_in``, called
through ``NodeStore.accept(then=...)``): the update is recorded, every envelope here that
carries the information (the original, the forwards whose ``ref`` chain leads to it) is
marked as restricted by it, a recall purges their content as retention does
(``retention_store.purge_in``: the signed skeleton stays), and the receipt the owner is owed
is written as an effect in the same commit. An envelope that arrives after an update about
it (the update outran it, or came back after a crash) gets it applied on its own arrival
(``catch_up_in``), so the order of arrival never leaves content a recall meant to erase.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from liaison_net.core import codec
from liaison_net.core.audit import detail
from liaison_net.core.effects import Effect, notice
from liaison_net.core.envelope import Precedence
from liaison_net.core.ids import id_to_text
from liaison_net.core.limits import DEFAULT_LIMITS, Limits
from liaison_net.core.ownership import OwnershipTag
from liaison_net.core.restriction import Update, UpdateAction, check_after
from liaison_net.core.tagflow import MAX_FORWARD_DEPTH
from liaison_net.store import key_epoch
from liaison_net.store.database import Database, WriteTxn
from liaison_net.store.retention_store import purge_in

_COLUMNS = "update_id, original, action, issuer, issued, tag"


def _update(row: Sequence[object], limits: Limits = DEFAULT_LIMITS) -> Update:
    update_id, original, action, issuer, issued, tag = row
    assert isinstance(update_id, bytes) and isinstance(original, bytes)
    assert isinstance(tag, bytes) and isinstance(issued, int)
    wire = codec.unpack(tag, what="tag", max_bytes=limits.max_header_bytes)
    return Update(update_id, UpdateAction(action), original, str(issuer),
                  OwnershipTag.from_wire(wire, limits), issued)


class RestrictionStore:
    def __init__(self, db: Database, node_id: str) -> None:
        self.db = db
        self.node_id = node_id
        # True while this node has applied no update: then ``about``, asked for every
        # envelope accepted, answers without a query (100 us each on the 2-core machine).
        # ``apply_in`` clears it before it writes; an update another worker of this node
        # applied moves ``key_epoch`` (same transaction), and that worker's watch then
        # calls ``forget`` here (services/worker_sync.py), within its interval.
        self._none: bool | None = None
        self._generation = 0  # moves at ``forget``: a read begun before it is not kept
        self._lock = threading.Lock()
        self._reading: asyncio.Future[bool] | None = None  # the read under way, if any

    async def _none_applied(self) -> bool:
        """Whether this node has applied no update, read once and then known; lookups made
        while that read is out share it (on a start, a transaction's envelopes all ask at
        once). What the read says is kept only if no update was applied while it was out
        (``apply_in`` sets False): a read whose snapshot came before the first update's
        commit must not turn the checks off after it (its callers' answer stays that
        snapshot's, as for any envelope decided before an update commits)."""
        if self._none is not None:
            return self._none
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read_none())
        return await asyncio.shield(self._reading)

    async def _read_none(self) -> bool:
        generation = self._generation
        none = await self.db.fetchone("SELECT 1 FROM restrictions LIMIT 1") is None
        with self._lock:  # ``apply_in`` sets it on the writer thread
            if self._none is None and self._generation == generation:
                self._none = none
        return none

    def forget(self) -> None:
        """Another worker of this node may have applied an update: ask the table again."""
        with self._lock:
            self._generation += 1
            if self._none:
                self._none = None
            self._reading = None

    async def about(self, originals: Sequence[bytes]) -> list[Update]:
        """The updates applied here about any of ``originals``, oldest first."""
        if await self._none_applied() or not originals:
            return []
        marks = ", ".join("?" * len(originals))
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM restrictions WHERE original IN ({marks}) "
            "ORDER BY issued, update_id", tuple(originals))
        return [_update(r) for r in rows]

    async def count_of(self, envelope_id: bytes) -> int:
        """How many updates were applied here to ``envelope_id`` (a hint for its readers,
        who check the updates themselves)."""
        if await self._none_applied():
            return 0
        row = await self.db.fetchone("SELECT COUNT(*) FROM restricted WHERE envelope_id = ?",
                                     (envelope_id,))
        return int(row[0])

    async def of_envelope(self, envelope_id: bytes) -> list[tuple[Update, int]]:
        """The updates applied here to ``envelope_id``, with when, oldest first."""
        rows = await self.db.fetchall(
            f"SELECT {', '.join('r.' + c for c in _COLUMNS.split(', '))}, r.applied "
            "FROM restricted x JOIN restrictions r ON r.update_id = x.update_id "
            "WHERE x.envelope_id = ? ORDER BY r.issued, r.update_id", (envelope_id,))
        return [(_update(r[:6]), int(r[6])) for r in rows]

    async def apply_in(self, txn: WriteTxn, update: Update, *, now: int) -> list[Effect]:
        """Apply ``update`` here, in the transaction that accepts its envelope; what the
        node owes for it (the issuer's receipt). Refuses (``PolicyRefused``, rolling the
        whole acceptance back) an update that would relax one applied before it."""
        with self._lock:
            self._none = False
        await key_epoch.bump(txn)  # the node's other workers drop their "none applied"
        cur = await txn.execute(
            f"SELECT {_COLUMNS} FROM restrictions WHERE original = ?", (update.original,))
        check_after(update, [_update(r) for r in await cur.fetchall()])
        await txn.execute(
            f"INSERT INTO restrictions ({_COLUMNS}, applied) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (update.id, update.original, update.action.value, update.issuer, update.issued,
             codec.pack(update.tag.to_wire()), now))
        applied = await self._holding(txn, update.original)
        for envelope_id in applied:
            await self._apply_to(txn, update, envelope_id, now=now)
        await txn.audit(now, f"restriction.{update.action.value}", update.issuer,
                        detail(original=id_to_text(update.original), envelopes=len(applied),
                               handling=update.tag.handling.value, tlp=update.tag.tlp.value),
                        update.id)
        return [notice(update.receipt_type, recipients=[update.issuer], ref=update.original,
                       precedence=Precedence.IMMEDIATE,
                       content={"original": update.original, "update": update.id,
                                "action": update.action.value, "node": self.node_id,
                                "envelopes": applied, "applied": now})]

    async def catch_up_in(self, txn: WriteTxn, envelope_id: bytes,
                          originals: Sequence[bytes], *, now: int) -> list[Effect]:
        """An envelope just accepted carries information (``originals``: its own id and its
        forward chain's) that updates applied here earlier are about: apply them to it."""
        marks = ", ".join("?" * len(originals))
        cur = await txn.execute(
            f"SELECT {_COLUMNS} FROM restrictions WHERE original IN ({marks}) "
            "ORDER BY issued, update_id", tuple(originals))
        for row in await cur.fetchall():
            await self._apply_to(txn, _update(row), envelope_id, now=now)
        return []  # the receipt went with the update; this only catches the envelope up

    async def _holding(self, txn: WriteTxn, original: bytes) -> list[bytes]:
        """The envelopes here that carry ``original``'s information: itself and the
        forwards of it, down the ``ref`` chain (as deep as a forward may nest)."""
        cur = await txn.execute("SELECT id FROM envelopes WHERE id = ?", (original,))
        found = [bytes(r[0]) for r in await cur.fetchall()]
        frontier = [original]
        for _ in range(MAX_FORWARD_DEPTH):
            marks = ", ".join("?" * len(frontier))
            cur = await txn.execute(
                f"SELECT id FROM envelopes WHERE ref IN ({marks}) AND kind = 'message'",
                tuple(frontier))
            frontier = [bytes(r[0]) for r in await cur.fetchall()]
            if not frontier:
                break
            found.extend(frontier)
        return found

    async def _apply_to(self, txn: WriteTxn, update: Update, envelope_id: bytes, *,
                        now: int) -> None:
        await txn.execute("INSERT OR IGNORE INTO restricted (envelope_id, update_id) "
                          "VALUES (?, ?)", (envelope_id, update.id))
        if update.action is not UpdateAction.RECALL:
            # An earlier retention: the retention sweep purges it at the new date.
            await txn.execute("UPDATE envelopes SET retain_until = ? WHERE id = ? AND "
                              "retain_until > ?", (update.tag.retain_until, envelope_id,
                                                   update.tag.retain_until))
            return
        cur = await txn.execute("SELECT raw FROM envelopes WHERE id = ? AND purged IS NULL",
                                (envelope_id,))
        row = await cur.fetchone()
        if row is not None:
            await purge_in(txn, envelope_id, bytes(row[0]), now=now, actor=update.issuer,
                           event="envelope.recalled", recall=id_to_text(update.id))
