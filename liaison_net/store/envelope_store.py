"""Envelopes and their hops: accept once, the per-peer outbox, delivery outcomes, expiry,
and each peer's backoff and directory cursor.

One part of the ``NodeStore`` facade (``node_store``). A hop is the one row that says
"send this envelope to that node"; it is written in the same write as the envelope, and
only ever moves from ``queued`` to a final state, and only through the delivery table
(``core/delivery.py`` ``next_state``, applied by ``_move_hops``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from liaison_net.core import tagflow
from liaison_net.core.audit import detail
from liaison_net.core.delivery import HopEvent, HopState, next_state
from liaison_net.core.effects import Effect, match_notice, non_delivery
from liaison_net.core.envelope import Envelope, Kind
from liaison_net.core.ids import id_to_text, node_principal
from liaison_net.errors import Conflict, KeysChanged, LiaisonError, NotFound, PolicyRefused
from liaison_net.lazy_log import LazyLogger
from liaison_net.store.database import RIDE_MAX_ENVELOPES, Database, WriteTxn
from liaison_net.store.effect_store import Issued, add_effects
from liaison_net.store.hold_store import HoldPlan, approval_in, hold_in
from liaison_net.store.lease_store import Fence, check_fence
from liaison_net.store.request_store import answered_in, track_in
from liaison_net.store.retention_store import purged_error
from liaison_net.store.signal_store import matches_in

log = LazyLogger("liaison.store")  # structlog when it first logs (lazy_log.py)

#: ``keys_as_of`` for a write that does not check the key cache's stamp (a stamp is a
#: generation count, never negative).
ANY_KEYS = -1

_READ_CHUNK = 500  # ids per state read, well under SQLite's bound-parameter limit
_MAX_SKIP = 8192  # ids a sender may have in flight, under SQLite's 32,766 parameters
#: More of an acceptance's decision, run in its transaction (``accept(then=...)``).
Then = Callable[[WriteTxn], Awaitable[Sequence[Effect]]]
#: The outbox indexes are partial (``WHERE state = 'queued'``, migration 11): SQLite uses
#: one only when the query names that same literal, never for ``state = ?``.
_QUEUED = f"h.state = '{HopState.QUEUED.value}'"
#: A hop's move. Its precedence and expiry order and end the outbox, which holds only
#: queued hops: a hop moving to a final state keeps neither (0 is stored in no byte, the
#: expiry in six; issue 16, bytes on disk), nor does anything read them there again.
#: One envelope's hops, by node. The hops' key is (node, envelope id): asked by envelope id
#: alone, both engines scan every hop ever kept (an officer's status call, a node's life of
#: envelopes). The few nodes are walked one index seek at a time (a loose index scan), and
#: each one's hop for the envelope is a key lookup.
HOP_STATES = (
    "WITH RECURSIVE nodes(node) AS ("
    " SELECT MIN(node) FROM hops"
    " UNION ALL SELECT (SELECT MIN(h.node) FROM hops h WHERE h.node > nodes.node)"
    " FROM nodes WHERE nodes.node IS NOT NULL) "
    "SELECT h.node, h.state, h.reason FROM nodes JOIN hops h"
    " ON h.node = nodes.node AND h.envelope_id = ?")
_MOVE_HOP = ("UPDATE hops SET state = ?, updated = ?, reason = ? WHERE node = ? AND "
             "envelope_id = ? AND state = ?")
#: A batch's rows (``_Rows``). The envelope is a plain INSERT there: its id was read as
#: not stored, so a row in its way is another writer's (``_accept_batch``).
_INSERT_ENVELOPE = ("INSERT INTO envelopes (id, raw, sender, kind, precedence, created, "
                    "expires, retain_until, received, ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_INSERT_INBOX = "INSERT OR IGNORE INTO inbox (officer, envelope_id, relayed) VALUES (?, ?, ?)"
_INSERT_HOP = ("INSERT INTO hops (node, envelope_id, state, precedence, expires, updated) "
               "VALUES (?, ?, ?, ?, ?, ?)")
_FINISH_HOP = ("UPDATE hops SET state = ?, updated = ?, reason = ?, precedence = 0, "
               "expires = 0 WHERE node = ? AND envelope_id = ? AND state = ?")


@dataclass(frozen=True)
class AcceptOutcome:
    envelope_id: bytes
    duplicate: bool
    matches: int = 0  # match notices owed because of this signal (recorded as effects)
    held: bool = False  # four-eyes: stored, waiting for a second officer (hold_store)


@dataclass(frozen=True)
class Acceptance:
    """One envelope of a batch submit or of a peer's transaction, decided and ready to
    store (``accept_many``): the arguments ``accept`` takes for it."""

    envelope: Envelope
    actor: str
    event: str
    local_recipients: list[str]
    remote_nodes: list[str]
    audit_detail: str
    consent_digest: bytes | None = None
    effects: Sequence[Effect] = ()
    track_request: bool = False
    then: Then | None = None  # as ``accept(then=...)``
    hold: HoldPlan | None = None  # four-eyes: held until a second officer approves
    # From a peer (the envelopes of one federation transaction): as ``accept``'s arguments.
    received: bool = False
    signal_deadline: int | None = None
    covers: Sequence[bytes] = ()
    approval: tuple[str, bytes] | None = None


@dataclass(frozen=True)
class QueuedHop:
    """A hop an officer's submission queued, as its commit hands it to the peer's sender
    (``on_queued``): what the outbox read would have returned for it, and its bounds."""

    node: str
    envelope_id: bytes
    precedence: int
    raw: bytes
    expires: int
    retain_until: int


@dataclass(frozen=True)
class HopMove:
    """One event for one hop to a given node; ``reason`` is stored with the new state."""

    envelope_id: bytes
    event: HopEvent
    reason: str | None = None


class EnvelopeStore:
    # Shared with the other parts of the facade (``node_store.NodeStore``).
    db: Database
    node_id: str
    # Called with the officers whose inbox got rows, at the commit (live delivery).
    on_inbox: Callable[[list[str]], None] | None
    # Called at the commit with the hops an officer's submission queued (``accept``,
    # ``accept_many``; ``federation/inflight.py``): the peers' senders take them from
    # memory. A hint only: the hops are in the outbox whatever becomes of it.
    on_queued: Callable[[list[QueuedHop]], None] | None
    # Events the delivery table refused since start (``_move_hops``): each left its hop as
    # it was. An int on the class, so the first ``+= 1`` makes it the instance's own.
    illegal_hop_events: int = 0

    # --- envelopes ------------------------------------------------------------------------

    async def accept(self, envelope: Envelope, *, now: int, actor: str, event: str,
                     local_recipients: list[str], remote_nodes: list[str],
                     audit_detail: str, signal_deadline: int | None = None,
                     received: bool = False,
                     consent_digest: bytes | None = None,
                     effects: Sequence[Effect] = (),
                     track_request: bool = False,
                     covers: Sequence[bytes] = (),
                     then: Then | None = None, hold: HoldPlan | None = None,
                     approval: tuple[str, bytes] | None = None,
                     keys_as_of: int = ANY_KEYS) -> AcceptOutcome:
        """Store a verified envelope once: inbox entries for local recipients, one queued
        hop per remote node; a signal is also indexed (with its desk's acknowledgement
        deadline when this node's desk is addressed). ``received``: from a peer, not from an
        officer of this node. A second copy changes nothing. ``consent_digest``: the
        consent this forward relies on, recorded as used in the same transaction; a consent
        already used by another envelope refuses this one (``policy.consent_used``).

        What the acceptance obliges the node to do is written in the same transaction:
        ``effects`` (evidence, receipts: ``core/effects``), a match notice for each earlier
        signal of ours a received signal matches, and with ``track_request`` a request's
        due time (or the request a reply answers). ``covers``: the envelopes a peer's batch
        evidence says it covers, indexed for those its recipient sent (``evidence_covers``).
        ``then``: more of the same decision, in the same transaction, for a first copy only
        (a restriction update applied: ``restriction_store``); the effects it returns are
        recorded with the others.

        ``hold``: four-eyes, the inbox rows and hops wait in ``holds`` (``hold_store``);
        ``approval``: (approver, signed statement) that released it, kept beside it.
        ``keys_as_of``: the key cache's generation when the envelope was decided
        (``keys_stamp``): if its sender's keys were revoked, superseded or re-carded since,
        nothing is stored and ``KeysChanged`` is raised (``ANY_KEYS``: not checked)."""

        async def op(txn: WriteTxn) -> AcceptOutcome:
            self._keys_unchanged(keys_as_of, ((envelope, approval, received),))
            outcome = await self._accept_in(
                txn, envelope, now=now, actor=actor, event=event,
                local_recipients=local_recipients, remote_nodes=remote_nodes,
                audit_detail=audit_detail, signal_deadline=signal_deadline,
                received=received, consent_digest=consent_digest, effects=effects,
                track_request=track_request, covers=covers, hold=hold, approval=approval)
            if then is not None and not outcome.duplicate:
                await add_effects(txn, await then(txn), now)
            if not outcome.duplicate and hold is None:
                self._at_commit(txn, local_recipients)
                if not received and approval is None:
                    self._hand_over(txn, envelope, remote_nodes)
            return outcome

        return await self.db.write(op)

    def keys_stamp(self) -> int:
        """Taken before deciding envelopes, handed to ``accept`` as ``keys_as_of``."""
        return self.db.key_cache.generation()

    def _keys_unchanged(self, keys_as_of: int,
                        decided: Sequence[tuple[Envelope, tuple[str, bytes] | None, bool]]
                        ) -> None:
        """In the write, on the writer thread: the keys the envelopes' decisions read (their
        senders', their originals' signers', their consenting owners', ``tagflow.
        principals_read``, and the approvers' of the four-eyes approvals they carry) still
        hold. Writes run one at a time there, so a revocation, a
        superseded key or a new card of one of them written since the decision read their
        keys (committed, or earlier in this very group) is noted at a generation not below
        ``keys_as_of`` (``KeyCache.weakened_since``); an accept that passes is ordered
        before any key change still to come. Per principal: another principal's key writes
        (a peer churning its own officers' cards) send nothing back (review16g)."""
        if keys_as_of == ANY_KEYS or self.db.key_cache.quiet_since(keys_as_of):
            return
        principals: set[str] = set()
        for envelope, approval, received in decided:
            principals |= tagflow.principals_read(envelope.header, recipients=not received)
            if approval is not None:
                principals.add(approval[0])
        if self.db.key_cache.weakened_since(keys_as_of, principals):
            raise KeysChanged("a key the envelopes were decided on changed meanwhile; "
                              "nothing stored")

    def _at_commit(self, txn: WriteTxn, officers: list[str]) -> None:
        """Wake the officers' live streams at the commit that filled their inboxes."""
        if officers:
            txn.after_commit(lambda: self.on_inbox(officers) if self.on_inbox else None)

    def _hand_over(self, txn: WriteTxn, envelope: Envelope, nodes: Sequence[str]) -> None:
        """Hand an officer's envelope, just queued for ``nodes``, to their senders at the
        commit. Only what a sender would read with nothing beside it: a submission's
        hops (no batch evidence covers, no four-eyes approval are stored with it)."""
        if not nodes:
            return
        h = envelope.header
        raw = envelope.to_bytes()
        hops = [QueuedHop(node, h.id, int(h.precedence), raw, h.expires, h.tag.retain_until)
                for node in nodes]
        txn.after_commit(lambda: self.on_queued(hops) if self.on_queued else None)

    async def accept_many(self, items: Sequence[Acceptance], *, now: int,
                          keys_as_of: int = ANY_KEYS
                          ) -> list[AcceptOutcome | LiaisonError]:
        """Store a batch of decided envelopes in ONE write (one commit, one fsync), each as
        ``accept`` would: one refused (its id taken by other bytes, its consent already
        used, its ``then`` refusing) changes nothing, its audit entry included, and does
        not stop the others. One outcome or error per item, in order. Storage trouble
        fails the whole write (``Unavailable``, nothing stored). An officer's batch
        submit and a peer's federation transaction both come here.

        The plain items (``_plain``: nothing but the envelope, its inbox rows, hops, audit
        entry and effects), when there are several, are written table by table, a few
        statements for all of them (``_accept_rows``); the others each in a savepoint of
        its own (``_accept_one``). ``keys_as_of``: as ``accept``'s, for all of them."""

        async def op(txn: WriteTxn) -> list[AcceptOutcome | LiaisonError]:
            self._keys_unchanged(keys_as_of, [(item.envelope, item.approval, item.received)
                                              for item in items])
            # One plain item alone: its own savepoint costs no more than the batch's and
            # spares the read of stored ids (its INSERT OR IGNORE tells).
            out = (await self._accept_batch(txn, items, now)
                   if sum(map(_plain, items)) > 1 else None)
            if out is None:
                out = [await self._accept_one(txn, item, now) for item in items]
            kept = [item for item, outcome in zip(items, out, strict=True)
                    if isinstance(outcome, AcceptOutcome) and not outcome.duplicate
                    and item.hold is None]
            self._at_commit(txn, [o for item in kept for o in item.local_recipients])
            for item in kept:
                if not item.received and item.approval is None:
                    self._hand_over(txn, item.envelope, item.remote_nodes)
            return out

        return await self.db.write(op)

    async def _accept_one(self, txn: WriteTxn, item: Acceptance,
                          now: int) -> AcceptOutcome | LiaisonError:
        """``accept`` of one item in its own savepoint: refused, it leaves nothing."""
        head = await txn.savepoint("accept")
        try:
            outcome = await self._accept_in(
                txn, item.envelope, now=now, actor=item.actor, event=item.event,
                local_recipients=item.local_recipients,
                remote_nodes=item.remote_nodes, audit_detail=item.audit_detail,
                signal_deadline=item.signal_deadline, received=item.received,
                consent_digest=item.consent_digest, effects=item.effects,
                track_request=item.track_request, covers=item.covers,
                hold=item.hold, approval=item.approval)
            if item.then is not None and not outcome.duplicate:
                await add_effects(txn, await item.then(txn), now)
        except LiaisonError as exc:
            await txn.rollback_to("accept", head)
            await txn.release("accept")
            return exc  # a constraint's refusal is a Conflict (WriteTxn)
        await txn.release("accept")
        return outcome

    async def _accept_batch(self, txn: WriteTxn, items: Sequence[Acceptance],
                            now: int) -> list[AcceptOutcome | LiaisonError] | None:
        """``_accept_rows`` in one savepoint. A row a constraint refuses there (another
        writer stored one of the ids since they were read: PostgreSQL with several
        workers) takes the whole batch back: None, and the caller stores each alone."""
        head = await txn.savepoint("batch")
        try:
            out = await self._accept_rows(txn, items, now)
        except Conflict:
            await txn.rollback_to("batch", head)
            await txn.release("batch")
            return None
        await txn.release("batch")
        return out

    async def _accept_rows(self, txn: WriteTxn, items: Sequence[Acceptance],
                           now: int) -> list[AcceptOutcome | LiaisonError]:
        """The batch with the plain items' rows gathered and written table by table
        (``_Rows``). Which ids are stored already is read once, for all items; a plain
        item's id stored already is a duplicate (or, other bytes, refused: nothing is
        written for it), as in ``_accept_in``. The rows gathered so far are written
        before each other item, which is accepted alone as before: it finds everything
        the items before it stored, and its audit entries follow theirs in the chain."""
        stored = await _stored(txn, [item.envelope.id for item in items])
        rows = _Rows(now)
        out: list[AcceptOutcome | LiaisonError] = []
        for item in items:
            h = item.envelope.header
            if not _plain(item):
                await rows.write(txn)
                outcome = await self._accept_one(txn, item, now)
                if isinstance(outcome, AcceptOutcome) and h.id not in stored:
                    stored[h.id] = (item.envelope.to_bytes(), None)
                out.append(outcome)
                continue
            raw = item.envelope.to_bytes()
            earlier = stored.get(h.id)
            if earlier is None:
                stored[h.id] = (raw, None)
                rows.add(item, raw)
                out.append(AcceptOutcome(h.id, duplicate=False))
            elif earlier[1] is None and earlier[0] != raw:
                out.append(Conflict(f"envelope id {h.id_text} is already taken by other bytes"))
            else:  # the same bytes, or purged (only a skeleton left): a duplicate
                out.append(AcceptOutcome(h.id, duplicate=True))
        await rows.write(txn)
        return out

    async def _accept_in(self, txn: WriteTxn, envelope: Envelope, *, now: int, actor: str,
                         event: str, local_recipients: list[str], remote_nodes: list[str],
                         audit_detail: str, signal_deadline: int | None = None,
                         received: bool = False, consent_digest: bytes | None = None,
                         effects: Sequence[Effect] = (),
                         track_request: bool = False,
                         covers: Sequence[bytes] = (),
                         hold: HoldPlan | None = None,
                         approval: tuple[str, bytes] | None = None) -> AcceptOutcome:
        h = envelope.header
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
        if consent_digest is not None:
            await self._use_consent(txn, consent_digest, h.id, now)
        if hold is not None:  # four-eyes: written on release (hold_store.approve)
            await hold_in(txn, h, hold, local=local_recipients, remote=remote_nodes, now=now)
            local_recipients, remote_nodes = [], []
        if approval is not None:
            await approval_in(txn, h.id, *approval)
        if local_recipients:
            await txn.executemany(_INSERT_INBOX,
                                  [(officer, h.id, now) for officer in local_recipients])
        if remote_nodes:
            await txn.executemany(
                _INSERT_HOP, [(node, h.id, HopState.QUEUED.value, int(h.precedence),
                               h.expires, now) for node in remote_nodes])
        matches: list[Effect] = []
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
            if received:
                matches = [
                    match_notice(m.earlier, m.earlier_sender, m.later, m.later_sender)
                    for m in await matches_in(txn, h.id, node_id=self.node_id, now=now)]
        if track_request:
            await track_in(txn, envelope, officers=local_recipients if received
                           else [h.sender], role="incoming" if received else "outgoing")
            if not received and local_recipients:
                # An addressee on the requester's own node owes an answer all the same.
                await track_in(txn, envelope, officers=local_recipients, role="incoming")
            await answered_in(txn, envelope, now=now)
        await txn.audit(now, event, actor, audit_detail, h.id)
        await add_effects(txn, [*effects, *matches], now)
        if (covers and received and h.kind is Kind.EVIDENCE and len(h.recipients) == 1
                and h.sender == node_principal(actor)):
            # A peer node's own batch evidence: indexed for the envelopes its one recipient
            # sent that this node holds, nothing else (what the peer claims is only a hint;
            # the sender's client verifies the proof for each id).
            # The carrier's inbox row is found by (officer, envelope), the inbox's unique
            # index (before schema 21, by envelope alone SQLite scanned the whole inbox).
            officer = h.recipients[0].officer
            marks = ", ".join("?" * len(covers))
            await txn.execute(
                "INSERT OR IGNORE INTO evidence_covers (envelope_id, inbox_seq) "
                "SELECT e.id, i.seq FROM inbox i JOIN envelopes e "
                f"ON e.id IN ({marks}) AND e.sender = ? "
                "WHERE i.officer = ? AND i.envelope_id = ?",
                (*covers, officer, officer, h.id))
        return AcceptOutcome(h.id, duplicate=False, matches=len(matches),
                             held=hold is not None)

    async def covers_of(self, carriers: Sequence[bytes]) -> dict[bytes, list[bytes]]:
        """The envelopes each of ``carriers`` (batch evidence issued here) covers, for
        those that are batches: what a transaction carrying them tells the sender's node."""
        out: dict[bytes, list[bytes]] = {}
        for start in range(0, len(carriers), _MAX_SKIP):
            part = carriers[start:start + _MAX_SKIP]
            rows = await self.db.fetchall(
                "SELECT carrier, envelope_id FROM outgoing_covers "
                f"WHERE carrier IN ({', '.join('?' * len(part))}) ORDER BY carrier, envelope_id",
                tuple(part))
            for carrier, envelope_id in rows:
                out.setdefault(bytes(carrier), []).append(bytes(envelope_id))
        return out

    async def complete_effects(self, issued: Sequence[Issued], *,
                               may_ride: bool = True) -> list[bool]:
        """Store what the drain issued and delete the effects that owed it, all in one
        write: exactly once each. False for one already completed (nothing stored for
        it). If any of them is refused, nothing is stored (the caller retries alone).
        ``may_ride``: False for writes awaited one after another (the drain's retries
        alone), each of which would otherwise wait up to ``RIDE_S`` on a quiet node."""

        async def op(txn: WriteTxn) -> list[bool]:
            done = []
            for item in issued:
                ids = [item.effect.id, *(e.id for e in item.also)]
                marks = ", ".join("?" * len(ids))
                if item.also:
                    # A batch discharges all its effects or none: one already completed
                    # stores nothing now, and the rest are batched again on the next pass.
                    cur = await txn.execute(
                        f"SELECT COUNT(*) FROM effects WHERE id IN ({marks})", tuple(ids))
                    row = await cur.fetchone()
                    if row is None or row[0] != len(ids):
                        done.append(False)
                        continue
                cur = await txn.execute(f"DELETE FROM effects WHERE id IN ({marks})",
                                        tuple(ids))  # one statement: a batch names <= 256
                deleted = cur.rowcount
                if deleted:
                    stored = await self._accept_in(
                        txn, item.envelope, now=item.now, actor=self.node_id,
                        event=item.event, local_recipients=item.local,
                        remote_nodes=item.remote, audit_detail=item.audit_detail)
                    # an inbox here looks a carrier up by envelope; a carrier sent to a
                    # peer is read by carrier (its ``covers``), and forgotten with it
                    if item.local and item.covers:
                        await self._index_covers(txn, item.envelope.id, item.local,
                                                 item.covers)
                    if item.remote and item.covers:  # rows of few statements (many_rows)
                        await txn.insert_rows(
                            "INSERT OR IGNORE INTO outgoing_covers (carrier, envelope_id) "
                            "VALUES (?, ?)", [(item.envelope.id, eid) for eid in item.covers])
                    if not item.local and item.remote and not stored.duplicate:
                        await txn.execute(
                            "INSERT INTO forget_when_delivered (envelope_id, hops) "
                            "VALUES (?, ?)", (item.envelope.id, len(set(item.remote))))
                done.append(bool(deleted))
            self._at_commit(txn, [o for item, ok in zip(issued, done, strict=True) if ok
                                  for o in item.local])
            return done

        # Nobody waits on this commit but the issued envelopes themselves: a few ride.
        covered = sum(1 + len(item.also) for item in issued)
        return await self.db.write(op, rides=may_ride and covered <= RIDE_MAX_ENVELOPES)

    @staticmethod
    async def _index_covers(txn: WriteTxn, carrier: bytes, officers: Sequence[str],
                            covers: Sequence[bytes]) -> None:
        """Index the envelopes a batch carrier covers under each inbox row that holds it
        here. The rows are looked up once per carrier by (officer, envelope), the inbox's
        unique index; the covered ids are then plain inserts. (Looked up by envelope alone,
        per covered id, each was a scan of the whole inbox: a cost per envelope that grew
        with every envelope the node's officers ever received.)"""
        seqs: list[int] = []
        for officer in dict.fromkeys(officers):
            row = await (await txn.execute(
                "SELECT seq FROM inbox WHERE officer = ? AND envelope_id = ?",
                (officer, carrier))).fetchone()
            if row is not None:
                seqs.append(int(row[0]))
        if seqs and covers:
            await txn.insert_rows(
                "INSERT OR IGNORE INTO evidence_covers (envelope_id, inbox_seq) VALUES (?, ?)",
                [(eid, seq) for seq in seqs for eid in covers])

    @staticmethod
    async def _use_consent(txn: WriteTxn, digest: bytes, envelope_id: bytes, now: int) -> None:
        """One consent, one forward: the first envelope to rely on it keeps it."""
        cur = await txn.execute("INSERT OR IGNORE INTO consents_used (digest, envelope_id, "
                                "used) VALUES (?, ?, ?)", (digest, envelope_id, now))
        if cur.rowcount == 0:
            row = await (await txn.execute("SELECT envelope_id FROM consents_used WHERE "
                                           "digest = ?", (digest,))).fetchone()
            if row is None or bytes(row[0]) != envelope_id:
                raise PolicyRefused("this consent was already used for another forward; "
                                    "a consent allows exactly one", code="policy.consent_used")

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
            f"WHERE h.node = ? AND {_QUEUED} AND h.expires > ? AND e.purged IS NULL "
            "AND e.retain_until > ? ORDER BY h.precedence DESC, h.envelope_id LIMIT ?",
            (node, now, now, limit),
        )
        return [(bytes(r[0]), bytes(r[1])) for r in rows]

    async def next_batch_skipping(self, node: str, limit: int, *, now: int,
                                  skip: Collection[bytes],
                                  min_precedence: int = 0) -> list[tuple[bytes, int, bytes]]:
        """``next_batch`` as (id, precedence, raw), leaving out the ids in ``skip``: those a
        sender already has in flight (federation/inflight.py), and those below
        ``min_precedence`` (when only the slot kept for urgent ones is free). Filtered on
        the hop, before the join, so the envelope bytes of skipped rows are never read."""
        if len(skip) > _MAX_SKIP:
            raise ValueError(f"at most {_MAX_SKIP} ids to skip")  # our bug, not input
        # No empty ``NOT IN ()``: SQLite takes it, PostgreSQL refuses it.
        skipping = f"AND h.envelope_id NOT IN ({', '.join('?' * len(skip))}) " if skip else ""
        rows = await self.db.fetchall(
            "SELECT h.envelope_id, h.precedence, e.raw FROM hops h "
            "JOIN envelopes e ON e.id = h.envelope_id "
            f"WHERE h.node = ? AND {_QUEUED} AND h.precedence >= ? AND h.expires > ? "
            f"{skipping}AND e.purged IS NULL "
            "AND e.retain_until > ? ORDER BY h.precedence DESC, h.envelope_id LIMIT ?",
            (node, min_precedence, now, *skip, now, limit),
        )
        return [(bytes(r[0]), int(r[1]), bytes(r[2])) for r in rows]

    async def queue_depth(self) -> dict[str, int]:
        rows = await self.db.fetchall(
            f"SELECT node, COUNT(*) FROM hops h WHERE {_QUEUED} GROUP BY node")
        return {r[0]: r[1] for r in rows}

    async def finish_hops(self, node: str, *, now: int, delivered: list[bytes],
                          refused: list[tuple[bytes, str]],
                          details: Mapping[bytes, str] | None = None,
                          fence: Fence | None = None,
                          rides: bool = False) -> list[tuple[bytes, str, str]]:
        """Record a transaction's outcome: delivered and refused hops, and their audit.
        Each hop refused just now (not before) owes its sender a non-delivery notice
        (``details``: the peer's words per envelope), recorded as an effect in the same
        write. Returns (envelope id, code, sender) of each.

        ``fence``: the sender's lease on this peer (``lease_store``); if another worker
        has taken it over since, ``LeaseLost`` and nothing is written.

        ``rides``: joins the next group instead of a commit of its own (``Database.write``);
        the sender asks for it only while it keeps the hops claimed until then."""

        async def op(txn: WriteTxn) -> list[tuple[bytes, str, str]]:
            if fence is not None:
                await check_fence(txn, fence)
            newly_refused: list[tuple[bytes, str, str]] = []
            acked = await self._move_hops(txn, node, [HopMove(eid, HopEvent.ACK)
                                                      for eid in delivered], now)
            forgettable = await self._forgettable(txn, [m.envelope_id for m in acked])
            relayed = detail(peer=node)
            for move in acked:
                await txn.audit(now, "envelope.relayed", self.node_id, relayed,
                                move.envelope_id)
                if move.envelope_id in forgettable:
                    await self._forget_if_done(txn, node, move.envelope_id)
            for move in await self._move_hops(txn, node, [HopMove(eid, HopEvent.REFUSE, code)
                                                          for eid, code in refused], now):
                eid, code = move.envelope_id, str(move.reason)
                await txn.audit(now, "envelope.refused_by_peer", self.node_id,
                                detail(peer=node, code=code), eid)
                row = await (await txn.execute("SELECT sender FROM envelopes WHERE id = ?",
                                               (eid,))).fetchone()
                if row is not None:
                    newly_refused.append((eid, code, str(row[0])))
                    await add_effects(txn, [non_delivery(
                        eid, peer=node, sender=str(row[0]), reason=code,
                        why=(details or {}).get(eid, ""))], now)
            return newly_refused

        # A crash before it commits only sends the hops again (answered duplicate).
        return await self.db.write(op, rides=rides)

    @staticmethod
    async def _forgettable(txn: WriteTxn, ids: Sequence[bytes]) -> set[bytes]:
        """Which of ``ids`` this node issued for officers elsewhere only (evidence, notices:
        ``forget_when_delivered``): read per chunk, so a transaction of officers' envelopes,
        none of them such, costs one statement here, not one per envelope."""
        found: set[bytes] = set()
        for start in range(0, len(ids), _READ_CHUNK):
            chunk = ids[start:start + _READ_CHUNK]
            cur = await txn.execute(
                "SELECT envelope_id FROM forget_when_delivered WHERE envelope_id IN "
                f"({', '.join('?' * len(chunk))})", tuple(chunk))
            found.update(bytes(r[0]) for r in await cur.fetchall())
        return found

    @staticmethod
    async def _forget_if_done(txn: WriteTxn, node: str, envelope_id: bytes) -> None:
        """An envelope this node issued for officers elsewhere only (evidence, notices:
        ``forget_when_delivered``, written by ``complete_effects``) is done with once every
        peer it goes to has taken it: its hop and, after the last one, its row are deleted
        (their pages are reused). Its ``evidence.issued`` and ``envelope.relayed`` audit
        entries remain. A hop refused or expired keeps it (the count never reaches 0)."""
        row = await (await txn.execute(
            "UPDATE forget_when_delivered SET hops = hops - 1 WHERE envelope_id = ? "
            "RETURNING hops", (envelope_id,))).fetchone()
        if row is None:
            return
        await txn.execute("DELETE FROM hops WHERE node = ? AND envelope_id = ?",
                          (node, envelope_id))
        if row[0] <= 0:
            await txn.execute("DELETE FROM forget_when_delivered WHERE envelope_id = ?",
                              (envelope_id,))
            await txn.execute("DELETE FROM envelopes WHERE id = ?", (envelope_id,))
            await txn.execute("DELETE FROM outgoing_covers WHERE carrier = ?", (envelope_id,))

    async def expire_due(self, now: int, limit: int = 500) -> list[tuple[bytes, str, str]]:
        """Mark queued hops past expiry EXPIRED, each with the non-delivery notice it owes
        its sender recorded as an effect in the same write; return (envelope id, node,
        sender) each."""

        async def op(txn: WriteTxn) -> list[tuple[bytes, str, str]]:
            cur = await txn.execute(
                "SELECT h.envelope_id, h.node, e.sender FROM hops h JOIN envelopes e "
                f"ON e.id = h.envelope_id WHERE {_QUEUED} AND h.expires <= ? LIMIT ?",
                (now, limit))
            rows = [(bytes(r[0]), r[1], r[2]) for r in await cur.fetchall()]
            moved: set[tuple[str, bytes]] = set()
            for node in sorted({node for _eid, node, _sender in rows}):
                moves = [HopMove(eid, HopEvent.EXPIRE, "expired")
                         for eid, hop_node, _sender in rows if hop_node == node]
                moved.update((node, m.envelope_id)
                             for m in await self._move_hops(txn, node, moves, now))
            rows = [row for row in rows if (row[1], row[0]) in moved]
            for eid, node, _sender in rows:
                await txn.audit(now, "envelope.expired", self.node_id, detail(peer=node), eid)
            await add_effects(txn, [non_delivery(eid, peer=node, sender=sender)
                                    for eid, node, sender in rows], now)
            return rows

        return await self.db.write(op)

    async def _move_hops(self, txn: WriteTxn, node: str, moves: Sequence[HopMove],
                         now: int) -> list[HopMove]:
        """The one place a hop changes state: read each hop's state, ask the table
        (``core.delivery.next_state``), write the next state guarded by the state read, in
        the caller's transaction. Returns the moves made, in order; the caller audits
        exactly those. An event the table refuses (a final hop, an id with
        no hop to ``node``) leaves the row as it is, is logged and counted in
        ``illegal_hop_events``; it never fails the write, so one odd answer cannot stop a
        sender's loop or roll back the moves beside it. On SQLite the write lock is held
        from the read to the write, so the guard always holds; it is there for a store
        where another writer could move the hop in between (issue 17)."""
        states: dict[bytes, HopState | None] = {}
        ids = list(dict.fromkeys(m.envelope_id for m in moves))
        for start in range(0, len(ids), _READ_CHUNK):
            chunk = ids[start:start + _READ_CHUNK]
            cur = await txn.execute(
                "SELECT envelope_id, state FROM hops WHERE node = ? AND envelope_id IN "
                f"({', '.join('?' * len(chunk))})", (node, *chunk))
            states.update((bytes(r[0]), HopState(r[1])) for r in await cur.fetchall())
        moved: list[HopMove] = []
        for move in moves:
            state = states.get(move.envelope_id)
            try:
                if state is None:
                    raise Conflict(f"event {move.event.value} names no hop to {node}")
                after = next_state(state, move.event)
            except Conflict as exc:
                self.illegal_hop_events += 1
                log.warning("hop.event_refused", peer=node, hop_event=move.event.value,
                            state=state.value if state else None,
                            envelope_id=id_to_text(move.envelope_id), reason=exc.detail)
                continue
            cur = await txn.execute(
                _FINISH_HOP if after.final else _MOVE_HOP,
                (after.value, now, move.reason, node, move.envelope_id, state.value))
            if cur.rowcount:
                states[move.envelope_id] = after
                moved.append(move)
        return moved

    async def hop_states(self, envelope_id: bytes) -> dict[str, tuple[str, str | None]]:
        rows = await self.db.fetchall(HOP_STATES, (envelope_id,))
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


def _plain(item: Acceptance) -> bool:
    """An acceptance that writes nothing but its envelope, inbox rows, hops, audit entry
    and effects (``_Rows``): no consent, four-eyes hold or approval, ``then``, signal,
    batch evidence covers, nor a request or reply to track."""
    h = item.envelope.header
    return (item.consent_digest is None and item.hold is None and item.approval is None
            and item.then is None and h.signal is None and not item.covers
            and not (item.track_request and h.kind in (Kind.REQUEST, Kind.REPLY)))


async def _stored(txn: WriteTxn, ids: Sequence[bytes]) -> dict[bytes, tuple[bytes, int | None]]:
    """(raw, purged) of those of ``ids`` stored already, read per chunk."""
    found: dict[bytes, tuple[bytes, int | None]] = {}
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), _READ_CHUNK):
        chunk = unique[start:start + _READ_CHUNK]
        cur = await txn.execute(
            "SELECT id, raw, purged FROM envelopes WHERE id IN "
            f"({', '.join('?' * len(chunk))})", tuple(chunk))
        found.update((bytes(r[0]), (bytes(r[1]), r[2])) for r in await cur.fetchall())
    return found


