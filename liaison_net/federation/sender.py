"""One sender per peer: how queued envelopes leave this node.

How do envelopes get sent? ``intake.submit`` stores an envelope with one QUEUED hop per
destination node; the commit hands each hop to that node's sender in memory (``offer``;
anything else queued, evidence or a release, wakes it instead). The sender takes the next
batch from those offers while the outbox holds nothing else (inflight.py says why that is
safe), or else reads it from the outbox in the database (flash first, then oldest), posts
it as one transaction, and records
each answer with one write (``store.finish_hops``): accepted or duplicate -> DELIVERED,
refused -> REFUSED with the peer's code (and the sender gets a signed non-delivery notice
naming it), except codes that only mean "not yet" (a card still on its way, a full disk),
which stay QUEUED.

Up to ``[delivery] in_flight`` transactions are in flight per peer, over the session's
kept-alive TLS connections. The ids each one carries are claimed in memory
(``inflight.InFlight``), so two transactions in flight never carry the same envelope; a
batch carries one precedence, and a lower one starts only once no higher one is in flight.
The loop (``run``) reads and starts batches; each transaction runs as its own task
(``_transact``) in the loop's task group, which owns them.
Offers start a transaction at once while none is in flight; while one is, they wait
until they make a full batch, an urgent one comes or the transactions end
(``InFlight.offers_ready``), so a saturated sender sends full transactions.
A small transaction (at most ``RIDE_MAX_ENVELOPES``) is over at the peer's answer: its
slot is free then, and its answer's write rides on the next group (``Database.write``)
while its ids stay claimed until that write commits (``InFlight.answered``); a larger one
keeps its slot until its write, which commits at once (``_transact`` says why).

A note on failures and back-offs. A connection error, timeout or 5xx leaves every hop of
that transaction QUEUED and backs the peer off (``BackoffPolicy``: ~1 s doubling to ~60 s,
jittered): no new transaction starts until then; those in flight finish or time out, and
count for nothing (they started before the failure). The attempt count and next attempt
time are persisted, so a restart resumes the same curve, and there is no separate catch-up
mode: the outbox in SQLite *is* the catch-up. When the peer calls us (it is evidently
back), its backoff is cleared and we send at once.

A node of several workers (docs/operations.md). Only the worker holding the peer's
lease runs its sender (``lease.SenderLease``), so the outbox needs no claim of its own:
one reader per peer, as with one process (on PostgreSQL the lease plays the part that
``SELECT ... FOR UPDATE SKIP LOCKED`` would if several workers shared a peer's queue).
The write of a transaction's answers carries the lease's fencing token (``fence``). A peer
that runs several workers lists their URLs; ``_post`` fails over between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from liaison_net import timeline
from liaison_net.clock import Clock
from liaison_net.config import DeliveryConfig, Peer
from liaison_net.core import codec, crypto
from liaison_net.core.audit import detail
from liaison_net.core.delivery import BackoffPolicy
from liaison_net.core.ids import envelope_id_time_ms, id_to_text
from liaison_net.errors import Malformed, Unavailable
from liaison_net.federation import protocol
from liaison_net.federation.inflight import ROUTINE, URGENT, Batch, InFlight, Offer
from liaison_net.http_common import MSGPACK
from liaison_net.metrics import NodeMetrics
from liaison_net.pki.certificates import node_hostname
from liaison_net.store.database import RIDE_MAX_ENVELOPES
from liaison_net.store.envelope_store import QueuedHop
from liaison_net.store.lease_store import Fence
from liaison_net.store.node_store import NodeStore

log = structlog.get_logger("liaison.sender")

MAX_ATTEMPTS = 1_000_000  # the count only grows the backoff to its cap; keep it bounded

#: Builds the directory push for a peer: (cursor after this push, request body) or None.
DirectoryPush = Callable[[str], Awaitable[tuple[int, dict[str, Any]] | None]]
#: What the pushes before envelopes depend on (cards, keys, revocations, our certificate):
#: equal values mean nothing to push has appeared since; None means "being written now".
PushState = Callable[[], Hashable | None]


@dataclass
class PeerLink:
    """What a sender knows of its peer, pure (no I/O, ``now`` and randomness passed in):
    consecutive failures, when to try next, and whether this failure spell already has its
    one ``peer.answer_malformed`` audit entry (a peer answering garbage in a loop must not
    write one entry per attempt)."""

    attempts: int = 0
    next_attempt: int = 0  # ms, wall clock
    malformed_audited: bool = False

    def failed(self, backoff: BackoffPolicy, now: int, rand: float, *,
               malformed: bool) -> tuple[float, bool]:
        """One failed pass: (seconds to back off, whether to audit it now)."""
        self.attempts = min(self.attempts + 1, MAX_ATTEMPTS)
        delay = backoff.delay(self.attempts, rand)
        self.next_attempt = now + int(delay * 1000)
        return delay, self.failed_again(malformed=malformed)

    def failed_again(self, *, malformed: bool) -> bool:
        """A failure of this spell that is not another attempt (a transaction that was
        already in flight when the spell began): whether to audit it now."""
        audit = malformed and not self.malformed_audited
        self.malformed_audited = self.malformed_audited or malformed
        return audit

    def recovered(self) -> bool:
        """One good pass; True if it ends a spell of failures (then persisted as over)."""
        was_failing = self.attempts > 0
        self.attempts, self.next_attempt, self.malformed_audited = 0, 0, False
        return was_failing


class _WorkerDown(Exception):
    """One URL of the peer failed (connection, timeout, 5xx): try its next worker."""


class PeerSender:
    def __init__(self, *, node_id: str, peer: Peer, store: NodeStore,
                 session: aiohttp.ClientSession, delivery: DeliveryConfig,
                 metrics: NodeMetrics, directory_push: DirectoryPush,
                 clock: Clock, push_state: PushState | None = None) -> None:
        self.node_id = node_id
        self.clock = clock
        self.peer = peer
        self.store = store
        self.session = session
        self.delivery = delivery
        self.metrics = metrics
        self.directory_push = directory_push
        self.push_state = push_state
        # The push state at the last pass that found nothing to push, and until when that
        # lets a pass skip the directory and revocation reads (``_pushes``).
        self._pushed: Hashable | None = None
        self._pushed_until = 0
        self.wake = asyncio.Event()  # look in the outbox: something was queued, or may be
        self.handed = asyncio.Event()  # an offer came (``offer``): no read needed for it
        self.called_in = asyncio.Event()
        # The link recovered (a transaction succeeded after failures): a pass waiting out
        # the back-off goes now. Cleared when a failure starts the next back-off.
        self.recovered = asyncio.Event()
        self.ended = asyncio.Event()  # a transaction ended: room for another
        self.link = PeerLink()
        self.book = self._in_flight()
        # The outbox holds nothing unclaimed but the offers: the last read took all it
        # found, and only offers came since. Offers are taken only then.
        self._drained = False
        self._read_at = 0  # ms, when the outbox was last read
        self._running = False  # offers are kept only while the loop runs
        self._url_index = 0  # the peer's URL (worker) that last answered
        # The lease this sender works under when its node runs several workers
        # (``lease.SenderLease`` sets it): the answers' write checks it.
        self.fence: Fence | None = None

    def peer_called_in(self) -> None:
        """The peer called us: it is evidently up, so a backoff from it ends now. Only
        then is there anything to do (at a light load the peer calls once per envelope
        with its evidence; waking a sender that is not failing would read the outbox
        for nothing)."""
        if self.link.attempts == 0 and self.link.next_attempt == 0:
            return
        self.called_in.set()
        self.wake.set()

    def offer(self, hop: QueuedHop) -> None:
        """A hop to this peer was just committed (``NodeStore.on_queued``, run at the
        commit): handed over in memory, so the loop need not read it back. Only a hint: if
        the loop does not run here (another worker holds the lease) it is dropped, and if
        the offers are full the loop reads the outbox instead."""
        if not self._running:
            return
        if self.book.offer(Offer(hop.envelope_id, hop.precedence, hop.raw, hop.expires,
                                 hop.retain_until)):
            if self.book.offers_ready():  # else they wait for more, or for ``ended``
                self.handed.set()
        else:
            self.wake.set()

    def _in_flight(self) -> InFlight:
        return InFlight(limit=self.delivery.in_flight,
                        max_count=min(self.delivery.batch_size,
                                      protocol.MAX_TRANSACTION_ENVELOPES),
                        max_bytes=self.delivery.batch_bytes)

    async def run(self) -> None:
        await self._resume()
        self._running = True
        try:
            async with asyncio.TaskGroup() as transactions:
                while True:
                    batch = await self._next()
                    if batch is not None:
                        transactions.create_task(self._transact(batch))
        finally:
            self._running = False

    async def _resume(self) -> None:
        """A run of the loop starts: the back-off as persisted (this worker's own, or
        another's that held the peer's lease meanwhile), nothing in flight (the last run's
        tasks ended with its group; answers it was still writing keep their ids claimed
        until written). A recovery seen before is no news for this back-off: left set,
        ``recovered`` ended its wait at once, and the loop spun until it was over."""
        self.link.attempts, self.link.next_attempt = await self.store.peer_backoff(self.peer.id)
        self.recovered.clear()
        self.book.restart()
        self._drained = False

    async def _next(self) -> Batch | None:
        """One pass: wait until a transaction may start, push what must go before envelopes,
        and take the next batch (claimed): from the offers while the outbox holds nothing
        else, else read from the outbox; None when there is nothing to start now."""
        book = self.book
        now = self.clock.now_ms()
        if self.link.next_attempt > now and not self.called_in.is_set():
            await self._wait_any((self.called_in, self.recovered),
                                 (self.link.next_attempt - now) / 1000)
            return None
        if not book.has_room(URGENT):
            self.ended.clear()
            await self._wait(self.ended, self.delivery.directory_push_s)
            return None
        # Only the slot kept for urgent envelopes is free: only something newly queued
        # (a wake) can be urgent, since the outbox is read most urgent first.
        urgent_only = not book.has_room()
        least = URGENT if urgent_only else ROUTINE
        push_ms = self.delivery.directory_push_s * 1000
        since_read = now - self._read_at
        if self._drained and since_read >= push_ms and (
                not book.offers_ready() or since_read >= 2 * push_ms):
            # Read anyway now and then: another worker's commits. Offers ready now go
            # first (the read follows at the next pass, its wait ends at once): a read
            # taking them would hold them for its query; overdue twice, read regardless.
            self._drained = False
        # Offers start a transaction at once while nothing is in flight; while something
        # is, once they make a full batch (``InFlight.offers_ready``, the batching rule).
        handed = self._drained and not self.wake.is_set() and book.offers_ready()
        # Something to read: a wake, or an offer while the outbox holds more than offers
        # (the read takes it, most urgent first).
        news = self.wake.is_set() or (self.handed.is_set() and not self._drained)
        if (urgent_only or self._drained) and not news and not handed:
            # The last read found the outbox empty (or only the urgent slot is free):
            # nothing new to read until a wake, or a transaction's end makes room; an
            # offer (``offer``) is taken without a read.
            self.ended.clear()
            self.handed.clear()
            # Until the periodic read falls due, so it runs in a gap between offers rather
            # than when the next offer comes (which it would then read, not hand over).
            due_s = (push_ms - since_read) / 1000 if self._drained else push_ms / 1000
            await self._wait_any(self._news(urgent_only),
                                 min(self.delivery.directory_push_s, max(due_s, 0.0)))
            # Still drained only if nothing but offers or a transaction's end came (a
            # timeout reads again; a failed transaction ends drained in ``_failed``).
            self._drained = (self._drained and not self.wake.is_set()
                             and (self.handed.is_set() or self.ended.is_set()))
            return None
        self.called_in.clear()
        self.wake.clear()
        self.ended.clear()
        self.handed.clear()
        spell = book.spell
        rows: list[tuple[bytes, int, bytes]] | None = None
        try:
            await self._pushes()
            if handed and not self.wake.is_set():
                batch = book.take_offered(now=self.clock.now_ms(), min_precedence=least)
            else:
                self._read_at = self.clock.now_ms()
                returned = book.returned
                skip = book.begin_read()
                try:
                    rows = await self.store.next_batch_skipping(
                        self.peer.id, book.max_count, now=self._read_at, skip=skip,
                        min_precedence=least)
                except BaseException:
                    book.abandon()
                    raise
                batch = book.take(rows)
        except Malformed as exc:
            # The peer's answer made no sense: that request failed, nothing else.
            await self._failed(str(exc), malformed=True, spell=spell)
            return None
        except Unavailable as exc:
            await self._failed(str(exc), malformed=False, spell=spell)
            return None
        if rows is not None:
            # Every queued envelope (but those in flight) is in this batch, or there is
            # none: the next pass has nothing to read until a wake, and may take offers.
            # Saves an empty read per transaction at light load.
            # A batch that failed meanwhile is queued again, unseen by this read.
            self._drained = (not urgent_only and len(rows) < book.max_count
                             and len(batch.ids if batch is not None else ()) == len(rows)
                             and book.returned == returned)
        if batch is None:
            if not book.batches:
                await self._succeeded(spell)  # everything answered, nothing left to send
            # Nothing (urgent) to take: wait for something new, or (routine waiting for the
            # urgent slot's company to leave) for a transaction to end.
            await self._wait_any(self._news(urgent_only), self.delivery.directory_push_s)
            return None
        if not book.may_start(batch):
            # A higher precedence is still in flight: it goes first; read again once a
            # transaction ends (its ids, unclaimed now, are read again then), or once
            # something new is queued (it may be more urgent still).
            book.release(batch, answered=False)
            self._drained = False  # the released ids are in the outbox only
            self.ended.clear()
            await self._wait_any((self.wake, self.ended), self.delivery.directory_push_s)
            return None
        return batch

    def _news(self, urgent_only: bool) -> tuple[asyncio.Event, ...]:
        """What a pass with nothing to start waits for: a wake or ready offers, and a
        transaction's end too when that may let something start (only the urgent slot was
        free, or offers wait for the transactions in flight: the batching rule)."""
        if urgent_only or self.book.batches:
            # Offers made during the wait, while a transaction is in flight, do not set
            # ``handed`` (not ready yet): its end must wake the pass that takes them.
            return (self.wake, self.handed, self.ended)
        return (self.wake, self.handed)

    async def _transact(self, batch: Batch) -> None:
        """One transaction: posted; answered (a small one's slot free from then on:
        ``InFlight.answered``); its answer recorded (its ids unclaimed only then), or
        failed."""
        recorded = False
        record: asyncio.Task[None] | None = None
        try:
            outcomes = await self._ask(batch)
            now = self.clock.now_ms()
            # A small transaction's write rides on the next group (an accept's, most often)
            # instead of paying a commit; the transaction is over now: the next may start
            # at once (the batching rule sees nothing in flight), while the ids stay
            # claimed until the write has committed. A larger one's write commits at once,
            # its commit spread over its envelopes, and keeps its slot until then: at
            # saturation that wait gathers the next full batch (freed at the answer too,
            # the quick relay's transactions carried 22-29 envelopes instead of 42-50:
            # docs/performance.md, lane release16). One with "not yet" refusals does not
            # ride either: the peer's back-off follows its write.
            rides = (len(batch.ids) <= RIDE_MAX_ENVELOPES
                     and not any(isinstance(o, protocol.NotYet) for o in outcomes))
            if rides:
                self.book.answered(batch)
                self.ended.set()
            record = asyncio.ensure_future(self._record(batch, outcomes, now, rides=rides))
            # Shielded: if the loop stops meanwhile, the write still ends, and the ids stay
            # claimed until it has (``_recorded_late``): no later run sends them again.
            await asyncio.shield(record)
            recorded = True
        except Malformed as exc:
            await self._failed(str(exc), malformed=True, spell=batch.spell)
        except Unavailable as exc:
            await self._failed(str(exc), malformed=False, spell=batch.spell)
        else:
            await self._succeeded(batch.spell)
        finally:
            if record is not None and not record.done():
                self.book.answered(batch)  # over for this run; claimed until written
                record.add_done_callback(functools.partial(self._recorded_late, batch))
            else:
                self.book.release(batch, answered=recorded)
                self.ended.set()

    def _recorded_late(self, batch: Batch, record: asyncio.Future[None]) -> None:
        """The write of an answer ended after its run of the loop: unclaim its ids. Failed
        (a lease lost, storage), its hops are still queued: the next read sends them."""
        failure = None if record.cancelled() else record.exception()
        ok = not record.cancelled() and failure is None
        if not ok:
            log.info("peer.answer_not_recorded", peer=self.peer.id,
                     reason=str(failure or "cancelled")[:200])
            self._drained = False
            self.wake.set()
        self.book.release(batch, answered=ok)
        self.ended.set()

    async def _succeeded(self, spell: int) -> None:
        if not self.book.counts(spell):
            return  # started before the latest failure: says nothing about the peer now
        attempts = self.link.attempts
        if self.link.recovered():
            log.info("peer.recovered", peer=self.peer.id, after_attempts=attempts)
            # A pass waiting out the back-off goes now (a catch-up's next transaction
            # waited the back-off's remainder: docs/performance.md, lane release16).
            self.recovered.set()
            with contextlib.suppress(Unavailable):  # in memory already; disk next time
                await self.store.set_peer_backoff(self.peer.id, 0, 0, None)

    @staticmethod
    async def _wait(event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0.0)):
                await event.wait()

    @staticmethod
    async def _wait_any(events: tuple[asyncio.Event, ...], seconds: float) -> None:
        """Until one of ``events`` is set, at most ``seconds``."""
        waiters = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            await asyncio.wait(waiters, timeout=max(seconds, 0.0),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _failed(self, reason: str, *, malformed: bool, spell: int) -> None:
        now = self.clock.now_ms()
        self._drained = False  # its envelopes are queued again: read them after the backoff
        self.metrics.retries.labels(peer=self.peer.id).inc()
        if not self.book.counts(spell):
            # Started before the failure that backs the peer off now: the same spell, not
            # another attempt (its malformed answer is still audited once per spell).
            audit = self.link.failed_again(malformed=malformed)
            log.info("peer.failed_in_flight", peer=self.peer.id, reason=reason[:200])
            if audit:
                with contextlib.suppress(Unavailable):
                    await self.store.audit(now=now, event="peer.answer_malformed",
                                           actor=self.peer.id,
                                           audit_detail=detail(peer=self.peer.id,
                                                               reason=reason[:200]))
            return
        self.book.new_spell()
        self.recovered.clear()
        delay, audit = self.link.failed(self.delivery.backoff, now, random.random(),
                                        malformed=malformed)
        log.info("peer.backoff", peer=self.peer.id, attempts=self.link.attempts,
                 delay_s=round(delay, 2), reason=reason[:200])
        try:
            if audit:
                await self.store.audit(now=now, event="peer.answer_malformed",
                                       actor=self.peer.id,
                                       audit_detail=detail(peer=self.peer.id,
                                                           reason=reason[:200]))
            await self.store.set_peer_backoff(self.peer.id, self.link.attempts,
                                              self.link.next_attempt, reason[:500])
        except Unavailable:
            # Our own storage failed too: keep the backoff in memory, keep the node up.
            log.warning("peer.backoff_not_persisted", peer=self.peer.id)

    async def _post(self, path: str, body: dict[str, Any]) -> bytes:
        """The peer's answer, undecoded: ``protocol.decode_*`` decode it.

        A peer running several workers lists several URLs (``Peer.urls``): a connection
        error, a timeout or a 5xx at one moves on to the next, each tried once per request,
        starting at the one that last answered; only when all failed is it a failure
        (and the peer backs off as before). Sending the same transaction again to another
        worker is safe: the peer's node accepts an envelope id once and answers
        ``duplicate`` after that. Any other answer (a 4xx) is the node's, not the worker's,
        and is not retried elsewhere."""
        data = codec.pack(body)
        urls = self.peer.urls
        first = self._url_index % len(urls)
        failure: Unavailable | None = None
        # One request_timeout_s for the request, failovers included: the expiry sweep's
        # margin (docs/architecture.md, 3.5) counts on no transaction living longer.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.delivery.request_timeout_s
        for step in range(len(urls)):
            index = (first + step) % len(urls)
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                payload = await self._post_to(urls[index], path, data, left)
            except _WorkerDown as exc:
                failure = Unavailable(str(exc))
                if len(urls) > 1:
                    log.info("peer.failover", peer=self.peer.id, url=urls[index],
                             reason=str(exc)[:200])
                continue
            if index != self._url_index:
                self._url_index = index  # remember the worker that answered
            return payload
        raise failure or Unavailable(f"cannot reach {self.peer.id}: request timed out")

    async def _post_to(self, url: str, path: str, data: bytes, seconds: float) -> bytes:
        timeout = aiohttp.ClientTimeout(total=seconds)
        try:
            # server_hostname makes the TLS handshake itself check that the certificate is
            # the peer's own, whatever address the URL names.
            async with self.session.post(url + path, data=data,
                                         headers={"Content-Type": MSGPACK}, timeout=timeout,
                                         server_hostname=node_hostname(self.peer.id)) as resp:
                payload = await resp.read()
                if resp.status >= 500:
                    raise _WorkerDown(f"peer answered HTTP {resp.status}: {payload[:200]!r}")
                if resp.status != 200:
                    raise Unavailable(f"peer answered HTTP {resp.status}: {payload[:200]!r}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _WorkerDown(f"cannot reach {self.peer.id}: {type(exc).__name__}") from exc
        return payload

    async def _pushes(self) -> None:
        """The directory (with our node certificate) first, so the peer can verify our
        revocations; revocations before envelopes.

        Each costs a read or two, and at a light load every envelope is a pass of its own,
        so a pass skips both when the last one found nothing to push and no card, key,
        revocation or certificate of ours has been written since (``push_state``); still at
        least every ``directory_push_s`` it reads them anyway."""
        state = self.push_state() if self.push_state is not None else None
        now = self.clock.now_ms()
        if state is not None and state == self._pushed and now < self._pushed_until:
            return
        self._pushed = None
        pushed = await self._push_directory()
        pushed = await self._push_revocations() or pushed
        if not pushed:
            self._pushed = state
            self._pushed_until = now + int(self.delivery.directory_push_s * 1000)

    async def _push_revocations(self) -> bool:
        """A revoked key must stop working everywhere within seconds: pushed on every pass
        of the loop (at least every ``directory_push_s``) until the peer has answered.
        False if there was nothing to push."""
        pending = await self.store.keys.pending_revocations(self.peer.id)
        if not pending:
            return False
        answer = await self._post(protocol.REVOCATIONS_PATH,
                                  {"origin": self.node_id,
                                   "statements": [raw for _, raw in pending]})
        # Accepted, or refused for good (the peer audited why): it leaves the outbox. A
        # "not yet" refusal (the peer lacks our node key so far) stays and is re-sent.
        finished = protocol.decode_revocations_answer(answer, len(pending))
        done = [key_id for (key_id, _), ok in zip(pending, finished, strict=True) if ok]
        await self.store.keys.revocations_acknowledged(self.peer.id, done)
        return True

    async def _push_directory(self) -> bool:
        """False if there was nothing to push."""
        push = await self.directory_push(self.peer.id)
        if push is None:
            return False
        cursor, body = push
        protocol.decode_directory_answer(await self._post(protocol.DIRECTORY_PATH, body))
        await self.store.set_directory_cursor(self.peer.id, cursor)
        return True

    async def _ask(self, batch: Batch) -> list[protocol.Outcome]:
        """The transaction posted, and the peer's answer decoded: one outcome per envelope."""
        body: dict[str, Any] = {"origin": self.node_id, "txn": crypto.random_bytes(16),
                                "envelopes": list(batch.raws)}
        self.metrics.transaction_envelopes.labels(
            peer=self.peer.id, source="handed" if batch.handed else "read").observe(
                len(batch.ids))
        # Officers' envelopes handed over at their commit carry neither (two reads saved).
        if batch.handed:
            self.metrics.handed.labels(peer=self.peer.id).inc(len(batch.ids))
        else:
            covers = await self.store.covers_of(list(batch.ids))  # relayed batch evidence
            if covers:
                body["covers"] = protocol.encode_covers(covers)
            approvals = await self.store.holds.approvals_of(list(batch.ids))  # four-eyes
            if approvals:
                body["approvals"] = protocol.encode_approvals(approvals)
        traced = timeline.enabled()  # measuring only (LIAISON_TIMELINE): off, no loop
        for envelope_id in batch.ids if traced else ():
            timeline.mark("s.sent" if batch.handed else "s.sent_read", envelope_id)
        answer = await self._post(protocol.TRANSACTION_PATH, body)
        for envelope_id in batch.ids if traced else ():
            timeline.mark("s.answer", envelope_id)
        return protocol.decode_transaction_answer(answer, list(batch.ids))

    async def _record(self, batch: Batch, outcomes: list[protocol.Outcome], now: int, *,
                      rides: bool) -> None:
        """The answer's one write; ``Unavailable`` after it if some envelopes were refused
        only for now (they stay queued, and the peer backs off)."""
        delivered: list[bytes] = []
        refused: list[tuple[bytes, str]] = []
        details: dict[bytes, str] = {}
        retry: dict[str, int] = {}  # code -> envelopes, "not yet" refusals
        latency = self.metrics.latency.labels(peer=self.peer.id)  # one lookup per answer
        for outcome in outcomes:
            match outcome:
                case protocol.Delivered(eid):
                    delivered.append(eid)
                    latency.observe(max(0, now - envelope_id_time_ms(eid)) / 1000)
                case protocol.NotYet(_, code):
                    retry[code] = retry.get(code, 0) + 1
                case protocol.RefusedForGood(eid, code, why):
                    refused.append((eid, code))
                    details[eid] = why
                    log.info("envelope.refused_by_peer", peer=self.peer.id, code=code,
                             envelope_id=id_to_text(eid))
        # A final refusal (bad_timestamp from a skewed clock, a policy rule, ...): the hop
        # is over, and its sender's signed non-delivery notice (naming the peer's reason)
        # is owed from the same commit (an effect, issued by services/effects.py).
        # ``rides``: nothing waits on it but the claims (``_transact``).
        await self.store.finish_hops(self.peer.id, now=now, delivered=delivered,
                                     refused=refused, details=details, fence=self.fence,
                                     rides=rides)
        self.metrics.delivered.labels(peer=self.peer.id).inc(len(delivered))
        if retry:
            # Named by code, so `admin status` tells a full disk at the peer from a card
            # still on its way.
            codes = ", ".join(f"{n} {code}" for code, n in sorted(retry.items()))
            raise Unavailable(f"{sum(retry.values())} envelope(s) not yet acceptable to "
                              f"{self.peer.id} ({codes})")
