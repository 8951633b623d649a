"""Riders (issue 16, lane commits16): a write no one is answered on (``rides=True``: the
effect drain storing the few envelopes it issued, the sender recording a small
transaction's outcome once it is over, lane release16) joins the
next group a plain write starts instead of paying a commit (an fsync) of its own; alone, it
commits after ``ride_s``; it is as durable as any write once its await returns; a writer
closed while it waits answers it "nothing stored". Counted in commits, never in time."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import pytest

from liaison_net.bench.scenarios import QUICK
from liaison_net.clock import ManualClock
from liaison_net.errors import Unavailable
from liaison_net.store.database import RIDE_S, WriteTxn
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, seal_from
from tests.test_effects import ALICE, BOB, _accept_at_origin, _count, _drain, _enrol
from tests.waits import PATIENCE_S


async def _open(tmp_path: Path, ride_s: float) -> NodeStore:
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    store.db.ride_s = ride_s
    return store


def _audits(event: str):  # type: ignore[no-untyped-def]
    async def op(txn: WriteTxn) -> str:
        await txn.audit(1, event, "nl", "{}")
        return event
    return op


async def _until_held(store: NodeStore, count: int = 1) -> None:
    """Bounded polling: the writer holds ``count`` riders, waiting for a plain write."""
    async with asyncio.timeout(PATIENCE_S):
        while len(store.db._held) < count:
            await asyncio.sleep(0.001)


async def test_a_rider_joins_the_next_plain_writes_commit(tmp_path: Path) -> None:
    store = await _open(tmp_path, ride_s=PATIENCE_S)
    try:
        before = store.db.commits
        rider = asyncio.create_task(store.db.write(_audits("test.rider"), rides=True))
        await _until_held(store)
        assert not rider.done() and store.db.commits == before  # waiting, not committed
        assert await store.db.write(_audits("test.plain")) == "test.plain"
        assert await rider == "test.rider"
        assert store.db.commits == before + 1  # one fsync for both
        assert store.db.rider_commits == 0
        assert sorted(e.event for e in await store.audit_entries()) == [
            "test.plain", "test.rider"]
    finally:
        await store.close()


async def test_a_rider_alone_commits_after_its_wait(tmp_path: Path) -> None:
    store = await _open(tmp_path, ride_s=0.01)
    try:
        before = store.db.commits
        results = await asyncio.gather(*(store.db.write(_audits(f"test.r{i}"), rides=True)
                                         for i in range(3)))
        assert results == ["test.r0", "test.r1", "test.r2"]
        assert store.db.commits == before + 1 and store.db.rider_commits == 1
        assert len(await store.audit_entries()) == 3
    finally:
        await store.close()


async def test_a_rider_held_at_close_is_committed_then(tmp_path: Path) -> None:
    """A clean stop must not leave a rider's record to be redone after the restart (a
    sender's answered hops would be sent again); a plain write still queued is failed."""
    store = await _open(tmp_path, ride_s=PATIENCE_S)
    rider = asyncio.create_task(store.db.write(_audits("test.rider"), rides=True))
    await _until_held(store)
    commits = store.db.commits
    await store.close()
    assert await rider == "test.rider"
    assert store.db.commits == commits + 1
    again = await _open(tmp_path, ride_s=0.01)
    try:
        assert [e.event for e in await again.audit_entries()] == ["test.rider"]
    finally:
        await again.close()


async def test_at_a_nodes_stop_riders_commit_and_plain_writes_are_refused(
        tmp_path: Path) -> None:
    """As in a node: its supervised writer is cancelled before the store closes, so
    whatever is still queued then was never run. The rider commits; the plain write, whose
    caller was answered nothing, is told nothing was stored."""
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open(writer=False)
    plain = asyncio.create_task(store.db.write(_audits("test.plain")))
    rider = asyncio.create_task(store.db.write(_audits("test.rider"), rides=True))
    async with asyncio.timeout(PATIENCE_S):
        while store.db._queue.qsize() < 2:
            await asyncio.sleep(0.001)
    await store.close()
    assert await rider == "test.rider"
    with pytest.raises(Unavailable):
        await plain
    again = await _open(tmp_path, ride_s=0.01)
    try:
        assert [e.event for e in await again.audit_entries()] == ["test.rider"]
    finally:
        await again.close()


