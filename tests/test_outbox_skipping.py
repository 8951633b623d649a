"""The sender's outbox read on a real SQLite file (issue 16): the ids of the transactions in
flight are left out, the rest come in the outbox's order with their precedence."""

from __future__ import annotations

from pathlib import Path

from liaison_net.core.envelope import Precedence
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW
from tests.test_store import _accept


async def test_the_read_skips_claimed_ids_and_names_each_precedence(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    try:
        routine = [await _accept(store, Precedence.ROUTINE, i) for i in range(5)]
        flash = await _accept(store, Precedence.FLASH, 100)
        rows = await store.next_batch_skipping("be", 10, now=NOW, skip=())
        assert [(eid, prec) for eid, prec, _ in rows] == \
            [(flash, Precedence.FLASH)] + [(eid, Precedence.ROUTINE) for eid in routine]
        assert [raw for _, _, raw in rows] == [raw for _, raw in
                                               await store.next_batch("be", 10, now=NOW)]
        skipped = await store.next_batch_skipping("be", 3, now=NOW,
                                                  skip={flash, routine[0], routine[2]})
        assert [eid for eid, _, _ in skipped] == [routine[1], routine[3], routine[4]]
    finally:
        await store.close()
