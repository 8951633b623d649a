"""What one peer's sender has in flight: its transactions, the envelope ids they hold, and
the rules for starting another. Pure (no I/O, no event loop): ``sender.PeerSender`` does
the reading, posting and recording around it.

Theory of operation. A sender keeps up to ``limit`` transactions (batches) in flight to
its peer. The outbox in the database knows nothing of this (a hop is ``QUEUED`` until its
answer is recorded; core/delivery.py explains why there is no IN_FLIGHT state), so the ids
of every batch in flight are *claimed* here, in memory, and each read of the outbox leaves
them out. One read happens at a time, bracketed by ``begin_read`` and ``take`` (or
``abandon``):

- ``begin_read`` returns the ids the read must skip: those claimed. A batch answered while
  the read is under way was claimed when it began, so the read skips it whether its answer
  was committed before the read's snapshot or after; its ids are unclaimed only after the
  answer's commit (``release``), so no later read can find them still queued.
- ``take`` turns the rows read into the next batch and claims its ids: rows in the outbox's
  order (precedence, then oldest), cut at ``max_count`` envelopes, at ``max_bytes`` (one
  envelope at least) and where the precedence changes, so a batch carries one precedence.
  A claimed id among the rows (a store that ignored the skip) is left out.

Precedence across batches: a batch may start only when no batch of a higher precedence is
in flight (``may_start``). Flash goes out first and alone; routine starts once every flash
transaction has been answered, which the peer does after committing it, so what was queued
as flash is stored at the peer before any routine envelope queued beside it.

A slot kept for what is urgent: routine batches fill at most ``limit`` slots, and one more
(``RESERVED``) is open only to a batch above routine (``has_room``). A flash envelope
queued while ``limit`` routine transactions are in flight (a catch-up, a large batch to a
slow peer) therefore starts at once instead of waiting up to a request timeout for one of
them to end; the peer's own limit (``[federation] in_flight_per_peer``, 8) leaves room for
it beside at most 4 transactions and a directory push.

A transaction can be over before its ids are recorded. Once the peer has answered, the
batch may leave ``batches`` (``answered``): its slot is free, and the batching and
precedence rules below see nothing of it in flight (the peer stored what it accepted before
answering). Its ids stay claimed until the answer's write has committed (``release``), so no
read and no offer can take them again meanwhile. The sender does this for a small
transaction, whose write rides on the next group (``Database.write(rides=True)``, up to
``RIDE_S``): the next envelope does not wait for that write. A larger one keeps its slot
until its write commits (at saturation that wait gathers the next full batch). A
transaction starts only while fewer than ``limit`` + ``RESERVED`` answers wait to be
recorded (``has_room``); those in flight may still answer, so at most twice that, less one,
wait (6 seen with ``limit`` 3, review16b): a writer that cannot keep up stops new
transactions, as their slots did before the split. The claims outlive a
run of the sender's loop (``restart``), since its writes do.

After a crash nothing here survives and nothing needs to: every unanswered hop is still
``QUEUED`` and is simply sent again; the receiver deduplicates by envelope id.

Envelopes handed over in memory (``offer``, ``take_offered``). The hop of an envelope an
officer submits is handed to the sender at the commit that queues it, so at a light load
the sender starts its transaction without reading the outbox back (one thread hop and a
query per envelope). The outbox stays the truth: an offer only *names* a hop known to be
committed and queued, and the sender takes offers only while the outbox holds nothing
unclaimed besides them (its last read took everything, nothing but offers woke it since:
``PeerSender._drained``). Every offer is made on the event loop at the commit itself
(``Database`` runs the commit's callbacks before anything else of the loop), which makes
two rules enough to never send one envelope twice nor skip one:

- a read covers every offer made before it began (its snapshot starts later): those are
  dropped (``begin_read``); an offer made while a read is under way may or may not be in
  its snapshot: dropped if the read found it (``take``), kept if not (committed after);
- an offer for an id already claimed (in a batch in flight) is ignored; an id whose
  answer was recorded cannot be offered after it (its commit came first, and the read that
  found it was after that commit).

Dropping offers is always safe: what was offered is still queued in the outbox and the
next read finds it. So offers past ``max_offers``, past their expiry, or left when a read
was cut short simply go, and the sender reads instead.

When offers start a transaction (``offers_ready``, the batching rule). At once while no
transaction is in flight: a light load adds no wait. While one is, offers wait until they
make a full batch (``max_count`` envelopes or ``max_bytes``), an urgent one comes, or the
transactions in flight have ended. Without the rule a saturated sender started a
transaction for each offer as soon as a slot was free (one to a few envelopes each, where
an outbox read takes up to the batch size): more requests, commits and evidence per
envelope at both ends, on the CPU the envelopes need. With it, the offers made while a
transaction is in flight go together when it ends, and a sender that cannot keep up sends
full batches, ``limit`` at a time. At a moderate load an offer made beside a transaction
waits at most for its end. Letting a second, partial one start beside it (at once beside
one carrying a few envelopes, or whenever fewer than two are in flight) was measured and
not kept (docs/performance.md, lane moderate16): it delivered no sooner at 200/s (most
likely: the destination commits in groups, one at a time) but cost it CPU per envelope, and "fewer
than two" halved a saturated sender's batches. Waiting changes nothing of the rules
above: offers kept longer are still only names of queued hops, and a read still drops
them.

Failure spells: a failure of one batch backs the peer off; the other batches in flight
started before it and will most likely fail the same way, so each batch carries the
``spell`` it started in, and only an outcome from the current spell counts
(``counts``): K batches failing together back off once, not K times, and a late success
of a batch started before the failure does not end the backoff.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: How the outbox answers a read: (envelope id, precedence, envelope bytes), in order.
Row = tuple[bytes, int, bytes]

#: Routine precedence (``core.envelope.Precedence.ROUTINE``); anything above is urgent.
ROUTINE = 0
URGENT = ROUTINE + 1  # the lowest precedence the kept slot takes
#: Slots beyond ``limit`` kept for urgent batches.
RESERVED = 1


@dataclass(frozen=True)
class Batch:
    """One transaction's envelopes, claimed until ``InFlight.release`` (after its answer's
    write, not at the answer: ``InFlight.answered``)."""

    ticket: int
    ids: tuple[bytes, ...]
    raws: tuple[bytes, ...]
    precedence: int
    spell: int
    #: Built from offers (``take_offered``): officers' envelopes just submitted, which carry
    #: nothing beside them (no batch evidence covers, no four-eyes approval) to read.
    handed: bool = False


@dataclass(frozen=True)
class Offer:
    """A hop committed just now, handed over in memory instead of read back."""

    id: bytes
    precedence: int
    raw: bytes
    expires: int  # ms; at or past it (or ``retain_until``) the offer goes, the outbox decides
    retain_until: int


class InFlight:
    """The claims of one peer's sender, kept across runs of its loop (``restart``)."""

    def __init__(self, *, limit: int, max_count: int, max_bytes: int,
                 max_offers: int | None = None) -> None:
        if limit < 1 or max_count < 1 or max_bytes < 1:
            raise ValueError("in-flight limit, batch count and bytes must be positive")
        self.limit = limit
        self.max_count = max_count
        self.max_bytes = max_bytes
        #: Offers kept at most; more means a burst, which one read serves better anyway.
        self.max_offers = max_offers if max_offers is not None else 4 * max_count
        self.batches: dict[int, Batch] = {}
        #: Answered batches whose outcome is being written: ids still claimed (``answered``).
        self.recording: dict[int, Batch] = {}
        self.spell = 0
        self._claimed: set[bytes] = set()
        self._offers: dict[bytes, Offer] = {}
        self._offered_bytes = 0  # of the offers, and how many of them are above routine:
        self._offered_urgent = 0  # what ``offers_ready`` weighs, kept as offers come and go
        #: Batches released unanswered so far (``release``).
        self.returned = 0
        self._reading = False
        self._tickets = 0

    def has_room(self, precedence: int = ROUTINE) -> bool:
        """Whether a batch of ``precedence`` may start as far as slots go: ``limit`` for
        any, ``RESERVED`` more for one above routine."""
        urgent = RESERVED if precedence > ROUTINE else 0
        return (len(self.batches) < self.limit + urgent
                and len(self.recording) < self.limit + RESERVED)

    def begin_read(self) -> frozenset[bytes]:
        """A read of the outbox starts: the ids it must leave out. Every offer made so far
        was committed before the read's snapshot: the read covers it, so it goes."""
        if self._reading:
            raise RuntimeError("one outbox read at a time")  # our bug
        self._reading = True
        self.drop_offers()
        return frozenset(self._claimed)

    def offer(self, offer: Offer) -> bool:
        """A hop just committed, handed over; False if the offers are full (all dropped:
        read the outbox instead). One already claimed is on its way: nothing to do."""
        if offer.id in self._claimed or offer.id in self._offers:
            return True
        if len(self._offers) >= self.max_offers:
            self.drop_offers()
            return False
        self._offers[offer.id] = offer
        self._offered_bytes += len(offer.raw)
        self._offered_urgent += offer.precedence > ROUTINE
        return True

    def offers_ready(self) -> bool:
        """Whether the offers should start a transaction now (the batching rule above): at
        once while nothing is in flight; while something is, only an urgent offer or a full
        batch's worth; else they wait for more offers or for the transactions to end."""
        if not self._offers:
            return False
        return (not self.batches or self._offered_urgent > 0
                or len(self._offers) >= self.max_count
                or self._offered_bytes >= self.max_bytes)

    @property
    def offered(self) -> int:
        return len(self._offers)

    @property
    def offered_ids(self) -> frozenset[bytes]:
        return frozenset(self._offers)

    def drop_offers(self) -> None:
        """Forget every offer (the outbox will be read: it holds them all)."""
        self._offers.clear()
        self._offered_bytes = self._offered_urgent = 0

    def _forget(self, eid: bytes) -> None:
        offer = self._offers.pop(eid, None)
        if offer is not None:
            self._offered_bytes -= len(offer.raw)
            self._offered_urgent -= offer.precedence > ROUTINE

    def take_offered(self, *, now: int, min_precedence: int = ROUTINE) -> Batch | None:
        """The next batch from the offers, as a read would have made it from the same rows
        (precedence first, then oldest; the same cuts), its ids claimed; None if no offer
        (of ``min_precedence`` or above) is left. Only while the outbox holds nothing
        unclaimed besides the offers (the caller knows: ``PeerSender._drained``).
        Offers at or past their expiry or retention go: the outbox decides those."""
        if self._reading:
            raise RuntimeError("take_offered during a read")  # our bug
        for eid in [o.id for o in self._offers.values()
                    if o.expires <= now or o.retain_until <= now]:
            self._forget(eid)
        rows = [(o.id, o.precedence, o.raw)
                for o in sorted(self._offers.values(), key=lambda o: (-o.precedence, o.id))
                if o.precedence >= min_precedence]
        batch = self._cut(rows, handed=True)
        if batch is not None:
            for eid in batch.ids:
                self._forget(eid)
        return batch

    def abandon(self) -> None:
        """The read failed: nothing taken."""
        self._reading = False

    def take(self, rows: Sequence[Row]) -> Batch | None:
        """The read's rows -> the next batch, its ids claimed; None if nothing is left."""
        if not self._reading:
            raise RuntimeError("take without begin_read")  # our bug
        self._reading = False
        for eid, _, _ in rows:  # offered during the read, and found by it
            self._forget(eid)
        return self._cut(rows, handed=False)

    def _cut(self, rows: Sequence[Row], *, handed: bool) -> Batch | None:
        ids: list[bytes] = []
        raws: list[bytes] = []
        seen: set[bytes] = set()
        size = 0
        precedence = 0
        for eid, prec, raw in rows:
            if eid in self._claimed or eid in seen:
                continue
            if ids and (prec != precedence or len(ids) >= self.max_count
                        or size + len(raw) > self.max_bytes):
                break
            precedence = prec
            seen.add(eid)
            ids.append(eid)
            raws.append(raw)
            size += len(raw)
        if not ids:
            return None
        self._tickets += 1
        batch = Batch(self._tickets, tuple(ids), tuple(raws), precedence, self.spell,
                      handed=handed)
        self._claimed.update(ids)
        self.batches[batch.ticket] = batch
        return batch

    def may_start(self, batch: Batch) -> bool:
        """No batch of a higher precedence is in flight (it goes first, answered first),
        and a slot is free for its precedence (``has_room`` before it was taken)."""
        others = [other for other in self.batches.values() if other.ticket != batch.ticket]
        urgent = RESERVED if batch.precedence > ROUTINE else 0
        return (len(others) < self.limit + urgent
                and all(other.precedence <= batch.precedence for other in others))

    def answered(self, batch: Batch) -> None:
        """The peer answered: the transaction is over (its slot free, nothing of it in
        flight for the rules above), its ids claimed until ``release`` after their write."""
        if self.batches.pop(batch.ticket, None) is not None:
            self.recording[batch.ticket] = batch

    def release(self, batch: Batch, *, answered: bool = True) -> None:
        """The batch is done with (its answer recorded, failed, or not started): unclaim.
        ``answered=False``: its hops are still queued (no answer, or its write failed), so
        the outbox holds them unclaimed again (``returned`` counts it: a read under way
        meanwhile did not see them)."""
        if (self.batches.pop(batch.ticket, None) is None
                and self.recording.pop(batch.ticket, None) is None):
            return
        self._claimed.difference_update(batch.ids)
        if not answered:
            self.returned += 1

    def restart(self) -> None:
        """A new run of the sender's loop: what the last run had in flight ended with it
        (its tasks released it), its offers go; answers still being written keep their
        ids claimed until their write ends (``release``)."""
        for batch in list(self.batches.values()):
            self.release(batch, answered=False)
        self.drop_offers()
        self._reading = False

    def counts(self, batch_spell: int) -> bool:
        """Whether an outcome of a batch started in ``batch_spell`` speaks for the peer now."""
        return batch_spell == self.spell

    def new_spell(self) -> None:
        """A failure was counted: what is in flight now belongs to the spell before."""
        self.spell += 1
