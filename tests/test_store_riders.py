"""Riders (issue 16, lane commits16): a write no one is answered on (``rides=True``: the
drain storing what it issued, the sender recording a small transaction's outcome) joins the
next group a plain write starts instead of paying a commit (an fsync) of its own; alone, it
commits after ``ride_s``; it is as durable as any write once its await returns; a writer
closed while it waits answers it "nothing stored". Counted in commits, never in time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from liaison_net.errors import Unavailable
from liaison_net.store.database import RIDE_MAX_ENVELOPES, WriteTxn
from liaison_net.store.node_store import NodeStore
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


async def test_a_rider_held_at_close_is_told_nothing_was_stored(tmp_path: Path) -> None:
    store = await _open(tmp_path, ride_s=PATIENCE_S)
    rider = asyncio.create_task(store.db.write(_audits("test.rider"), rides=True))
    await _until_held(store)
    await store.close()
    with pytest.raises(Unavailable):
        await rider
    again = await _open(tmp_path, ride_s=0.01)
    try:
        assert await again.audit_entries() == []
    finally:
        await again.close()


async def test_a_small_transactions_outcome_rides_a_large_ones_does_not(
        tmp_path: Path) -> None:
    store = await _open(tmp_path, ride_s=PATIENCE_S)
    try:
        before = store.db.commits
        small = asyncio.create_task(store.finish_hops(
            "be", now=1, delivered=[bytes([i]) * 16 for i in range(RIDE_MAX_ENVELOPES)],
            refused=[]))
        await _until_held(store)
        assert not small.done()
        # A large one does not wait: it starts a group, and the small one rides in it.
        await store.finish_hops(
            "be", now=1, delivered=[bytes([i]) * 16 for i in range(RIDE_MAX_ENVELOPES + 1)],
            refused=[])
        assert await small == []
        assert store.db.commits == before + 1
        assert store.db.commits_by == {"EnvelopeStore.finish_hops": 1}
        assert store.db.writes_by == {"EnvelopeStore.finish_hops": 2}
    finally:
        await store.close()
