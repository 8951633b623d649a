"""Early riders (issue 16, lane light16d): riders waiting for a plain write's group are run
at once on the writer thread, in that group's transaction left open, so the plain write
that comes finds only its own SQL and the COMMIT on its path. Nothing of them is visible,
nor durable, before that commit; one commit for all, as before; a group that turns out
not to start with them (a rider cancelled before close) runs from the start. Counted in
commits and in the order writes ran, never in time."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from pathlib import Path

import pytest

from liaison_net import config
from liaison_net.drills.harness import write_node_config
from liaison_net.errors import Conflict
from liaison_net.store import sqlite as sqlite_backend
from liaison_net.store.database import WriteTxn
from liaison_net.store.node_store import NodeStore
from liaison_net.store.sqlite import others_present
from tests.waits import PATIENCE_S


async def _open(tmp_path: Path, *, early: bool = True) -> NodeStore:
    store = NodeStore(tmp_path / "n.sqlite3", "nl", early_riders=early)
    await store.open()
    store.db.ride_s = PATIENCE_S
    return store


def _audits(event: str, ran: list[str]):  # type: ignore[no-untyped-def]
    async def op(txn: WriteTxn) -> str:
        ran.append(event)
        await txn.audit(1, event, "nl", "{}")
        return event
    return op


async def _until(ran: list[str], count: int) -> None:
    """Bounded polling: ``count`` writes have run on the writer thread."""
    async with asyncio.timeout(PATIENCE_S):
        while len(ran) < count:
            await asyncio.sleep(0.001)


async def test_a_waiting_rider_runs_before_the_plain_write_and_commits_with_it(
        tmp_path: Path) -> None:
    store = await _open(tmp_path)
    ran: list[str] = []
    try:
        before = store.db.commits
        rider = asyncio.create_task(store.db.write(_audits("test.rider", ran), rides=True))
        await _until(ran, 1)  # run while it waits: no plain write was queued yet
        assert not rider.done() and store.db.commits == before
        assert await store.audit_entries() == []  # uncommitted: no reader sees it
        assert await store.db.write(_audits("test.plain", ran)) == "test.plain"
        assert await rider == "test.rider"
        assert ran == ["test.rider", "test.plain"]
        assert store.db.commits == before + 1 and store.db.rider_commits == 0
        assert [e.event for e in await store.audit_entries()] == ["test.rider", "test.plain"]
        assert await store.verify_audit() == (2, None)
    finally:
        await store.close()


async def test_riders_queued_meanwhile_run_in_the_same_group(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    ran: list[str] = []
    try:
        before = store.db.commits
        first = asyncio.create_task(store.db.write(_audits("test.r0", ran), rides=True))
        await _until(ran, 1)
        second = asyncio.create_task(store.db.write(_audits("test.r1", ran), rides=True))
        await _until(ran, 2)  # run too while it waits, in the same open group
        await store.db.write(_audits("test.plain", ran))
        assert (await first, await second) == ("test.r0", "test.r1")
        assert ran == ["test.r0", "test.r1", "test.plain"]
        assert store.db.commits == before + 1
        assert await store.verify_audit() == (3, None)
    finally:
        await store.close()


async def test_off_a_rider_waits_unrun(tmp_path: Path) -> None:
    """Without it (PostgreSQL, tests' default stores), a rider runs only in its group."""
    store = await _open(tmp_path, early=False)
    ran: list[str] = []
    try:
        rider = asyncio.create_task(store.db.write(_audits("test.rider", ran), rides=True))
        async with asyncio.timeout(PATIENCE_S):
            while not store.db._held:
                await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)  # a chance to run early, which it must not take
        assert ran == []
        await store.db.write(_audits("test.plain", ran))
        await rider
        assert ran == ["test.rider", "test.plain"]
    finally:
        await store.close()


