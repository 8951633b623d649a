"""Several workers of one node on one database (issue 17), at the store: the sender lease
(takeover, fencing: a stale holder's answers change nothing), the inbox read by seq that
lets every worker's live streams see what another worker committed, the jobs every worker
runs side by side (effects drain, expiry and retention sweeps) doing each thing once, and
the key epoch that tells a worker its cached keys are stale. Two ``NodeStore`` objects on
one real SQLite file, each with its own connections and writer thread, stand for two
worker processes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from liaison_net.core import crypto
from liaison_net.core.almanac import Almanac
from liaison_net.core.audit import detail
from liaison_net.core.identity import EnrolmentRequest, issue_card, verify_card
from liaison_net.core.limits import DAY_MS, HOUR_MS
from liaison_net.errors import LeaseLost
from liaison_net.officer_api.inbox_stream import InboxTail, InboxWatch
from liaison_net.services.worker_sync import KeyEpochWatch
from liaison_net.store.effect_store import Issued, PendingEffect
from liaison_net.store.lease_store import sender_lease
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, seal_from
from tests.waits import PATIENCE_S

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")
NODE = Officer("nl/desk")  # stands in for the node, which seals notices
LEASE = sender_lease("be")
TTL = 10_000


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[tuple[NodeStore, NodeStore]]:
    a = NodeStore(tmp_path / "n.sqlite3", "nl")
    b = NodeStore(tmp_path / "n.sqlite3", "nl")
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def _queue_for_be(store: NodeStore, n: int) -> list[bytes]:
    ids = []
    for i in range(n):
        env = seal_from(ALICE, [BOB], now=NOW + i, expires=NOW + i + HOUR_MS)
        await store.accept(env, now=NOW, actor=ALICE.id, event="envelope.accepted",
                           local_recipients=[], remote_nodes=["be"], audit_detail=detail())
        ids.append(env.id)
    return ids


def _hop_states(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM hops GROUP BY state").fetchall())


async def test_one_holder_at_a_time_and_a_takeover_raises_the_token(
        workers: tuple[NodeStore, NodeStore]) -> None:
    a, b = workers
    fence_a = await a.acquire_lease(LEASE, "worker-a", now=NOW, ttl_ms=TTL)
    assert fence_a is not None and fence_a.token == 1
    # Held and not expired: the other worker waits; the holder keeps its token.
    assert await b.acquire_lease(LEASE, "worker-b", now=NOW + TTL - 1, ttl_ms=TTL) is None
    assert await a.acquire_lease(LEASE, "worker-a", now=NOW + 1, ttl_ms=TTL) == fence_a
    assert await a.renew_lease(fence_a, now=NOW + 2, ttl_ms=TTL)
    # Expired unrenewed (the holder died): taken over, with a higher token.
    fence_b = await b.acquire_lease(LEASE, "worker-b", now=NOW + 2 + TTL, ttl_ms=TTL)
    assert fence_b is not None and fence_b.token == 2
    # The old holder cannot renew, nor take it back while it is valid.
    assert not await a.renew_lease(fence_a, now=NOW + 3 + TTL, ttl_ms=TTL)
    assert await a.acquire_lease(LEASE, "worker-a", now=NOW + 3 + TTL, ttl_ms=TTL) is None
    # A clean stop gives it up: the next holder takes it at once, with a higher token still.
    await b.release_lease(fence_b)
    again = await a.acquire_lease(LEASE, "worker-a", now=NOW + 4 + TTL, ttl_ms=TTL)
    assert again is not None and again.token == 3
    assert await b.leases() == [(LEASE, "worker-a", 3, NOW + 4 + 2 * TTL)]


async def test_a_restarted_worker_takes_its_dead_lives_lease_back_at_once(
        workers: tuple[NodeStore, NodeStore]) -> None:
    """A single-worker node killed and restarted does not wait out ``lease_s``: a holder
    under its own prefix (same host and listener) is an earlier life of it. Another
    worker's prefix changes nothing."""
    a, b = workers
    dead = await a.acquire_lease(LEASE, "host/127.0.0.1:7402/100/aa", now=NOW, ttl_ms=TTL)
    assert dead is not None
    assert await b.acquire_lease(LEASE, "host/127.0.0.1:7412/200/bb", now=NOW + 1,
                                 ttl_ms=TTL, former_self="host/127.0.0.1:7412/") is None
    again = await b.acquire_lease(LEASE, "host/127.0.0.1:7402/300/cc", now=NOW + 1,
                                  ttl_ms=TTL, former_self="host/127.0.0.1:7402/")
    assert again is not None and again.token == dead.token + 1
    assert not await a.renew_lease(dead, now=NOW + 2, ttl_ms=TTL)


