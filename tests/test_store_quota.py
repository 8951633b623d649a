"""Storage faults at the store boundary (issue 9): the ``[store] max_db_mb`` quota as SQLite's
``max_page_count``, SQLITE_FULL / ENOSPC mapped to ``StorageFull``, nothing acknowledged
that was not stored, and writes resuming by themselves once space is freed."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from liaison_net.core.audit import detail
from liaison_net.core.limits import HOUR_MS
from liaison_net.errors import StorageFull, Unavailable
from liaison_net.federation.protocol import RETRYABLE_CODES
from liaison_net.store import sqlite
from liaison_net.store.node_store import NodeStore
from liaison_net.store.sqlite import PAGE_SIZE, is_out_of_space, quota_pages
from tests.core.factories import NOW, Officer, seal_from

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")
PAGE = PAGE_SIZE  # a new database's page size


def _sqlite_error(message: str, code: int | None) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    if code is not None:
        exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


def test_quota_is_a_page_count() -> None:
    assert quota_pages(1, 4096) == 256
    assert quota_pages(1, 1024) == 1024
    assert quota_pages(0.5, 4096) == 128
    assert quota_pages(0.000001, 4096) == 1


def test_out_of_space_is_told_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_out_of_space(_sqlite_error("database or disk is full", 13))
    assert is_out_of_space(_sqlite_error("whatever the text", 13))
    assert is_out_of_space(_sqlite_error("database or disk is full", None))
    assert is_out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_out_of_space(_sqlite_error("database is locked", 5))
    assert not is_out_of_space(OSError(errno.EACCES, "Permission denied"))
    assert not is_out_of_space(ValueError("x"))
    io_error = _sqlite_error("disk I/O error", 10 | (3 << 8))  # SQLITE_IOERR_WRITE
    assert not is_out_of_space(io_error, tmp_path)  # plenty of room here
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(sqlite.shutil, "disk_usage",
                        lambda _p: usage._replace(free=4096))
    assert is_out_of_space(io_error, tmp_path)  # the same error on a full filesystem
    assert not is_out_of_space(io_error)  # no directory to look at: not claimed


def test_storage_full_is_a_retryable_503() -> None:
    exc = StorageFull("storage full, nothing stored")
    assert isinstance(exc, Unavailable)
    assert (exc.code, exc.http_status) == ("storage_full", 503)
    assert "storage_full" in RETRYABLE_CODES


async def _accept(store: NodeStore, i: int, size: int = 16_000) -> bytes:
    env = seal_from(ALICE, [BOB], plaintext=bytes([i % 251]) * size, now=NOW + i,
                    expires=NOW + i + HOUR_MS)
    await store.accept(env, now=NOW, actor=ALICE.id, event="envelope.accepted",
                       local_recipients=[], remote_nodes=["be"], audit_detail=detail())
    return env.id


def _ids(path: Path) -> set[bytes]:
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        return {bytes(r[0]) for r in db.execute("SELECT id FROM envelopes")}


def _plant_ballast(path: Path, kib: int) -> None:
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        db.execute("CREATE TABLE ballast (b BLOB)")
        db.executemany("INSERT INTO ballast VALUES (?)", [(b"\0" * 1024,)] * kib)
        db.commit()


def _drop_ballast(path: Path) -> None:
    """Free space as an operator would, from another connection: the ballast's pages go to
    the freelist, where the node's writer reuses them (the file does not shrink)."""
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        db.execute("DROP TABLE ballast")
        db.commit()


def _pages(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        return int(db.execute("PRAGMA page_count").fetchone()[0])


async def _new_store(path: Path) -> None:
    store = NodeStore(path, "nl")
    await store.open()
    await store.close()


async def test_quota_refuses_then_resumes_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    await _new_store(path)
    _plant_ballast(path, 600)
    quota_mb = (_pages(path) * PAGE + 400 * 1024) / (1024 * 1024)  # ~400 KiB of headroom
    store = NodeStore(path, "nl", max_db_mb=quota_mb)
    refused_counts: list[int] = []
    store.db.on_storage_full = refused_counts.append
    await store.open()
    try:
        stored: list[bytes] = []
        with pytest.raises(StorageFull) as caught:
            for i in range(200):
                stored.append(await _accept(store, i))
        assert 5 < len(stored) < 60, len(stored)
        assert "nothing stored" in caught.value.detail
        assert "resumes by itself when space returns" in caught.value.detail
        assert _ids(path) == set(stored)  # every answered write, and nothing else
        assert store.db.storage.full and store.db.storage.last_full_ms is not None
        assert refused_counts and store.db.storage.refused_writes == sum(refused_counts)
        assert _pages(path) * PAGE <= quota_mb * 1024 * 1024 + PAGE
        # Still refused a moment later: it does not heal by itself while space is short.
        with pytest.raises(StorageFull):
            await _accept(store, 1000)
        # Reads keep working; the audit chain has no hole.
        assert await store.queue_depth() == {"be": len(stored)}
        assert (await store.verify_audit())[1] is None

        _drop_ballast(path)
        later = [await _accept(store, 2000 + i) for i in range(10)]
        assert _ids(path) == set(stored) | set(later)
        assert not store.db.storage.full
        assert store.db.storage.last_full_ms is not None  # kept for /healthz
        assert (await store.verify_audit()) == (len(stored) + len(later), None)
    finally:
        await store.close()


async def test_a_full_group_acknowledges_exactly_what_it_stored(tmp_path: Path) -> None:
    """Concurrent writes share group commits: when one group hits the quota, every write
    of that group is refused, and each caller's answer matches the database."""
    path = tmp_path / "n.sqlite3"
    await _new_store(path)
    quota_mb = (_pages(path) * PAGE + 300 * 1024) / (1024 * 1024)
    store = NodeStore(path, "nl", max_db_mb=quota_mb)
    await store.open()
    try:
        async def one(i: int) -> tuple[bytes | None, BaseException | None]:
            try:
                return await _accept(store, i, size=8_000), None
            except Unavailable as exc:
                return None, exc

        results: list[tuple[bytes | None, BaseException | None]] = []
        for wave in range(15):  # 8 at a time: groups of a few writes each
            results += await asyncio.gather(*(one(8 * wave + i) for i in range(8)))
        acked = {eid for eid, _ in results if eid is not None}
        errors: list[Any] = [exc for _, exc in results if exc is not None]
        assert acked and errors
        assert all(isinstance(e, StorageFull) for e in errors)
        assert _ids(path) == acked
        assert (await store.verify_audit()) == (len(acked), None)
    finally:
        await store.close()


async def test_a_database_already_over_its_quota_takes_no_new_pages(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    await _new_store(path)
    _plant_ballast(path, 300)
    store = NodeStore(path, "nl", max_db_mb=0.1)  # far below the current size
    await store.open()
    try:
        with pytest.raises(StorageFull):
            await _accept(store, 1)
        assert _ids(path) == set()
    finally:
        await store.close()
    # Without a quota the same database takes writes again: the limit is the node's own.
    store = NodeStore(path, "nl")
    await store.open()
    try:
        await _accept(store, 2)
        assert len(_ids(path)) == 1
    finally:
        await store.close()