async def test_the_drains_write_rides_on_the_next_accept(tmp_path: Path) -> None:
    """At a light load the drain's write (the "accepted" evidence issued, its effect row
    deleted) paid a commit of its own; now it is stored by the next accept's commit."""
    store = await _open(tmp_path, ride_s=PATIENCE_S)
    try:
        await _enrol(store, ALICE)
        assert not await _accept_at_origin(store, seal_from(ALICE, [BOB]), [])
        before = store.db.commits
        drain = asyncio.create_task(_drain(store, ManualClock(NOW + 1000)).drain_once())
        await _until_held(store)
        assert not drain.done() and await store.effects.pending() == 1
        assert not await _accept_at_origin(store, seal_from(ALICE, [BOB], b"next"), [])
        assert await drain == 1
        assert store.db.commits == before + 1  # the accept's commit stored the evidence too
        assert _count(tmp_path / "n.sqlite3",
                      "SELECT COUNT(*) FROM audit_named WHERE event = 'evidence.issued'") == 1
        assert store.db.commits_by["EnvelopeStore.accept"] == 2
        assert store.db.writes_by["EnvelopeStore.complete_effects"] == 1
    finally:
        await store.close()


async def test_an_outcome_rides_only_when_the_sender_asks(tmp_path: Path) -> None:
    """``finish_hops`` commits at once unless the sender asks it to ride (lane release16: a
    small transaction's outcome, whose ids the sender keeps claimed until it is written;
    tests/test_sender_release.py). A large one, or one the peer's back-off follows, does
    not ride."""
    store = await _open(tmp_path, ride_s=PATIENCE_S)
    try:
        before = store.db.commits
        await store.finish_hops("be", now=1, delivered=[b"x" * 16], refused=[])
        assert store.db.commits == before + 1 and store.db.rider_commits == 0
        riding = asyncio.create_task(store.finish_hops("be", now=1, delivered=[b"y" * 16],
                                                       refused=[], rides=True))
        await _until_held(store)
        assert not riding.done() and store.db.commits == before + 1
        assert await store.db.write(_audits("test.plain")) == "test.plain"
        assert await riding == []
        assert store.db.commits == before + 2
    finally:
        await store.close()


