"""A hop that reaches a final state keeps only what is read of it later (issue 16: bytes on
disk at the origin). Its precedence and expiry order and end the outbox, which holds only
queued hops; the envelope's own row keeps both, so the status, the expiry sweep and the
outbox read what they read before, on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from liaison_net.core.envelope import Precedence
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, seal_from
from tests.test_store_statements import ALICE, BOB, _accept


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return list(db.execute(sql))


async def test_a_delivered_or_refused_hop_stores_no_precedence_nor_expiry(
        tmp_path: Path) -> None:
    path = tmp_path / "nl.sqlite3"
    store = NodeStore(path, "nl")
    await store.open()
    try:
        delivered, refused, queued = (
            seal_from(ALICE, [BOB], now=NOW + i, precedence=Precedence.FLASH)
            for i in range(3))
        await _accept(store, [delivered, refused, queued])
        await store.finish_hops("be", now=NOW + 5, delivered=[delivered.id],
                                refused=[(refused.id, "policy")])
        assert await store.hop_states(delivered.id) == {"be": ("delivered", None)}
        assert await store.hop_states(refused.id) == {"be": ("refused", "policy")}
    finally:
        await store.close()
    hops = {bytes(r[0]): r[1:] for r in _rows(
        path, "SELECT envelope_id, state, precedence, expires, updated FROM hops")}
    assert hops[delivered.id] == ("delivered", 0, 0, NOW + 5)
    assert hops[refused.id] == ("refused", 0, 0, NOW + 5)
    assert hops[queued.id] == ("queued", int(Precedence.FLASH), queued.header.expires, NOW)
    kept = {bytes(r[0]): r[1:] for r in _rows(
        path, "SELECT id, precedence, expires FROM envelopes")}
    assert kept[delivered.id] == (int(Precedence.FLASH), delivered.header.expires)