class _Rows:
    """The rows of a batch's plain acceptances, gathered in order and written table by
    table (``WriteTxn.insert_rows``): for N envelopes a few statements per table instead
    of N, and the audit entries chained in the order the items came."""

    def __init__(self, now: int) -> None:
        self.now = now
        self.envelopes: list[tuple[object, ...]] = []
        self.inbox: list[tuple[object, ...]] = []
        self.hops: list[tuple[object, ...]] = []
        self.audit: list[tuple[str, str, str, bytes | None]] = []
        self.effects: list[Effect] = []

    def clear(self) -> None:
        for rows in (self.envelopes, self.inbox, self.hops, self.audit, self.effects):
            rows.clear()

    def add(self, item: Acceptance, raw: bytes) -> None:
        h, now = item.envelope.header, self.now
        self.envelopes.append((h.id, raw, h.sender, h.kind.value, int(h.precedence),
                               h.created, h.expires, h.tag.retain_until, now, h.ref))
        self.inbox.extend((officer, h.id, now) for officer in item.local_recipients)
        self.hops.extend((node, h.id, HopState.QUEUED.value, int(h.precedence), h.expires,
                          now) for node in item.remote_nodes)
        self.audit.append((item.event, item.actor, item.audit_detail, h.id))
        self.effects.extend(item.effects)

    async def write(self, txn: WriteTxn) -> None:
        """Write what was gathered (the envelopes first), and start again empty."""
        if not self.envelopes:
            return
        await txn.insert_rows(_INSERT_ENVELOPE, self.envelopes)
        if self.inbox:
            await txn.insert_rows(_INSERT_INBOX, self.inbox)
        if self.hops:
            await txn.insert_rows(_INSERT_HOP, self.hops)
        await txn.audit_many(self.now, self.audit)
        await add_effects(txn, self.effects, self.now)
        self.clear()