async def test_one_hand_off_to_the_writer_thread_per_group(tmp_path: Path) -> None:
    """Issue 16 item 1: a group's SQL (BEGIN, every write, COMMIT) runs in the writer
    thread in one call, so a commit costs one hand-off there and one back (the future's
    result), however many writes and statements it holds."""
    store = await _open(tmp_path, ride_s=PATIENCE_S)
    pool = store.db._thread
    assert pool is not None
    calls: list[object] = []
    submit = pool.submit

    def counted(fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(fn)
        return submit(fn, *args, **kwargs)

    pool.submit = counted  # type: ignore[method-assign]
    try:
        before = store.db.commits
        riders = [asyncio.create_task(store.db.write(_audits(f"test.r{i}"), rides=True))
                  for i in range(3)]
        await _until_held(store, 3)
        await asyncio.gather(*(store.db.write(_audits(f"test.p{i}")) for i in range(5)))
        await asyncio.gather(*riders)
        commits = store.db.commits - before
        assert commits >= 1 and len(calls) == commits
        assert len(await store.audit_entries()) == 8
    finally:
        pool.submit = submit  # type: ignore[method-assign]
        await store.close()


async def test_a_rider_whose_caller_was_cancelled_is_not_committed_at_close(
        tmp_path: Path) -> None:
    """Review16c: close commits the riders someone still stands behind, not the write of a
    caller that was cancelled while it waited (its caller will redo what it records)."""
    store = await _open(tmp_path, ride_s=PATIENCE_S)
    gone = asyncio.create_task(store.db.write(_audits("test.cancelled"), rides=True))
    kept = asyncio.create_task(store.db.write(_audits("test.rider"), rides=True))
    await _until_held(store, 2)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    await store.close()
    assert await kept == "test.rider"
    again = await _open(tmp_path, ride_s=0.01)
    try:
        assert [e.event for e in await again.audit_entries()] == ["test.rider"]
    finally:
        await again.close()


async def test_a_second_close_finds_nothing_to_commit(tmp_path: Path) -> None:
    """Review16c: riders queued after a close are refused at ``write``; a second close
    does not reach for the writer thread it stopped."""
    store = await _open(tmp_path, ride_s=PATIENCE_S)
    rider = asyncio.create_task(store.db.write(_audits("test.rider"), rides=True))
    await _until_held(store)
    await store.close()
    assert await rider == "test.rider"
    with pytest.raises(Unavailable):
        await store.db.write(_audits("test.late"), rides=True)
    await store.close()
    assert store.db._held == [] and store.db._queue.empty()


async def test_close_during_a_group_commits_it_and_then_the_riders(tmp_path: Path) -> None:
    """Review16c: the writer cancelled while a group runs on its thread: that group's caller
    gets its true outcome, and a rider queued meanwhile commits after it, once each."""
    store = await _open(tmp_path, ride_s=PATIENCE_S)
    running, release = threading.Event(), threading.Event()

    async def slow(txn: WriteTxn) -> str:
        running.set()
        release.wait(PATIENCE_S)  # on the writer thread: holds the group open
        await txn.audit(1, "test.plain", "nl", "{}")
        return "test.plain"

    plain = asyncio.create_task(store.db.write(slow))
    async with asyncio.timeout(PATIENCE_S):
        while not running.is_set():
            await asyncio.sleep(0.001)
    rider = asyncio.create_task(store.db.write(_audits("test.rider"), rides=True))
    async with asyncio.timeout(PATIENCE_S):
        while store.db._queue.empty():
            await asyncio.sleep(0.001)
    closing = asyncio.create_task(store.close())
    async with asyncio.timeout(PATIENCE_S):  # the writer task stopped, its group running
        while store.db._task is not None:
            await asyncio.sleep(0.001)
    assert not plain.done()
    release.set()
    await closing
    assert (await plain, await rider) == ("test.plain", "test.rider")
    again = await _open(tmp_path, ride_s=0.01)
    try:
        assert [e.event for e in await again.audit_entries()] == ["test.plain", "test.rider"]
    finally:
        await again.close()


async def test_a_close_cancelled_while_riders_commit_still_answers_and_stops(
        tmp_path: Path) -> None:
    """Review16c: close cancelled while its last group of riders runs (a second stop, a
    test's timeout): the plain writes still queued are answered "nothing stored" all the
    same, the riders get their true outcome, and the writer thread is stopped."""
    store = await _open(tmp_path, ride_s=PATIENCE_S)
    running, release = threading.Event(), threading.Event()

    async def slow_rider(txn: WriteTxn) -> str:
        running.set()
        release.wait(PATIENCE_S)  # on the writer thread: holds close's group open
        await txn.audit(1, "test.rider", "nl", "{}")
        return "test.rider"

    rider = asyncio.create_task(store.db.write(slow_rider, rides=True))
    await _until_held(store)
    store.db._task.cancel()  # the writer stops first (as a node's supervisor does) ...
    with contextlib.suppress(asyncio.CancelledError):
        await store.db._task
    store.db._task = None
    plain = asyncio.create_task(store.db.write(_audits("test.plain")))  # ... a write waits
    async with asyncio.timeout(PATIENCE_S):
        while store.db._queue.empty():
            await asyncio.sleep(0.001)
    closing = asyncio.create_task(store.close())
    async with asyncio.timeout(PATIENCE_S):
        while not running.is_set():
            await asyncio.sleep(0.001)
    closing.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await closing
    async with asyncio.timeout(PATIENCE_S):
        with pytest.raises(Unavailable):
            await plain
        assert await rider == "test.rider"
        while store.db._thread is not None:
            await asyncio.sleep(0.001)


def test_a_rider_waits_well_beyond_the_light_loads_gap_between_envelopes() -> None:
    """At 20/s a rider that waited one gap (0.05 s) timed out just as the next envelope
    came, and that envelope's write waited for the riders' own commit (docs/performance.md,
    lane lightp16): the wait must stay several gaps long."""
    assert 4 / QUICK.light_rate <= RIDE_S
    assert NodeStore(Path("unused.sqlite3"), "nl").db.ride_s == RIDE_S
