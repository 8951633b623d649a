"""The group-commit writer runs a whole group on its own thread in one call (issue 16):
write functions run there, off the event loop; one that suspends on anything but its
transaction is refused alone; and a writer cancelled while its thread commits a group
tells the group's callers the truth (committed), never "nothing stored"."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import structlog

from liaison_net.errors import NodeFault
from liaison_net.store.database import WriteTxn
from liaison_net.store.node_store import NodeStore

PATIENCE_S = 60.0  # bounded polling only; a loaded machine may be slow


async def test_a_group_runs_on_the_writer_thread_not_the_event_loop(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    threads: list[str] = []

    async def op(txn: WriteTxn) -> int:
        threads.append(threading.current_thread().name)
        await txn.audit(1, "test.one", "nl", "{}")
        threads.append(threading.current_thread().name)
        row = await (await txn.execute("SELECT COUNT(*) FROM audit")).fetchone()
        return int(row[0])

    try:
        counts = await asyncio.gather(*(store.db.write(op) for _ in range(5)))
        assert sorted(counts)[-1] == 5
        assert len(set(threads)) == 1 and threads[0].startswith("liaison-writer")
        assert threads[0] != threading.current_thread().name
    finally:
        await store.close()


async def test_a_write_that_suspends_on_something_else_is_refused_alone(
        tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()

    async def suspends(txn: WriteTxn) -> None:
        await txn.audit(1, "test.suspends", "nl", "{}")
        await asyncio.sleep(0)  # not a transaction call: a bug in the write function

    async def fine(txn: WriteTxn) -> None:
        await txn.audit(1, "test.fine", "nl", "{}")

    try:
        results = await asyncio.gather(store.db.write(suspends), store.db.write(fine),
                                       return_exceptions=True)
        assert isinstance(results[0], NodeFault) and results[1] is None
        assert [e.event for e in await store.audit_entries()] == ["test.fine"]
    finally:
        await store.close()


async def test_a_writer_cancelled_mid_commit_answers_with_the_groups_true_outcome(
        tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open(writer=False)
    started, release = threading.Event(), threading.Event()

    async def slow(txn: WriteTxn) -> str:
        await txn.audit(1, "test.slow", "nl", "{}")
        started.set()
        release.wait(PATIENCE_S)  # on the writer thread: the loop runs on meanwhile
        return "stored"

    writer = asyncio.create_task(store.db.run_writer())
    write = asyncio.create_task(store.db.write(slow))
    try:
        async with asyncio.timeout(PATIENCE_S):
            while not started.is_set():
                await asyncio.sleep(0.01)
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer
        assert not write.done()  # not told "nothing stored" while the commit is under way
        release.set()
        async with asyncio.timeout(PATIENCE_S):
            assert await write == "stored"
        assert [e.event for e in await store.audit_entries()] == ["test.slow"]
    finally:
        release.set()
        await store.close()


async def test_the_writer_thread_keeps_the_callers_log_context(tmp_path: Path) -> None:
    """Log lines written on the writer thread (a failing write) carry the node's bound
    fields, as on the event loop."""
    structlog.contextvars.bind_contextvars(node="nl")
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()

    async def op(txn: WriteTxn) -> dict[str, object]:
        return structlog.contextvars.get_contextvars()

    try:
        assert (await store.db.write(op)).get("node") == "nl"
    finally:
        structlog.contextvars.unbind_contextvars("node")
        await store.close()