async def test_a_cancelled_rider_takes_the_open_group_back_at_close(tmp_path: Path) -> None:
    """Close commits only the riders someone stands behind: the open group ran the
    cancelled one too, so it is rolled back and the others run again in a group of their
    own; the cancelled one's entry is nowhere, the chain verifies."""
    store = await _open(tmp_path)
    ran: list[str] = []
    gone = asyncio.create_task(store.db.write(_audits("test.cancelled", ran), rides=True))
    kept = asyncio.create_task(store.db.write(_audits("test.rider", ran), rides=True))
    await _until(ran, 2)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    await store.close()
    assert await kept == "test.rider"
    assert ran == ["test.cancelled", "test.rider", "test.rider"]  # run again, alone
    again = await _open(tmp_path, early=False)
    try:
        assert [e.event for e in await again.audit_entries()] == ["test.rider"]
        assert await again.verify_audit() == (1, None)
    finally:
        await again.close()


def test_a_nodes_sqlite_store_runs_riders_early(tmp_path: Path) -> None:
    """The node's store (``for_config``) on its SQLite file; PostgreSQL keeps them waiting
    unrun (another worker's writes would wait behind the open group's row locks)."""
    path = tmp_path / "nl.toml"
    write_node_config(path, "nl", federation_port=7401, client_port=7501, peers={})
    assert NodeStore.for_config(config.load(path)).db.early_riders


async def test_riders_open_at_close_are_committed_in_their_group(tmp_path: Path) -> None:
    """A clean stop commits the riders someone waits for: the open group is theirs, so it
    is continued (run once each) and committed, one commit."""
    store = await _open(tmp_path)
    ran: list[str] = []
    riders = [asyncio.create_task(store.db.write(_audits(f"test.r{i}", ran), rides=True))
              for i in range(2)]
    await _until(ran, 2)
    before = store.db.commits
    await store.close()
    assert [await r for r in riders] == ["test.r0", "test.r1"]
    assert ran == ["test.r0", "test.r1"] and store.db.commits == before + 1
    again = await _open(tmp_path, early=False)
    try:
        assert [e.event for e in await again.audit_entries()] == ["test.r0", "test.r1"]
        assert await again.verify_audit() == (2, None)
    finally:
        await again.close()


async def test_a_rider_refused_in_the_open_group_is_refused_alone(tmp_path: Path) -> None:
    """A rider that fails in the open group is taken back to its savepoint, as in any
    group: its caller hears the refusal at the commit, the others are stored."""
    store = await _open(tmp_path)
    ran: list[str] = []

    async def refused(txn: WriteTxn) -> str:
        ran.append("test.refused")
        await txn.audit(1, "test.refused", "nl", "{}")
        raise Conflict("refused on purpose")

    try:
        bad = asyncio.create_task(store.db.write(refused, rides=True))
        good = asyncio.create_task(store.db.write(_audits("test.rider", ran), rides=True))
        await _until(ran, 2)
        await store.db.write(_audits("test.plain", ran))
        with pytest.raises(Conflict):
            await bad
        assert await good == "test.rider"
        assert [e.event for e in await store.audit_entries()] == ["test.rider", "test.plain"]
        assert await store.verify_audit() == (2, None)
    finally:
        await store.close()


async def test_another_writer_on_the_file_turns_early_riders_off(tmp_path: Path) -> None:
    """Another connection's commit (a second worker of the node, an admin command) is seen
    at the next group's BEGIN: riders then wait unrun again, since an open group would
    hold that writer's writes behind the lock (two stores on one file, as two workers)."""
    one = await _open(tmp_path)
    ran: list[str] = []
    await one.db.write(_audits("test.own", ran))  # its own commits are not another's
    assert one.db._early_allowed()
    other = await _open(tmp_path, early=False)
    try:
        await other.db.write(_audits("test.other", ran))
        await one.db.write(_audits("test.seen", ran))  # this group's BEGIN sees it
        assert not one.db._early_allowed()
        rider = asyncio.create_task(one.db.write(_audits("test.rider", ran), rides=True))
        async with asyncio.timeout(PATIENCE_S):
            while not one.db._held:
                await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)  # a chance to run early, which it must not take
        assert ran == ["test.own", "test.other", "test.seen"]
        await one.db.write(_audits("test.plain", ran))
        await rider
        assert ran[-2:] == ["test.rider", "test.plain"]
    finally:
        await other.close()
        await one.close()


