"""A transaction's slot is free at its answer, its ids claimed until the answer is written
(issue 16, lane release16).

A real origin store (SQLite, the group-commit writer) and a real sender posting over
mutual TLS on 127.0.0.1 to BE's door played by the test, which answers every envelope
accepted and counts what it was sent. The writer's ``ride_s`` is longer than any wait here,
so a small transaction's answer (``finish_hops``, a rider) is written only when a plain
write starts a group: the window "answered, not yet written" stays open as long as the test
needs. Counted (commits, envelopes sent), never timed."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from liaison_net.clock import ManualClock
from liaison_net.config import DeliveryConfig, Peer
from liaison_net.core import codec
from liaison_net.core.audit import detail
from liaison_net.core.envelope import Envelope, Precedence
from liaison_net.errors import LeaseLost
from liaison_net.federation import protocol
from liaison_net.federation.sender import PeerSender
from liaison_net.federation.tls import client_context, server_context
from liaison_net.metrics import NodeMetrics
from liaison_net.pki import certificates
from liaison_net.store.database import RIDE_MAX_ENVELOPES, WriteTxn
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, seal_from
from tests.offline_sender import offline_sender
from tests.waits import PATIENCE_S

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")


@dataclass
class CountingPeer:
    """BE's federation door: every envelope accepted, every one sent counted."""

    ids: dict[bytes, bytes] = field(default_factory=dict)  # envelope bytes -> its id
    sent: Counter[bytes] = field(default_factory=Counter)

    async def transaction(self, request: web.Request) -> web.Response:
        body = codec.unpack(await request.read(), what="request", max_bytes=1 << 24)
        ids = [self.ids[raw] for raw in body["envelopes"]]
        self.sent.update(ids)
        return web.Response(body=codec.pack({"results": [["accepted", "", ""]] * len(ids)}),
                            content_type="application/x-msgpack")


@dataclass
class Origin:
    store: NodeStore
    sender: PeerSender
    peer: CountingPeer
    clock: ManualClock

    async def submit(self) -> Envelope:
        """An officer's envelope for BE, accepted at NL: its hop is offered at the commit."""
        sent = seal_from(ALICE, [BOB], precedence=Precedence.ROUTINE)
        self.peer.ids[sent.to_bytes()] = sent.id
        await self.store.accept(sent, now=self.clock.now_ms(), actor=ALICE.id,
                                event="envelope.accepted", local_recipients=[],
                                remote_nodes=["be"], audit_detail=detail())
        return sent

    async def plain_write(self) -> None:
        """A write that starts a group (as the next accept would): riders join it."""
        async def op(txn: WriteTxn) -> None:
            await txn.audit(self.clock.now_ms(), "test.plain", "nl", "{}")
        await self.store.db.write(op)


@pytest.fixture
async def origin(tmp_path: Path) -> AsyncIterator[Origin]:
    certs = tmp_path / "certs"
    now = datetime.now(UTC)  # real handshakes check validity against the real clock
    certificates.init_network(certs, now=now)
    for node_id in ("be", "nl"):
        certificates.init_node(certs, node_id, ca_dir=certs, now=now)
    peer = CountingPeer()
    app = web.Application(client_max_size=1 << 24)
    app.router.add_post(protocol.TRANSACTION_PATH, peer.transaction)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0,
                       ssl_context=server_context(certs / "be", require_client_cert=True))
    await site.start()
    port = runner.addresses[0][1]
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    store.db.ride_s = PATIENCE_S  # a rider waits for a plain write, however long we take
    clock = ManualClock(NOW)

    async def no_push(_peer: str) -> None:
        return None

    try:
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=client_context(certs / "nl"))) as session:
            sender = PeerSender(node_id="nl", peer=Peer(id="be", url=f"https://127.0.0.1:{port}"),
                                store=store, session=session,
                                delivery=DeliveryConfig(directory_push_s=3600.0),
                                metrics=NodeMetrics(), directory_push=no_push, clock=clock)
            store.on_queued = lambda hops: [sender.offer(h) for h in hops if h.node == "be"]
            yield Origin(store, sender, peer, clock)
    finally:
        await store.close()
        await runner.cleanup()


async def until(what: Callable[[], bool]) -> None:
    """Bounded polling."""
    async with asyncio.timeout(PATIENCE_S):
        while not what():
            await asyncio.sleep(0.001)


