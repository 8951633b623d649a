"""What a commit hands over (issue 16, light-load latency): ``WriteTxn.after_commit``
callbacks run on the event loop once their write is committed, never for a write refused
alone, before the writers' callers get their answers and before the effect drain runs;
``NodeStore.accept`` hands an officer's queued hops to ``on_queued`` that way, and nothing
else (a duplicate, a received envelope). A sender keeps offers only while its loop runs,
reads the outbox when they overflow, and is woken by its peer's call only while it backs
off from that peer."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from liaison_net.clock import Clock, ManualClock
from liaison_net.config import DeliveryConfig
from liaison_net.core.audit import detail
from liaison_net.core.envelope import Precedence
from liaison_net.errors import Conflict
from liaison_net.federation.sender import PeerSender
from liaison_net.store.database import WriteTxn
from liaison_net.store.envelope_store import QueuedHop
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, seal_from
from tests.offline_sender import offline_sender
from tests.waits import PATIENCE_S

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")
LUC = Officer("lu/lschmit")


async def test_callbacks_run_at_the_commit_before_the_callers_and_the_drain(
        tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    order: list[str] = []
    loop_thread = threading.current_thread()
    woken = asyncio.Event()  # as the effect drain waits for its wake
    store.db.on_effects = woken.set

    async def drain() -> None:
        await woken.wait()
        order.append("drain ran")

    def at_commit(name: str) -> None:
        assert threading.current_thread() is loop_thread  # on the loop, not the writer
        order.append(f"{name} handed")

    async def kept(txn: WriteTxn) -> str:
        txn.after_commit(lambda: at_commit("kept"))
        txn.effects_added = True  # as add_effects marks it
        return "kept"

    async def refused(txn: WriteTxn) -> str:
        txn.after_commit(lambda: at_commit("refused"))
        raise Conflict("refused alone")

    async def call(fn: object) -> None:
        try:
            order.append(f"{await store.db.write(fn)} answered")  # type: ignore[arg-type]
        except Conflict:
            order.append("refused answered")

    try:
        drained = asyncio.create_task(drain())
        await asyncio.gather(call(kept), call(refused))
        await drained
        assert order[0] == "kept handed"
        assert "refused handed" not in order
        assert order.index("drain ran") > order.index("kept answered")
    finally:
        await store.close()


async def test_accept_hands_over_an_officers_hops_and_nothing_else(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    handed: list[QueuedHop] = []
    store.on_queued = handed.extend
    try:
        sent = seal_from(ALICE, [BOB, LUC])
        await store.accept(sent, now=NOW, actor=ALICE.id, event="envelope.accepted",
                           local_recipients=[], remote_nodes=["be", "lu"],
                           audit_detail=detail())
        assert sorted((h.node, h.envelope_id) for h in handed) == [
            ("be", sent.id), ("lu", sent.id)]
        assert {h.raw for h in handed} == {sent.to_bytes()}
        assert {(h.precedence, h.expires, h.retain_until) for h in handed} == {
            (int(sent.header.precedence), sent.header.expires, sent.header.tag.retain_until)}
        # The same hops are what the outbox read returns.
        rows = await store.next_batch_skipping("be", 10, now=NOW, skip=())
        assert rows == [(sent.id, int(sent.header.precedence), sent.to_bytes())]

        handed.clear()
        await store.accept(sent, now=NOW, actor=ALICE.id, event="envelope.accepted",
                           local_recipients=[], remote_nodes=["be", "lu"],
                           audit_detail=detail())
        received = seal_from(BOB, [ALICE])
        await store.accept(received, now=NOW, actor="be", event="envelope.delivered_to_inbox",
                           local_recipients=[ALICE.id], remote_nodes=[],
                           audit_detail=detail(), received=True)
        assert handed == []  # a duplicate, a received envelope: nothing to hand over
    finally:
        await store.close()


def _sender() -> PeerSender:
    return offline_sender(None, Clock())


async def test_an_offer_is_kept_only_while_the_sender_runs_and_a_full_book_wakes_a_read(
) -> None:
    sender = _sender()
    hop = QueuedHop("be", b"\x01" * 16, 0, b"raw", expires=2**62, retain_until=2**62)
    sender.offer(hop)  # not running here (another worker holds the lease): dropped
    assert sender.book.offered == 0 and not sender.handed.is_set()
    sender._running = True
    sender.offer(hop)
    assert sender.book.offered == 1 and sender.handed.is_set() and not sender.wake.is_set()
    for i in range(sender.book.max_offers):
        sender.offer(QueuedHop("be", i.to_bytes(16, "big"), 0, b"raw", 2**62, 2**62))
    assert sender.book.offered == 0 and sender.wake.is_set()  # full: dropped, read instead


async def test_a_peer_calling_in_wakes_only_a_sender_that_backs_off() -> None:
    sender = _sender()
    sender.peer_called_in()
    assert not sender.wake.is_set() and not sender.called_in.is_set()
    sender.link.failed(sender.delivery.backoff, now=0, rand=0.5, malformed=False)
    sender.peer_called_in()
    assert sender.wake.is_set() and sender.called_in.is_set()


async def test_an_offer_ready_when_the_periodic_read_falls_due_goes_before_the_read(
        tmp_path: Path) -> None:
    """The sender reads its outbox at least every ``directory_push_s`` (another worker's
    commits). At a steady light load that read used to fall due just as the next offer
    came, and took that envelope from the outbox instead (it then waited for the query:
    about 1 envelope in 40 at 20/s, inside the light load's p99). The offer goes first; the
    read follows at the next pass, and no later than twice the period under constant offers."""
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    clock = ManualClock(NOW)
    delivery = DeliveryConfig(directory_push_s=0.05)

    sender = offline_sender(store, clock, delivery)
    store.on_queued = lambda hops: [sender.offer(h) for h in hops if h.node == "be"]
    sender._running = True
    sender.book = sender._in_flight()
    push_ms = int(delivery.directory_push_s * 1000)
    try:
        first = seal_from(ALICE, [BOB])
        sender._drained, sender._read_at = True, clock.now_ms() - push_ms  # the read is due
        await store.accept(first, now=NOW, actor=ALICE.id, event="envelope.accepted",
                           local_recipients=[], remote_nodes=["be"], audit_detail=detail())
        batch = await sender._next()
        assert batch is not None and batch.handed and batch.ids == (first.id,)
        assert sender._read_at == NOW - push_ms  # not read yet: at the next pass
        sender.book.release(batch, answered=False)
        again = await sender._next()  # nothing offered now: the read that was due
        assert sender._read_at == NOW
        assert again is not None and not again.handed and again.ids == (first.id,)
        sender.book.release(again, answered=False)

        # Offers all the time: the read is put off once, never twice the period.
        second = seal_from(ALICE, [BOB])
        sender.book.drop_offers()
        clock.advance(2 * push_ms)
        sender._drained = True
        await store.accept(second, now=NOW, actor=ALICE.id, event="envelope.accepted",
                           local_recipients=[], remote_nodes=["be"], audit_detail=detail())
        late = await sender._next()
        assert late is not None and not late.handed
        assert set(late.ids) == {first.id, second.id} and sender._read_at == clock.now_ms()
    finally:
        await store.close()


async def test_an_offer_made_while_a_transaction_is_in_flight_goes_when_it_ends(
        tmp_path: Path) -> None:
    """The batching rule keeps an offer made while a transaction is in flight until that
    transaction ends (or the offers fill a batch). A pass that began waiting with nothing
    offered must then wake at that end: it once slept until the periodic read (2 s by
    default), so an officer's second envelope sent just after the first could wait that
    long (found in review). The period here is an hour: only the end can wake it."""
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    clock = ManualClock(NOW)

    sender = offline_sender(store, clock, DeliveryConfig(directory_push_s=3600.0))
    store.on_queued = lambda hops: [sender.offer(h) for h in hops if h.node == "be"]
    sender._running = True
    sender.book = sender._in_flight()
    try:
        first = seal_from(ALICE, [BOB], precedence=Precedence.ROUTINE)
        sender._drained, sender._read_at = True, clock.now_ms()
        await store.accept(first, now=NOW, actor=ALICE.id, event="envelope.accepted",
                           local_recipients=[], remote_nodes=["be"], audit_detail=detail())
        in_flight = await sender._next()
        assert in_flight is not None and in_flight.handed
        waiting = asyncio.create_task(sender._next())  # nothing offered: it waits
        await asyncio.sleep(0)
        second = seal_from(ALICE, [BOB], precedence=Precedence.ROUTINE)
        await store.accept(second, now=NOW, actor=ALICE.id, event="envelope.accepted",
                           local_recipients=[], remote_nodes=["be"], audit_detail=detail())
        assert sender.book.offered == 1 and not sender.book.offers_ready()
        sender.book.release(in_flight, answered=True)  # as ``_transact`` ends
        sender.ended.set()
        assert await asyncio.wait_for(waiting, PATIENCE_S) is None
        batch = await sender._next()
        assert batch is not None and batch.handed and batch.ids == (second.id,)
    finally:
        await store.close()