async def test_another_writer_that_has_not_committed_yet_turns_them_off(
        tmp_path: Path) -> None:
    """A writer that has only opened the file (a worker starting, an admin command) has
    committed nothing a ``data_version`` could show, and its first BEGIN had to catch the
    lock free between two open groups: under a steady load of riders it waited seconds
    or failed at busy_timeout (review16j). Its presence (``<file>-writers``) is seen at
    the next group's BEGIN: that group is not kept open, its riders wait unrun, and the
    other's write goes through before them."""
    one = await _open(tmp_path)
    ran: list[str] = []
    other: NodeStore | None = None
    try:
        await one.db.write(_audits("test.own", ran))
        assert one.db._early_allowed()
        other = await _open(tmp_path, early=False)  # opened: nothing committed
        rider = asyncio.create_task(one.db.write(_audits("test.rider", ran), rides=True))
        async with asyncio.timeout(PATIENCE_S):
            while not one.db._held:
                await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)  # a chance to run early: its BEGIN sees the other
        assert ran == ["test.own"] and not one.db._early_allowed()
        await other.db.write(_audits("test.other", ran))  # the lock is free: no wait
        assert not rider.done()  # ride_s is PATIENCE_S: the rider's group is still to come
        await one.db.write(_audits("test.plain", ran))
        await rider
        assert ran == ["test.own", "test.other", "test.rider", "test.plain"]
        assert await one.verify_audit() == (4, None)
    finally:
        if other is not None:
            await other.close()
        await one.close()


async def test_a_writer_that_does_not_announce_itself_is_seen_by_its_commit(
        tmp_path: Path) -> None:
    """A writer without the presence lock (the sqlite3 shell, an older build) is seen by
    what it committed (``data_version`` at the next group's BEGIN): early riders go off.
    The other tests' second store announces itself, so they pass on presence alone."""
    one = await _open(tmp_path)
    ran: list[str] = []
    try:
        await one.db.write(_audits("test.own", ran))
        assert one.db._early_allowed()
        raw = sqlite3.connect(tmp_path / "n.sqlite3", isolation_level=None)
        try:
            raw.execute("PRAGMA user_version = 1")  # a commit of its own, no row of ours
        finally:
            raw.close()
        assert one.db._early_allowed()  # not seen until a group begins
        await one.db.write(_audits("test.seen", ran))
        assert not one.db._early_allowed()
    finally:
        await one.close()


async def test_a_writer_that_left_is_not_seen(tmp_path: Path) -> None:
    """The presence lock goes with the writer's connection: a writer that closed (or
    was killed: the kernel drops it) is no longer seen."""
    one = await _open(tmp_path)
    other = await _open(tmp_path, early=False)
    try:
        presence = one.db.backend._presence  # type: ignore[attr-defined]
        assert presence is not None and others_present(presence)
        await other.close()
        assert not others_present(presence)
    finally:
        await other.close()
        await one.close()


async def test_a_writers_file_it_cannot_open_does_not_keep_the_store_closed(
        tmp_path: Path) -> None:
    """``<file>-writers`` left unopenable (made by a command run as another user, say):
    the store opens and writes all the same, without the presence lock."""
    (tmp_path / "n.sqlite3-writers").mkdir()  # not a file: opening it fails as EACCES would
    store = await _open(tmp_path)
    try:
        assert store.db.backend._presence is None  # type: ignore[attr-defined]
        ran: list[str] = []
        assert await store.db.write(_audits("test.plain", ran)) == "test.plain"
    finally:
        await store.close()


async def test_a_filesystem_without_flock_does_not_keep_the_store_closed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``flock`` refused (ENOLCK: a network filesystem without a lock daemon): the store
    opens and writes without the presence lock, as when ``<file>-writers`` cannot be
    opened; a presence that cannot be asked counts as another writer (riders not early).
    The kernel's refusal is made here (``fcntl`` is the operating system's, not ours)."""

    def refused(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(sqlite_backend.fcntl, "flock", refused)
    store = await _open(tmp_path)
    try:
        assert store.db.backend._presence is None  # type: ignore[attr-defined]
        ran: list[str] = []
        assert await store.db.write(_audits("test.plain", ran)) == "test.plain"
        with open(tmp_path / "n.sqlite3-writers", "rb") as held:
            assert others_present(held.fileno())
    finally:
        await store.close()
