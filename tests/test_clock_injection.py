"""The store reads the clock it is given, not the host's (issue 13, item 5).

A store opened with a ``ManualClock`` stamps its storage-fault state (shown on /healthz)
with that clock's time, and moves only when the clock is advanced: what a node built with
a drill-shifted clock would show. Real SQLite file, a quota far below its size.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from liaison_net.clock import ManualClock
from liaison_net.core.limits import MINUTE_MS
from liaison_net.errors import StorageFull
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW
from tests.test_store_quota import _accept, _new_store, _plant_ballast


async def test_storage_full_is_stamped_by_the_injected_clock(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    await _new_store(path)
    _plant_ballast(path, 300)
    clock = ManualClock(NOW - 7 * MINUTE_MS)  # nowhere near the host's time
    store = NodeStore(path, "nl", max_db_mb=0.1, clock=clock)
    await store.open()
    try:
        with pytest.raises(StorageFull):
            await _accept(store, 1)
        state = store.db.storage
        assert (state.since_ms, state.last_full_ms) == (clock.now_ms(), clock.now_ms())
        clock.advance(MINUTE_MS)
        with pytest.raises(StorageFull):
            await _accept(store, 2)
        assert (state.since_ms, state.last_full_ms) == (NOW - 7 * MINUTE_MS,
                                                        NOW - 6 * MINUTE_MS)
    finally:
        await store.close()
