"""The "no restriction applied here yet" shortcut (``RestrictionStore.about``) must not be
set by a lookup that read the table before the node's first update was applied and came
back after: that lookup would have turned every later check of a recall or restriction
off until a restart. This is the catch-up case: after a start, the first federation
transactions are decided concurrently, and the one carrying an update commits while the
others' first lookups are still out.

Real SQLite, the real writer and reader threads; the order is forced with thread events
(the writer holds its group open until the reader has run the lookup's read), never with
sleeps."""

from __future__ import annotations

import asyncio
import functools
import threading
from pathlib import Path

from liaison_net.core.effects import Effect
from liaison_net.core.envelope import Kind
from liaison_net.core.restriction import Update, check_update
from liaison_net.store.database import WriteTxn
from liaison_net.store.node_store import NodeStore
from liaison_net.store.sqlite import SqliteBackend
from tests.test_store_restrictions import MARIE, ORIGINAL, _receive, _update
from tests.waits import PATIENCE_S


async def test_a_lookup_out_while_the_first_update_is_applied_does_not_hide_it(
        tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "be.sqlite3", "be")
    await store.open()
    try:
        await _receive(store, ORIGINAL)
        recall = _update(Kind.RECALL)
        update = check_update(recall.header, ORIGINAL.header)
        backend = store.db.backend
        assert isinstance(backend, SqliteBackend)
        reader = backend._reader  # the node's read connection (aiosqlite)
        assert reader is not None
        read = threading.Event()  # the lookup's read ran (on the reader thread)
        inside, go, applied = threading.Event(), threading.Event(), threading.Event()
        await reader.set_trace_callback(
            lambda sql: read.set() if "FROM restrictions" in sql else None)

        async def applying(txn: WriteTxn, *, update: Update, now: int) -> list[Effect]:
            # On the writer thread, inside the group that accepts the recall.
            inside.set()
            assert go.wait(PATIENCE_S)
            effects = await store.restrictions.apply_in(txn, update, now=now)
            applied.set()
            assert read.wait(PATIENCE_S)  # not committed before the lookup's read ran
            return effects

        then = functools.partial(applying, update=update, now=recall.header.created)
        accepting = asyncio.create_task(store.accept(
            recall, now=recall.header.created, actor="nl",
            event="envelope.delivered_to_inbox", local_recipients=[MARIE.id],
            remote_nodes=[], audit_detail="{}", received=True, then=then))
        async with asyncio.timeout(PATIENCE_S):
            while not inside.is_set():  # the writer thread holds the recall's group open
                await asyncio.sleep(0.001)
        lookup = asyncio.create_task(store.restrictions.about([ORIGINAL.id]))
        await asyncio.sleep(0)  # the lookup has found no answer kept, and its read is out
        go.set()
        # The event loop waits here (blocked) until the update is applied, so the lookup
        # comes back only after that: the order that hid the update.
        assert applied.wait(PATIENCE_S)
        assert await lookup == []  # read before the recall committed: nothing yet
        assert not (await accepting).duplicate
        assert [u.id for u in await store.restrictions.about([ORIGINAL.id])] == [recall.id]
    finally:
        await store.close()


async def test_a_transactions_worth_of_first_lookups_reads_once(tmp_path: Path) -> None:
    """On a start, a transaction's envelopes all ask at once: one read answers them all
    (it was one per envelope: 256 reads for a restarted node's first transaction)."""
    store = NodeStore(tmp_path / "be.sqlite3", "be")
    await store.open()
    try:
        backend = store.db.backend
        assert isinstance(backend, SqliteBackend)
        reader = backend._reader
        assert reader is not None
        reads: list[str] = []
        await reader.set_trace_callback(
            lambda sql: reads.append(sql) if "FROM restrictions" in sql else None)
        answers = await asyncio.gather(*(store.restrictions.about([ORIGINAL.id])
                                         for _ in range(64)))
        assert answers == [[]] * 64
        assert len(reads) == 1, reads
        assert await store.restrictions.count_of(ORIGINAL.id) == 0
        assert len(reads) == 1  # known from then on
    finally:
        await store.close()