async def queued(store: NodeStore) -> set[bytes]:
    return {row[0] for row in await store.next_batch_skipping("be", 100, now=NOW, skip=())}


async def test_the_next_transaction_starts_while_the_answer_rides_and_sends_nothing_twice(
        origin: Origin) -> None:
    """A is answered; its write rides (not committed). B, offered while A was in flight,
    goes at once (A's slot is free) and alone (A's hop, still queued in the outbox, stays
    claimed); a read of the outbox then finds nothing to send. One plain write's commit
    then records both answers: no commit of their own."""
    store, sender = origin.store, origin.sender
    sender._running = True
    sender.book = sender._in_flight()
    sender._drained, sender._read_at = True, origin.clock.now_ms()
    a = await origin.submit()
    first = await sender._next()
    assert first is not None and first.ids == (a.id,)
    b = await origin.submit()
    assert sender.book.offered == 1 and not sender.book.offers_ready()  # A in flight
    commits, by_kind = store.db.commits, dict(store.db.commits_by)
    sending_a = asyncio.create_task(sender._transact(first))
    await until(lambda: len(store.db._held) == 1 or sending_a.done())
    assert not sending_a.done(), "A's answer was written at once: it does not ride"
    assert not sender.book.batches and first.ticket in sender.book.recording
    assert await queued(store) == {a.id, b.id}  # A's hop is still queued in the outbox

    second = await sender._next()  # B's offer is ready now: nothing is in flight
    assert second is not None and second.ids == (b.id,)
    sending_b = asyncio.create_task(sender._transact(second))
    await until(lambda: len(store.db._held) == 2)

    # A wake (evidence queued, say) makes the next pass read the outbox: both hops are
    # still queued there, both claimed. It finds nothing to send, and waits.
    sender._drained = False
    sender.wake.set()
    reading = asyncio.create_task(sender._next())
    try:
        await until(lambda: sender._drained or reading.done())
        assert not reading.done(), "a hop sent again while its answer was being written"
        assert not sender.book.batches
        assert origin.peer.sent == Counter({a.id: 1, b.id: 1})

        await origin.plain_write()
        await sending_a
        await sending_b
        assert not sender.book.recording
        assert await queued(store) == set()  # both delivered
        assert store.db.commits == commits + 1  # the plain write's commit recorded both
        assert store.db.commits_by.get("EnvelopeStore.finish_hops", 0) == \
            by_kind.get("EnvelopeStore.finish_hops", 0)
        assert store.db.writes_by["EnvelopeStore.finish_hops"] == 2
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading


async def test_a_loop_stopped_while_an_answer_rides_restarts_without_sending_it_again(
        origin: Origin) -> None:
    """The loop's task group is cancelled (a lease lost, a stop) after A's answer, before
    its write commits; the write still ends, and until it has A stays claimed: the loop
    run again reads the outbox, finds A still queued, and does not send it again."""
    store, sender = origin.store, origin.sender
    first_run = asyncio.create_task(sender.run())
    a = await origin.submit()
    await until(lambda: origin.peer.sent[a.id] == 1 and (
        len(store.db._held) == 1 or not (sender.book.batches or sender.book.recording)))
    assert len(store.db._held) == 1, "A's answer was written at once: it does not ride"
    first_run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first_run
    assert [batch.ids for batch in sender.book.recording.values()] == [(a.id,)]

    second_run = asyncio.create_task(sender.run())  # not drained: it reads at once
    try:
        await until(lambda: sender._drained)
        assert not sender.book.batches, "a hop sent again while its answer was being written"
        assert await queued(store) == {a.id}
        await origin.plain_write()  # the ridden write commits; its claim goes
        await until(lambda: not sender.book.recording)
        assert await queued(store) == set()
        b = await origin.submit()  # the loop runs on
        await until(lambda: origin.peer.sent[b.id] == 1)
        assert origin.peer.sent[a.id] == 1
    finally:
        second_run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await second_run


