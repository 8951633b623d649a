"""Concurrent misses of one key share one read (``store/key_cache.py``): a federation
transaction's envelopes are decided concurrently, so on a node just started (coming back
to a backlog) the first transaction's envelopes all missed at once and each read the same
directory and key rows. Counted: reads, never times. Joining never crosses a key change."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from liaison_net.core import crypto
from liaison_net.store.key_cache import KeyCache
from liaison_net.store.node_store import NodeStore
from liaison_net.store.sqlite import SqliteBackend
from tests.core.factories import NOW
from tests.test_store_key_grace import JAN, _card

CONCURRENT = 64  # lookups of one key at once, as the envelopes of one transaction


async def test_a_transactions_worth_of_lookups_on_a_cold_cache_reads_each_key_once(
        tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    try:
        key = crypto.generate_signing_key()
        card, raw = _card(key, 1)
        assert await store.put_card(card, raw, now=NOW, source="nl")
        reads: list[str] = []
        backend = store.db.backend
        assert isinstance(backend, SqliteBackend)
        reader = backend._reader  # the node's one read connection (aiosqlite)
        assert reader is not None
        await reader.set_trace_callback(reads.append)
        signers, officers = await asyncio.gather(
            asyncio.gather(*(store.keys.signer(key.key_id, now=NOW)
                             for _ in range(CONCURRENT))),
            asyncio.gather(*(store.officer_keys(JAN) for _ in range(CONCURRENT))))
        assert all(s is not None for s in signers)
        assert set(officers) == {(key.public, card.encryption_public)}
        # One read per key looked up (a signer is two: its key, its revocation), not
        # one per lookup: without the shared read, 3 x 64.
        assert len(reads) == 3, reads
        await store.officer_keys(JAN)
        assert len(reads) == 3  # and stored: the next lookup reads nothing
    finally:
        await store.close()


async def test_a_lookup_does_not_join_a_read_begun_before_a_key_change() -> None:
    cache = KeyCache()
    release = asyncio.Event()
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        mine = f"v{loads}"
        if loads == 1:
            await release.wait()  # the first read is still out when the change commits
        return mine

    first = asyncio.create_task(cache.get("k", load))
    await asyncio.sleep(0)  # its read is out
    cache.begin_change()
    during = await cache.get("k", load)  # while the change is written: its own read
    cache.end_change()
    after = await cache.get("k", load)  # after it: its own read, not the first one's
    release.set()
    assert await first == "v1"
    assert (during, after) == ("v2", "v3")
    assert await cache.get("k", load) == "v3"  # the read after the change was stored


async def test_waiters_read_for_themselves_when_the_read_they_joined_is_cancelled() -> None:
    cache = KeyCache()
    started = asyncio.Event()
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        if loads == 1:
            started.set()
            await asyncio.Event().wait()  # never answers: its caller is cancelled
        return "read again"

    leader = asyncio.create_task(cache.get("k", load))
    await started.wait()
    waiter = asyncio.create_task(cache.get("k", load))
    await asyncio.sleep(0)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await waiter == "read again"
    assert loads == 2


async def test_a_failed_read_fails_those_that_joined_it_and_is_not_stored() -> None:
    cache = KeyCache()
    go = asyncio.Event()
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        if loads == 1:
            await go.wait()
            raise OSError("disk I/O error")
        return "fine"

    tasks = [asyncio.create_task(cache.get("k", load)) for _ in range(3)]
    await asyncio.sleep(0)
    go.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r) for r in results] == [OSError] * 3
    assert loads == 1
    assert await cache.get("k", load) == "fine"  # nothing stored by the failed read
