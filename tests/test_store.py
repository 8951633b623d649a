"""The store on a real SQLite file: precedence order, dedupe, group commit, migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

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
        batch = [eid for eid, _ in await store.next_batch("be", 3, now=NOW)]
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


async def test_an_envelope_id_cannot_be_taken_by_other_bytes(tmp_path: Path) -> None:
    """A different envelope under an id already stored is a conflict, not a duplicate."""
    import dataclasses

    from liaison_net.errors import Conflict

    store = NodeStore(tmp_path / "n.sqlite3", "be")
    await store.open()
    try:
        env = seal_from(ALICE, [BOB])
        args = dict(now=NOW, actor="nl", event="envelope.delivered_to_inbox",
                    local_recipients=[BOB.id], remote_nodes=[], audit_detail=detail())
        await store.accept(env, **args)  # type: ignore[arg-type]
        impostor = dataclasses.replace(env, signature=bytes(64))
        with pytest.raises(Conflict, match="already taken"):
            await store.accept(impostor, **args)  # type: ignore[arg-type]
        assert await store.envelope_bytes(env.id) == env.to_bytes()
    finally:
        await store.close()


async def test_a_card_cannot_take_another_officers_signing_key(tmp_path: Path) -> None:
    """A peer's card reusing someone else's key must not evict that officer's card."""
    from liaison_net.core import crypto
    from liaison_net.core.almanac import Almanac
    from liaison_net.core.identity import EnrolmentRequest, issue_card, verify_card
    from liaison_net.errors import Conflict

    node = crypto.generate_signing_key()
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    try:
        def card(officer: str, key: bytes) -> tuple[object, bytes]:
            raw = issue_card(EnrolmentRequest(officer, "N", "r", key, ALICE.encryption.public,
                                              Almanac()),
                             node_id="nl", node_key=node, version=1, now=NOW,
                             valid_for_ms=HOUR_MS)
            return verify_card(raw, node_public=node.public, node_id="nl", now=None), raw

        jan, raw = card("nl/jdevries", ALICE.signing.public)
        assert await store.put_card(jan, raw, now=NOW, source="nl")  # type: ignore[arg-type]
        thief, raw = card("nl/thief", ALICE.signing.public)
        with pytest.raises(Conflict, match="signing key of nl/jdevries"):
            await store.put_card(thief, raw, now=NOW, source="be")  # type: ignore[arg-type]
        assert await store.officer_keys("nl/jdevries") is not None
    finally:
        await store.close()
