"""The store on a real SQLite file: precedence order, dedupe, group commit, migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from liaison_net.core.audit import detail
from liaison_net.core.envelope import Precedence
from liaison_net.core.limits import HOUR_MS
from liaison_net.store.node_store import NodeStore
from liaison_net.store.schema import SCHEMA_VERSION
from tests.core.factories import NOW, Officer, seal_from

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")


async def _accept(store: NodeStore, precedence: Precedence, offset: int) -> bytes:
    env = seal_from(ALICE, [BOB], precedence=precedence, now=NOW + offset,
                    expires=NOW + offset + HOUR_MS)
    outcome = await store.accept(env, now=NOW, actor=ALICE.id, event="envelope.accepted",
                                 local_recipients=[], remote_nodes=["be"],
                                 audit_detail=detail())
    assert not outcome.duplicate
    return env.id


async def test_flash_never_waits_behind_a_backlog(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    try:
        routine = [await _accept(store, Precedence.ROUTINE, i) for i in range(50)]
        flash = await _accept(store, Precedence.FLASH, 100)
        priority = await _accept(store, Precedence.PRIORITY, 101)
        batch = [eid for eid, _ in await store.next_batch("be", 3)]
        assert batch == [flash, priority, routine[0]]
    finally:
        await store.close()


async def test_duplicate_accept_changes_nothing(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "n.sqlite3", "be")
    await store.open()
    try:
        env = seal_from(ALICE, [BOB])
        args = dict(now=NOW, actor="nl", event="envelope.delivered_to_inbox",
                    local_recipients=[BOB.id], remote_nodes=[], audit_detail=detail())
        first = await store.accept(env, **args)  # type: ignore[arg-type]
        second = await store.accept(env, **args)  # type: ignore[arg-type]
        assert (first.duplicate, second.duplicate) == (False, True)
        assert await store.inbox_count(BOB.id) == 1
        assert (await store.verify_audit()) == (1, None)  # one entry, not two
    finally:
        await store.close()


async def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    """Group commit: 200 concurrent accepts take far fewer than 200 commits."""
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    try:
        await asyncio.gather(*(_accept(store, Precedence.ROUTINE, i) for i in range(200)))
        assert store.db.commits < 200
        assert (await store.verify_audit()) == (200, None)
    finally:
        await store.close()


async def test_migrations_are_versioned_and_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    for _ in range(2):
        store = NodeStore(path, "nl")
        await store.open()
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