async def test_a_stale_holders_answers_change_nothing(workers: tuple[NodeStore, NodeStore],
                                                      tmp_path: Path) -> None:
    """Worker A sent a transaction, paused past its lease; B took over. A's record of the
    peer's answers is refused whole (LeaseLost): no hop moves, no audit entry, no notice
    owed; B, the holder, records the same answers."""
    a, b = workers
    ids = await _queue_for_be(a, 3)
    fence_a = await a.acquire_lease(LEASE, "worker-a", now=NOW, ttl_ms=TTL)
    fence_b = await b.acquire_lease(LEASE, "worker-b", now=NOW + TTL, ttl_ms=TTL)
    assert fence_a is not None and fence_b is not None
    audit_before = (await a.verify_audit())[0]
    effects_before = await a.effects.pending()

    with pytest.raises(LeaseLost):
        await a.finish_hops("be", now=NOW + TTL, delivered=ids[:2],
                            refused=[(ids[2], "policy")], fence=fence_a)
    assert _hop_states(tmp_path / "n.sqlite3") == {"queued": 3}
    assert (await a.verify_audit()) == (audit_before, None)
    assert await a.effects.pending() == effects_before

    await b.finish_hops("be", now=NOW + TTL, delivered=ids[:2],
                        refused=[(ids[2], "policy")], fence=fence_b)
    assert _hop_states(tmp_path / "n.sqlite3") == {"delivered": 2, "refused": 1}
    assert (await b.verify_audit()) == (audit_before + 3, None)  # one chain, both workers


async def test_the_holders_fence_passes_even_past_expiry_until_a_takeover(
        workers: tuple[NodeStore, NodeStore]) -> None:
    """Fencing is by token, not by clock: an expired lease nobody took over still lets its
    holder record answers (no one else sends); the takeover is what fences it off."""
    a, b = workers
    ids = await _queue_for_be(a, 2)
    fence_a = await a.acquire_lease(LEASE, "worker-a", now=NOW, ttl_ms=TTL)
    assert fence_a is not None
    await a.finish_hops("be", now=NOW + 2 * TTL, delivered=ids[:1], refused=[],
                        fence=fence_a)
    assert await b.acquire_lease(LEASE, "worker-b", now=NOW + 2 * TTL, ttl_ms=TTL)
    with pytest.raises(LeaseLost):
        await a.finish_hops("be", now=NOW + 2 * TTL, delivered=ids[1:], refused=[],
                            fence=fence_a)


async def test_inbox_reads_by_seq_see_the_other_workers_commits(
        workers: tuple[NodeStore, NodeStore]) -> None:
    """B's tail wakes B's stream waiters for entries A committed (A's own ``on_inbox``
    hook never reaches B), from B's last seen seq, no entry missed."""
    a, b = workers
    watch = InboxWatch()
    tail = InboxTail(head=b.inbox_head,
                     after=lambda seq: b.inbox_officers_after(seq, limit=2),
                     watch=watch, interval_s=0.01)
    carol = Officer("be/cdupont")
    async with asyncio.TaskGroup() as tasks:
        running = tasks.create_task(tail.run())
        bob_wakes, carol_wakes = watch.waiter(BOB.id), watch.waiter(carol.id)
        for i, officer in enumerate([BOB, BOB, BOB, carol]):  # more than one page
            env = seal_from(ALICE, [officer], now=NOW + i)
            await a.accept(env, now=NOW, actor="nl", event="envelope.delivered_to_inbox",
                           local_recipients=[officer.id], remote_nodes=[],
                           audit_detail=detail())
        async with asyncio.timeout(PATIENCE_S):
            await bob_wakes.wait()
            await carol_wakes.wait()
        running.cancel()
    assert await b.inbox_officers_after(0, limit=10) == (4, sorted([BOB.id, carol.id]))
    assert await b.inbox_officers_after(4, limit=10) == (4, [])
    assert [item.seq for item in await b.inbox(BOB.id, after=0, limit=10)] == [1, 2, 3]