async def test_a_larger_transaction_keeps_its_slot_until_its_answer_is_written(
        origin: Origin) -> None:
    """More than ``RIDE_MAX_ENVELOPES`` envelopes: the answer's write commits at once (its
    commit is spread over them), and the slot is held until then (at saturation that wait
    gathers the next full batch)."""
    store, sender = origin.store, origin.sender
    sender._running = True
    sender.book = sender._in_flight()
    sent = [await origin.submit() for _ in range(RIDE_MAX_ENVELOPES + 1)]
    sender._drained = False  # read them from the outbox, all in one batch
    batch = await sender._next()
    assert batch is not None and set(batch.ids) == {e.id for e in sent}
    own = store.db.commits_by.get("EnvelopeStore.finish_hops", 0)
    sending = asyncio.create_task(sender._transact(batch))
    await until(lambda: sending.done() or len(store.db._held) == 1)
    assert sending.done(), "a larger transaction's answer rode"
    await sending
    assert store.db.commits_by["EnvelopeStore.finish_hops"] == own + 1
    assert not sender.book.batches and not sender.book.recording
    assert await queued(store) == set()


async def test_a_pass_waiting_out_a_backoff_goes_when_a_transaction_succeeds(
        tmp_path: Path) -> None:
    """A catch-up: the peer is back, its call woke the sender and the first transaction
    went; the next pass waited out the rest of the back-off (up to a minute; 0.2-0.9 s in
    the bench's outage, the span of its catch-up). The first transaction's success ends
    the back-off: the waiting pass goes then. A failure after it backs off again."""
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    clock = ManualClock(NOW)

    sender = offline_sender(store, clock)
    try:
        sender.link.attempts, sender.link.next_attempt = 3, NOW + 3_600_000
        waiting = asyncio.create_task(sender._next())  # waits out the back-off
        await asyncio.sleep(0)
        assert not waiting.done()
        await sender._succeeded(sender.book.spell)
        assert await asyncio.wait_for(waiting, PATIENCE_S) is None
        assert sender.link.next_attempt == 0

        # A failure after it starts a back-off that the recovery before does not end.
        sender.link.attempts = 20  # a long one: 30-60 s
        await sender._failed("cannot reach be", malformed=False, spell=sender.book.spell)
        assert sender.link.next_attempt > NOW and not sender.recovered.is_set()
        waiting = asyncio.create_task(sender._next())
        await asyncio.sleep(0)
        assert not waiting.done()
        sender.peer_called_in()  # the peer calls: the back-off ends, as before
        assert await asyncio.wait_for(waiting, PATIENCE_S) is None
    finally:
        await store.close()


async def test_an_answer_whose_write_failed_after_the_loop_stopped_is_read_again(
        origin: Origin) -> None:
    """The write outliving its run failed (the lease was taken over, the disk is full):
    its hops are still queued, so its claims go and the next pass reads the outbox."""
    sender = origin.sender
    a = await origin.submit()
    sender._drained = False
    sender.book.begin_read()
    batch = sender.book.take([(a.id, 0, b"raw")])
    assert batch is not None
    sender.book.answered(batch)
    sender._drained = True
    sender.wake.clear()
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    failed.set_exception(LeaseLost("lease sender:be was taken over"))
    sender._recorded_late(batch, failed)
    assert not sender.book.recording and sender.book.returned == 1
    assert sender.wake.is_set() and not sender._drained
    assert a.id not in sender.book.begin_read()
    sender.book.abandon()


async def test_a_loop_run_again_waits_out_a_backoff_persisted_since_the_link_recovered(
        tmp_path: Path) -> None:
    """The link recovered once (its wake, ``recovered``, stays set until a failure); the
    loop stops (a lease lost) and, run again, finds a back-off persisted meanwhile (by the
    worker that held the peer's lease since). The pass waits it out: with the old recovery
    still set, its wait ended at once, pass after pass, until the back-off was over (a
    loop spinning for up to a minute; review16b)."""
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    clock = ManualClock(NOW)

    sender = offline_sender(store, clock)
    try:
        sender.link.attempts = 2
        await sender._succeeded(sender.book.spell)  # a spell of failures ended
        assert sender.recovered.is_set()
        await store.set_peer_backoff("be", 5, NOW + 3_600_000, "cannot reach be")
        await sender._resume()  # what ``run`` does first
        assert sender.link.next_attempt == NOW + 3_600_000
        waiting = asyncio.create_task(sender._next())
        for _ in range(50):  # loop iterations, not time: the spin ended a pass in a few
            await asyncio.sleep(0)
        assert not waiting.done(), "a pass under the back-off ended at once"
        sender.peer_called_in()  # the peer calls: the back-off ends, as before
        assert await asyncio.wait_for(waiting, PATIENCE_S) is None
    finally:
        await store.close()
