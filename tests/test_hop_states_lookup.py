"""An envelope's hops are found by key lookups, not by scanning every hop the node keeps
(an officer's `liaison status` asks for them; a node keeps its hops for as long as it keeps
their envelopes). The hops' key is (node, envelope id): the statement walks the few nodes
and looks each one's hop up. Checked by SQLite's query plan and by what it returns."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from liaison_net.store.database import WriteTxn
from liaison_net.store.envelope_store import HOP_STATES
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW


async def test_an_envelopes_hops_are_looked_up_not_scanned(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    store = NodeStore(path, "nl")
    await store.open()
    wanted = os.urandom(16)
    try:
        async def op(txn: WriteTxn) -> None:
            rows = [(node, os.urandom(16), "delivered", 0, 0, NOW, None)
                    for node in ("be", "de-nw", "lu") for _ in range(300)]
            rows += [("be", wanted, "delivered", 0, 0, NOW, None),
                     ("lu", wanted, "refused", 0, 0, NOW, "no such officer")]
            await txn.executemany("INSERT INTO hops (node, envelope_id, state, precedence, "
                                  "expires, updated, reason) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

        await store.db.write(op)
        assert await store.hop_states(wanted) == {"be": ("delivered", None),
                                                  "lu": ("refused", "no such officer")}
        assert await store.hop_states(os.urandom(16)) == {}
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + HOP_STATES, (wanted,))]
    assert not [step for step in plan if step.startswith("SCAN h") or step == "SCAN hops"], plan