async def test_two_drains_issue_an_effect_once(workers: tuple[NodeStore, NodeStore]) -> None:
    """Both workers run the effects drain. Each reads the same owed notice and seals its
    own copy; the write that stores a copy deletes the effect row, so only one is stored
    (the other is told ``False`` and stores nothing). Plain SQL with no lock of its own:
on PostgreSQL the second DELETE waits for the first and then finds no row."""
    a, b = workers
    ids = await _queue_for_be(a, 1)
    fence = await a.acquire_lease(LEASE, "worker-a", now=NOW, ttl_ms=TTL)
    await a.finish_hops("be", now=NOW, delivered=[], refused=[(ids[0], "policy")],
                        fence=fence)
    due_a, due_b = await a.effects.due(NOW + HOUR_MS, 10), await b.effects.due(NOW + HOUR_MS, 10)
    assert len(due_a) == 1 and due_a == due_b

    def issued(effect: PendingEffect, text: bytes) -> Issued:
        notice = seal_from(NODE, [ALICE], text)
        return Issued(effect=effect, envelope=notice, now=NOW, event="notice.issued",
                      local=[ALICE.id], remote=[], audit_detail=detail())

    outcomes = await asyncio.gather(a.complete_effects([issued(due_a[0], b"copy a")]),
                                    b.complete_effects([issued(due_b[0], b"copy b")]))
    assert sorted(done for [done] in outcomes) == [False, True]
    assert await a.effects.pending() == 0
    assert await a.inbox_count(ALICE.id) == 1


async def test_two_sweeps_expire_and_purge_each_envelope_once(
        workers: tuple[NodeStore, NodeStore], tmp_path: Path) -> None:
    """Both workers run the expiry and the retention sweeps at the same moment: each
    selects inside its own write transaction, so every hop expires once (one notice owed
    each) and every envelope is purged once (one audit entry each)."""
    a, b = workers
    ids = await _queue_for_be(a, 5)
    past_expiry = NOW + 2 * HOUR_MS
    expired = await asyncio.gather(a.expire_due(past_expiry), b.expire_due(past_expiry))
    assert sorted(eid for batch in expired for eid, _, _ in batch) == sorted(ids)
    assert _hop_states(tmp_path / "n.sqlite3") == {"expired": 5}
    assert await a.effects.pending() == 5

    past_retention = NOW + 91 * 24 * HOUR_MS
    purged = await asyncio.gather(a.retention.purge_due(past_retention),
                                  b.retention.purge_due(past_retention))
    assert sum(purged) == 5
    with sqlite3.connect(tmp_path / "n.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM audit_named WHERE event = 'envelope.purged'"
                          ).fetchone()[0] == 5
    assert (await a.verify_audit())[1] is None


async def test_a_key_change_by_one_worker_reaches_the_others_cache(
        workers: tuple[NodeStore, NodeStore]) -> None:
    """Worker B cached an officer's keys; worker A stores the officer's rotated card. The
    key epoch moves in A's write, and B, seeing it move, drops its cache: its next lookup
    has the new key (without that, B would keep the old one)."""
    a, b = workers
    node_key = crypto.generate_signing_key()
    old, new = Officer("nl/jdevries"), Officer("nl/jdevries")

    async def enrol(store: NodeStore, officer: Officer, version: int) -> None:
        raw = issue_card(EnrolmentRequest(officer.id, "N", "r", officer.signing.public,
                                          officer.encryption.public, Almanac()),
                         node_id="nl", node_key=node_key, version=version, now=NOW,
                         valid_for_ms=DAY_MS)
        card = verify_card(raw, node_public=node_key.public, node_id="nl", now=None)
        assert await store.put_card(card, raw, now=NOW, source="nl")

    reloads = 0
    reloaded = asyncio.Event()

    async def reload() -> None:
        nonlocal reloads
        reloads += 1
        b.forget_cached_keys()
        reloaded.set()

    watch = KeyEpochWatch(read_epoch=b.key_epoch, reload=reload, interval_s=0.01)
    await enrol(a, old, 1)
    async with asyncio.TaskGroup() as tasks:
        watching = tasks.create_task(watch.run())
        assert (await b.officer_keys(old.id) or (b"",))[0] == old.signing.public  # cached
        await asyncio.sleep(0.1)  # the watch looks several times: nothing moved
        assert reloads == 0
        await enrol(a, new, 2)
        async with asyncio.timeout(PATIENCE_S):
            await reloaded.wait()
        watching.cancel()
    assert (await b.officer_keys(old.id) or (b"",))[0] == new.signing.public
